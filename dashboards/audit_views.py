"""The audit trail page: every recorded change, filtered, newest first (staff only)."""

from django.core.paginator import Paginator
from django.http import HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from audit.display import present
from audit.filters import AuditEntryFilter
from audit.selectors import log_entries
from dashboards.permissions import staff_required
from prm.http import AuthenticatedRequest

PAGE_SIZE = 50


@require_GET
@staff_required
def audit_trail(request: AuthenticatedRequest) -> HttpResponse:
    trail = AuditEntryFilter(request.GET or None, queryset=log_entries())
    page = Paginator(trail.qs, PAGE_SIZE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "dashboards/audit.html",
        {"filter": trail, "page": page, "entries": present(page), "query": query.urlencode()},
        status=400 if trail.is_bound and trail.errors else 200,
    )
