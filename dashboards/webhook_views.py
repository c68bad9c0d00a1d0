"""Webhook endpoints for partner managers: register, see the delivery log, test, replay, disable.

Partner managers only: an endpoint's secret is shown here, and webhooks carry every partner's
events (partners sync through the scoped change feed instead; docs/integrations.md).
"""

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render

from dashboards.forms import object_id
from dashboards.permissions import staff_required
from events.types import SUBSCRIBABLE
from integrations import services
from integrations.models import WebhookDelivery, WebhookEndpoint
from partners import access
from prm.forms import add_service_errors
from prm.http import AuthenticatedRequest

LOG_SIZE = 50


class WebhookEndpointForm(forms.Form):
    url = forms.CharField(
        label="URL", max_length=500, help_text="http:// or https://, public addresses only."
    )
    description = forms.CharField(max_length=200, required=False)
    event_types = forms.MultipleChoiceField(
        label="Events",
        choices=[(t.value, f"{t.value}: {t.label}") for t in SUBSCRIBABLE],
        widget=forms.CheckboxSelectMultiple,
    )


def _managers_only(request: AuthenticatedRequest) -> None:
    if not access.can_write_all(request.user):
        raise PermissionDenied("Only partner managers manage webhooks.")


@staff_required
def webhooks(request: AuthenticatedRequest) -> HttpResponse:
    """The endpoints; POST registers one and shows its secret on its page."""
    _managers_only(request)
    form = WebhookEndpointForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            endpoint = services.endpoint_create(owner=request.user, **form.cleaned_data)
        except ValidationError as error:
            add_service_errors(form, error)
        else:
            messages.success(request, "Endpoint registered. Copy its signing secret into your receiver.")
            return redirect("dashboards:webhook_detail", endpoint_id=endpoint.pk)
    endpoints = WebhookEndpoint.objects.select_related("owner").order_by("-created_at", "-id")
    return render(request, "dashboards/webhooks.html", {"form": form, "endpoints": endpoints})


@staff_required
def webhook_detail(request: AuthenticatedRequest, endpoint_id: int) -> HttpResponse:
    """One endpoint and its delivery log; POST `action`: test, enable, disable, rotate, replay."""
    _managers_only(request)
    endpoint = get_object_or_404(WebhookEndpoint, pk=endpoint_id)
    if request.method == "POST":
        _act(request, endpoint)
        return redirect("dashboards:webhook_detail", endpoint_id=endpoint.pk)
    deliveries = (
        WebhookDelivery.objects.filter(endpoint=endpoint)
        .select_related("event")
        .prefetch_related("attempt_log")
        .order_by("-created_at", "-id")[:LOG_SIZE]
    )
    return render(request, "dashboards/webhook_detail.html", {"endpoint": endpoint, "deliveries": deliveries})


def _act(request: AuthenticatedRequest, endpoint: WebhookEndpoint) -> None:
    action = request.POST.get("action", "")
    try:
        if action == "test":
            services.endpoint_send_test(endpoint=endpoint)
            messages.success(request, "A webhook.test event is on its way; its attempt shows below.")
        elif action in ("enable", "disable"):
            services.endpoint_update(endpoint=endpoint, is_active=action == "enable")
            messages.success(request, f"Endpoint {action}d.")
        elif action == "rotate":
            services.endpoint_rotate_secret(endpoint=endpoint)
            messages.success(request, "New signing secret issued; the old one no longer signs anything.")
        elif action == "replay":
            delivery_id = object_id(request.POST.get("delivery"))
            delivery = get_object_or_404(WebhookDelivery, pk=delivery_id or 0, endpoint=endpoint)
            services.delivery_replay(delivery=delivery)
            messages.success(request, f"Delivery #{delivery.pk} queued again (same event id).")
        else:
            messages.error(request, "Unknown action; nothing changed.")
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
