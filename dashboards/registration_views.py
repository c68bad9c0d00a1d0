"""The registration review queue: filters, one decision per card, bulk decisions, decision history."""

from datetime import timedelta

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.db.models import Prefetch, QuerySet
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone

from dashboards.forms import PartnerReferenceField, RegistrationDecisionForm, object_id
from dashboards.permissions import staff_required
from deals.models import DealRegistration
from deals.selectors import pending_registrations
from deals.services import registration_approve, registration_reject
from partners import access
from prm.forms import add_service_errors
from prm.http import AuthenticatedRequest

QUEUE_PAGE_SIZE = 20
HISTORY_SIZE = 15
BULK_LIMIT = 100
AGES = [("", "Any age"), ("7", "Waiting over 7 days"), ("14", "Over 14 days"), ("30", "Over 30 days")]


class QueueFilterForm(forms.Form):
    conflicts = forms.BooleanField(required=False, label="Conflicts only")
    partner = PartnerReferenceField()
    age = forms.ChoiceField(choices=AGES, required=False, label="Waiting")

    def apply(self, queue: QuerySet[DealRegistration]) -> QuerySet[DealRegistration]:
        data = self.cleaned_data if self.is_bound and self.is_valid() else {}
        if data.get("conflicts"):
            queue = queue.filter(conflict_with__isnull=False)
        if data.get("partner"):
            queue = queue.filter(partner=data["partner"])
        if data.get("age"):
            queue = queue.filter(submitted_at__lte=timezone.now() - timedelta(days=int(data["age"])))
        return queue


class BulkDecisionForm(forms.Form):
    """Approve or reject the ticked registrations at once; a conflict still needs its own override."""

    bulk = forms.ChoiceField(choices=[("approve", "Approve"), ("reject", "Reject")])
    selected = forms.TypedMultipleChoiceField(coerce=int, choices=[], required=True)
    bulk_reason = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 1}), label="Reason")

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["selected"]
        assert isinstance(field, forms.TypedMultipleChoiceField)
        posted = self.data.getlist("selected") if hasattr(self.data, "getlist") else []
        field.choices = [(v, v) for v in posted if object_id(v) is not None][:BULK_LIMIT]

    def clean(self) -> dict:
        data = super().clean() or {}
        if data.get("bulk") == "reject" and not (data.get("bulk_reason") or "").strip():
            self.add_error("bulk_reason", "A reason is required to reject; the partners read it.")
        return data


def _decide(
    request: AuthenticatedRequest,
    registration: DealRegistration,
    decision: str,
    reason: str,
    override: str = "",
) -> None:
    """One decision through the domain services; ValidationError when refused."""
    if decision == "reject":
        registration_reject(registration=registration, decided_by=request.user, reason=reason)
    else:
        registration_approve(
            registration=registration,
            decided_by=request.user,
            reason=reason,
            override_reason=override if decision == "override" else "",
        )


def _refusal_text(error: ValidationError) -> str:
    if hasattr(error, "message_dict"):
        return "; ".join(m for messages_ in error.message_dict.values() for m in messages_)
    return "; ".join(error.messages)


def _bulk(request: AuthenticatedRequest) -> bool:
    """Decide the ticked registrations one by one; each refusal is reported at the top."""
    form = BulkDecisionForm(request.POST)
    if not form.is_valid():
        for errors in form.errors.values():
            for error in errors:
                messages.error(request, f"Bulk decision not recorded: {error}")
        return False
    decision, reason = form.cleaned_data["bulk"], form.cleaned_data["bulk_reason"].strip()
    done, refused = 0, []
    rows = DealRegistration.objects.filter(pk__in=form.cleaned_data["selected"]).select_related(
        "partner", "account"
    )
    for registration in rows.order_by("submitted_at", "id"):
        try:
            _decide(request, registration, decision, reason)
        except ValidationError as error:
            who = f"#{registration.pk} {registration.account.name} ({registration.partner})"
            refused.append(f"{who}: {_refusal_text(error)}")
        else:
            done += 1
    verb = "approved" if decision == "approve" else "rejected"
    if done:
        messages.success(request, f"{done} registration{'s' if done != 1 else ''} {verb}.")
    for text in refused:
        messages.error(request, f"Not {verb}: {text}")
    return not refused


@staff_required
def registrations(request: AuthenticatedRequest) -> HttpResponse:
    """The review queue; POST decides one registration (approve, reject, override) or several."""
    bound_form, bound_id, refused = None, None, False
    if request.method == "POST":
        if not access.can_write_all(request.user):
            raise PermissionDenied("Only partner managers decide registrations.")
        if "bulk" in request.POST:
            _bulk(request)
            return redirect(request.get_full_path())
        registration_id = object_id(request.POST.get("registration"))
        if registration_id is None:
            messages.error(request, "The decision did not name a registration of the queue; nothing changed.")
            refused = True
        else:
            registration = get_object_or_404(DealRegistration, pk=registration_id)
            form = RegistrationDecisionForm(request.POST, registration_id=registration.pk)
            if form.is_valid() and _single(request, registration, form):
                return redirect(request.get_full_path())
            bound_form, bound_id = form, registration.pk
    elif request.method != "GET":
        return HttpResponse(status=405)

    filters = QueueFilterForm(request.GET or None)
    queue = filters.apply(pending_registrations()).prefetch_related(
        Prefetch(
            "conflicting_registrations",
            queryset=DealRegistration.objects.select_related("partner").order_by("submitted_at"),
        )
    )
    page = Paginator(queue, QUEUE_PAGE_SIZE).get_page(request.GET.get("page"))
    rows = [
        {
            "registration": r,
            "form": bound_form if r.pk == bound_id else RegistrationDecisionForm(registration_id=r.pk),
            "later_claims": [c for c in r.conflicting_registrations.all() if c.status == "submitted"],
        }
        for r in page
    ]
    if bound_form is not None:
        # Refused: said at the top of the page as well as on the card (which may be further down,
        # on another page, or gone because someone decided it meanwhile).
        for errors in bound_form.errors.values():
            for error in errors:
                messages.error(request, f"Registration #{bound_id}: {error}")
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "dashboards/registrations.html",
        {
            "rows": rows,
            "page": page,
            "query": query.urlencode(),
            "filters": filters,
            "refused_id": bound_id,
            "can_decide": access.can_write_all(request.user),
            "history": decision_history(),
            "bulk_limit": BULK_LIMIT,
        },
        status=400 if bound_form is not None or refused else 200,
    )


def decision_history() -> list[DealRegistration]:
    """The latest decisions, newest first, with who took them (one query)."""
    return list(
        DealRegistration.objects.filter(decided_at__isnull=False)
        .exclude(status=DealRegistration.Status.SUBMITTED)
        .select_related("partner", "account", "decided_by")
        .order_by("-decided_at", "-id")[:HISTORY_SIZE]
    )


def _single(
    request: AuthenticatedRequest, registration: DealRegistration, form: RegistrationDecisionForm
) -> bool:
    decision = form.cleaned_data["decision"]
    try:
        _decide(
            request, registration, decision, form.cleaned_data["reason"], form.cleaned_data["override_reason"]
        )
    except ValidationError as error:
        add_service_errors(form, error)
        return False
    verb = "rejected" if decision == "reject" else "approved"
    messages.success(
        request, f"Registration of {registration.account.name} by {registration.partner} {verb}."
    )
    return True
