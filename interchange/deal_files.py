"""The deal files: deals.csv, registrations.csv and touches.csv (their row checks, their set-based
checks and their writes; interchange.file_steps has the steps they share, interchange.screen what
their cells are screened with on PostgreSQL)."""

from collections.abc import Iterator
from typing import TYPE_CHECKING

from deals.models import Account, Deal, DealRegistration, Touch
from deals.rules import deal_errors, registration_errors
from events.changes import record_created_at
from interchange.file_steps import TEXT, FileSteps, field_type
from interchange.parsing import parse_money
from interchange.screen import (
    DEAL_STATUSES,
    KEY_MAX_LENGTH,
    NAME_MAX_LENGTH,
    REGISTRATION_STATUSES,
    TOUCH_KINDS,
    deal_screen,
    registration_screen,
    touch_screen,
)
from interchange.segments import segment_of
from interchange.staging import STAGE, constant_columns, now, q
from partners.models import Partner

if TYPE_CHECKING:
    from interchange.importer import _Row

DEAL_ONLY_WHEN_APPROVED = "only an approved registration has a deal (status is {status})"


class DealFiles(FileSteps):
    """deals.csv, registrations.csv, touches.csv (interchange.import_files.FileHandlers names them)."""

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

        moment, money = field_type(Deal, "created_at"), field_type(Deal, "amount")
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
            # Its segment by the rule of its triggers (interchange.segments), from the row written.
            derived={"segment": segment_of("x")},
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

        moment, money = field_type(DealRegistration, "submitted_at"), field_type(DealRegistration, "amount")
        columns = [("partner", TEXT), ("account", TEXT), ("amount", money), ("submitted_at", moment),
                   ("status", TEXT), ("decided_at", moment), ("deal", TEXT),
                   ("protection", moment)]  # fmt: skip
        self._load(
            file, "dealregistration", columns, parse, registration_screen(self.bounds, self.protection)
        )
        self._duplicates(file, "dealregistration")
        self._acting_partners(file, "dealregistration", "partner")
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
        """A registration's deal: a known deal (by key), which only an approved registration has,
        not one another partner sourced, and not one another registration (stored, or earlier in
        the file) already has. The stored checks are one join of the file with the deals."""
        entity = "dealregistration"
        deals, registrations = q(Deal._meta.db_table), q(DealRegistration._meta.db_table)
        partners = q(Partner._meta.db_table)
        unapproved = "s.status <> '' AND s.status <> 'approved'"
        sourced_by_other = "d.sourcing_partner_id IS NOT NULL AND d.sourcing_partner_id <> p.id"
        sql = (
            f"SELECT s.line, s.key, s.deal, s.status, d.id IS NULL, {unapproved}, "
            f"COALESCE({sourced_by_other}, false), COALESCE(r.key, '#' || CAST(r.id AS TEXT)) "
            f"FROM {STAGE} s LEFT JOIN {deals} d ON d.key = s.deal "
            f"LEFT JOIN {partners} p ON p.key = s.partner "
            f"LEFT JOIN {registrations} r ON r.deal_id = d.id AND (r.key IS NULL OR r.key <> s.key) "
            f"WHERE s.deal <> '' AND (d.id IS NULL OR ({unapproved}) OR ({sourced_by_other}) "
            "OR r.id IS NOT NULL) ORDER BY s.line"
        )

        def found() -> Iterator[tuple[int, str | None, str, str]]:
            for line, key, deal, status, unknown, not_approved, sourced, owner in self.stage.fetch(sql):
                if unknown:
                    yield line, key, "deal", self.unknown("deal", "deal", deal)
                    continue
                if not_approved:
                    yield line, key, "deal", DEAL_ONLY_WHEN_APPROVED.format(status=status)
                if sourced:
                    yield line, key, "deal", f"deal '{deal}' is sourced by another partner"
                if owner is not None:
                    yield line, key, "deal", f"deal '{deal}' already belongs to registration '{owner}'"

        self._flag(file, entity, found())

        # Within the file: the first valid row naming a deal claims it.
        self._flag(
            file,
            entity,
            (
                (line, key, "deal", f"deal '{deal}' already belongs to registration '{first}'")
                for line, key, deal, first in self.stage.fetch(
                    f"SELECT s.line, s.key, s.deal, o.key FROM {STAGE} s JOIN (SELECT deal, "
                    f"MIN(line) AS first FROM {STAGE} WHERE ok AND deal <> '' GROUP BY deal) c "
                    f"ON c.deal = s.deal JOIN {STAGE} o ON o.line = c.first "
                    "WHERE s.line > c.first AND (s.key IS NULL OR s.key <> o.key) ORDER BY s.line"
                )
            ),
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
            ("touched_at", field_type(Touch, "touched_at")),
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
            segments_of=f"d.key IN (SELECT s.deal FROM {STAGE} s WHERE s.ok)",
        )
        # Touches have no key: the new ones are those stamped with this insert's created_at.
        record_created_at(Touch, params[constants.index("created_at")])
