"""seed_demo: write the generated demo program to the database (bulk paths) or to an INTERCHANGE folder.

The database path inserts with explicit primary keys computed from each row's index, so children
reference parents without any key lookup and memory stays bounded by one month of deals. On
PostgreSQL it streams each chunk with COPY; elsewhere it uses bulk_create in large batches.
"""

import csv
import io
import time as clock
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, overload
from zoneinfo import ZoneInfo

from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.core.management.color import no_style
from django.db import connection, models, transaction
from django.utils import timezone

from deals.models import Account, Deal, DealRegistration, Touch
from interchange import segments
from interchange.demo import (
    JOIN_SOURCES,
    DemoSize,
    ProgramGenerator,
    account_key,
    deal_key,
    partner_key,
)
from interchange.parsing import parse_period
from interchange.seed_economics import seed_economics
from interchange.seed_payouts import seed_payouts
from kpis.models import CostEntry, Target
from partners.models import JoinSource, Partner, PartnerUser
from partners.roles import StaffRole
from program.models import ProgramSettings

# The INTERCHANGE.md column order of every file seed_demo --out writes.
COLUMNS: dict[str, tuple[str, ...]] = {
    "join_sources": ("key", "name", "kind"),
    "partners": (
        "key",
        "name",
        "type",
        "join_source",
        "applied_at",
        "joined_at",
        "status",
        "tier",
        "referred_by",
    ),
    "accounts": ("key", "name", "domain"),
    "deals": ("key", "account", "name", "amount", "created_at", "closed_at", "status", "sourcing_partner"),
    "registrations": ("key", "partner", "account", "amount", "submitted_at", "status", "decided_at", "deal"),
    "touches": ("deal", "partner", "kind", "touched_at"),
    "costs": ("date", "amount", "category", "partner", "join_source", "note"),
    "targets": ("metric", "period", "value", "partner", "join_source"),
}


def _join_source_key(index: int) -> str:
    return JOIN_SOURCES[index][0]


# (file, column) -> how an index in that column becomes the referenced row's key.
REFERENCE_KEYS: dict[tuple[str, str], Callable[[int], str]] = {
    ("partners", "join_source"): _join_source_key,
    ("partners", "referred_by"): partner_key,
    ("deals", "account"): account_key,
    ("deals", "sourcing_partner"): partner_key,
    ("registrations", "partner"): partner_key,
    ("registrations", "account"): account_key,
    ("registrations", "deal"): deal_key,
    ("touches", "deal"): deal_key,
    ("touches", "partner"): partner_key,
    ("costs", "partner"): partner_key,
    ("costs", "join_source"): _join_source_key,
    ("targets", "partner"): partner_key,
    ("targets", "join_source"): _join_source_key,
}

DEMO_PASSWORDS = {
    "manager": "demo-manager-pass",
    "salesops": "demo-salesops-pass",
    "partner": "demo-partner-pass",
    "admin": "demo-admin-pass",
}


@dataclass
class SeedSummary:
    counts: dict[str, int]
    seconds: float
    partner_login_for: str = ""

    def lines(self) -> list[str]:
        counts = ", ".join(f"{n} {name.replace('_', ' ')}" for name, n in self.counts.items())
        return [f"Seeded {counts} in {self.seconds:.1f}s."]


def _format(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return format(value, "f")
    return str(value)


class CsvSink:
    """Writes the program as an INTERCHANGE folder (the same rows the database sink inserts)."""

    def __init__(self, out: Path) -> None:
        out.mkdir(parents=True, exist_ok=True)
        self.out = out
        self.files: dict[str, Any] = {}
        self.writers: dict[str, Any] = {}
        self.counts: dict[str, int] = {}

    def write(self, entity: str, rows: list[dict]) -> None:
        if entity not in self.writers:
            stream = (self.out / f"{entity}.csv").open("w", encoding="utf-8", newline="")
            self.files[entity] = stream
            self.writers[entity] = csv.writer(stream, lineterminator="\n")
            self.writers[entity].writerow(COLUMNS[entity])
            self.counts[entity] = 0
        writer = self.writers[entity]
        for row in rows:
            cells = []
            for column in COLUMNS[entity]:
                value = row.get(column)
                to_key = REFERENCE_KEYS.get((entity, column))
                cells.append(to_key(value) if to_key and value is not None else _format(value))
            writer.writerow(cells)
        self.counts[entity] += len(rows)

    def close(self) -> None:
        for stream in self.files.values():
            stream.close()


class DbSink:
    """Inserts rows with primary keys derived from their index (base + index + 1)."""

    MODELS: dict[str, type[models.Model]] = {
        "join_sources": JoinSource,
        "partners": Partner,
        "accounts": Account,
        "deals": Deal,
        "registrations": DealRegistration,
        "touches": Touch,
        "costs": CostEntry,
        "targets": Target,
    }

    def __init__(self, *, managers: list[int], protection_days: int) -> None:
        self.now = timezone.now()
        self.protection = timedelta(days=protection_days)
        self.managers = managers
        self.use_copy = connection.vendor == "postgresql"
        self.base = {
            entity: model._default_manager.aggregate(top=models.Max("id"))["top"] or 0
            for entity, model in self.MODELS.items()
        }
        self.next_id = dict(self.base)
        self.counts: dict[str, int] = {}
        self.dropped: list[tuple[str, str, str]] = []
        self.dropped_indexes: list[str] = []
        self.disabled_triggers: dict[str, list[str]] = {}

    @overload
    def _id(self, entity: str, index: int) -> int: ...
    @overload
    def _id(self, entity: str, index: int | None) -> int | None: ...
    def _id(self, entity: str, index: int | None) -> int | None:
        return None if index is None else self.base[entity] + index + 1

    def _serial(self, entity: str) -> int:
        self.next_id[entity] += 1
        return self.next_id[entity]

    def _attrs(self, entity: str, row: dict) -> dict[str, Any]:
        now = self.now
        if entity == "join_sources":
            return {
                "id": self._id(entity, row["index"]),
                "key": row["key"],
                "name": row["name"],
                "kind": row["kind"],
            }
        if entity == "partners":
            manager = row["manager"]
            return {
                "id": self._id(entity, row["index"]),
                "key": row["key"],
                "name": row["name"],
                "type": row["type"],
                "tier": row["tier"],
                "status": row["status"],
                "join_source_id": self._id("join_sources", row["join_source"]),
                "applied_at": row["applied_at"],
                "joined_at": row["joined_at"],
                "referred_by_id": self._id("partners", row["referred_by"]),
                "manager_id": self.managers[manager % len(self.managers)] if manager is not None else None,
                "created_at": now,
                "updated_at": now,
            }
        if entity == "accounts":
            return {
                "id": self._id(entity, row["index"]),
                "key": row["key"],
                "name": row["name"],
                "domain": row["domain"],
            }
        if entity == "deals":
            return {
                "id": self._id(entity, row["index"]),
                "key": row["key"],
                "account_id": self._id("accounts", row["account"]),
                "name": row["name"],
                "amount": row["amount"],
                "created_at": row["created_at"],
                "closed_at": row["closed_at"],
                "status": row["status"],
                "sourcing_partner_id": self._id("partners", row["sourcing_partner"]),
                "updated_at": now,
            }
        if entity == "registrations":
            decided = row["decided_at"] is not None
            return {
                "id": self._id(entity, row["index"]),
                "key": row["key"],
                "partner_id": self._id("partners", row["partner"]),
                "account_id": self._id("accounts", row["account"]),
                "amount": row["amount"],
                "expected_close_date": None,
                "notes": "",
                "status": row["status"],
                "submitted_at": row["submitted_at"],
                "submitted_by_id": None,
                "decided_at": row["decided_at"],
                "decided_by_id": self.managers[row["index"] % len(self.managers)] if decided else None,
                "decision_reason": row["decision_reason"],
                "protection_expires_at": row["submitted_at"] + self.protection,
                "conflict_with_id": self._id("registrations", row["conflict_with"]),
                "conflict_override_reason": "",
                "deal_id": self._id("deals", row["deal"]),
                "updated_at": now,
            }
        if entity == "touches":
            return {
                "id": self._serial(entity),
                "deal_id": self._id("deals", row["deal"]),
                "partner_id": self._id("partners", row["partner"]),
                "kind": row["kind"],
                "touched_at": row["touched_at"],
                "created_at": now,
                "updated_at": now,
            }
        if entity == "costs":
            return {
                "id": self._serial(entity),
                "date": row["date"],
                "amount": row["amount"],
                "category": row["category"],
                "partner_id": self._id("partners", row["partner"]),
                "join_source_id": self._id("join_sources", row["join_source"]),
                "note": row["note"],
                "updated_at": now,
            }
        grain, period_start = parse_period(row["period"])
        return {
            "id": self._serial(entity),
            "metric": row["metric"],
            "grain": grain,
            "period": row["period"],
            "period_start": period_start,
            "value": row["value"],
            "partner_id": self._id("partners", row["partner"]),
            "join_source_id": self._id("join_sources", row["join_source"]),
            "updated_at": now,
        }

    # The big tables: on PostgreSQL their foreign keys and plain (non-constraint) indexes are dropped
    # for the load and rebuilt before the transaction commits; re-adding a foreign key validates every
    # row with one set-based query, and building an index once beats updating it row by row.
    BULK_LOADED = (Account, Deal, DealRegistration, Touch)

    def open(self) -> None:
        """PostgreSQL bulk-load setup: per-row foreign-key checks and index updates would dominate."""
        if not self.use_copy:
            return
        quote = connection.ops.quote_name
        with connection.cursor() as cursor:
            # No deferred trigger events may be pending when the constraints are re-added.
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            # The deals' segment triggers probe the touches of each deal written, and the touch
            # index is dropped below: off for the load, the segments set in one statement at close.
            for table in segments.TRIGGERS:
                self.disabled_triggers[table] = segments.triggers_off(cursor, table)
            for model in self.BULK_LOADED:
                table = model._meta.db_table
                cursor.execute(
                    "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
                    "WHERE conrelid = %s::regclass AND contype = 'f' ORDER BY conname",
                    [table],
                )
                for name, definition in cursor.fetchall():
                    cursor.execute(f"ALTER TABLE {quote(table)} DROP CONSTRAINT {quote(name)}")
                    self.dropped.append((table, name, definition))
                cursor.execute(
                    "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema() "
                    "AND tablename = %s AND indexname NOT IN "
                    "(SELECT conname FROM pg_constraint WHERE conrelid = %s::regclass) ORDER BY indexname",
                    [table, table],
                )
                for name, definition in cursor.fetchall():
                    cursor.execute(f"DROP INDEX {quote(name)}")
                    self.dropped_indexes.append(definition)

    def write(self, entity: str, rows: list[dict]) -> None:
        if not rows:
            return
        model = self.MODELS[entity]
        attrs = [self._attrs(entity, row) for row in rows]
        if self.use_copy:
            self._copy(model, attrs)
        else:
            model._default_manager.bulk_create([model(**a) for a in attrs], batch_size=2000)
        self.counts[entity] = self.counts.get(entity, 0) + len(rows)

    @staticmethod
    def _copy(model: type[models.Model], rows: list[dict[str, Any]]) -> None:
        columns = list(rows[0])
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        # csv.writer str()s the rest: dates, datetimes (`2026-03-31 17:05:00+00:00`) and decimals
        # all come out in forms COPY reads.
        for row in rows:
            writer.writerow([r"\N" if v is None else v for v in row.values()])
        buffer.seek(0)
        table = connection.ops.quote_name(model._meta.db_table)
        column_list = ", ".join(connection.ops.quote_name(c) for c in columns)
        with connection.cursor() as cursor:
            cursor.copy_expert(
                f"COPY {table} ({column_list}) FROM STDIN WITH (FORMAT csv, NULL '\\N')", buffer
            )

    def close(self) -> None:
        if self.use_copy:
            quote = connection.ops.quote_name
            with connection.cursor() as cursor:
                for definition in self.dropped_indexes:
                    cursor.execute(definition)
                for table, name, definition in self.dropped:
                    cursor.execute(f"ALTER TABLE {quote(table)} ADD CONSTRAINT {quote(name)} {definition}")
                # Every deal's segment, as the triggers would have set it (the KPI change log's
                # trigger off too: it logs no segment-only update anyway, after comparing each row).
                segment = segments.segment_of("deals_deal")
                fact_log = segments.triggers_off(cursor, "deals_deal", (segments.DEAL_FACT_LOG,))
                cursor.execute(
                    f"UPDATE deals_deal SET segment = {segment} WHERE segment IS DISTINCT FROM {segment}"
                )
                segments.triggers_on(cursor, "deals_deal", fact_log)
                for table, disabled in self.disabled_triggers.items():
                    segments.triggers_on(cursor, table, disabled)
                cursor.execute("SET CONSTRAINTS ALL DEFERRED")
                for statement in connection.ops.sequence_reset_sql(no_style(), list(self.MODELS.values())):
                    cursor.execute(statement)


def _write_program(
    generator: ProgramGenerator, sink: CsvSink | DbSink, progress: Callable[[str], None]
) -> None:
    sink.write("join_sources", generator.join_source_rows())
    generator.build_partners()
    sink.write("partners", generator.partner_rows())
    for chunk in generator.deal_chunks():
        for entity in ("accounts", "deals", "registrations", "touches"):
            sink.write(entity, chunk[entity])
        progress(f"{generator.program.deals} deals")
    sink.write("costs", generator.cost_rows())
    sink.write("targets", generator.target_rows())


def _program_today(*, database: bool = True) -> tuple[date, ZoneInfo]:
    """Today and the program time zone; `database=False` reads the settings only when they exist."""
    if database or ProgramSettings._meta.db_table in connection.introspection.table_names():
        name = ProgramSettings.load().time_zone
    else:
        # A fresh checkout (no migrated database): the time zone a new program starts with.
        name = ProgramSettings._meta.get_field("time_zone").get_default()
    tz = ZoneInfo(name)
    return timezone.now().astimezone(tz).date(), tz


def seed_to_folder(
    size: DemoSize, out: Path, *, progress: Callable[[str], None] = lambda _: None
) -> SeedSummary:
    started = clock.monotonic()
    today, tz = _program_today(database=False)
    sink = CsvSink(out)
    try:
        _write_program(ProgramGenerator(size, today=today, tz=tz), sink, progress)
    finally:
        sink.close()
    return SeedSummary(counts=sink.counts, seconds=clock.monotonic() - started)


def seed_database(size: DemoSize, *, progress: Callable[[str], None] = lambda _: None) -> SeedSummary:
    """Seeds the demo program and the demo logins in one transaction."""
    started = clock.monotonic()
    today, tz = _program_today()
    program_settings = ProgramSettings.load()
    with transaction.atomic():
        manager_ids = [user.pk for user in _staff_users()]
        sink = DbSink(managers=manager_ids, protection_days=program_settings.registration_protection_days)
        sink.open()
        generator = ProgramGenerator(size, today=today, tz=tz, managers=len(manager_ids))
        _write_program(generator, sink, progress)
        sink.close()
        partner = _demo_partner(generator, sink)
        if partner is not None:
            _ensure_partner_user(partner)
        _demo_applications()
        seed_economics(today)
        seed_payouts(today)
    return SeedSummary(
        counts=sink.counts,
        seconds=clock.monotonic() - started,
        partner_login_for=partner.name if partner else "",
    )


def _staff_users() -> list[User]:
    """The demo logins plus two more partner managers, so partners have several owners."""
    from partners.services import staff_user_create

    user_model = get_user_model()
    if not user_model.objects.filter(username="admin").exists():
        user_model.objects.create_superuser("admin", "admin@example.com", DEMO_PASSWORDS["admin"])
    managers = []
    for username, role, password in (
        ("manager", StaffRole.PARTNER_MANAGER, DEMO_PASSWORDS["manager"]),
        ("salesops", StaffRole.SALES_OPS, DEMO_PASSWORDS["salesops"]),
        ("priya.shah", StaffRole.PARTNER_MANAGER, "priya-demo-manager-pass"),
        ("tom.becker", StaffRole.PARTNER_MANAGER, "tom-demo-manager-pass"),
    ):
        user = user_model.objects.filter(username=username).first() or staff_user_create(
            username=username, email=f"{username}@example.com", password=password, role=role
        )
        if role == StaffRole.PARTNER_MANAGER:
            managers.append(user)
    return managers


def _demo_partner(generator: ProgramGenerator, sink: DbSink) -> Partner | None:
    """An active, busy partner (ideally gold) for the partner login."""
    program = generator.program
    candidates = [p for p in program.partners if p.status == "active" and program.sourced_deals.get(p.index)]
    if not candidates:
        candidates = [p for p in program.partners if p.status == "active"]
    if not candidates:
        return None
    chosen = max(
        candidates, key=lambda p: (p.tier == "gold", program.sourced_deals.get(p.index, 0), -p.index)
    )
    return Partner.objects.get(pk=sink._id("partners", chosen.index))


DEMO_APPLICATIONS = 6
DEMO_PITCHES = (
    "We resell to mid-market retailers in our region and would bundle your product with our services.",
    "Our consultants implement CRM projects; your product fills the reporting gap our clients ask about.",
    "We run a marketplace for SaaS tools and would list you with a co-marketing launch.",
)


def _demo_applications() -> None:
    """What the newest pending applicants told us at /apply/, so the manager's queue has rows."""
    from partners.models import Application

    pending = (
        Partner.objects.filter(status=Partner.Status.APPLIED, application__isnull=True)
        .order_by("-applied_at", "-pk")
        .select_related("join_source", "referred_by")[:DEMO_APPLICATIONS]
    )
    for index, partner in enumerate(pending):
        slug = "".join(ch for ch in partner.name.lower() if ch.isalnum())[:30] or f"applicant{partner.pk}"
        Application.objects.create(
            partner=partner,
            contact_name=f"Contact at {partner.name}",
            contact_email=f"partners@{slug}.example",
            website=f"https://{slug}.example",
            pitch=DEMO_PITCHES[index % len(DEMO_PITCHES)],
            source_origin=_demo_origin(partner),
            requested_source=partner.join_source.key or "",
            requested_ref=partner.referred_by.export_key if partner.referred_by else "",
            submitted_at=timezone.make_aware(
                datetime.combine(partner.applied_at, datetime.min.time()).replace(hour=10)
            ),
        )


def _demo_origin(partner: Partner) -> str:
    from partners.models import Application

    if partner.referred_by_id:
        return Application.SourceOrigin.REFERRAL
    return Application.SourceOrigin.LINK if partner.join_source.key else Application.SourceOrigin.DEFAULT


def _ensure_partner_user(partner: Partner) -> None:
    from partners.services import partner_user_create

    user_model = get_user_model()
    if user_model.objects.filter(username="partner").exists():
        return
    partner_user_create(
        partner=partner,
        username="partner",
        email="partner@example.com",
        password=DEMO_PASSWORDS["partner"],
        role=PartnerUser.Role.ADMIN,
    )
