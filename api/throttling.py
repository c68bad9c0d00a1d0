"""Scoped throttles whose rates are read at request time, so settings overrides take effect."""

from rest_framework.settings import api_settings
from rest_framework.throttling import ScopedRateThrottle

AUTH_SCOPE = "auth"
WRITE_SCOPE = "write"
COMPUTE_SCOPE = "compute"
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


class ScopedThrottle(ScopedRateThrottle):
    @property
    def THROTTLE_RATES(self):  # noqa: N802 — DRF reads this name
        return api_settings.DEFAULT_THROTTLE_RATES


class WriteThrottle(ScopedThrottle):
    """Throttles a view's unsafe methods under its `throttle_scope` (default: write); reads are free."""

    reads_are_free = True

    def allow_request(self, request, view):
        if request.method in SAFE_METHODS:
            return True
        return super().allow_request(request, view)


class CredentialAttemptThrottle(ScopedThrottle):
    """Counts requests per client address *before* credentials are checked.

    DRF authenticates before it throttles, so a wrong password (HTTP Basic on the token endpoint)
    would be refused with 401 without ever being counted; this throttle runs first instead.
    """

    def get_cache_key(self, request, view):
        return self.cache_format % {"scope": f"{self.scope}-address", "ident": self.get_ident(request)}
