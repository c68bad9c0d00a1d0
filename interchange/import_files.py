"""One handler per INTERCHANGE file: what each row is checked for on its own (while it is read), which
set-based checks run over the staged file, and how the valid rows are written. The deal files
(deals, registrations, touches) are in interchange.deal_files, the steps all files share in
interchange.file_steps.

The row checks call the same rule functions as the services and forms (`deals.rules`,
`program.validation` through `interchange.parsing`), so every entry point refuses a value with the
same message; the set-based checks format their messages with those functions too
(`acting_partner_errors` for a partner that may not act).
"""

from collections.abc import Callable
from typing import TYPE_CHECKING

from django.db import connection

from deals.models import Account
from deals.rules import amount_errors, normalise_domain
from interchange.commission_plans import import_commission_plans
from interchange.deal_files import DealFiles
from interchange.file_steps import TEXT, field_type
from interchange.parsing import parse_money, parse_period, parse_target_value
from interchange.staging import STAGE, constant_columns, now, q
from kpis.metrics import METRICS_BY_NAME, TARGETABLE_METRICS
from kpis.models import CostEntry, Target
from partners.models import JoinSource, Partner
from partners.rules import partner_errors

if TYPE_CHECKING:
    from interchange.importer import FileSummary, _Row

# Choice lists, built once (TextChoices.values builds a new list on every access).
JOIN_SOURCE_KINDS = tuple(JoinSource.Kind.values)
PARTNER_STATUSES = tuple(Partner.Status.values)
PARTNER_TYPES = tuple(Partner.Type.values)
COST_CATEGORIES = tuple(CostEntry.Category.values)


class FileHandlers(DealFiles):
    """The import's handler of each file, in the order of interchange.importer.FILES."""

    def handlers(self) -> dict[str, Callable[[str], None]]:
        return {
            "join_sources.csv": self._join_sources,
            "partners.csv": self._partners,
            "accounts.csv": self._accounts,
            "deals.csv": self._deals,
            "registrations.csv": self._registrations,
            "touches.csv": self._touches,
            "costs.csv": self._costs,
            "targets.csv": self._targets,
            "commission_plans.csv": lambda file: import_commission_plans(self, file),  # type: ignore[arg-type]
        }

    # --- files ------------------------------------------------------------------------------------
    def _join_sources(self, file: str) -> None:
        def parse(row: "_Row") -> tuple:
            row.key = row.text("key", required=True, max_length=100)
            return (row.text("name", required=True, max_length=200), row.choice("kind", JOIN_SOURCE_KINDS))

        self._load(file, "joinsource", [("name", TEXT), ("kind", TEXT)], parse)
        self._duplicates(file, "joinsource")
        self._upsert(file, JoinSource, {"name": "s.name", "kind": "s.kind"})

    def _partners(self, file: str) -> None:
        def parse(row: "_Row") -> tuple:
            row.key = row.text("key", required=True, max_length=100)
            status = row.choice("status", PARTNER_STATUSES)
            applied_at = row.parse("applied_at", self.date_value, required=True)
            joined_at = row.parse("joined_at", self.date_value)
            row.add_rule_errors(partner_errors(status=status, applied_at=applied_at, joined_at=joined_at))
            referred_by = row.cells.get("referred_by", "")
            if referred_by and referred_by == row.key:
                row.error("referred_by", "a partner cannot refer itself")
            name = row.text("name", required=True, max_length=200)
            kind = row.choice("type", PARTNER_TYPES)
            source = row.text("join_source", required=True)
            tier = row.text("tier", max_length=50)
            return (name, kind, source, applied_at, joined_at, status, tier, referred_by)

        date_type = field_type(Partner, "applied_at")
        columns = [("name", TEXT), ("type", TEXT), ("join_source", TEXT), ("applied_at", date_type),
                   ("joined_at", date_type), ("status", TEXT), ("tier", TEXT),
                   ("referred_by", TEXT)]  # fmt: skip
        self._load(file, "partner", columns, parse)
        self._duplicates(file, "partner")
        self._references(file, "partner", "join_source", JoinSource, label="join source")
        partners = q(Partner._meta.db_table)
        # A referrer further down the file is linked after the upsert; until then the row keeps
        # the referrer it has (none for a new partner).
        referred_by = (
            "CASE WHEN COALESCE(s.referred_by, '') = '' THEN NULL ELSE COALESCE(r.id, e.referred_by_id) END"
        )
        self._upsert(
            file,
            Partner,
            {
                "name": "s.name",
                "type": "s.type",
                "join_source_id": "j.id",
                "applied_at": "s.applied_at",
                "joined_at": "s.joined_at",
                "status": "s.status",
                "tier": "s.tier",
                "referred_by_id": referred_by,
            },
            f"LEFT JOIN {q(JoinSource._meta.db_table)} j ON j.key = s.join_source "
            f"LEFT JOIN {partners} r ON r.key = s.referred_by LEFT JOIN {partners} e ON e.key = s.key",
        )
        self._link_referrers(file)

    def _link_referrers(self, file: str) -> None:
        """`referred_by` may name a partner anywhere in the file: resolved once every row is written."""
        partners = q(Partner._meta.db_table)
        sql = (
            f"SELECT s.line, s.key, s.referred_by FROM {STAGE} s WHERE s.ok AND s.referred_by <> '' "
            f"AND NOT EXISTS (SELECT 1 FROM {partners} r WHERE r.key = s.referred_by) ORDER BY s.line"
        )
        self._flag(
            file,
            "partner",
            (
                (line, key, "referred_by", self.unknown("partner", "partner", ref))
                for line, key, ref in self.stage.fetch(sql)
            ),
        )
        self.guarded(
            file,
            lambda: self.stage.execute(
                f"UPDATE {partners} SET referred_by_id = x.referrer, updated_at = %s FROM "
                f"(SELECT s.key, r.id AS referrer FROM {STAGE} s JOIN {partners} r ON r.key = s.referred_by "
                f"WHERE s.ok AND s.referred_by <> '') x WHERE {partners}.key = x.key "
                f"AND {partners}.referred_by_id IS DISTINCT FROM x.referrer",
                [Partner._meta.get_field("updated_at").get_db_prep_save(now(), connection)],
            ),
        )

    def _accounts(self, file: str) -> None:
        def parse(row: "_Row") -> tuple:
            row.key = row.text("key", required=True, max_length=100)
            domain = normalise_domain(row.cells.get("domain", ""))
            if len(domain) > 253:
                row.error("domain", "is longer than 253 characters")
            return (row.text("name", required=True, max_length=200), domain)

        self._load(file, "account", [("name", TEXT), ("domain", TEXT)], parse)
        self._duplicates(file, "account")
        self._upsert(file, Account, {"name": "s.name", "domain": "s.domain"})

    def _costs(self, file: str) -> None:
        def parse(row: "_Row") -> tuple:
            amount = row.parse("amount", parse_money, required=True)
            row.add_rule_errors({"amount": amount_errors(amount)} if amount_errors(amount) else {})
            day = row.parse("date", self.date_value, required=True)
            category = row.choice("category", COST_CATEGORIES)
            partner, source = row.cells.get("partner", ""), row.cells.get("join_source", "")
            return (day, amount, category, partner, source, row.text("note", max_length=500))

        columns = [("date", field_type(CostEntry, "date")), ("amount", field_type(CostEntry, "amount")),
                   ("category", TEXT), ("partner", TEXT), ("join_source", TEXT), ("note", TEXT)]  # fmt: skip
        self._load(file, None, columns, parse)
        self._references(file, None, "partner", Partner, label="partner")
        self._references(file, None, "join_source", JoinSource, label="join source")
        constants, params = constant_columns(
            CostEntry, ["date", "amount", "category", "partner_id", "join_source_id", "note"], now=now()
        )
        costs = q(CostEntry._meta.db_table)
        # Identified by the whole row: two identical rows are one cost, and a stored one is not added.
        self._insert_new(
            file,
            CostEntry,
            f"INSERT INTO {costs} (date, amount, category, partner_id, join_source_id, note, "
            f"{', '.join(q(c) for c in constants)}) "
            f"SELECT x.date, x.amount, x.category, x.partner_id, x.join_source_id, x.note, "
            f"{', '.join(['%s'] * len(params))} FROM (SELECT s.line, s.date, s.amount, s.category, "
            "p.id AS partner_id, j.id AS join_source_id, s.note, ROW_NUMBER() OVER (PARTITION BY s.date, "
            "s.amount, s.category, p.id, j.id, s.note ORDER BY s.line) AS n "
            f"FROM {STAGE} s LEFT JOIN {q(Partner._meta.db_table)} p ON p.key = s.partner "
            f"LEFT JOIN {q(JoinSource._meta.db_table)} j ON j.key = s.join_source WHERE s.ok) x "
            f"WHERE x.n = 1 AND NOT EXISTS (SELECT 1 FROM {costs} c WHERE c.date = x.date AND "
            "c.amount = x.amount AND c.category = x.category AND c.partner_id IS NOT DISTINCT FROM "
            "x.partner_id AND c.join_source_id IS NOT DISTINCT FROM x.join_source_id AND c.note = x.note) "
            "ORDER BY x.line",
            params,
        )

    def _targets(self, file: str) -> None:
        def parse(row: "_Row") -> tuple:
            metric = row.choice("metric", TARGETABLE_METRICS)
            period = row.parse("period", parse_period, required=True)
            partner_key, source_key = row.cells.get("partner", ""), row.cells.get("join_source", "")
            if partner_key and source_key:
                row.error("join_source", "a target names a partner or a join source, not both")
            elif metric and partner_key and not METRICS_BY_NAME[metric].partner:
                row.error("partner", f"{metric} has no per-partner value")
            elif metric and source_key and not METRICS_BY_NAME[metric].join_source:
                row.error("join_source", f"{metric} has no per-join-source value")
            # A target is identified by its metric, period and scope; its value is updated.
            row.key = f"{metric}|{row.cells.get('period', '')}|{partner_key}|{source_key}"
            value = row.parse("value", parse_target_value, required=True)
            return (
                metric,
                row.cells.get("period", ""),
                period[0] if period else None,
                period[1] if period else None,
                value,
                partner_key,
                source_key,
            )

        start, number = field_type(Target, "period_start"), field_type(Target, "value")
        columns = [("metric", TEXT), ("period", TEXT), ("grain", TEXT), ("period_start", start),
                   ("value", number), ("partner", TEXT), ("join_source", TEXT)]  # fmt: skip
        self._load(file, "target", columns, parse)
        self._references(file, None, "partner", Partner, label="partner")
        self._references(file, None, "join_source", JoinSource, label="join source")
        self._duplicates(
            file,
            "target",
            column="period",
            message="a target for this metric, period and scope appears twice",
        )
        targets = q(Target._meta.db_table)
        staged = (
            "SELECT s.line, s.metric, s.period, s.grain, s.period_start, s.value, p.id AS partner_id, "
            f"j.id AS join_source_id FROM {STAGE} s "
            f"LEFT JOIN {q(Partner._meta.db_table)} p ON p.key = s.partner "
            f"LEFT JOIN {q(JoinSource._meta.db_table)} j ON j.key = s.join_source WHERE s.ok"
        )
        same = (
            f"{targets}.metric = x.metric AND {targets}.period = x.period AND {targets}.partner_id IS NOT "
            f"DISTINCT FROM x.partner_id AND {targets}.join_source_id IS NOT DISTINCT FROM x.join_source_id"
        )
        written_at = Target._meta.get_field("updated_at").get_db_prep_save(now(), connection)
        summary: FileSummary = self.result.files[file]
        valid = self.stage.count(f"SELECT COUNT(*) FROM {STAGE} WHERE ok")
        updated = self.guarded(
            file,
            lambda: self.stage.execute(
                f"UPDATE {targets} SET value = x.value, updated_at = %s FROM ({staged}) x "
                f"WHERE {same} AND {targets}.value <> x.value",
                [written_at],
            ),
        )
        created = self.guarded(
            file,
            lambda: self.stage.execute(
                f"INSERT INTO {targets} (metric, period, grain, period_start, value, partner_id, "
                "join_source_id, updated_at) SELECT x.metric, x.period, x.grain, x.period_start, "
                "x.value, x.partner_id, "
                f"x.join_source_id, %s FROM ({staged}) x WHERE NOT EXISTS (SELECT 1 FROM {targets} "
                f"WHERE {same}) ORDER BY x.line",
                [written_at],
            ),
        )
        summary.created += created
        summary.updated += updated
        summary.unchanged += valid - created - updated
