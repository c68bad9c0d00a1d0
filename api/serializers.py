"""What the API shows (output serializers) and what it accepts (input serializers).

Input serializers parse and type-check; the domain rules live in the services they feed (a few
field rules from deals.rules are also checked here so that one 400 lists every bad field).
"""

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from django.urls import reverse
from rest_framework import serializers

from api.fields import AwareDateTimeField, MoneyField, PlausibleDateField, TargetValueField
from api.models import ApiToken
from deals.models import Account, Deal, DealRegistration, Touch
from deals.rules import amount_errors, domain_errors, normalise_domain
from kpis.drilldown import drillable
from kpis.export import format_value
from kpis.metrics import METRIC_NAMES, Grain, Scope
from kpis.models import CostEntry, KpiRun, KpiValue, Target
from kpis.periods import parse_period
from partners.models import JoinSource, Partner, PartnerUser
from program.attribution import AttributionModel

MONEY: dict[str, Any] = {"max_digits": 14, "decimal_places": 2}
CENT = Decimal("0.01")


# --- Output ------------------------------------------------------------------------------------
class JoinSourceSerializer(serializers.ModelSerializer):
    class Meta:
        model = JoinSource
        fields = ["id", "key", "name", "kind"]


class PartnerSerializer(serializers.ModelSerializer):
    join_source_name = serializers.CharField(source="join_source.name", read_only=True)

    class Meta:
        model = Partner
        fields = [
            "id",
            "key",
            "name",
            "type",
            "tier",
            "status",
            "join_source",
            "join_source_name",
            "applied_at",
            "joined_at",
            "referred_by",
            "manager",
            "created_at",
            "updated_at",
        ]


class PartnerUserSerializer(serializers.ModelSerializer):
    username = serializers.CharField(source="user.username", read_only=True)
    email = serializers.EmailField(source="user.email", read_only=True)

    class Meta:
        model = PartnerUser
        fields = ["id", "partner", "username", "email", "role"]


class AccountSerializer(serializers.ModelSerializer):
    class Meta:
        model = Account
        fields = ["id", "key", "name", "domain"]


def moment_text(value: datetime | None) -> str | None:
    """A datetime as DRF's DateTimeField renders it in the API's time zone (UTC): ISO 8601, `Z`."""
    if value is None:
        return None
    text = value.astimezone(UTC).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def money_text(value: Decimal) -> str:
    """An amount as DRF's DecimalField(decimal_places=2) renders it: a string with two decimals."""
    return f"{value.quantize(CENT):f}"


class DealSerializer(serializers.ModelSerializer):
    account_name = serializers.CharField(source="account.name", read_only=True)

    class Meta:
        model = Deal
        fields = [
            "id",
            "key",
            "name",
            "account",
            "account_name",
            "amount",
            "status",
            "created_at",
            "closed_at",
            "sourcing_partner",
            "updated_at",
        ]

    def to_representation(self, deal: Deal) -> dict:
        # Deal pages are the API's biggest reads (up to 500 rows of a million-row table). Spelled
        # out, a row costs ~1/15 of DRF's field-by-field walk (docs/benchmarks.md). The fields above
        # still describe it (schema, browsable API); a test holds both to the same output.
        return {
            "id": deal.pk,
            "key": deal.key,
            "name": deal.name,
            "account": deal.account_id,
            "account_name": deal.account.name,
            "amount": money_text(deal.amount),
            "status": deal.status,
            "created_at": moment_text(deal.created_at),
            "closed_at": moment_text(deal.closed_at),
            "sourcing_partner": deal.sourcing_partner_id,
            "updated_at": moment_text(deal.updated_at),
        }


class PartnerDealSerializer(DealSerializer):
    """What a partner user sees: the sourcing partner only when it is the user's own partner."""

    def to_representation(self, deal: Deal) -> dict:
        row = super().to_representation(deal)
        if row["sourcing_partner"] != self.context["partner"].pk:
            row["sourcing_partner"] = None
        return row


class RegistrationSerializer(serializers.ModelSerializer):
    account_name = serializers.CharField(source="account.name", read_only=True)
    domain = serializers.CharField(source="account.domain", read_only=True)
    partner_name = serializers.CharField(source="partner.name", read_only=True)

    class Meta:
        model = DealRegistration
        fields = [
            "id",
            "key",
            "partner",
            "partner_name",
            "account",
            "account_name",
            "domain",
            "amount",
            "expected_close_date",
            "notes",
            "status",
            "submitted_at",
            "decided_at",
            "decision_reason",
            "protection_expires_at",
            "conflict_with",
            "conflict_override_reason",
            "deal",
            "updated_at",
        ]


class PartnerRegistrationSerializer(RegistrationSerializer):
    """What a partner user sees: `conflict_with` would name another partner's row, so it is hidden."""

    conflict_with = serializers.SerializerMethodField()

    def get_conflict_with(self, obj) -> int | None:
        return None


class TouchSerializer(serializers.ModelSerializer):
    class Meta:
        model = Touch
        fields = ["id", "deal", "partner", "kind", "touched_at", "created_at", "updated_at"]

    def to_representation(self, touch: Touch) -> dict:
        # Touch pages read the biggest table (3M rows at 1M deals): written out, as for deals.
        return {
            "id": touch.pk,
            "deal": touch.deal_id,
            "partner": touch.partner_id,
            "kind": touch.kind,
            "touched_at": moment_text(touch.touched_at),
            "created_at": moment_text(touch.created_at),
            "updated_at": moment_text(touch.updated_at),
        }


class CostEntrySerializer(serializers.ModelSerializer):
    counted = serializers.BooleanField(
        read_only=True,
        help_text="Whether the KPIs count this cost: false for a recorded commission or MDF cost of a "
        "partner for which the program booked that category in the cost's month or before "
        "(docs/kpis.md, 'Booked costs are never counted twice').",
    )

    class Meta:
        model = CostEntry
        fields = [
            "id",
            "date",
            "amount",
            "category",
            "partner",
            "join_source",
            "note",
            "source",
            "reference",
            "counted",
            "updated_at",
        ]
        read_only_fields = ["source", "reference"]


class TargetSerializer(serializers.ModelSerializer):
    class Meta:
        model = Target
        fields = ["id", "metric", "grain", "period", "period_start", "value", "partner", "join_source"]


class KpiValueSerializer(serializers.ModelSerializer):
    rows_url = serializers.SerializerMethodField(
        help_text="The rows behind the value, which add up to it (GET /api/v1/kpi-drilldown/...); "
        "null for targets."
    )
    value = serializers.SerializerMethodField(
        help_text="Decimal string formatted as in the export (money 2 places, rates 4, days 1); "
        "null when the metric is undefined (e.g. CAC with no new customers)."
    )

    class Meta:
        model = KpiValue
        fields = [
            "id",
            "scope",
            "scope_key",
            "partner",
            "join_source",
            "grain",
            "period",
            "period_start",
            "metric",
            "target_metric",
            "attribution_model",
            "value",
            "run",
            "rows_url",
        ]

    def get_value(self, obj) -> str | None:
        return format_value(obj.metric, obj.target_metric, obj.value) if obj.value is not None else None

    def get_rows_url(self, obj) -> str | None:
        """The rows behind this value (`/api/v1/kpi-drilldown/<metric>/`): null for targets."""
        if obj.target_metric or not drillable(obj.metric, obj.scope):
            return None
        query = f"?period={obj.period}"
        if obj.scope == "partner":
            query += f"&partner={obj.partner_id}"
        elif obj.scope == "join_source":
            query += f"&join_source={obj.join_source_id}"
        path = reverse("api:kpi-drilldown", args=[obj.metric]) + query
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request is not None else path


class KpiRunSerializer(serializers.ModelSerializer):
    url = serializers.HyperlinkedIdentityField(view_name="api:kpi-run-detail")

    class Meta:
        model = KpiRun
        fields = [
            "id",
            "url",
            "trigger",
            "mode",
            "status",
            "attribution_model",
            "as_of",
            "requested_by",
            "created_at",
            "started_at",
            "finished_at",
            "duration_seconds",
            "rows_written",
            "periods_recomputed",
            "changed_rows",
            "error",
        ]


class ApiTokenSerializer(serializers.ModelSerializer):
    class Meta:
        model = ApiToken
        fields = ["id", "name", "prefix", "created_at", "last_used_at", "revoked_at"]


class ApiTokenCreatedSerializer(ApiTokenSerializer):
    secret = serializers.CharField(
        read_only=True, help_text="Shown once, now: store it safely. Only its hash is kept."
    )

    class Meta(ApiTokenSerializer.Meta):
        fields = [*ApiTokenSerializer.Meta.fields, "secret"]


class ConflictCheckSerializer(serializers.Serializer):
    domain = serializers.CharField(help_text="The normalised domain that was checked.")
    has_conflict = serializers.BooleanField(help_text="Another partner holds a protected claim on it.")
    protected_until = serializers.DateTimeField(
        allow_null=True, help_text="When the last of those claims stops protecting the account."
    )
    conflicts = RegistrationSerializer(
        many=True, help_text="The claims themselves; only staff see them (partners see only the flag)."
    )


class ConflictQuerySerializer(serializers.Serializer):
    domain = serializers.CharField(max_length=253)
    partner = serializers.IntegerField(required=False, min_value=1, max_value=2**63 - 1)


class AttributionQuerySerializer(serializers.Serializer):
    model = serializers.ChoiceField(
        choices=[m.value for m in AttributionModel], required=False, allow_blank=True, default=""
    )
    period_from = PlausibleDateField()
    period_to = PlausibleDateField()

    def validate(self, attrs):
        if attrs["period_to"] < attrs["period_from"]:
            raise serializers.ValidationError({"period_to": ["must not be before period_from"]})
        return attrs


class ExportQuerySerializer(serializers.Serializer):
    grain = serializers.ChoiceField(
        choices=[g.value for g in Grain], required=False, default=Grain.MONTH.value
    )
    model = serializers.ChoiceField(
        choices=[m.value for m in AttributionModel], required=False, allow_blank=True, default=""
    )
    format = serializers.ChoiceField(choices=["json", "csv"], required=False)
    scope = serializers.ChoiceField(choices=[sc.value for sc in Scope], required=False)
    scope_key = serializers.CharField(
        required=False, max_length=100, help_text="The partner's or join source's key (with `scope`)."
    )
    period_from = serializers.CharField(
        required=False, max_length=7, help_text="Inclusive, a label of the grain: `2026-01`."
    )
    period_to = serializers.CharField(
        required=False, max_length=7, help_text="Inclusive, a label of the grain: `2026-06`."
    )

    def validate(self, attrs: dict) -> dict:
        errors: dict[str, list[str]] = {}
        grain = attrs.get("grain") or Grain.MONTH.value
        for name in ("period_from", "period_to"):
            if name in attrs:
                try:
                    period = parse_period(attrs[name])
                except ValueError as error:
                    errors[name] = [str(error)]
                    continue
                if period.grain != grain:
                    errors[name] = [f"{attrs[name]!r} is not a {grain} period (like 2026-03, 2026-Q1, 2026)"]
                else:
                    attrs[name] = period.label
        if (
            not errors
            and attrs.get("period_from")
            and attrs.get("period_to")
            and parse_period(attrs["period_to"]).index < parse_period(attrs["period_from"]).index
        ):
            errors["period_to"] = ["must not be before period_from"]
        if attrs.get("scope_key") and attrs.get("scope") in (None, Scope.PROGRAM.value):
            errors["scope_key"] = ["needs scope=partner or scope=join_source"]
        if errors:
            raise serializers.ValidationError(errors)
        return attrs


class ReconciliationIdsSerializer(serializers.Serializer):
    deal = serializers.IntegerField(required=False)
    partner = serializers.IntegerField(required=False)
    touch = serializers.IntegerField(required=False)
    account = serializers.IntegerField(required=False)
    registrations = serializers.ListField(child=serializers.IntegerField(), required=False)


class ReconciliationItemSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(
        choices=["sourced_before_joined", "touch_after_close", "duplicate_registration_claim"]
    )
    description = serializers.CharField()
    ids = ReconciliationIdsSerializer(help_text="The rows involved; only the ones that apply are present.")


class AttributionRowSerializer(serializers.Serializer):
    partner_id = serializers.IntegerField()
    partner_key = serializers.CharField()
    partner_name = serializers.CharField()
    sourced = serializers.DecimalField(**MONEY)
    influenced = serializers.DecimalField(**MONEY)
    attributed = serializers.DecimalField(**MONEY)


class AttributionPageSerializer(serializers.Serializer):
    """One page of AttributionRowSerializer rows in partner id order (api.pagination.StandardPagination)."""

    count = serializers.IntegerField()
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    results = AttributionRowSerializer(many=True)


class ExportRowSerializer(serializers.Serializer):
    scope = serializers.ChoiceField(choices=[s.value for s in Scope])
    scope_key = serializers.CharField(allow_blank=True)
    period = serializers.CharField()
    metric = serializers.ChoiceField(choices=METRIC_NAMES)
    value = serializers.CharField(allow_blank=True, help_text="Decimal string; empty when undefined.")
    target_metric = serializers.CharField(allow_blank=True)


class FileSummarySerializer(serializers.Serializer):
    rows = serializers.IntegerField()
    created = serializers.IntegerField()
    updated = serializers.IntegerField()
    unchanged = serializers.IntegerField()


class ImportResultSerializer(serializers.Serializer):
    files = serializers.DictField(child=FileSummarySerializer(), help_text="Per file found in the upload.")
    lines = serializers.ListField(child=serializers.CharField(), help_text="The same, one line per file.")


# --- Input -------------------------------------------------------------------------------------
class ApiTokenInputSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)


class PartnerInputSerializer(serializers.Serializer):
    key = serializers.CharField(max_length=100, required=False, allow_null=True, default=None)
    name = serializers.CharField(max_length=200)
    type = serializers.ChoiceField(choices=Partner.Type.choices)
    join_source = serializers.PrimaryKeyRelatedField(queryset=JoinSource.objects.all())
    applied_at = PlausibleDateField()
    tier = serializers.CharField(max_length=50, required=False, allow_blank=True, default="")
    referred_by = serializers.PrimaryKeyRelatedField(
        queryset=Partner.objects.all(), required=False, allow_null=True, default=None
    )


class PartnerApproveInputSerializer(serializers.Serializer):
    joined_at = PlausibleDateField(required=False, allow_null=True, default=None)


class PartnerStatusInputSerializer(serializers.Serializer):
    status = serializers.ChoiceField(
        choices=[Partner.Status.ACTIVE, Partner.Status.INACTIVE, Partner.Status.CHURNED]
    )


class PartnerUserInputSerializer(serializers.Serializer):
    partner = serializers.PrimaryKeyRelatedField(queryset=Partner.objects.all())
    username = serializers.CharField(max_length=150)
    email = serializers.EmailField()
    password = serializers.CharField(write_only=True, min_length=1, style={"input_type": "password"})
    role = serializers.ChoiceField(choices=PartnerUser.Role.choices)


class AccountInputSerializer(serializers.Serializer):
    key = serializers.CharField(max_length=100, required=False, allow_null=True, default=None)
    name = serializers.CharField(max_length=200)
    domain = serializers.CharField(max_length=253, required=False, allow_blank=True, default="")


class DealInputSerializer(serializers.Serializer):
    key = serializers.CharField(max_length=100, required=False, allow_null=True, default=None)
    account = serializers.PrimaryKeyRelatedField(queryset=Account.objects.all())
    name = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    amount = MoneyField()
    created_at = AwareDateTimeField()
    status = serializers.ChoiceField(choices=Deal.Status.choices, required=False, default=Deal.Status.OPEN)
    closed_at = AwareDateTimeField(required=False, allow_null=True, default=None)
    sourcing_partner = serializers.PrimaryKeyRelatedField(
        queryset=Partner.objects.all(), required=False, allow_null=True, default=None
    )


class DealUpdateInputSerializer(serializers.Serializer):
    """PATCH: only the fields sent are changed. Needs the deal as `context["deal"]`."""

    CLOSE_INSTEAD = "A deal is closed with POST /api/v1/deals/{id}/close/ (status and closed_at together)."

    account = serializers.PrimaryKeyRelatedField(queryset=Account.objects.all(), required=False)
    name = serializers.CharField(max_length=200, required=False, allow_blank=True)
    amount = MoneyField(required=False)
    created_at = AwareDateTimeField(required=False)
    sourcing_partner = serializers.PrimaryKeyRelatedField(
        queryset=Partner.objects.all(), required=False, allow_null=True
    )
    # Accepted only as they are, so a client may send back what it read; a change is refused
    # rather than ignored (the close action checks the status and its date together).
    status = serializers.ChoiceField(
        choices=Deal.Status.choices, required=False, help_text="Only the deal's current status."
    )
    closed_at = AwareDateTimeField(
        required=False, allow_null=True, help_text="Only the deal's current close time."
    )

    def validate(self, attrs: dict) -> dict:
        deal, changed = self.context["deal"], []
        for name in ("status", "closed_at"):
            if name in attrs and attrs.pop(name) != getattr(deal, name):
                changed.append(name)
        if changed:
            raise serializers.ValidationError({name: [self.CLOSE_INSTEAD] for name in changed})
        return attrs


class DealCloseInputSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=[Deal.Status.WON, Deal.Status.LOST])
    closed_at = AwareDateTimeField()


class TouchInputSerializer(serializers.Serializer):
    deal = serializers.PrimaryKeyRelatedField(queryset=Deal.objects.all())
    partner = serializers.PrimaryKeyRelatedField(queryset=Partner.objects.all())
    kind = serializers.ChoiceField(choices=Touch.Kind.choices)
    touched_at = AwareDateTimeField()


class RegistrationSubmitSerializer(serializers.Serializer):
    """A partner user's submission. There is no partner field: the partner is the user's own."""

    account_name = serializers.CharField(max_length=200)
    domain = serializers.CharField(max_length=253)
    amount = MoneyField()
    expected_close_date = PlausibleDateField(required=False, allow_null=True, default=None)
    notes = serializers.CharField(required=False, allow_blank=True, default="", max_length=5000)

    # The service checks these again; checking them here too lets one 400 list every bad field.
    def validate_domain(self, value: str) -> str:
        if errors := domain_errors(normalise_domain(value)):
            raise serializers.ValidationError(errors)
        return value

    def validate_amount(self, value: Decimal) -> Decimal:
        if errors := amount_errors(value):
            raise serializers.ValidationError(errors)
        return value


class RegistrationSubmitOnBehalfSerializer(RegistrationSubmitSerializer):
    """A partner manager entering a registration for a partner (e.g. received by email)."""

    partner = serializers.PrimaryKeyRelatedField(queryset=Partner.objects.all())


class RegistrationApproveInputSerializer(serializers.Serializer):
    reason = serializers.CharField(required=False, allow_blank=True, default="", max_length=5000)
    override_reason = serializers.CharField(required=False, allow_blank=True, default="", max_length=5000)


class RegistrationRejectInputSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=5000)


class RegistrationOverrideInputSerializer(serializers.Serializer):
    override_reason = serializers.CharField(
        max_length=5000, help_text="Why this claim wins over the conflicting one (kept for audit)."
    )
    reason = serializers.CharField(required=False, allow_blank=True, default="", max_length=5000)


class KpiRunInputSerializer(serializers.Serializer):
    mode = serializers.ChoiceField(choices=KpiRun.Mode.choices, required=False, default=KpiRun.Mode.FULL)
    as_of = PlausibleDateField(
        required=False, allow_null=True, default=None, help_text="Default: today in the program time zone."
    )


class ImportInputSerializer(serializers.Serializer):
    file = serializers.FileField(
        help_text="A .zip of an INTERCHANGE folder (join_sources.csv, partners.csv, …)."
    )
    progress_id = serializers.RegexField(
        r"^[A-Za-z0-9_-]{8,64}$",
        required=False,
        help_text="A name you choose (8-64 letters, digits, - or _): poll "
        "`GET /api/v1/imports/progress/<progress_id>/` for each file's rows done, rate and time left.",
    )


class ImportFileProgressSerializer(serializers.Serializer):
    file = serializers.CharField()
    rows = serializers.IntegerField(help_text="Rows read so far.")
    total = serializers.IntegerField(required=False, help_text="Rows in the file (lines but the header).")
    seconds = serializers.FloatField(required=False)
    rows_per_second = serializers.IntegerField(required=False)
    seconds_left = serializers.FloatField(required=False, allow_null=True)
    stage = serializers.ChoiceField(choices=["reading", "writing", "done"])


class ImportProgressSerializer(serializers.Serializer):
    state = serializers.ChoiceField(choices=["running", "done", "failed"])
    files = serializers.DictField(child=ImportFileProgressSerializer())
    # The field's name is the API's (docs/api.md); this serializer only describes the response.
    errors = serializers.IntegerField(  # type: ignore[assignment]
        help_text="Bad rows found (the import was refused) when failed."
    )


class ImportJobSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    url = serializers.URLField(help_text="Poll it: GET this job.")
    status = serializers.ChoiceField(choices=["queued", "running", "succeeded", "failed"])
    filename = serializers.CharField()
    created_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)
    progress = ImportProgressSerializer(
        allow_null=True, help_text="Each file's progress, once a worker runs it."
    )
    result = ImportResultSerializer(
        allow_null=True, help_text="When succeeded: what an inline import returns."
    )
    error_count = serializers.IntegerField(help_text="When failed: bad rows found (nothing was written).")
    # The field's name is the API's (docs/api.md); this serializer only describes the response.
    errors = serializers.ListField(  # type: ignore[assignment]
        child=serializers.CharField(),
        help_text="When failed: the bad rows, `file:line: column: reason` (the first 1000).",
    )


class CostEntryInputSerializer(serializers.Serializer):
    date = PlausibleDateField()
    amount = MoneyField()
    category = serializers.ChoiceField(choices=CostEntry.Category.choices)
    partner = serializers.PrimaryKeyRelatedField(
        queryset=Partner.objects.all(), required=False, allow_null=True, default=None
    )
    join_source = serializers.PrimaryKeyRelatedField(
        queryset=JoinSource.objects.all(), required=False, allow_null=True, default=None
    )
    note = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")
    # A declared field (the metaclass takes it out of the class), not Field.source.
    source = serializers.CharField(  # type: ignore[assignment]
        required=False,
        default=CostEntry.Source.RECORDED,
        help_text="Only `recorded`: commission payouts and MDF reimbursements are booked by the program "
        "when it pays them.",
    )
    reference = serializers.CharField(
        required=False, allow_blank=True, default="", help_text="Read-only: set by the program's bookings."
    )

    def validate_source(self, value: str) -> str:
        if value != CostEntry.Source.RECORDED:
            raise serializers.ValidationError(
                f"only '{CostEntry.Source.RECORDED}' costs are recorded here: commission payouts and MDF "
                "reimbursements are booked by the program when it pays them"
            )
        return value

    def validate_reference(self, value: str) -> str:
        if value:
            raise serializers.ValidationError("is read-only: only the program's bookings set it")
        return value


class TargetInputSerializer(serializers.Serializer):
    metric = serializers.ChoiceField(choices=Target._meta.get_field("metric").choices or ())
    period = serializers.RegexField(
        r"^\d{4}(-(0[1-9]|1[0-2])|-Q[1-4])?$", max_length=7, help_text="`2026-03`, `2026-Q1` or `2026`."
    )
    value = TargetValueField()
    partner = serializers.PrimaryKeyRelatedField(
        queryset=Partner.objects.all(), required=False, allow_null=True, default=None
    )
    join_source = serializers.PrimaryKeyRelatedField(
        queryset=JoinSource.objects.all(), required=False, allow_null=True, default=None
    )

    def validate_period(self, value: str) -> str:
        try:
            parse_period(value)
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from exc
        return value
