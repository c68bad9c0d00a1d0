"""INTERCHANGE.md program import: a folder (or zip) of CSV files, all or nothing, streamed in batches.

How memory stays flat: every file is read with `csv.reader` row by row and handled in batches of
BATCH_SIZE rows. Per batch, references are resolved with one `key IN (...)` query per referenced
table, the existing rows are fetched by key, and the new or changed rows are written with one
`bulk_create(update_conflicts=True)`. Nothing is kept across batches except the error list and the
keys of refused rows (both grow only with errors); duplicate keys are detected through a temporary
table in the database, not a Python set.

All or nothing: the import runs in one transaction. Valid rows are written as we go, so that later
rows can reference them; when any row was refused, every file is still read to the end (so every
bad row is listed) and the transaction is rolled back before ImportFailed is raised.
"""

import csv
import io
import re
import zipfile
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import Any, TextIO
from zoneinfo import ZoneInfo

from django.db import DataError, IntegrityError, connection, models, transaction
from django.utils import timezone
from tqdm import tqdm

from deals.models import Account, Deal, DealRegistration, Touch
from deals.rules import amount_errors, deal_errors, normalise_domain, registration_errors
from interchange.parsing import (
    CellError,
    parse_date,
    parse_datetime,
    parse_money,
    parse_period,
    parse_target_value,
)
from kpis.metrics import METRICS_BY_NAME, TARGETABLE_METRICS
from kpis.models import CostEntry, Target
from partners.models import JoinSource, Partner
from partners.rules import acting_partner_errors, partner_errors
from program.models import ProgramSettings

BATCH_SIZE = 1000
# Choice lists, built once (TextChoices.values builds a new list on every access).
JOIN_SOURCE_KINDS = tuple(JoinSource.Kind.values)
PARTNER_STATUSES = tuple(Partner.Status.values)
PARTNER_TYPES = tuple(Partner.Type.values)
DEAL_STATUSES = tuple(Deal.Status.values)
REGISTRATION_STATUSES = tuple(DealRegistration.Status.values)
TOUCH_KINDS = tuple(Touch.Kind.values)
COST_CATEGORIES = tuple(CostEntry.Category.values)

# file -> (required columns, optional columns), in import order (INTERCHANGE.md).
FILES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "join_sources.csv": (("key", "name", "kind"), ()),
    "partners.csv": (
        ("key", "name", "type", "join_source", "applied_at", "status"),
        ("joined_at", "tier", "referred_by"),
    ),
    "accounts.csv": (("key", "name"), ("domain",)),
    "deals.csv": (
        ("key", "account", "amount", "created_at", "status"),
        ("name", "closed_at", "sourcing_partner"),
    ),
    "registrations.csv": (
        ("key", "partner", "account", "amount", "submitted_at", "status"),
        ("decided_at", "deal"),
    ),
    "touches.csv": (("deal", "partner", "kind", "touched_at"), ()),
    "costs.csv": (("date", "amount", "category"), ("partner", "join_source", "note")),
    "targets.csv": (("metric", "period", "value"), ("partner", "join_source")),
}


DEAL_ONLY_WHEN_APPROVED = "only an approved registration has a deal (status is {status})"


def _has_field(model: type[models.Model], name: str) -> bool:
    return any(f.name == name for f in model._meta.concrete_fields)


class ImportFailed(Exception):
    """The import was refused and rolled back; `errors` lists every bad row as `file:line: column: reason`."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = errors
        super().__init__(f"{len(errors)} error(s); nothing was imported")


@dataclass
class FileSummary:
    rows: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0


@dataclass
class ImportResult:
    files: dict[str, FileSummary] = field(default_factory=dict)

    def lines(self) -> list[str]:
        return [
            f"{name}: {s.rows} rows, {s.created} created, {s.updated} updated, {s.unchanged} unchanged"
            for name, s in self.files.items()
        ]


def import_program(source: Path | str | zipfile.ZipFile, *, progress: bool = False) -> ImportResult:
    """Import the INTERCHANGE files found in a folder or a zip archive, in one transaction.

    Raises ImportFailed (and writes nothing) when any row is invalid.
    """
    folder = _ZipFolder(source) if isinstance(source, zipfile.ZipFile) else _DirFolder(Path(source))
    return _ProgramImport(folder, progress=progress).run()


class _DirFolder:
    def __init__(self, path: Path) -> None:
        if not path.is_dir():
            raise ImportFailed([f"{path}: not a directory"])
        self.path = path

    def exists(self, name: str) -> bool:
        return (self.path / name).is_file()

    @contextmanager
    def open(self, name: str) -> Iterator[TextIO]:
        with (self.path / name).open(encoding="utf-8-sig", errors=UNDECODABLE, newline="") as stream:
            yield stream


class _ZipFolder:
    """The files may sit at the archive's root or in one folder inside it."""

    def __init__(self, archive: zipfile.ZipFile) -> None:
        self.archive = archive
        self.members: dict[str, str] = {}
        for member in sorted(archive.namelist(), key=lambda n: (n.count("/"), n)):
            path = PurePosixPath(member)
            if member.endswith("/") or "__MACOSX" in path.parts:
                continue
            self.members.setdefault(path.name, member)

    def exists(self, name: str) -> bool:
        return name in self.members

    @contextmanager
    def open(self, name: str) -> Iterator[TextIO]:
        with self.archive.open(self.members[name]) as raw:
            yield io.TextIOWrapper(raw, encoding="utf-8-sig", errors=UNDECODABLE, newline="")


class _Row:
    """One CSV record: its cells, its parsed values and the problems found in it."""

    __slots__ = ("file", "line", "cells", "errors", "key", "values", "keep_existing")

    def __init__(self, file: str, line: int, cells: dict[str, str]) -> None:
        self.file = file
        self.line = line
        self.cells = cells
        self.errors: list[tuple[str, str]] = []
        self.key: str = ""
        self.values: dict[str, Any] = {}
        self.keep_existing: tuple[str, ...] = ()

    def error(self, column: str, reason: str) -> None:
        self.errors.append((column, reason))

    def has_error(self, column: str) -> bool:
        return any(c == column for c, _ in self.errors)

    def text(self, column: str, *, required: bool = False, max_length: int | None = None) -> str:
        value = self.cells.get(column, "")
        if required and not value:
            self.error(column, "is required")
        elif max_length is not None and len(value) > max_length:
            self.error(column, f"is longer than {max_length} characters")
        return value

    def parse(self, column: str, parser, *, required: bool = False) -> Any:
        text = self.text(column, required=required)
        if not text:
            return None
        try:
            return parser(text)
        except CellError as exc:
            self.error(column, str(exc))
            return None

    def choice(self, column: str, choices: tuple[str, ...]) -> str | None:
        text = self.text(column, required=True)
        if text and text not in choices:
            self.error(column, f"'{text}' is not one of: {', '.join(choices)}")
            return None
        return text or None

    def add_rule_errors(self, errors: dict[str, list[str]]) -> None:
        """Rule messages, except on columns that could not even be read."""
        for column, messages in errors.items():
            if not self.has_error(column):
                for message in messages:
                    self.error(column, message)


# Bytes that are not UTF-8 decode to lone surrogates (U+DC80-U+DCFF), which valid text never holds:
# the row that has them is reported at its own line, and reading goes on. Strict decoding fails a
# whole read-ahead chunk, so the error landed lines early and lost the rows before it.
UNDECODABLE = "surrogateescape"
_SURROGATES = re.compile("[\udc80-\udcff]")


def _bad_characters(text: str) -> str | None:
    if _SURROGATES.search(text):
        return "is not valid UTF-8"
    if "\x00" in text:
        return "contains the NUL character"
    return None


def _check_characters(row: _Row) -> None:
    for column, text in row.cells.items():
        if reason := _bad_characters(text):
            row.error(column, reason)
            # The row is refused; its key stays readable so rows that refer to it say so.
            row.cells[column] = _SURROGATES.sub("\ufffd", text).replace("\x00", "\ufffd")


class _SeenKeys:
    """Keys already read in this import, in a temporary table so memory stays flat."""

    TABLE = "interchange_import_seen"

    def create(self) -> None:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP TABLE IF EXISTS {self.TABLE}")
            cursor.execute(
                f"CREATE TEMPORARY TABLE {self.TABLE} (entity varchar(40) NOT NULL, "
                "row_key varchar(1000) NOT NULL, line integer NOT NULL, PRIMARY KEY (entity, row_key))"
            )

    def drop(self) -> None:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP TABLE IF EXISTS {self.TABLE}")

    def check_and_add(
        self, entity: str, rows: list[_Row], *, column: str = "key", message: str = "'{key}' appears twice"
    ) -> None:
        """Flags rows whose key an earlier row of this import already used, then records the new keys."""
        keys = list({row.key for row in rows if row.key})
        if not keys:
            return
        with connection.cursor() as cursor:
            placeholders = ", ".join(["%s"] * len(keys))
            cursor.execute(
                f"SELECT row_key, line FROM {self.TABLE} WHERE entity = %s AND row_key IN ({placeholders})",
                [entity, *keys],
            )
            first_line = dict(cursor.fetchall())
            new: list[tuple[str, str, int]] = []
            for row in rows:
                if not row.key:
                    continue
                if row.key in first_line:
                    reason = message.format(key=row.key)
                    row.error(column, f"{reason} (first on line {first_line[row.key]})")
                else:
                    first_line[row.key] = row.line
                    new.append((entity, row.key, row.line))
            cursor.executemany(f"INSERT INTO {self.TABLE} (entity, row_key, line) VALUES (%s, %s, %s)", new)


def _entity(model: type[models.Model]) -> str:
    """The model's name as the import reports and keys it (`partner`, `deal`, ...)."""
    name = model._meta.model_name
    assert name is not None  # set for every concrete model
    return name


def _attname(model: type[models.Model], name: str) -> str:
    """The column attribute of one of the model's own fields (`partner` -> `partner_id`)."""
    field = model._meta.get_field(name)
    assert isinstance(field, models.Field)  # the import writes fields, never reverse relations
    return field.attname


class _ProgramImport:
    def __init__(self, folder: _DirFolder | _ZipFolder, *, progress: bool) -> None:
        self.folder = folder
        self.progress = progress
        program = ProgramSettings.load()
        self.tz = ZoneInfo(program.time_zone)
        self.protection = timedelta(days=program.registration_protection_days)
        self.errors: list[str] = []
        # entity -> key -> "file:line" of refused rows, so references to them say why they are unknown.
        self.refused: dict[str, dict[str, str]] = defaultdict(dict)
        self.refused_lines: set[tuple[str, int]] = set()
        self.result = ImportResult()
        self.seen = _SeenKeys()
        self.partner_refs_deferred = False

    # --- driver ---------------------------------------------------------------------------------
    def run(self) -> ImportResult:
        handlers = {
            "join_sources.csv": self._join_sources,
            "partners.csv": self._partners,
            "accounts.csv": self._accounts,
            "deals.csv": self._deals,
            "registrations.csv": self._registrations,
            "touches.csv": self._touches,
            "costs.csv": self._costs,
            "targets.csv": self._targets,
        }
        with transaction.atomic():
            self.seen.create()
            for name, handler in handlers.items():
                if self.folder.exists(name):
                    self.result.files[name] = FileSummary()
                    handler(name)
            self.seen.drop()
            if self.errors:
                raise ImportFailed(self.errors)
        return self.result

    def _batches(self, file: str, *, count: bool = True) -> Iterator[list[_Row]]:
        required, _optional = FILES[file]
        summary = self.result.files[file]
        with self.folder.open(file) as stream:
            reader = csv.reader(stream)
            try:
                header = [column.strip() for column in next(reader)]
            except StopIteration:
                self._error(file, 1, "-", "the file is empty; it needs a header row")
                return
            except csv.Error as exc:
                self._error(file, 1, "-", f"unreadable header: {exc}")
                return
            if any(_bad_characters(column) for column in header):
                self._error(file, 1, "-", "the header is not valid UTF-8 text")
                return
            missing = [column for column in required if column not in header]
            for column in missing:
                self._error(file, 1, column, "required column is missing from the header")
            for column in sorted({c for c in header if header.count(c) > 1}):
                self._error(file, 1, column, "column appears twice in the header")
            if missing or len(set(header)) != len(header):
                return
            bar = tqdm(desc=file, unit=" rows", disable=not (self.progress and count), leave=True)
            batch: list[_Row] = []
            previous_line = reader.line_num
            try:
                for values in reader:
                    line, previous_line = previous_line + 1, reader.line_num
                    if not any(value.strip() for value in values):
                        continue
                    if count:
                        summary.rows += 1
                    if len(values) != len(header):
                        if count:
                            self._error(
                                file, line, "-", f"has {len(values)} fields, the header has {len(header)}"
                            )
                        continue
                    row = _Row(file, line, dict(zip(header, (v.strip() for v in values), strict=True)))
                    _check_characters(row)
                    batch.append(row)
                    if len(batch) >= BATCH_SIZE:
                        bar.update(len(batch))
                        yield batch
                        batch = []
                if batch:
                    bar.update(len(batch))
                    yield batch
            except csv.Error as exc:
                if count:
                    self._error(file, reader.line_num, "-", f"malformed CSV: {exc}")
            finally:
                bar.close()

    # --- shared helpers -------------------------------------------------------------------------
    def _error(self, file: str, line: int, column: str, reason: str) -> None:
        self.errors.append(f"{file}:{line}: {column}: {reason}")

    def _refuse(self, row: _Row, entity: str | None) -> None:
        for column, reason in row.errors:
            self._error(row.file, row.line, column, reason)
        self.refused_lines.add((row.file, row.line))
        if entity and row.key:
            self.refused[entity].setdefault(row.key, f"{row.file}:{row.line}")

    def _date(self, text: str) -> date:
        return parse_date(text, self.tz)

    def _datetime(self, text: str) -> datetime:
        return parse_datetime(text, self.tz)

    @staticmethod
    def _keys_in(rows: list[_Row], *columns: str) -> set[str]:
        return {row.cells.get(column, "") for row in rows for column in columns} - {""}

    @staticmethod
    def _acting_partners(keys: set[str]) -> dict[str, Partner]:
        """Partners by key, with what the acting-partner rule needs (name, status, joined_at)."""
        if not keys:
            return {}
        partners = Partner.objects.filter(key__in=keys).only("id", "key", "name", "status", "joined_at")
        return {partner.key: partner for partner in partners if partner.key is not None}

    def _acting_partner(
        self, row: _Row, column: str, partners: dict[str, Partner], *, required: bool
    ) -> int | None:
        """The id of a partner that may own a touch, registration or sourced deal (partners.rules)."""
        partner = self._reference(row, column, partners, "partner", label="partner", required=required)
        if partner is None:
            return None
        for message in acting_partner_errors(partner, field=column).get(column, []):
            row.error(column, message)
        return partner.pk

    @staticmethod
    def _resolve(model: type[models.Model], keys: set[str]) -> dict[str, int]:
        if not keys:
            return {}
        return dict(model._default_manager.filter(key__in=keys).values_list("key", "id"))

    def _reference(
        self,
        row: _Row,
        column: str,
        mapping: dict[str, Any],
        entity: str,
        *,
        label: str,
        required: bool = False,
    ) -> Any:
        key = row.cells.get(column, "")
        if not key:
            if required:
                row.error(column, "is required")
            return None
        if key in mapping:
            return mapping[key]
        where = self.refused[entity].get(key)
        row.error(column, f"{label} '{key}' was refused ({where})" if where else f"unknown {label} '{key}'")
        return None

    def _split_valid(self, rows: list[_Row], entity: str | None) -> list[_Row]:
        valid = []
        for row in rows:
            if row.errors:
                self._refuse(row, entity)
            else:
                valid.append(row)
        return valid

    def _bulk_write(
        self, model: type[models.Model], pairs: Sequence[tuple[_Row, models.Model]], **options: Any
    ) -> None:
        """Writes a batch; if the database still refuses it, pins the refusal on the rows that cause it."""
        if not pairs:
            return
        try:
            with transaction.atomic():
                model._default_manager.bulk_create([obj for _, obj in pairs], **options)
        except (IntegrityError, DataError):
            for row, obj in pairs:
                try:
                    with transaction.atomic():
                        model._default_manager.bulk_create([obj], **options)
                except (IntegrityError, DataError) as exc:
                    row.error("-", f"refused by the database: {str(exc).strip().splitlines()[0]}")
                    self._refuse(row, _entity(model))

    def _upsert_by_key(self, file: str, model: type[models.Model], rows: list[_Row]) -> None:
        """Creates new keys, updates changed rows, leaves identical rows (and their updated_at) alone."""
        entity = _entity(model)
        self.seen.check_and_add(entity, rows)
        valid = self._split_valid(rows, entity)
        if not valid:
            return
        fields = list(valid[0].values)
        attnames = [_attname(model, name) for name in fields]
        existing = {
            row["key"]: row
            for row in model._default_manager.filter(key__in=[r.key for r in valid]).values("key", *attnames)
        }
        summary = self.result.files[file]
        pairs = []
        for row in valid:
            old = existing.get(row.key)
            for name in row.keep_existing:
                row.values[name] = old[_attname(model, name)] if old else None
            values = {attname: row.values[name] for name, attname in zip(fields, attnames, strict=True)}
            if old is None:
                summary.created += 1
            elif any(old[attname] != value for attname, value in values.items()):
                summary.updated += 1
            else:
                summary.unchanged += 1
                continue
            pairs.append((row, model(key=row.key, **values)))
        self._bulk_write(
            model,
            pairs,
            update_conflicts=True,
            unique_fields=["key"],
            update_fields=[*fields, *(["updated_at"] if _has_field(model, "updated_at") else [])],
        )

    # --- files ----------------------------------------------------------------------------------
    def _join_sources(self, file: str) -> None:
        for batch in self._batches(file):
            for row in batch:
                row.key = row.text("key", required=True, max_length=100)
                row.values = {
                    "name": row.text("name", required=True, max_length=200),
                    "kind": row.choice("kind", JOIN_SOURCE_KINDS),
                }
            self._upsert_by_key(file, JoinSource, batch)

    def _partners(self, file: str) -> None:
        for batch in self._batches(file):
            sources = self._resolve(JoinSource, self._keys_in(batch, "join_source"))
            # Referrers may come later in the same file: those are linked in a second pass.
            referrers = self._resolve(Partner, self._keys_in(batch, "referred_by"))
            for row in batch:
                row.key = row.text("key", required=True, max_length=100)
                status = row.choice("status", PARTNER_STATUSES)
                applied_at = row.parse("applied_at", self._date, required=True)
                joined_at = row.parse("joined_at", self._date)
                row.add_rule_errors(partner_errors(status=status, applied_at=applied_at, joined_at=joined_at))
                referred_by = row.cells.get("referred_by", "")
                if referred_by and referred_by == row.key:
                    row.error("referred_by", "a partner cannot refer itself")
                row.values = {
                    "name": row.text("name", required=True, max_length=200),
                    "type": row.choice("type", PARTNER_TYPES),
                    "join_source": self._reference(
                        row, "join_source", sources, "joinsource", label="join source", required=True
                    ),
                    "applied_at": applied_at,
                    "joined_at": joined_at,
                    "status": status,
                    "tier": row.text("tier", max_length=50),
                    "referred_by": referrers.get(referred_by),
                }
                if referred_by and referred_by not in referrers and referred_by != row.key:
                    row.keep_existing = ("referred_by",)
                    self.partner_refs_deferred = True
            self._upsert_by_key(file, Partner, batch)
        if self.partner_refs_deferred:
            self._link_referrers(file)

    def _link_referrers(self, file: str) -> None:
        """Second pass over partners.csv for referrers that appeared later in the file."""
        for batch in self._batches(file, count=False):
            rows = [
                r for r in batch if r.cells.get("referred_by") and (r.file, r.line) not in self.refused_lines
            ]
            referrers = self._resolve(Partner, self._keys_in(rows, "referred_by"))
            current = {
                key: (pk, referred_by_id)
                for key, pk, referred_by_id in Partner.objects.filter(
                    key__in=[r.cells["key"] for r in rows]
                ).values_list("key", "id", "referred_by_id")
            }
            changed = []
            for row in rows:
                row.key = row.cells["key"]
                referrer_id = self._reference(row, "referred_by", referrers, "partner", label="partner")
                if row.errors:
                    self._refuse(row, "partner")
                elif row.key in current and current[row.key][1] != referrer_id:
                    changed.append(Partner(id=current[row.key][0], referred_by_id=referrer_id))
            now = timezone.now()
            for partner in changed:
                partner.updated_at = now
            Partner.objects.bulk_update(changed, ["referred_by", "updated_at"])

    def _accounts(self, file: str) -> None:
        for batch in self._batches(file):
            for row in batch:
                row.key = row.text("key", required=True, max_length=100)
                domain = normalise_domain(row.cells.get("domain", ""))
                if len(domain) > 253:
                    row.error("domain", "is longer than 253 characters")
                row.values = {"name": row.text("name", required=True, max_length=200), "domain": domain}
            self._upsert_by_key(file, Account, batch)

    def _deals(self, file: str) -> None:
        for batch in self._batches(file):
            accounts = self._resolve(Account, self._keys_in(batch, "account"))
            partners = self._acting_partners(self._keys_in(batch, "sourcing_partner"))
            for row in batch:
                row.key = row.text("key", required=True, max_length=100)
                amount = row.parse("amount", parse_money, required=True)
                created_at = row.parse("created_at", self._datetime, required=True)
                closed_at = row.parse("closed_at", self._datetime)
                status = row.choice("status", DEAL_STATUSES)
                row.add_rule_errors(
                    deal_errors(
                        amount=amount, created_at=created_at, closed_at=closed_at, status=status or ""
                    )
                )
                row.values = {
                    "account": self._reference(
                        row, "account", accounts, "account", label="account", required=True
                    ),
                    "name": row.text("name", max_length=200),
                    "amount": amount,
                    "created_at": created_at,
                    "closed_at": closed_at,
                    "status": status,
                    "sourcing_partner": self._acting_partner(
                        row, "sourcing_partner", partners, required=False
                    ),
                }
            self._upsert_by_key(file, Deal, batch)

    def _registrations(self, file: str) -> None:
        for batch in self._batches(file):
            partners = self._acting_partners(self._keys_in(batch, "partner"))
            accounts = self._resolve(Account, self._keys_in(batch, "account"))
            deals: dict[str, tuple[int, int | None]] = {
                key: (pk, sourcing_partner_id)
                for key, pk, sourcing_partner_id in Deal.objects.filter(
                    key__in=self._keys_in(batch, "deal")
                ).values_list("key", "id", "sourcing_partner_id")
                if key is not None
            }
            linked = dict(
                DealRegistration.objects.filter(deal_id__in=[pk for pk, _ in deals.values()]).values_list(
                    "deal_id", "key"
                )
            )
            for row in batch:
                row.key = row.text("key", required=True, max_length=100)
                partner_id = self._acting_partner(row, "partner", partners, required=True)
                amount = row.parse("amount", parse_money, required=True)
                submitted_at = row.parse("submitted_at", self._datetime, required=True)
                decided_at = row.parse("decided_at", self._datetime)
                status = row.choice("status", REGISTRATION_STATUSES)
                row.add_rule_errors(
                    registration_errors(
                        amount=amount, submitted_at=submitted_at, decided_at=decided_at, status=status
                    )
                )
                deal = self._reference(row, "deal", deals, "deal", label="deal")
                deal_id = None
                if deal is not None:
                    deal_id, sourcing_partner_id = deal
                    if status and status != DealRegistration.Status.APPROVED:
                        row.error("deal", DEAL_ONLY_WHEN_APPROVED.format(status=status))
                    if (
                        sourcing_partner_id is not None
                        and partner_id is not None
                        and sourcing_partner_id != partner_id
                    ):
                        row.error("deal", f"deal '{row.cells['deal']}' is sourced by another partner")
                    owner = linked.get(deal_id)
                    if owner is not None and owner != row.key:
                        row.error(
                            "deal", f"deal '{row.cells['deal']}' already belongs to registration '{owner}'"
                        )
                    elif not row.errors:
                        linked[deal_id] = row.key
                row.values = {
                    "partner": partner_id,
                    "account": self._reference(
                        row, "account", accounts, "account", label="account", required=True
                    ),
                    "amount": amount,
                    "submitted_at": submitted_at,
                    "status": status,
                    "decided_at": decided_at,
                    "deal": deal_id,
                    "protection_expires_at": submitted_at + self.protection if submitted_at else None,
                }
            self._upsert_by_key(file, DealRegistration, batch)

    def _touches(self, file: str) -> None:
        summary = self.result.files[file]
        for batch in self._batches(file):
            deals = self._resolve(Deal, self._keys_in(batch, "deal"))
            partners = self._acting_partners(self._keys_in(batch, "partner"))
            for row in batch:
                row.values = {
                    "deal_id": self._reference(row, "deal", deals, "deal", label="deal", required=True),
                    "partner_id": self._acting_partner(row, "partner", partners, required=True),
                    "kind": row.choice("kind", TOUCH_KINDS),
                    "touched_at": row.parse("touched_at", self._datetime, required=True),
                }
            valid = self._split_valid(batch, None)
            known = set(
                Touch.objects.filter(deal_id__in={r.values["deal_id"] for r in valid}).values_list(
                    "deal_id", "partner_id", "kind", "touched_at"
                )
            )
            self._insert_new_whole_rows(Touch, valid, known, summary)

    def _insert_new_whole_rows(self, model: type[models.Model], valid: list, known: set, summary) -> None:
        """Insert the rows not already stored, for files whose identity is the whole row (touches, costs).

        `known` holds the identities (row values in column order) already in the database; a row
        repeated within the file is inserted once.
        """
        pairs = []
        for row in valid:
            identity = tuple(row.values.values())
            if identity in known:
                summary.unchanged += 1
                continue
            known.add(identity)
            summary.created += 1
            pairs.append((row, model(**row.values)))
        self._bulk_write(model, pairs)

    def _costs(self, file: str) -> None:
        summary = self.result.files[file]
        for batch in self._batches(file):
            partners = self._resolve(Partner, self._keys_in(batch, "partner"))
            sources = self._resolve(JoinSource, self._keys_in(batch, "join_source"))
            for row in batch:
                amount = row.parse("amount", parse_money, required=True)
                row.add_rule_errors({"amount": amount_errors(amount)} if amount_errors(amount) else {})
                row.values = {
                    "date": row.parse("date", self._date, required=True),
                    "amount": amount,
                    "category": row.choice("category", COST_CATEGORIES),
                    "partner_id": self._reference(row, "partner", partners, "partner", label="partner"),
                    "join_source_id": self._reference(
                        row, "join_source", sources, "joinsource", label="join source"
                    ),
                    "note": row.text("note", max_length=500),
                }
            valid = self._split_valid(batch, None)
            known = set(
                CostEntry.objects.filter(date__in={r.values["date"] for r in valid}).values_list(
                    "date", "amount", "category", "partner_id", "join_source_id", "note"
                )
            )
            self._insert_new_whole_rows(CostEntry, valid, known, summary)

    def _targets(self, file: str) -> None:
        summary = self.result.files[file]
        for batch in self._batches(file):
            partners = self._resolve(Partner, self._keys_in(batch, "partner"))
            sources = self._resolve(JoinSource, self._keys_in(batch, "join_source"))
            for row in batch:
                metric = row.choice("metric", TARGETABLE_METRICS)
                period = row.parse("period", parse_period, required=True)
                partner_id = self._reference(row, "partner", partners, "partner", label="partner")
                join_source_id = self._reference(
                    row, "join_source", sources, "joinsource", label="join source"
                )
                partner_key, source_key = row.cells.get("partner", ""), row.cells.get("join_source", "")
                if partner_key and source_key:
                    row.error("join_source", "a target names a partner or a join source, not both")
                elif metric and partner_key and not METRICS_BY_NAME[metric].partner:
                    row.error("partner", f"{metric} has no per-partner value")
                elif metric and source_key and not METRICS_BY_NAME[metric].join_source:
                    row.error("join_source", f"{metric} has no per-join-source value")
                # A target is identified by its metric, period and scope; its value is updated.
                row.key = f"{metric}|{row.cells.get('period', '')}|{partner_key}|{source_key}"
                row.values = {
                    "metric": metric,
                    "period": row.cells.get("period", ""),
                    "grain": period[0] if period else None,
                    "period_start": period[1] if period else None,
                    "value": row.parse("value", parse_target_value, required=True),
                    "partner_id": partner_id,
                    "join_source_id": join_source_id,
                }
            self.seen.check_and_add(
                "target",
                batch,
                column="period",
                message="a target for this metric, period and scope appears twice",
            )
            valid = self._split_valid(batch, None)
            known = {
                (metric, period, partner_id, source_id): (pk, value)
                for pk, metric, period, partner_id, source_id, value in Target.objects.filter(
                    metric__in={r.values["metric"] for r in valid},
                    period__in={r.values["period"] for r in valid},
                ).values_list("id", "metric", "period", "partner_id", "join_source_id", "value")
            }
            created, changed = [], []
            now = timezone.now()
            for row in valid:
                v = row.values
                identity = (v["metric"], v["period"], v["partner_id"], v["join_source_id"])
                if identity not in known:
                    summary.created += 1
                    created.append((row, Target(**v)))
                elif known[identity][1] != v["value"]:
                    summary.updated += 1
                    changed.append(Target(id=known[identity][0], value=v["value"], updated_at=now))
                else:
                    summary.unchanged += 1
            self._bulk_write(Target, created)
            Target.objects.bulk_update(changed, ["value", "updated_at"])
