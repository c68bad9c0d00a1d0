import django_filters
from django.contrib.auth import get_user_model
from django.db.models import F, Q

from partners.models import Application, JoinSource, Partner
from partners.selectors import manager_label, partner_managers, tiers_in_order

# Leaderboard sort keys -> (field, label); KPI fields are the `kpi_<metric>` annotations.
SORTS = {
    "sourced": ("kpi_sourced_revenue", "Sourced revenue"),
    "influenced": ("kpi_influenced_revenue", "Influenced revenue"),
    "attributed": ("kpi_attributed_revenue", "Attributed revenue"),
    "win_rate": ("kpi_win_rate_sourced", "Win rate, sourced"),
    "leads": ("kpi_leads_generated", "Leads generated"),
    "name": ("name", "Name"),
    "joined": ("joined_at", "Joined"),
}


class PartnerLeaderboardFilter(django_filters.FilterSet):
    tier = django_filters.ChoiceFilter(choices=[], empty_label="Any tier")
    type = django_filters.ChoiceFilter(choices=Partner.Type.choices, empty_label="Any type")
    join_source = django_filters.ModelChoiceFilter(
        queryset=JoinSource.objects.all(), empty_label="Any join source", label="Join source"
    )
    manager = django_filters.ModelChoiceFilter(
        queryset=get_user_model().objects.none(), empty_label="Any manager"
    )
    status = django_filters.ChoiceFilter(choices=Partner.Status.choices, empty_label="Any status")
    q = django_filters.CharFilter(field_name="name", lookup_expr="icontains", label="Name contains")
    sort = django_filters.ChoiceFilter(
        choices=[(k, v[1]) for k, v in SORTS.items()],
        method="sort_by",
        empty_label="Sourced revenue",
        label="Sort by",
    )
    direction = django_filters.ChoiceFilter(
        choices=[("desc", "Descending"), ("asc", "Ascending")],
        method="keep",
        empty_label="Descending",
        label="Direction",
    )

    class Meta:
        model = Partner
        fields = ["q", "tier", "type", "join_source", "manager", "status"]

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.filters["tier"].extra["choices"] = [(t, t) for t in tiers_in_order()]
        # Managers by name, named by their full name (not their login).
        self.filters["manager"].queryset = partner_managers()
        self.form.fields["manager"].label_from_instance = manager_label

    def keep(self, queryset, name, value):
        return queryset

    def sort_by(self, queryset, name, value):
        return queryset  # applied in `qs` so that it runs even when no sort is given

    def sorting(self) -> tuple[str, bool]:
        """(sort key, descending) in force."""
        data = self.form.cleaned_data if self.form.is_bound and self.form.is_valid() else {}
        return data.get("sort") or "sourced", (data.get("direction") or "desc") == "desc"

    @property
    def qs(self):
        queryset = super().qs
        key, descending = self.sorting()
        field, _ = SORTS[key]
        expression = F(field).desc(nulls_last=True) if descending else F(field).asc(nulls_last=True)
        return queryset.order_by(expression, "name", "pk")


class ApplicationFilter(django_filters.FilterSet):
    """The manager's application queue: pending first by default, any status on request."""

    STATUSES = [
        ("applied", "Waiting for a decision"),
        ("active", "Approved (active)"),
        ("rejected", "Rejected"),
        ("decided", "Any decided"),
        ("all", "Any"),
    ]

    status = django_filters.ChoiceFilter(
        choices=STATUSES, method="by_status", empty_label=None, label="Status", initial="applied"
    )
    join_source = django_filters.ModelChoiceFilter(
        field_name="partner__join_source",
        queryset=JoinSource.objects.order_by("name"),
        empty_label="Any join source",
        label="Join source",
    )
    type = django_filters.ChoiceFilter(
        field_name="partner__type", choices=Partner.Type.choices, empty_label="Any type", label="Type"
    )
    origin = django_filters.ChoiceFilter(
        field_name="source_origin",
        choices=Application.SourceOrigin.choices,
        empty_label="Any way in",
        label="Came through",
    )
    q = django_filters.CharFilter(method="search", label="Company or contact contains")

    class Meta:
        model = Application
        fields = ["status", "join_source", "type", "origin", "q"]

    def __init__(self, data=None, *args, **kwargs) -> None:
        # An unfiltered visit shows the queue: applications waiting for a decision.
        data = data.copy() if data is not None else None
        if data is not None and data.get("status") not in {value for value, _ in self.STATUSES}:
            data["status"] = "applied"
        super().__init__(data if data is not None else {"status": "applied"}, *args, **kwargs)

    def by_status(self, queryset, name, value):
        if value == "all":
            return queryset
        if value == "decided":
            return queryset.exclude(partner__status=Partner.Status.APPLIED)
        if value == "active":
            return queryset.filter(partner__status__in=Partner.JOINED_STATUSES)
        return queryset.filter(partner__status=value)

    def search(self, queryset, name, value):
        return queryset.filter(
            Q(partner__name__icontains=value)
            | Q(contact_name__icontains=value)
            | Q(contact_email__icontains=value)
        )
