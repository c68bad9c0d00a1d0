"""The partner's own pipeline forecast (kpis.forecast): next quarter's expected sourced and
influenced revenue from its open deals, and how the method fared on its last four quarters, read
from the snapshot stored after the last KPI publication (kpis.forecast_store)."""

from django.core.exceptions import PermissionDenied
from django.http import HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from kpis.forecast_store import forecast_requested, stored_partner_forecast
from portal.permissions import PartnerRequest, partner_required


@require_GET
@partner_required
def forecast(request: PartnerRequest) -> HttpResponse:
    """Partner admins only (a money page: members get 403); only the partner's own row is shown."""
    if not request.partner_membership.is_admin:
        raise PermissionDenied("Only the partner's admins see its forecast.")
    stored = stored_partner_forecast(request.partner)
    if stored is None:
        forecast_requested()
        return render(request, "portal/forecast.html", {"partner": request.partner, "own": None})
    snapshot, own = stored
    return render(
        request,
        "portal/forecast.html",
        {
            "partner": request.partner,
            "quarter": snapshot.quarter,
            "own": own,
            "as_of": snapshot.as_of,
            "computed_at": snapshot.computed_at,
        },
    )
