"""Pages outside the login: the public application (/apply/) and accepting an invitation; the
partner logo, served only to the partner's people and staff."""

import logging

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.core.exceptions import ValidationError
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, HttpResponseBase
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods
from django_ratelimit.core import get_usage

from ops.client_ip import client_ip_address
from partners import access
from partners.applications import (
    ALREADY_PENDING,
    application_submit,
    referring_partner,
    tracked_join_source,
)
from partners.invitations import InvitationRefused, invitation_accept, invitation_from_token
from partners.models import Partner, PartnerProfile
from partners.profile import logo_content_type
from portal.forms import ApplicationForm, InvitationAcceptForm
from prm.forms import add_service_errors

logger = logging.getLogger(__name__)

APPLY_RATE_GROUP = "partners.apply"
HONEYPOT_REFUSAL = (
    "Your application was not sent: a field meant to stay empty was filled in, which is what automated "
    "submissions do. If you are a person, reload this page and send the form again without filling "
    "hidden fields (some browser extensions do)."
)


def _client_key(group: str, request: HttpRequest) -> str:
    return client_ip_address(request) or "unknown"


def _apply_usage(request: HttpRequest) -> dict | None:
    """Count this submission against the client address's allowance (every POST counts)."""
    return get_usage(
        request,
        group=APPLY_RATE_GROUP,
        key=_client_key,
        rate=settings.APPLY_RATE_LIMIT,
        method="POST",
        increment=True,
    )


@never_cache
@require_http_methods(["GET", "HEAD", "POST"])
def apply(request: HttpRequest) -> HttpResponse:
    """The application form. The link's `source` (a join source key) or `ref` (a partner's key)
    say where the applicant came from; they are checked again when the form is sent."""
    source = request.GET.get("source", "")
    ref = request.GET.get("ref", "")
    from_link = bool(
        (ref and referring_partner(ref) is not None) or (source and tracked_join_source(source) is not None)
    )
    form = ApplicationForm(request.POST or None, offer_sources=not from_link)
    if request.method == "POST":
        usage = _apply_usage(request)
        if usage is not None and usage["should_limit"]:
            logger.warning("Application refused: rate limit reached for %s", _client_key("", request))
            response = render(
                request,
                "portal/apply_limited.html",
                {"minutes": max(1, round(usage["time_left"] / 60))},
                status=429,
            )
            response["Retry-After"] = str(max(1, int(usage["time_left"])))
            return response
        if form.is_bot:
            logger.warning("Application refused: honeypot filled, from %s", _client_key("", request))
            form.add_error(None, HONEYPOT_REFUSAL)
            return render(request, "portal/apply.html", {"form": form, "from_link": from_link}, status=400)
        if form.is_valid():
            data = form.cleaned_data
            try:
                application_submit(
                    company=data["company"],
                    partner_type=data["partner_type"],
                    contact_name=data["contact_name"],
                    contact_email=data["contact_email"],
                    website=data["website"],
                    pitch=data["pitch"],
                    source=source,
                    ref=ref,
                    chosen_source=data.get("join_source"),
                    client_address=client_ip_address(request),
                )
            except ValidationError as error:
                errors = _without_pending_notice(error)
                if errors:
                    add_service_errors(form, ValidationError(errors))
                else:
                    # Answered as a success: telling the public that an address has an application
                    # waiting would let anyone find out who applied. Nothing new is recorded.
                    logger.info("Application from an address already waiting for review; not recorded")
                    return _thanks(request, data)
            else:
                return _thanks(request, data)
    status = 400 if request.method == "POST" and form.errors else 200
    return render(request, "portal/apply.html", {"form": form, "from_link": from_link}, status=status)


def _without_pending_notice(error: ValidationError) -> dict[str, list[str]]:
    errors = {field: list(messages) for field, messages in error.message_dict.items()}
    errors["contact_email"] = [m for m in errors.get("contact_email", []) if m != ALREADY_PENDING]
    return {field: messages for field, messages in errors.items() if messages}


def _thanks(request: HttpRequest, data: dict) -> HttpResponse:
    messages.success(
        request,
        f"Thank you: we received the application of {data['company']} and sent a confirmation "
        f"to {data['contact_email']}. A partner manager will get back to you by email.",
    )
    return redirect("apply_done")


@require_GET
def apply_done(request: HttpRequest) -> HttpResponse:
    return render(request, "portal/apply_done.html")


@never_cache
@require_http_methods(["GET", "HEAD", "POST"])
def accept_invitation(request: HttpRequest, token: str) -> HttpResponse:
    """Choose a username and password; the login is created with the invitation's role and logged in."""
    try:
        invitation = invitation_from_token(token)
    except InvitationRefused as refusal:
        return _refused(request, refusal)
    form = InvitationAcceptForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            membership = invitation_accept(
                invitation=invitation,
                username=form.cleaned_data["username"],
                password=form.cleaned_data["password"],
            )
        except InvitationRefused as refusal:
            return _refused(request, refusal)
        except ValidationError as error:
            add_service_errors(form, error)
        else:
            login(request, membership.user, backend="django.contrib.auth.backends.ModelBackend")
            messages.success(
                request,
                f"Welcome, {membership.user.get_username()}: you can now act for {membership.partner.name} "
                f"as {membership.get_role_display().lower()}.",
            )
            return redirect("portal:home")
    status = 400 if request.method == "POST" and form.errors else 200
    return render(
        request, "portal/invitation_accept.html", {"form": form, "invitation": invitation}, status=status
    )


def _refused(request: HttpRequest, refusal: InvitationRefused) -> HttpResponse:
    # A link that names nothing is not found; one that did work once is gone.
    status = 404 if refusal.reason == "invalid" else 410
    return render(request, "portal/invitation_refused.html", {"refusal": refusal}, status=status)


@require_GET
def partner_logo(request: HttpRequest, partner_id: int) -> HttpResponseBase:
    """The partner's logo, to its own people and staff only (anyone else: 404, as if none existed)."""
    if not request.user.is_authenticated:
        return redirect(f"{reverse('login')}?next={request.path}")
    partner = get_object_or_404(Partner, pk=partner_id)
    if not access.can_see_partner_profile(request.user, partner):
        raise Http404
    profile = PartnerProfile.objects.filter(partner=partner).exclude(logo="").first()
    if profile is None:
        raise Http404
    try:
        handle = profile.logo.open("rb")
    except OSError:
        raise Http404 from None
    response = FileResponse(handle, content_type=logo_content_type(profile.logo.name or ""))
    response["Cache-Control"] = "private, max-age=300"
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response["Content-Disposition"] = "inline"
    return response
