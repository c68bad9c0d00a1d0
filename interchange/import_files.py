"""One handler per INTERCHANGE file: what each row is checked for on its own (while it is read), which
set-based checks run over the staged file, and how the valid rows are written.

The row checks call the same rule functions as the services and forms (`deals.rules`,
`program.validation` through `interchange.parsing`), so every entry point refuses a value with the
same message; the set-based checks format their messages with those functions too
(`acting_partner_errors` for a partner that may not act).
"""

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from django.db import connection, models

from deals.models import Account, Deal, DealRegistration, Touch
from deals.rules import amount_errors, deal_errors, normalise_domain, registration_errors
from events.changes import record_created_at, record_keyed_changes
from interchange.commission_plans import import_commission_plans
from interchange.parsing import parse_money, parse_period, parse_target_value
from interchange.screen import (
    DEAL_STATUSES,
    KEY_MAX_LENGTH,
    NAME_MAX_LENGTH,
    REGISTRATION_STATUSES,
    TOUCH_KINDS,
    Screen,
    deal_screen,
    load_screened,
    registration_screen,
    touch_screen,
)
from interchange.staging import (
    STAGE,
    bulk_write,
    column_type,
    constant_columns,
    now,
    q,
)
from kpis.metrics import METRICS_BY_NAME, TARGETABLE_METRICS
from kpis.models import CostEntry, Target
from partners.models import JoinSource, Partner
from partners.rules import acting_partner_errors, partner_errors

if TYPE_CHECKING:
    from datetime import date, datetime, timedelta

    from interchange.importer import FileSummary, ImportResult, _Row
    from interchange.parsing import Bounds
    from interchange.staging import Stage

# Choice lists, built once (TextChoices.values builds a new list on every access).
JOIN_SOURCE_KINDS = tuple(JoinSource.Kind.values)
PARTNER_STATUSES = tuple(Partner.Status.values)
PARTNER_TYPES = tuple(Partner.Type.values)
COST_CATEGORIES = tuple(CostEntry.Category.values)
DEAL_ONLY_WHEN_APPROVED = "only an approved registration has a deal (status is {status})"
TEXT = "text"

# The keys an upsert creates or changes, with which (see _mark_for_the_feed).
FEED_MARKS = "imp_feed_marks"


def _field(model: type[models.Model], name: str) -> str:
    field = model._meta.get_field(name)
    assert isinstance(field, models.Field)  # the import stages fields, never reverse relations
    return column_type(field)


class FileHandlers:
    """Mixed into the importer (interchange.importer._ProgramImport), which supplies `rows`, `stage`,
    `error`, `refuse`, `refuse_staged`, `unknown`, `guarded`, the summaries and the date parsers."""

    if TYPE_CHECKING:  # what the importer supplies, declared for the type checker
        stage: Stage
        result: ImportResult
        protection: timedelta
        bounds: Bounds
        header: list[str]

        def rows(self, file: str) -> Iterator[_Row]: ...
        def records(self, file: str) -> Iterator[tuple[int, list[str]]]: ...
        def refuse(self, row: _Row, entity: str | None) -> None: ...
        def refuse_staged(
            self, file: str, entity: str | None, line: int, key: str | None, column: str, reason: str
        ) -> None: ...
        def unknown(self, entity: str, label: str, key: str) -> str: ...
        def date_value(self, text: str) -> date: ...
        def datetime_value(self, text: str) -> datetime: ...
        def guarded(self, file: str, write: Callable[[], int]) -> int: ...

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

    # --- shared steps -----------------------------------------------------------------------------
    def _load(
        self,
        file: str,
        entity: str | None,
        columns: list[tuple[str, str]],
        parse: Callable[["_Row"], tuple],
        screen: Screen | None = None,
    ) -> None:
        """Read the file, check each row on its own, stream every row (refused ones flagged) into the
        staging table. PostgreSQL, with a `screen`: only the rows it does not pass are parsed here
        (interchange.screen)."""
        if screen is not None and connection.vendor == "postgresql":
            load_screened(self, file, entity, columns, parse, screen)
            return

        def staged() -> Iterator[tuple]:
            for row in self.rows(file):
                values = parse(row)
                if row.errors:
                    self.refuse(row, entity)
                yield (row.line, not row.errors, row.key or None, *values)

        self.stage.load(columns, staged())

    def _flag(self, file: str, entity: str | None, found: Iterator[tuple[int, str | None, str, str]]) -> None:
        """Report each (line, key, column, message) a set-based check found and refuse those rows."""
        lines = []
        for line, key, column, message in found:
            self.refuse_staged(file, entity, line, key, column, message)
            lines.append(line)
        self.stage.refuse_lines(lines)

    def _duplicates(
        self, file: str, entity: str, *, column: str = "key", message: str = "'{key}' appears twice"
    ) -> None:
        """A key used by an earlier row of the file is refused on the later rows."""
        sql = (
            f"SELECT s.line, s.key, d.first FROM {STAGE} s JOIN (SELECT key, MIN(line) AS first FROM {STAGE} "
            f"WHERE key IS NOT NULL AND key <> '' GROUP BY key HAVING COUNT(*) > 1) d ON d.key = s.key "
            "WHERE s.line > d.first ORDER BY s.line"
        )
        self._flag(
            file,
            None,  # the first row with the key stands; references to the key find it
            (
                (line, key, column, f"{message.format(key=key)} (first on line {first})")
                for line, key, first in self.stage.fetch(sql)
            ),
        )

    def _references(
        self, file: str, entity: str | None, column: str, model: type[models.Model], *, label: str
    ) -> None:
        """Every non-empty `column` must name a row of `model` by key (written by an earlier file or
        import); an unknown key, or the key of a row refused in this import, refuses the row."""
        ref_entity = model._meta.model_name
        assert ref_entity is not None  # set for every concrete model
        sql = (
            f"SELECT s.line, s.key, s.{q(column)} FROM {STAGE} s WHERE s.{q(column)} <> '' AND NOT EXISTS "
            f"(SELECT 1 FROM {q(model._meta.db_table)} r WHERE r.key = s.{q(column)}) ORDER BY s.line"
        )
        self._flag(
            file,
            entity,
            (
                (line, key, column, self.unknown(ref_entity, label, ref))
                for line, key, ref in self.stage.fetch(sql)
            ),
        )

    def _acting_partners(self, file: str, entity: str | None, column: str) -> None:
        """A touch, registration or sourced deal needs a known partner approved into the program
        (partners.rules.acting_partner_errors, as the services)."""
        sql = (
            f"SELECT s.line, s.key, s.{q(column)}, p.id, p.name, p.status FROM {STAGE} s "
            f"LEFT JOIN {q(Partner._meta.db_table)} p ON p.key = s.{q(column)} "
            f"WHERE s.{q(column)} <> '' AND (p.id IS NULL OR p.joined_at IS NULL) ORDER BY s.line"
        )

        def found() -> Iterator[tuple[int, str | None, str, str]]:
            for line, key, ref, pk, name, status in self.stage.fetch(sql):
                if pk is None:
                    yield line, key, column, self.unknown("partner", "partner", ref)
                    continue
                partner = Partner(id=pk, name=name, status=status, joined_at=None)
                for message in acting_partner_errors(partner, field=column).get(column, []):
                    yield line, key, column, message

        self._flag(file, entity, found())

    def _upsert(self, file: str, model: type[models.Model], values: dict[str, str], joins: str = "") -> None:
        """Create the staged valid rows whose key is new, update those whose values differ, leave
        identical rows (and their updated_at) alone. `values`: column -> SQL expression over the
        staged row `s` and `joins`."""
        table = q(model._meta.db_table)
        written_at = now()
        constants, params = constant_columns(model, ["key", *values], now=written_at)
        columns = ["key", *values, *constants]
        has_updated_at = "updated_at" in constants
        changed = " OR ".join(f"{table}.{q(c)} IS DISTINCT FROM EXCLUDED.{q(c)}" for c in values)
        sets = ", ".join(
            f"{q(c)} = EXCLUDED.{q(c)}" for c in [*values, *(["updated_at"] if has_updated_at else [])]
        )
        sql = (
            f"INSERT INTO {table} ({', '.join(q(c) for c in columns)}) "
            f"SELECT {', '.join(['s.key', *values.values(), *(['%s'] * len(params))])} "
            f"FROM {STAGE} s {joins} WHERE s.ok ORDER BY s.line "
            f"ON CONFLICT (key) DO UPDATE SET {sets} WHERE {changed}"
        )
        summary = self.result.files[file]
        valid = self.stage.count(f"SELECT COUNT(*) FROM {STAGE} WHERE ok")
        self._mark_for_the_feed(table, values, joins)
        created = self.stage.count(f"SELECT COUNT(*) FROM {FEED_MARKS} WHERE action = 'created'")
        with bulk_write(model, valid) as write:
            written = write.wrote(self.guarded(file, lambda: self.stage.execute(sql, params)))
        record_keyed_changes(model, FEED_MARKS)
        self.stage.execute(f"DROP TABLE {FEED_MARKS}")
        summary.created += created
        summary.updated += max(written - created, 0)
        summary.unchanged += valid - max(written, created)

    def _mark_for_the_feed(self, table: str, values: dict[str, str], joins: str) -> None:
        """FEED_MARKS: the key of each staged row the upsert will create or change, and which; the
        change feed is told of exactly those (events.changes), as the services' signals would."""
        differs = " OR ".join(f"w.{q(c)} IS DISTINCT FROM {expression}" for c, expression in values.items())
        self.stage.execute(f"DROP TABLE IF EXISTS {FEED_MARKS}")
        self.stage.execute(
            f"CREATE TEMPORARY TABLE {FEED_MARKS} AS SELECT s.key AS key, "
            "CASE WHEN w.id IS NULL THEN 'created' ELSE 'updated' END AS action "
            f"FROM {STAGE} s {joins} LEFT JOIN {table} w ON w.key = s.key "
            f"WHERE s.ok AND (w.id IS NULL OR {differs})"
        )

    def _insert_new(
        self,
        file: str,
        model: type[models.Model],
        select: str,
        params: list[Any],
        *,
        unique: str | None = None,
        deduplicated: str = "",
    ) -> None:
        """For files whose identity is the whole row: insert what `select` gives (the new rows). When a
        bulk write drops the `unique` constraint (staging.bulk_write), `deduplicated` is written
        instead: the same rows, without the constraint's help."""
        summary = self.result.files[file]
        valid = self.stage.count(f"SELECT COUNT(*) FROM {STAGE} WHERE ok")
        with bulk_write(model, valid, unique=unique) as write:
            sql = deduplicated if write.unique_dropped else select
            created = write.wrote(self.guarded(file, lambda: self.stage.execute(sql, params)))
        summary.created += created
        summary.unchanged += valid - created

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

        date_type = _field(Partner, "applied_at")
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

    def _deals(self, file: str) -> None:
        def parse(row: "_Row") -> tuple:
            row.key = row.text("key", required=True, max_length=KEY_MAX_LENGTH)
            amount = row.parse("amount", parse_money, required=True)
            created_at = row.parse("created_at", self.datetime_value, required=True)
            closed_at = row.parse("closed_at", self.datetime_value)
            status = row.choice("status", DEAL_STATUSES)
            row.add_rule_errors(
                deal_errors(amount=amount, created_at=created_at, closed_at=closed_at, status=status or "")
            )
            account = row.text("account", required=True)
            name = row.text("name", max_length=NAME_MAX_LENGTH)
            return (
                account,
                name,
                amount,
                created_at,
                closed_at,
                status,
                row.cells.get("sourcing_partner", ""),
            )

        moment, money = _field(Deal, "created_at"), _field(Deal, "amount")
        columns = [("account", TEXT), ("name", TEXT), ("amount", money), ("created_at", moment),
                   ("closed_at", moment), ("status", TEXT), ("sourcing_partner", TEXT)]  # fmt: skip
        self._load(file, "deal", columns, parse, deal_screen(self.bounds))
        self._duplicates(file, "deal")
        self._references(file, "deal", "account", Account, label="account")
        self._acting_partners(file, "deal", "sourcing_partner")
        self._upsert(
            file,
            Deal,
            {
                "account_id": "a.id",
                "name": "s.name",
                "amount": "s.amount",
                "created_at": "s.created_at",
                "closed_at": "s.closed_at",
                "status": "s.status",
                "sourcing_partner_id": "p.id",
            },
            f"JOIN {q(Account._meta.db_table)} a ON a.key = s.account "
            f"LEFT JOIN {q(Partner._meta.db_table)} p ON p.key = s.sourcing_partner",
        )

    def _registrations(self, file: str) -> None:
        def parse(row: "_Row") -> tuple:
            row.key = row.text("key", required=True, max_length=KEY_MAX_LENGTH)
            partner = row.text("partner", required=True)
            amount = row.parse("amount", parse_money, required=True)
            submitted_at = row.parse("submitted_at", self.datetime_value, required=True)
            decided_at = row.parse("decided_at", self.datetime_value)
            status = row.choice("status", REGISTRATION_STATUSES)
            row.add_rule_errors(
                registration_errors(
                    amount=amount, submitted_at=submitted_at, decided_at=decided_at, status=status
                )
            )
            account = row.text("account", required=True)
            protection = submitted_at + self.protection if submitted_at else None
            return (
                partner,
                account,
                amount,
                submitted_at,
                status,
                decided_at,
                row.cells.get("deal", ""),
                protection,
            )

        moment, money = _field(DealRegistration, "submitted_at"), _field(DealRegistration, "amount")
        columns = [("partner", TEXT), ("account", TEXT), ("amount", money), ("submitted_at", moment),
                   ("status", TEXT), ("decided_at", moment), ("deal", TEXT),
                   ("protection", moment)]  # fmt: skip
        self._load(
            file, "dealregistration", columns, parse, registration_screen(self.bounds, self.protection)
        )
        self._duplicates(file, "dealregistration")
        self._acting_partners(file, "dealregistration", "partner")
        self._references(file, "dealregistration", "deal", Deal, label="deal")
        self._deal_claims(file)
        self._references(file, "dealregistration", "account", Account, label="account")
        partners, accounts, deals = (q(m._meta.db_table) for m in (Partner, Account, Deal))
        self._upsert(
            file,
            DealRegistration,
            {
                "partner_id": "p.id",
                "account_id": "a.id",
                "amount": "s.amount",
                "submitted_at": "s.submitted_at",
                "status": "s.status",
                "decided_at": "s.decided_at",
                "deal_id": "d.id",
                "protection_expires_at": "s.protection",
            },
            f"JOIN {partners} p ON p.key = s.partner JOIN {accounts} a ON a.key = s.account "
            f"LEFT JOIN {deals} d ON d.key = s.deal",
        )

    def _deal_claims(self, file: str) -> None:
        """A registration's deal: only an approved registration has one, not a deal another partner
        sourced, and not one another registration (stored, or earlier in the file) already has."""
        entity = "dealregistration"
        deals, registrations = q(Deal._meta.db_table), q(DealRegistration._meta.db_table)
        partners = q(Partner._meta.db_table)
        self._flag(
            file,
            entity,
            (
                (line, key, "deal", DEAL_ONLY_WHEN_APPROVED.format(status=status))
                for line, key, status in self.stage.fetch(
                    f"SELECT s.line, s.key, s.status FROM {STAGE} s JOIN {deals} d ON d.key = s.deal "
                    "WHERE s.status <> '' AND s.status <> 'approved' ORDER BY s.line"
                )
            ),
        )
        self._flag(
            file,
            entity,
            (
                (line, key, "deal", f"deal '{deal}' is sourced by another partner")
                for line, key, deal in self.stage.fetch(
                    f"SELECT s.line, s.key, s.deal FROM {STAGE} s JOIN {deals} d ON d.key = s.deal "
                    f"JOIN {partners} p ON p.key = s.partner "
                    "WHERE d.sourcing_partner_id IS NOT NULL AND d.sourcing_partner_id <> p.id "
                    "ORDER BY s.line"
                )
            ),
        )

        def claimed(sql: str) -> None:
            """Flag the rows `sql` gives as (line, key, deal, the registration that holds the deal)."""
            self._flag(
                file,
                entity,
                (
                    (line, key, "deal", f"deal '{deal}' already belongs to registration '{belongs_to}'")
                    for line, key, deal, belongs_to in self.stage.fetch(sql)
                ),
            )

        owner = "COALESCE(r.key, '#' || CAST(r.id AS TEXT))"
        claimed(
            f"SELECT s.line, s.key, s.deal, {owner} FROM {STAGE} s JOIN {deals} d ON d.key = s.deal "
            f"JOIN {registrations} r ON r.deal_id = d.id "
            "WHERE r.key IS NULL OR r.key <> s.key ORDER BY s.line"
        )
        # Within the file: the first valid row naming a deal claims it.
        claimed(
            f"SELECT s.line, s.key, s.deal, o.key FROM {STAGE} s JOIN (SELECT deal, "
            f"MIN(line) AS first FROM {STAGE} WHERE ok AND deal <> '' GROUP BY deal) c "
            "ON c.deal = s.deal "
            f"JOIN {STAGE} o ON o.line = c.first "
            "WHERE s.line > c.first AND (s.key IS NULL OR s.key <> o.key) ORDER BY s.line"
        )

    def _touches(self, file: str) -> None:
        def parse(row: "_Row") -> tuple:
            deal = row.text("deal", required=True)
            partner = row.text("partner", required=True)
            kind = row.choice("kind", TOUCH_KINDS)
            return (deal, partner, kind, row.parse("touched_at", self.datetime_value, required=True))

        columns = [
            ("deal", TEXT),
            ("partner", TEXT),
            ("kind", TEXT),
            ("touched_at", _field(Touch, "touched_at")),
        ]
        self._load(file, None, columns, parse, touch_screen(self.bounds))
        self._references(file, None, "deal", Deal, label="deal")
        self._acting_partners(file, None, "partner")
        given = ["deal_id", "partner_id", "kind", "touched_at"]
        written_at = now()
        constants, params = constant_columns(Touch, given, now=written_at)
        touches = q(Touch._meta.db_table)
        # Their creation order is their row order (it breaks attribution ties on equal touched_at);
        # an identical row repeated, or already stored, is one touch (the touch_unique_row constraint).
        insert = f"INSERT INTO {touches} ({', '.join([*given, *(q(c) for c in constants)])}) "
        resolved = (
            f"FROM {STAGE} s JOIN {q(Deal._meta.db_table)} d ON d.key = s.deal "
            f"JOIN {q(Partner._meta.db_table)} p ON p.key = s.partner WHERE s.ok"
        )
        stamps = ", ".join(["%s"] * len(params))
        self._insert_new(
            file,
            Touch,
            f"{insert} SELECT d.id, p.id, s.kind, s.touched_at, {stamps} {resolved} "
            "ORDER BY s.line ON CONFLICT DO NOTHING",
            params,
            unique="touch_unique_row",
            # The constraint dropped for a bulk load: the first of identical rows, if not stored.
            deduplicated=(
                f"{insert} SELECT x.deal_id, x.partner_id, x.kind, x.touched_at, {stamps} FROM "
                "(SELECT s.line, d.id AS deal_id, p.id AS partner_id, s.kind, s.touched_at, ROW_NUMBER() "
                f"OVER (PARTITION BY d.id, p.id, s.kind, s.touched_at ORDER BY s.line) AS n {resolved}) x "
                f"WHERE x.n = 1 AND NOT EXISTS (SELECT 1 FROM {touches} t WHERE t.deal_id = x.deal_id "
                "AND t.partner_id = x.partner_id AND t.kind = x.kind AND t.touched_at = x.touched_at) "
                "ORDER BY x.line"
            ),
        )
        # Touches have no key: the new ones are those stamped with this insert's created_at.
        record_created_at(Touch, params[constants.index("created_at")])

    def _costs(self, file: str) -> None:
        def parse(row: "_Row") -> tuple:
            amount = row.parse("amount", parse_money, required=True)
            row.add_rule_errors({"amount": amount_errors(amount)} if amount_errors(amount) else {})
            day = row.parse("date", self.date_value, required=True)
            category = row.choice("category", COST_CATEGORIES)
            partner, source = row.cells.get("partner", ""), row.cells.get("join_source", "")
            return (day, amount, category, partner, source, row.text("note", max_length=500))

        columns = [("date", _field(CostEntry, "date")), ("amount", _field(CostEntry, "amount")),
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

        start, number = _field(Target, "period_start"), _field(Target, "value")
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
