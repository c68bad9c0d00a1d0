"""Costs, targets, and the published KPI set with the runs that computed it."""

from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Exists, OuterRef, Q
from django.db.models.functions import TruncMonth
from django.utils import timezone

from kpis.metrics import METRIC_NAMES, TARGETABLE_METRICS, Grain, Scope
from kpis.periods import parse_period
from program.fields import MoneyField, PlausibleDateField, TargetValueField

MONEY = {"max_digits": 14, "decimal_places": 2}


class CostEntryQuerySet(models.QuerySet["CostEntry"]):
    def with_counted(self) -> "CostEntryQuerySet":
        """Each entry with `counted`: whether the KPIs count it (docs/kpis.md, "Booked costs are
        never counted twice"). A recorded commission or MDF entry of a partner is superseded, and
        not counted, once the program has booked that category for that partner in the entry's
        month or before. The engine's twin is kpis.engine.facts.counted_cost (tested to agree)."""
        booked_by_then = (
            CostEntry.objects.filter(
                partner=OuterRef("partner"), category=OuterRef("category"), source__in=BOOKED_SOURCES
            )
            .annotate(month=TruncMonth("date"))
            .filter(month__lte=OuterRef("cost_month"))
        )
        superseded = Q(
            source=CostEntry.Source.RECORDED, category__in=BOOKED_CATEGORIES, partner__isnull=False
        ) & Exists(booked_by_then)
        return self.annotate(cost_month=TruncMonth("date")).annotate(
            counted=models.Case(
                models.When(superseded, then=models.Value(False)),
                default=models.Value(True),
                output_field=models.BooleanField(),
            )
        )


class CostEntry(models.Model):
    class Category(models.TextChoices):
        COMMISSION = "commission", "Commission / payout"
        MDF = "mdf", "Market development funds"
        RECRUITMENT = "recruitment", "Recruitment marketing"
        INCENTIVE = "incentive", "Incentive"
        ENABLEMENT = "enablement", "Enablement"
        TOOLING = "tooling", "Tooling / people"

    class Source(models.TextChoices):
        # Entered by a person or a token (dashboard, API) or imported from costs.csv.
        RECORDED = "recorded", "Recorded or imported"
        # Booked by the program itself when money leaves it (economics/, mdf/): kpis.costs.
        COMMISSION_PAYOUT = "commission_payout", "Commission payout"
        MDF_REIMBURSEMENT = "mdf_reimbursement", "MDF reimbursement"

    date = PlausibleDateField()
    amount = MoneyField(**MONEY)
    category = models.CharField(max_length=20, choices=Category.choices)
    partner = models.ForeignKey(
        "partners.Partner", on_delete=models.PROTECT, null=True, blank=True, related_name="costs"
    )
    join_source = models.ForeignKey(
        "partners.JoinSource", on_delete=models.PROTECT, null=True, blank=True, related_name="costs"
    )
    note = models.CharField(max_length=500, blank=True, default="")
    # db_default too: the bulk importer and the seeding insert with SQL of their own.
    source = models.CharField(
        max_length=20, choices=Source.choices, default=Source.RECORDED, db_default=Source.RECORDED
    )
    # What booked it (`payout:<id>`, `mdf-claim:<id>`): one cost per payout or claim, however
    # often or concurrently the booking runs.
    reference = models.CharField(max_length=64, blank=True, default="", db_default="")
    updated_at = models.DateTimeField(auto_now=True, db_index=True)

    objects = CostEntryQuerySet.as_manager()

    class Meta:
        ordering = ["-date", "-id"]
        verbose_name_plural = "cost entries"
        indexes = [models.Index(fields=["date"])]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=Decimal("0")), name="cost_amount_positive"),
            models.CheckConstraint(
                condition=Q(
                    category__in=["commission", "mdf", "recruitment", "incentive", "enablement", "tooling"]
                ),
                name="cost_category_valid",
            ),
            models.UniqueConstraint(
                fields=["reference"], condition=~Q(reference=""), name="cost_reference_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.date} {self.get_category_display()} {self.amount}"


# The sources the program books itself (kpis.costs.book_program_cost), and the categories they book:
# a recorded entry of such a category can be superseded by a booked one (with_counted).
BOOKED_SOURCES = (CostEntry.Source.COMMISSION_PAYOUT, CostEntry.Source.MDF_REIMBURSEMENT)
BOOKED_CATEGORIES = (CostEntry.Category.COMMISSION, CostEntry.Category.MDF)


class CostEntryLink(models.Model):
    """A deal or registration that a cost produced (an MDF activity's results): MDF return reads
    the revenue of the deals reached this way, directly or through a registration's deal."""

    cost_entry = models.ForeignKey(CostEntry, on_delete=models.CASCADE, related_name="links")
    deal = models.ForeignKey(
        "deals.Deal", on_delete=models.CASCADE, null=True, blank=True, related_name="cost_links"
    )
    registration = models.ForeignKey(
        "deals.DealRegistration", on_delete=models.CASCADE, null=True, blank=True, related_name="cost_links"
    )

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(deal__isnull=False, registration__isnull=True)
                | Q(deal__isnull=True, registration__isnull=False),
                name="cost_link_names_one_row",
            ),
            models.UniqueConstraint(fields=["cost_entry", "deal"], name="cost_link_deal_once"),
            models.UniqueConstraint(
                fields=["cost_entry", "registration"], name="cost_link_registration_once"
            ),
        ]

    def __str__(self) -> str:
        return f"cost {self.cost_entry_id} -> " + (
            f"deal {self.deal_id}" if self.deal_id else f"registration {self.registration_id}"
        )


class Target(models.Model):
    metric = models.CharField(max_length=64, choices=[(n, n) for n in TARGETABLE_METRICS])
    grain = models.CharField(max_length=10, choices=[(g.value, g.value) for g in Grain])
    # `2026-03`, `2026-Q1` or `2026`, as in INTERCHANGE.md; period_start is its first day.
    period = models.CharField(max_length=7)
    period_start = PlausibleDateField()
    value = TargetValueField(max_digits=20, decimal_places=4)
    partner = models.ForeignKey(
        "partners.Partner", on_delete=models.CASCADE, null=True, blank=True, related_name="targets"
    )
    join_source = models.ForeignKey(
        "partners.JoinSource", on_delete=models.CASCADE, null=True, blank=True, related_name="targets"
    )
    updated_at = models.DateTimeField(auto_now=True, db_index=True)

    class Meta:
        ordering = ["metric", "period_start"]
        constraints = [
            models.CheckConstraint(
                condition=Q(partner__isnull=True) | Q(join_source__isnull=True),
                name="target_one_scope",
            ),
            models.UniqueConstraint(
                fields=["metric", "period", "partner", "join_source"], name="target_unique_scope_period"
            ),
        ]

    def __str__(self) -> str:
        scope = self.partner or self.join_source or "program"
        return f"{self.metric} {self.period} ({scope}): {self.value}"

    def clean(self) -> None:
        # The period label is what people type; its grain and first day follow from it.
        try:
            period = parse_period(self.period or "")
        except ValueError as exc:
            raise ValidationError({"period": [str(exc)]}) from exc
        self.grain, self.period_start = period.grain.value, period.start


def _abandoned(now: datetime) -> Q:
    cutoff = now - timedelta(seconds=settings.KPI_RUN_LEASE_SECONDS)
    return Q(status="running") & (
        Q(heartbeat_at__lt=cutoff)
        | Q(heartbeat_at__isnull=True, started_at__lt=cutoff)
        | Q(heartbeat_at__isnull=True, started_at__isnull=True, created_at__lt=cutoff)
    )


def _unclaimed(now: datetime) -> Q:
    cutoff = now - timedelta(seconds=settings.KPI_RUN_QUEUED_RESEND_SECONDS)
    return Q(status="queued") & (
        Q(dispatched_at__lt=cutoff) | Q(dispatched_at__isnull=True, created_at__lt=cutoff)
    )


def _queued_too_long(now: datetime) -> Q:
    cutoff = now - timedelta(seconds=settings.KPI_RUN_QUEUED_RESEND_SECONDS)
    return Q(status="queued", created_at__lt=cutoff)


class KpiRunQuerySet(models.QuerySet["KpiRun"]):
    """Runs that lost their worker, by the lease settings as they are when the query is built."""

    def abandoned(self, now: datetime | None = None) -> "KpiRunQuerySet":
        """Running, with no heartbeat (nor start) within the last KPI_RUN_LEASE_SECONDS."""
        return self.filter(_abandoned(now or timezone.now()))

    def unclaimed(self, now: datetime | None = None) -> "KpiRunQuerySet":
        """Queued, and neither sent nor created within the last KPI_RUN_QUEUED_RESEND_SECONDS: no
        worker took its message, which may be lost."""
        return self.filter(_unclaimed(now or timezone.now()))

    def stuck(self, now: datetime | None = None) -> "KpiRunQuerySet":
        """Abandoned, or queued longer than KPI_RUN_QUEUED_RESEND_SECONDS since it was created (the
        reaper's resends space out by the last send; they do not make a run no worker takes fresh)."""
        now = now or timezone.now()
        return self.filter(_abandoned(now) | _queued_too_long(now))


class KpiRun(models.Model):
    class Trigger(models.TextChoices):
        NIGHTLY = "nightly", "Nightly schedule"
        MANUAL = "manual", "Manual (dashboard, admin or API)"
        COMMAND = "command", "Management command"

    class Mode(models.TextChoices):
        FULL = "full", "Full"
        INCREMENTAL = "incremental", "Incremental"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    trigger = models.CharField(max_length=10, choices=Trigger.choices)
    mode = models.CharField(max_length=12, choices=Mode.choices, default=Mode.FULL)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    attribution_model = models.CharField(max_length=20, blank=True, default="")
    as_of = models.DateField(null=True, blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    duration_seconds = models.FloatField(null=True, blank=True)
    # Published rows added, and rows whose value (or partner or join source) changed, updated in place.
    rows_written = models.PositiveIntegerField(default=0)
    # Published rows removed because their cell or metric is no longer computed.
    rows_deleted = models.PositiveIntegerField(default=0)
    periods_recomputed = models.PositiveIntegerField(default=0)
    # An incremental run that patched the previous run's facts: how many changed rows of the change
    # log (FactChange) it patched them with; null when the run built its facts in full.
    changed_rows = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Changed input rows the run patched the previous run's facts with; null: built in full.",
    )
    error = models.TextField(blank=True, default="")
    # What the inputs looked like (row counts and latest change per table, settings, as-of date);
    # an incremental run whose fingerprint equals the last successful run's has nothing to do.
    source_fingerprint = models.CharField(max_length=1000, blank=True, default="")
    celery_task_id = models.CharField(max_length=64, blank=True, default="")
    # Recovery (docs/kpis.md "Runs that recover by themselves"). The process executing a running
    # run stamps `heartbeat_at` every KPI_RUN_HEARTBEAT_SECONDS; once the stamp is older than
    # KPI_RUN_LEASE_SECONDS the run's worker is taken for dead and the run is replaced.
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    # When its task message was last sent, and to which queue ("": the default one). A queued run
    # that no worker took within KPI_RUN_QUEUED_RESEND_SECONDS is sent again.
    dispatched_at = models.DateTimeField(null=True, blank=True)
    queue = models.CharField(max_length=200, blank=True, default="")
    # 1 for a requested run; a replacement queued by recovery counts one more than the run it replaces.
    attempt = models.PositiveSmallIntegerField(default=1)
    # The abandoned run this one took the place of (its own row stays, failed, for the history).
    replaces = models.OneToOneField(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="replaced_by"
    )
    # Who ended an abandoned or stuck run: "reaper", a redelivered task, a new request, the
    # `kpi_runs` command (with the OS user) or a dashboard user.
    released_by = models.CharField(max_length=200, blank=True, default="")

    objects = KpiRunQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["status", "created_at"])]

    def __str__(self) -> str:
        return f"KPI run #{self.pk} ({self.trigger}, {self.mode}, {self.status})"

    @property
    def last_sign_of_life(self) -> datetime:
        """Running: its last heartbeat (else its start); queued: when its message was last sent
        (else its creation)."""
        if self.status == self.Status.QUEUED:
            return self.dispatched_at or self.created_at
        return self.heartbeat_at or self.started_at or self.created_at

    def is_stuck(self, now: datetime | None = None) -> bool:
        """The rule of KpiRunQuerySet.stuck, on this row as loaded."""
        now = now or timezone.now()
        if self.status == self.Status.RUNNING:
            lease = settings.KPI_RUN_LEASE_SECONDS
        elif self.status == self.Status.QUEUED:
            # Since creation, not the last send: a resent message no worker takes is no sign of life.
            return self.created_at < now - timedelta(seconds=settings.KPI_RUN_QUEUED_RESEND_SECONDS)
        else:
            return False
        return self.last_sign_of_life < now - timedelta(seconds=lease)


class KpiValue(models.Model):
    """One published number: INTERCHANGE's export row, plus the foreign keys readers filter on.

    The table holds only the published set; a run replaces the rows it recomputed in one
    transaction, so readers always see a complete set.
    """

    scope = models.CharField(max_length=12, choices=[(s.value, s.value) for s in Scope])
    # Empty for program; the partner's or join source's export key otherwise.
    scope_key = models.CharField(max_length=100, blank=True, default="")
    # No single-column FK indexes: the composite indexes below lead with partner / join_source, and
    # every extra index slows publishing millions of rows.
    partner = models.ForeignKey(
        "partners.Partner",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="+",
        db_index=False,
    )
    join_source = models.ForeignKey(
        "partners.JoinSource",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="+",
        db_index=False,
    )
    grain = models.CharField(max_length=10, choices=[(g.value, g.value) for g in Grain])
    period = models.CharField(max_length=7)
    period_start = models.DateField()
    metric = models.CharField(max_length=64, choices=[(n, n) for n in METRIC_NAMES])
    # Only target / target_progress rows name the metric they are a target for.
    target_metric = models.CharField(max_length=64, blank=True, default="")
    attribution_model = models.CharField(max_length=20)
    # Null when undefined (e.g. CAC with no new customers).
    value = models.DecimalField(max_digits=20, decimal_places=4, null=True, blank=True)
    # The run that last wrote this value (unchanged values keep their run). Runs are never deleted
    # while values point at them (PROTECT, checked by Django), so the FK needs no index of its own;
    # nor a database constraint, whose check of every written row at commit cost a publication of
    # 18,000 changed values 0.14 s (the publishing run's own row is updated in that transaction).
    run = models.ForeignKey(
        KpiRun, on_delete=models.PROTECT, related_name="values", db_index=False, db_constraint=False
    )

    class Meta:
        ordering = ["scope", "scope_key", "grain", "period_start", "metric"]
        indexes = [
            models.Index(fields=["attribution_model", "grain", "scope", "metric", "period_start"]),
            models.Index(fields=["partner", "grain", "period_start"]),
            models.Index(fields=["join_source", "grain", "period_start"]),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=[
                    "attribution_model",
                    "scope",
                    "scope_key",
                    "grain",
                    "period",
                    "metric",
                    "target_metric",
                ],
                name="kpi_value_unique",
            ),
        ]

    def __str__(self) -> str:
        scope = f"{self.scope}:{self.scope_key}" if self.scope_key else self.scope
        return f"{scope} {self.period} {self.metric} = {self.value}"


class ReconciliationItem(models.Model):
    """A legal but suspicious fact (KPIS.md "Data quality"), listed by the run that published the KPIs.

    The ids are plain numbers, not foreign keys: the list is a snapshot of the facts at run time and
    must survive later edits of those rows.
    """

    class Kind(models.TextChoices):
        SOURCED_BEFORE_JOINED = "sourced_before_joined", "Deal sourced by a partner before it joined"
        TOUCH_AFTER_CLOSE = "touch_after_close", "Touch after the deal closed"
        DUPLICATE_REGISTRATION_CLAIM = "duplicate_registration_claim", "Two registrations claim one customer"

    kind = models.CharField(max_length=40, choices=Kind.choices)
    description = models.CharField(max_length=500)
    deal_id = models.BigIntegerField(null=True, blank=True)
    partner_id = models.BigIntegerField(null=True, blank=True)
    touch_id = models.BigIntegerField(null=True, blank=True)
    account_id = models.BigIntegerField(null=True, blank=True)
    # Comma-separated ids of the registrations involved (duplicate claims only).
    registration_ids = models.CharField(max_length=2000, blank=True, default="")
    run = models.ForeignKey(KpiRun, on_delete=models.PROTECT, related_name="reconciliation_items")

    class Meta:
        ordering = ["kind", "id"]
        # deal_id and account_id: an incremental run replaces the items of the deals and accounts
        # it patched (kpis.engine.reconciliation.reconciliation_items_replaced).
        indexes = [
            models.Index(fields=["kind"]),
            models.Index(fields=["deal_id"]),
            models.Index(fields=["account_id"]),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.description}"


class KpiPublication(models.Model):
    """One row whose `version` changes whenever what the published-KPI reads return may change.

    Database triggers (migrations 0005 and 0006) give it a new random `version` in the same
    transaction as any write to KpiValue and any write to ProgramSettings (whose attribution model
    picks the rows a default read returns), whoever makes it: a publication, a partner's cascade
    delete, raw SQL. Responses built from those reads are cached and tagged (ETag) under it, so a
    reader never gets a set older than the one committed when it asked. A migration that makes
    Django rebuild one of those tables on SQLite (some AlterField) drops its triggers and must
    create them again (tests/test_api_kpi_cache.py fails until it does).
    """

    version = models.CharField(max_length=32)
    changed_at = models.DateTimeField()
    # The run whose facts (its state tables, kpis.engine.tables.STATE_TABLES) describe the published set,
    # and the version its publication left: an incremental run diffs its facts against that state
    # only while `version` still equals it. Nullable so SQLite adds the columns without a rebuild.
    state_run_id = models.BigIntegerField(null=True, blank=True)
    state_version = models.CharField(max_length=32, null=True, blank=True)  # noqa: DJ001

    class Meta:
        constraints = [models.CheckConstraint(condition=Q(pk=1), name="kpi_publication_singleton")]

    def __str__(self) -> str:
        return f"KPI publication {self.version} ({self.changed_at:%Y-%m-%d %H:%M:%S})"


class FactChange(models.Model):
    """A row of a KPI input table written since some run read its facts, logged by database
    triggers (migration 0008) whoever writes: the app, a queryset `.update()`, raw SQL, a cascade.

    An incremental run patches the previous run's facts with exactly these rows instead of building
    them again (kpis.engine, "delta facts"). `related_id` is a touch's deal (logged for its old and
    its new row, so a touch moved to another deal patches both). On PostgreSQL `xid` is the writing
    transaction: a run takes the changes its snapshot sees and the previous run's did not, however
    the commits interleave; on SQLite (one writer) the id orders them. A TRUNCATE logs one row of
    source "truncate": the next run builds its facts in full.
    """

    class Source(models.TextChoices):
        DEAL = "deal"
        TOUCH = "touch"
        REGISTRATION = "registration"
        PARTNER = "partner"
        COST = "cost"
        # Targets are rebuilt by every run; their rows are logged so the nightly shortcut sees any
        # write (migration 0009).
        TARGET = "target"
        TRUNCATE = "truncate"

    id = models.BigAutoField(primary_key=True)
    source = models.CharField(max_length=16, choices=Source.choices)
    row_id = models.BigIntegerField()
    related_id = models.BigIntegerField(null=True, blank=True)
    xid = models.BigIntegerField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.source} {self.row_id}"


class ExplorerPeriod(models.Model):
    """The attribution explorer's table for one published run and date range, computed once.

    A run's facts never change once published (a new publication is a new run), so the per-partner
    totals of every model (kpis.explorer) are stored on the first read of a range and read back by
    every later one with an index, sorted and paged in the database. `settings_key` holds the
    program settings the figures depend on besides the facts (kpis.explorer.settings_key): a change
    of them computes the range again. Rows of other runs are deleted when a run's range is stored.
    """

    run_id = models.BigIntegerField()
    period_from = models.DateField()
    period_to = models.DateField()
    settings_key = models.CharField(max_length=200)
    computed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["run_id", "period_from", "period_to", "settings_key"], name="explorer_period_unique"
            )
        ]

    def __str__(self) -> str:
        return f"Explorer run {self.run_id} {self.period_from}..{self.period_to}"


class ExplorerRow(models.Model):
    """One partner's revenue of an ExplorerPeriod in cents (exact integer sums on both databases):
    sourced, influenced (each deal in full) and attributed under each attribution model."""

    period = models.ForeignKey(ExplorerPeriod, on_delete=models.CASCADE, related_name="rows")
    partner = models.ForeignKey("partners.Partner", on_delete=models.CASCADE, related_name="+")
    sourced = models.BigIntegerField()
    influenced = models.BigIntegerField()
    first_touch = models.BigIntegerField()
    last_touch = models.BigIntegerField()
    linear = models.BigIntegerField()
    time_decay = models.BigIntegerField()
    position_based = models.BigIntegerField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["period", "partner"], name="explorer_row_unique")]

    def __str__(self) -> str:
        return f"Explorer row {self.period_id}/{self.partner_id}"


class ForecastSnapshot(models.Model):
    """The pipeline forecast (kpis.forecast) as computed once after a KPI publication, with its
    rows (ForecastRow): the pages and the API read it instead of computing on request.

    Written whole in one transaction (kpis.forecast_store), so a reader sees a complete snapshot
    or the one before; the latest few are kept. `run`: the publication it followed (none when the
    command or a page asked for it).
    """

    run = models.ForeignKey(KpiRun, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    as_of = models.DateField()
    quarter = models.CharField(max_length=7)
    # The moment the forecast describes: the deals open then.
    computed_at = models.DateTimeField()
    duration_seconds = models.FloatField(default=0)
    # Small: [{segment, bucket, won, open}] and [{quarter, forecast_sourced, ...}] (money as text).
    rates = models.JSONField(default=list)
    backtest = models.JSONField(default=list)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"Forecast {self.quarter} as of {self.as_of} (#{self.pk})"


class ForecastRow(models.Model):
    """One scope's forecast in a snapshot: the program (scope id 0), a join source or a partner.
    `position` is the order the page lists them in (largest forecast first), fixed when stored."""

    snapshot = models.ForeignKey(ForecastSnapshot, on_delete=models.CASCADE, related_name="rows")
    scope = models.CharField(max_length=12)
    scope_id = models.BigIntegerField()
    position = models.PositiveIntegerField()
    name = models.CharField(max_length=200)
    sourced = models.DecimalField(max_digits=20, decimal_places=2)
    influenced = models.DecimalField(max_digits=20, decimal_places=2)
    backtest_sourced = models.DecimalField(max_digits=20, decimal_places=2)
    backtest_influenced = models.DecimalField(max_digits=20, decimal_places=2)
    actual_sourced = models.DecimalField(max_digits=20, decimal_places=2)
    actual_influenced = models.DecimalField(max_digits=20, decimal_places=2)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["snapshot", "scope", "scope_id"], name="forecast_row_scope_once")
        ]
        indexes = [models.Index(fields=["snapshot", "scope", "position"], name="forecast_row_listed")]

    def __str__(self) -> str:
        return f"{self.scope} {self.scope_id} in forecast #{self.snapshot_id}"
