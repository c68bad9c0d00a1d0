"""Answers the health probes before anything validates the Host header.

Orchestrators probe a container by its address (Host: 10.0.3.7:8000, or 127.0.0.1 from inside),
which ALLOWED_HOSTS rightly refuses for every other page. Placed right after SecurityMiddleware
(whose HTTPS redirect skips these paths through SECURE_REDIRECT_EXEMPT), this middleware serves
GET and HEAD on /healthz and /readyz itself; everything else goes on as usual.
"""

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from ops import views

PROBES: dict[str, Callable[[HttpRequest], HttpResponse]] = {
    "/healthz": views.healthz,
    "/readyz": views.readyz,
}


class HealthProbeMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        probe = PROBES.get(request.path_info.rstrip("/"))
        if probe is None or request.method not in ("GET", "HEAD"):
            return self.get_response(request)
        return probe(request)
