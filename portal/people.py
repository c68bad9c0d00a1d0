"""The partner's own users and profile, managed by its partner admins.

Members get 403 on every page here except reading the profile; an admin only ever reaches its own
partner's users and invitations (another partner's id is a 404).
"""

from collections.abc import Callable
from functools import wraps

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from partners.invitations import invitation_create, invitation_revoke, partner_user_set_active
from partners.models import Invitation, PartnerUser
from partners.profile import PROFILE_FIELDS, partner_profile, partner_profile_update
from portal.forms import InviteForm, ProfileForm
from portal.permissions import PartnerRequest, partner_required
from prm.forms import add_service_errors

View = Callable[..., HttpResponse]


def partner_admin_required(view: View) -> View:
    """Partner admins only; a member gets 403."""

    @partner_required
    @wraps(view)
    def wrapped(request: PartnerRequest, *args, **kwargs) -> HttpResponse:
        if not request.partner_membership.is_admin:
            raise PermissionDenied("Only your partner's admins manage its users and profile.")
        return view(request, *args, **kwargs)

    return wrapped


@partner_admin_required
def users(request: PartnerRequest) -> HttpResponse:
    """The partner's logins and pending invitations; POST invites someone."""
    form = InviteForm(request.POST or None)
    if request.method == "POST":
        if form.is_valid():
            try:
                issued = invitation_create(
                    partner=request.partner,
                    email=form.cleaned_data["email"],
                    role=form.cleaned_data["role"],
                    invited_by=request.user,
                )
            except ValidationError as error:
                add_service_errors(form, error)
            else:
                messages.success(request, f"Invitation sent to {issued.invitation.email}.")
                return redirect("portal:users")
    elif request.method != "GET":
        return HttpResponse(status=405)
    now = timezone.now()
    return render(
        request,
        "portal/users.html",
        {
            "form": form,
            "people": PartnerUser.objects.filter(partner=request.partner)
            .select_related("user", "access_changed_by")
            .order_by("user__username"),
            "invitations": Invitation.objects.pending(now)
            .filter(partner=request.partner)
            .select_related("invited_by")
            .order_by("expires_at"),
        },
        status=400 if form.errors else 200,
    )


@require_POST
@partner_admin_required
def user_access(request: PartnerRequest, membership_id: int) -> HttpResponse:
    """Deactivate (`active=0`) or re-activate (`active=1`) one of the partner's logins."""
    membership = get_object_or_404(
        PartnerUser.objects.select_related("user", "partner"), pk=membership_id, partner=request.partner
    )
    active = request.POST.get("active") == "1"
    try:
        partner_user_set_active(membership=membership, active=active, changed_by=request.user)
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
    else:
        verb = "re-activated: it can log in again" if active else "deactivated: it can no longer log in"
        messages.success(request, f"{membership.user.get_username()} {verb}.")
    return redirect("portal:users")


@require_POST
@partner_admin_required
def revoke_invitation(request: PartnerRequest, invitation_id: int) -> HttpResponse:
    invitation = get_object_or_404(Invitation, pk=invitation_id, partner=request.partner)
    try:
        invitation_revoke(invitation=invitation, revoked_by=request.user)
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
    else:
        messages.success(request, f"The invitation of {invitation.email} was withdrawn.")
    return redirect("portal:users")


@partner_required
def profile(request: PartnerRequest) -> HttpResponse:
    """Everyone of the partner reads its profile; its admins edit it."""
    current = partner_profile(request.partner)
    can_edit = request.partner_membership.is_admin
    if request.method == "POST":
        if not can_edit:
            raise PermissionDenied("Only your partner's admins edit its profile.")
        form = ProfileForm(request.POST, request.FILES)
        if form.is_valid():
            try:
                partner_profile_update(
                    partner=request.partner,
                    changed_by=request.user,
                    details=form.details(),
                    logo=form.cleaned_data.get("logo"),
                    remove_logo=form.cleaned_data.get("remove_logo", False),
                )
            except ValidationError as error:
                add_service_errors(form, error)
            else:
                messages.success(request, "Profile saved.")
                return redirect("portal:profile")
    elif request.method in ("GET", "HEAD"):
        form = ProfileForm(initial={field: getattr(current, field) for field in PROFILE_FIELDS})
    else:
        return HttpResponse(status=405)
    return render(
        request,
        "portal/profile.html",
        {"form": form, "profile": current, "can_edit": can_edit, "partner": request.partner},
        status=400 if form.errors else 200,
    )
