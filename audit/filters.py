"""The staff trail page's filters: object type and id, actor, channel, action, date range, request."""

import django_filters
from auditlog.models import LogEntry
from django import forms
from django.db.models import Q, QuerySet

from audit.registry import audited_models
from prm.acting import Channel

BIGINT_MAX = 2**63 - 1
ACTIONS = [(value, label) for value, label in LogEntry.Action.choices if value != LogEntry.Action.ACCESS]
DATE_INPUT = forms.DateInput({"type": "date"})


def _object_type_choices() -> list[tuple[str, str]]:
    choices = [(m._meta.label_lower, str(m._meta.verbose_name).capitalize()) for m in audited_models()]
    return sorted(choices, key=lambda choice: choice[1])


class IdFilter(django_filters.NumberFilter):
    field_class = forms.IntegerField


class AuditEntryFilter(django_filters.FilterSet):
    object_type = django_filters.ChoiceFilter(
        choices=_object_type_choices, method="of_type", empty_label="Any type", label="Object type"
    )
    object_id = IdFilter(field_name="object_id", label="Object id", min_value=1, max_value=BIGINT_MAX)
    actor = django_filters.CharFilter(method="by_actor", label="Actor", max_length=150)
    channel = django_filters.ChoiceFilter(
        choices=[(c.value, c.value) for c in Channel],
        method="through",
        empty_label="Any channel",
        label="Channel",
    )
    action = django_filters.ChoiceFilter(choices=ACTIONS, empty_label="Any action")
    since = django_filters.DateFilter(
        field_name="timestamp",
        lookup_expr="date__gte",
        label="From (UTC)",
        widget=DATE_INPUT,
    )
    until = django_filters.DateFilter(
        field_name="timestamp",
        lookup_expr="date__lte",
        label="To (UTC)",
        widget=DATE_INPUT,
    )
    cid = django_filters.CharFilter(field_name="cid", label="Request id", max_length=255)

    class Meta:
        model = LogEntry
        fields = ["object_type", "object_id", "actor", "channel", "action", "since", "until", "cid"]

    def of_type(self, queryset: QuerySet[LogEntry], name: str, value: str) -> QuerySet[LogEntry]:
        app_label, _, model = value.partition(".")
        return queryset.filter(content_type__app_label=app_label, content_type__model=model)

    def by_actor(self, queryset: QuerySet[LogEntry], name: str, value: str) -> QuerySet[LogEntry]:
        """The recorded label (username, task:…, command:…) or the user's current username."""
        value = value.strip()
        if not value:
            return queryset
        return queryset.filter(
            Q(additional_data__actor__icontains=value) | Q(actor__username__icontains=value)
        )

    def through(self, queryset: QuerySet[LogEntry], name: str, value: str) -> QuerySet[LogEntry]:
        return queryset.filter(additional_data__channel=value)
