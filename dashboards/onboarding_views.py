"""Staff pages of partner onboarding: the application queue, and inviting a partner's admins."""

from django.contrib import messages
from django.core.exceptions import ObjectDoesNotExist, PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from audit.selectors import partner_history
from dashboards.filters import ApplicationFilter
from dashboards.forms import ApplicationDecisionForm, StaffInviteForm, object_id
from dashboards.permissions import staff_required
from partners import access
from partners.applications import application_approve, application_reject
from partners.invitations import invitation_create
from partners.models import Application, Invitation, Partner, PartnerProfile, PartnerUser
from prm.forms import add_service_errors
from prm.http import AuthenticatedRequest

PAGE_SIZE = 20
# What the partner page selects with the partner for partner_people_context.
PARTNER_PAGE_RELATED = ("application__decided_by", "profile")


@staff_required
def applications(request: AuthenticatedRequest) -> HttpResponse:
    """Applications with filters (pending ones by default); POST approves or rejects one."""
    bound_form, bound_id = None, None
    if request.method == "POST":
        if not access.can_write_all(request.user):
            raise PermissionDenied("Only partner managers decide applications.")
        application_id = object_id(request.POST.get("application"))
        if application_id is None:
            messages.error(request, "The decision did not name an application; nothing changed.")
            return redirect(request.get_full_path())
        application = get_object_or_404(Application.objects.select_related("partner"), pk=application_id)
        form = ApplicationDecisionForm(request.POST, application_id=application.pk)
        if form.is_valid() and _decide(request, application, form):
            return redirect(request.get_full_path())
        bound_form, bound_id = form, application.pk
    elif request.method not in ("GET", "HEAD"):
        return HttpResponse(status=405)

    queue = ApplicationFilter(
        request.GET or None,
        queryset=Application.objects.select_related(
            "partner__join_source", "partner__referred_by", "decided_by"
        ).order_by("submitted_at", "id"),
    )
    page = Paginator(queue.qs, PAGE_SIZE).get_page(request.GET.get("page"))
    rows = [
        {
            "application": a,
            "form": bound_form if a.pk == bound_id else ApplicationDecisionForm(application_id=a.pk),
        }
        for a in page
    ]
    if bound_form is not None and bound_id not in {a.pk for a in page}:
        for errors in bound_form.errors.values():
            for error in errors:
                messages.error(request, f"Application #{bound_id}: {error}")
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "dashboards/applications.html",
        {
            "filter": queue,
            "rows": rows,
            "page": page,
            "query": query.urlencode(),
            "can_decide": access.can_write_all(request.user),
        },
        status=400 if bound_form is not None else 200,
    )


def _decide(request: AuthenticatedRequest, application: Application, form: ApplicationDecisionForm) -> bool:
    try:
        if form.cleaned_data["decision"] == "reject":
            application_reject(
                application=application, decided_by=request.user, reason=form.cleaned_data["reason"]
            )
        else:
            application_approve(application=application, decided_by=request.user)
    except ValidationError as error:
        add_service_errors(form, error)
        return False
    if form.cleaned_data["decision"] == "reject":
        messages.success(
            request, f"Application of {application.partner.name} rejected; the applicant was told why."
        )
    else:
        messages.success(
            request,
            f"{application.partner.name} approved: it joined today, and {application.contact_email} "
            "was invited as its partner admin.",
        )
    return True


def _one_to_one(partner: Partner, name: str):
    """A reverse one-to-one row the partner's query selected (`application`, `profile`), or None."""
    try:
        return getattr(partner, name)
    except ObjectDoesNotExist:
        return None


def partner_people_context(request: HttpRequest, partner: Partner) -> dict:
    """What the partner page shows of its people, profile and history (staff).

    `partner` comes with `application__decided_by` and `profile` selected (PARTNER_PAGE_RELATED).
    """
    return {
        "application": _one_to_one(partner, "application"),
        "profile": _one_to_one(partner, "profile") or PartnerProfile(partner=partner),
        "people": PartnerUser.objects.filter(partner=partner)
        .select_related("user")
        .order_by("user__username"),
        "invitations": Invitation.objects.pending(timezone.now())
        .filter(partner=partner)
        .select_related("invited_by"),
        "invite_form": StaffInviteForm() if access.can_write_all(request.user) else None,
        "history": partner_history(partner=partner),
    }


@require_POST
@staff_required
def invite_partner_admin(request: AuthenticatedRequest, partner_id: int) -> HttpResponse:
    if not access.can_write_all(request.user):
        raise PermissionDenied("Only partner managers invite partner admins.")
    partner = get_object_or_404(Partner, pk=partner_id)
    form = StaffInviteForm(request.POST)
    if form.is_valid():
        try:
            issued = invitation_create(
                partner=partner,
                email=form.cleaned_data["email"],
                role=PartnerUser.Role.ADMIN,
                invited_by=request.user,
            )
        except ValidationError as error:
            add_service_errors(form, error)
        else:
            messages.success(
                request, f"{issued.invitation.email} was invited as a partner admin of {partner}."
            )
    for field, errors in form.errors.items():
        for message in errors:
            messages.error(
                request,
                f"Invitation not sent: {message}"
                if field == "__all__"
                else f"Invitation not sent ({field}): {message}",
            )
    return redirect("dashboards:partner_detail", partner_id=partner.pk)
