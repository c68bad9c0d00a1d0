"""/healthz and /readyz: JSON, no authentication, never cached (see ops.middleware for routing)."""

from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache

from ops.health import readiness


@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    """The process answers; touches nothing else."""
    return JsonResponse({"status": "ok"})


@never_cache
def readyz(request: HttpRequest) -> JsonResponse:
    """200 when the database, the broker and the KPI freshness checks pass, 503 otherwise."""
    report = readiness()
    return JsonResponse(report.as_dict(), status=200 if report.ok else 503)
