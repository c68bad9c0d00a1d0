"""FilterSets for every list.

Foreign keys are filtered by plain id (`?partner=12`), never validated against the table: the
filter narrows the already-scoped queryset, so a partner user asking for another partner's id
gets an empty list, exactly as for an id that does not exist — nothing to infer.
"""

import datetime
import re

import django_filters as filters
from django import forms
from django.core.exceptions import ValidationError
from django.db.models import Q
from django_filters.rest_framework import DjangoFilterBackend
from rest_framework import exceptions
from rest_framework.settings import api_settings

from api.permissions import acting_partner
from deals.models import Account, Deal, DealRegistration, Touch
from deals.rules import normalise_domain
from deals.selectors import SEGMENTS
from kpis.metrics import METRIC_NAMES, Grain, Scope
from kpis.models import CostEntry, KpiRun, KpiValue, Target
from kpis.selectors import published_values
from partners.models import JoinSource, Partner, PartnerUser
from program.attribution import AttributionModel
from program.models import ProgramSettings

PERIOD_REGEX = r"^\d{4}(-(0[1-9]|1[0-2])|-Q[1-4])?$"


class UtcIsoDateTimeField(filters.fields.IsoDateTimeField):
    """An ISO 8601 moment, handed to the query in UTC: PostgreSQL refuses offsets beyond ±15:59
    (`2026-03-01T00:00-18:30` was a 500) and Python accepts them up to ±23:59."""

    def to_python(self, value):
        moment = super().to_python(value)
        if moment is None:
            return None
        try:
            return moment.astimezone(datetime.UTC)
        except OverflowError as exc:
            raise ValidationError("This moment lies outside the supported range.", code="invalid") from exc


class UtcIsoDateTimeRangeField(filters.fields.RangeField):
    widget = filters.widgets.DateRangeWidget

    def __init__(self, *args, **kwargs):
        super().__init__((UtcIsoDateTimeField(), UtcIsoDateTimeField()), *args, **kwargs)


class MomentRangeFilter(filters.IsoDateTimeFromToRangeFilter):
    """`<name>_after` / `<name>_before`, ISO 8601, any UTC offset."""

    field_class = UtcIsoDateTimeRangeField


class FilterBackend(DjangoFilterBackend):
    """django-filter's backend, minus building and validating a filterset's form for a request
    that filters nothing (only pagination, ordering or format parameters): with no filter value a
    plain FilterSet returns the queryset unchanged, and the form costs ~18% of a deal-list request
    (docs/benchmarks.md). FilterSets that override `filter_queryset` always run; one that acts on
    empty values some other way (its `qs`, a filter's `filter()`) must override it too."""

    def filter_queryset(self, request, queryset, view):
        filterset_class = self.get_filterset_class(view, queryset)
        if (
            filterset_class is not None
            and filterset_class.filter_queryset is filters.FilterSet.filter_queryset
            and set(request.query_params) <= non_filter_parameters(view)
        ):
            return queryset
        return super().filter_queryset(request, queryset, view)


def non_filter_parameters(view) -> set[str]:
    """The query parameters of a list view that only page, order or format it."""
    names = {api_settings.ORDERING_PARAM, api_settings.URL_FORMAT_OVERRIDE}
    paginator = getattr(view, "paginator", None)
    for attribute in ("page_size_query_param", "page_query_param", "cursor_query_param"):
        if name := getattr(paginator, attribute, None):
            names.add(name)
    return names


# Bounds of a 64-bit key: anything outside is a 400, never an overflow in the database driver.
ID_MIN, ID_MAX = 1, 2**63 - 1


class IdFilter(filters.NumberFilter):
    field_class = forms.IntegerField

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("min_value", ID_MIN)
        kwargs.setdefault("max_value", ID_MAX)
        super().__init__(*args, **kwargs)


def _id(field_name: str, help_text: str) -> IdFilter:
    return IdFilter(field_name=field_name, help_text=help_text)


class DomainFilter(filters.CharFilter):
    def filter(self, qs, value):
        return super().filter(qs, normalise_domain(value) if value else value)


class JoinSourceFilterSet(filters.FilterSet):
    name = filters.CharFilter(lookup_expr="icontains")

    class Meta:
        model = JoinSource
        fields = ["key", "kind", "name"]


class PartnerFilterSet(filters.FilterSet):
    name = filters.CharFilter(lookup_expr="icontains")
    status = filters.MultipleChoiceFilter(choices=Partner.Status.choices)
    type = filters.MultipleChoiceFilter(choices=Partner.Type.choices)
    join_source = _id("join_source_id", "Join source id.")
    referred_by = _id("referred_by_id", "Id of the partner that referred it.")
    manager = _id("manager_id", "User id of the partner manager.")
    applied = filters.DateFromToRangeFilter(
        field_name="applied_at", help_text="applied_after / applied_before"
    )
    joined = filters.DateFromToRangeFilter(field_name="joined_at", help_text="joined_after / joined_before")

    class Meta:
        model = Partner
        fields = ["key", "name", "status", "type", "tier", "join_source", "referred_by", "manager"]


class PartnerUserFilterSet(filters.FilterSet):
    partner = _id("partner_id", "Partner id.")
    role = filters.ChoiceFilter(choices=PartnerUser.Role.choices)

    class Meta:
        model = PartnerUser
        fields = ["partner", "role"]


class AccountFilterSet(filters.FilterSet):
    name = filters.CharFilter(lookup_expr="icontains")
    domain = DomainFilter(help_text="Matched after normalising (`https://www.Acme.com/x` = `acme.com`).")

    class Meta:
        model = Account
        fields = ["key", "name", "domain"]


class RegistrationFilterSet(filters.FilterSet):
    partner = _id("partner_id", "Partner id.")
    account = _id("account_id", "Account id.")
    status = filters.MultipleChoiceFilter(choices=DealRegistration.Status.choices)
    domain = DomainFilter(field_name="account__domain", help_text="The account's domain, normalised.")
    submitted = MomentRangeFilter(
        field_name="submitted_at", help_text="submitted_after / submitted_before (ISO 8601)"
    )
    decided = MomentRangeFilter(
        field_name="decided_at", help_text="decided_after / decided_before (ISO 8601)"
    )
    in_conflict = filters.BooleanFilter(
        field_name="conflict_with",
        lookup_expr="isnull",
        exclude=True,
        help_text="Flagged as a channel conflict.",
    )

    class Meta:
        model = DealRegistration
        fields = ["key", "partner", "account", "status", "domain", "in_conflict"]


class DealFilterSet(filters.FilterSet):
    account = _id("account_id", "Account id.")
    sourcing_partner = IdFilter(method="filter_sourcing_partner", help_text="Sourcing partner id.")
    status = filters.MultipleChoiceFilter(choices=Deal.Status.choices)
    sourced = filters.BooleanFilter(method="filter_sourced", help_text="Has a sourcing partner.")
    touched_by = IdFilter(method="filter_touched_by", help_text="Deals touched by this partner id.")
    created = MomentRangeFilter(field_name="created_at", help_text="created_after / created_before")
    closed = MomentRangeFilter(field_name="closed_at", help_text="closed_after / closed_before")
    amount = filters.RangeFilter(help_text="amount_min / amount_max")
    segment = filters.ChoiceFilter(
        choices=[(s, s) for s in SEGMENTS],
        method="filter_segment",
        help_text="sourced, influenced (no sourcing partner, a touch on or before the close) or direct.",
    )
    join_source = IdFilter(
        method="filter_join_source", help_text="Deals sourced or touched by a partner of this join source id."
    )

    class Meta:
        model = Deal
        fields = ["key", "account", "status", "sourcing_partner", "sourced"]

    def filter_segment(self, queryset, name, value):
        return queryset.filter(segment=value)

    def filter_join_source(self, queryset, name, value):
        # A partner user learns nothing of other partners: only its own involvement counts, and
        # only when it belongs to that join source.
        partner = acting_partner(self.request) if self.request is not None else None
        if partner is not None:
            if partner.join_source_id != value:
                return queryset.none()
            touched = Touch.objects.filter(partner=partner).values("deal_id")
            return queryset.filter(Q(sourcing_partner=partner) | Q(pk__in=touched))
        members = Partner.objects.filter(join_source_id=value).values("pk")
        touched = Touch.objects.filter(partner_id__in=members).values("deal_id")
        return queryset.filter(Q(sourcing_partner_id__in=members) | Q(pk__in=touched))

    # A partner sees deals other partners sourced or touched (ones it touched too), but never who
    # those partners are: a filter on another partner's involvement finds nothing, and "sourced"
    # means sourced by the partner itself.
    def _others_partner(self, partner_id: int) -> bool:
        partner = acting_partner(self.request) if self.request is not None else None
        return partner is not None and partner.pk != partner_id

    def filter_sourcing_partner(self, queryset, name, value):
        if self._others_partner(value):
            return queryset.none()
        return queryset.filter(sourcing_partner_id=value)

    def filter_sourced(self, queryset, name, value):
        partner = acting_partner(self.request) if self.request is not None else None
        if partner is not None:
            mine = Q(sourcing_partner=partner)
            return queryset.filter(mine) if value else queryset.exclude(mine)
        return queryset.filter(sourcing_partner__isnull=not value)

    def filter_touched_by(self, queryset, name, value):
        if self._others_partner(value):
            return queryset.none()
        return queryset.filter(pk__in=Touch.objects.filter(partner_id=value).values("deal_id"))


class TouchFilterSet(filters.FilterSet):
    deal = _id("deal_id", "Deal id.")
    partner = _id("partner_id", "Partner id.")
    kind = filters.MultipleChoiceFilter(choices=Touch.Kind.choices)
    touched = MomentRangeFilter(field_name="touched_at", help_text="touched_after / touched_before")

    class Meta:
        model = Touch
        fields = ["deal", "partner", "kind"]


class CostEntryFilterSet(filters.FilterSet):
    partner = _id("partner_id", "Partner id.")
    join_source = _id("join_source_id", "Join source id.")
    category = filters.MultipleChoiceFilter(choices=CostEntry.Category.choices)
    source = filters.MultipleChoiceFilter(choices=CostEntry.Source.choices)
    counted = filters.BooleanFilter(help_text="Whether the KPIs count the cost (false: superseded).")
    date = filters.DateFromToRangeFilter(help_text="date_after / date_before")

    class Meta:
        model = CostEntry
        fields = ["partner", "join_source", "category", "source"]


class TargetFilterSet(filters.FilterSet):
    partner = _id("partner_id", "Partner id.")
    join_source = _id("join_source_id", "Join source id.")
    metric = filters.MultipleChoiceFilter(choices=Target._meta.get_field("metric").choices)
    period = filters.CharFilter()
    grain = filters.ChoiceFilter(choices=[(g.value, g.value) for g in Grain])

    class Meta:
        model = Target
        fields = ["partner", "join_source", "metric", "period", "grain"]


class KpiRunFilterSet(filters.FilterSet):
    status = filters.MultipleChoiceFilter(choices=KpiRun.Status.choices)
    trigger = filters.ChoiceFilter(choices=KpiRun.Trigger.choices)
    mode = filters.ChoiceFilter(choices=KpiRun.Mode.choices)

    class Meta:
        model = KpiRun
        fields = ["status", "trigger", "mode"]


def _validate_period(value: str) -> None:
    if not re.match(PERIOD_REGEX, value):
        raise ValidationError("Use a period label: `2026-03`, `2026-Q1` or `2026`.")


class KpiValueFilterSet(filters.FilterSet):
    """Filters of the published KPI set; the reading itself is kpis.selectors.published_values."""

    grain = filters.ChoiceFilter(
        choices=[(g.value, g.value) for g in Grain], method="noop", help_text="Default: month."
    )
    attribution_model = filters.ChoiceFilter(
        choices=[(m.value, m.value) for m in AttributionModel],
        method="noop",
        help_text="Default: the program's attribution model.",
    )
    scope = filters.ChoiceFilter(choices=[(s.value, s.value) for s in Scope], method="noop")
    scope_key = filters.CharFilter(method="noop", help_text="The partner's or join source's key.")
    partner = IdFilter(method="noop", help_text="Partner id.")
    join_source = IdFilter(method="noop", help_text="Join source id.")
    metric = filters.MultipleChoiceFilter(choices=[(m, m) for m in METRIC_NAMES], method="noop")
    period_from = filters.CharFilter(
        method="noop", validators=[_validate_period], help_text="Inclusive, a label of the grain: `2026-01`."
    )
    period_to = filters.CharFilter(
        method="noop", validators=[_validate_period], help_text="Inclusive, a label of the grain: `2026-06`."
    )

    class Meta:
        model = KpiValue
        fields: list[str] = []

    def noop(self, queryset, name, value):
        return queryset  # applied all at once by published_values in filter_queryset

    def filter_queryset(self, queryset):
        data = self.form.cleaned_data
        model = data.get("attribution_model")
        if model and model != (published_model := ProgramSettings.load().attribution_model):
            raise exceptions.ValidationError(
                {
                    "attribution_model": [
                        f"only {published_model} (the program's model) is published; compute {model} "
                        f"on request with /api/v1/kpi-attribution/?model={model} or "
                        f"/api/v1/kpi-export/?model={model}"
                    ]
                }
            )
        published = published_values(
            grain=data.get("grain") or Grain.MONTH,
            attribution_model=data.get("attribution_model") or None,
            scope=data.get("scope") or None,
            scope_key=data.get("scope_key") or None,
            partner_id=data.get("partner"),
            join_source_id=data.get("join_source"),
            metrics=data.get("metric") or None,
            period_from=data.get("period_from") or None,
            period_to=data.get("period_to") or None,
        )
        # `queryset` carries the caller's visibility (a partner user sees only its own rows).
        return queryset & published
