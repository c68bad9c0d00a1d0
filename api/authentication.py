"""`Authorization: Bearer prm_…` (or `Token prm_…`) with a personal API token; HTTP Basic (token
endpoint only) under the login lockout."""

from rest_framework import authentication, exceptions

from api.services import api_token_authenticate
from ops.lockout import lockout_retry_at, seconds_until


class ApiTokenAuthentication(authentication.BaseAuthentication):
    keywords = ("bearer", "token")

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].decode("latin-1").lower() not in self.keywords:
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("Invalid token header: expected 'Bearer <token>'.")
        try:
            secret = header[1].decode()
        except UnicodeError as exc:
            raise exceptions.AuthenticationFailed("Invalid token header: the token is not text.") from exc
        token = api_token_authenticate(secret=secret)
        if token is None or not token.user.is_active:
            raise exceptions.AuthenticationFailed("Invalid or revoked token.")
        return token.user, token

    def authenticate_header(self, request) -> str:
        # Makes DRF answer 401 (not 403) to anonymous requests, as the error contract says.
        return 'Bearer realm="api"'


class LoginLockedOut(exceptions.Throttled):
    """A password check refused by the login lockout (django-axes): 429, and Retry-After when the
    lock expires by itself."""

    default_code = "locked_out"

    def __init__(self, wait: int | None):
        detail = "Too many failed logins for this account from this address."
        if wait is None:
            detail += " Ask an administrator to unlock it."
        super().__init__(wait=wait, detail=detail)


class LockoutAwareBasicAuthentication(authentication.BasicAuthentication):
    """HTTP Basic under the same lockout as the login forms: per (username, client address).

    django-axes refuses a locked-out pair inside `authenticate()` and marks DRF's request; this
    turns that refusal into a 429 with Retry-After instead of a plain "wrong password" 401.
    """

    def authenticate_credentials(self, userid, password, request=None):
        if "\x00" in userid:
            # No account has such a name (the login form refuses it too), and PostgreSQL cannot
            # even compare it: answer before any query.
            raise exceptions.AuthenticationFailed("Invalid username/password.")
        try:
            return super().authenticate_credentials(userid, password, request)
        except exceptions.AuthenticationFailed:
            if request is not None and getattr(request, "axes_locked_out", False):
                retry_at = lockout_retry_at(request, {"username": userid})
                raise LoginLockedOut(wait=seconds_until(retry_at)) from None
            raise
