"""The importer's database side: one staging table per file, loaded in bulk, checked and written set-based.

A file's rows are streamed into the temporary table `imp_stage` (PostgreSQL: `COPY ... FROM STDIN`
through psycopg2's `copy_expert`, fed by the parser as it reads, so parsing and loading overlap;
SQLite: `executemany` in batches of BATCH_ROWS). Every row is staged, the refused ones too (with
`ok` false), so references and duplicates are checked for every row and every bad row is listed.
Then each check is one query over the whole file (unknown keys, duplicate keys, partners that may
not act), the rows it refuses are flagged, and one `INSERT ... SELECT ... ON CONFLICT` writes the
valid rows: new keys created, changed rows updated, identical rows left alone.

Memory stays flat: the parser holds one row at a time; the checks return only the bad rows.
"""

import contextlib
import csv
import io
from collections.abc import Iterable, Iterator, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from django.db import DatabaseError, connection, models, transaction
from django.utils import timezone

from deals.models import Deal
from interchange import segments
from kpis.engine.incremental.delta_facts import builds_in_full
from kpis.models import FactChange

STAGE = "imp_stage"
BAD = "imp_bad"
BATCH_ROWS = 2000
# PostgreSQL: a file with at least this many rows is loaded with its table's foreign keys dropped and
# re-added before the next file (one validating scan per key instead of a deferred check per row).
BULK_ROWS = 50_000
# Deals whose segment a write of touches changes (interchange.segments): from this share of the deals
# (1/SEGMENT_SHARE) up, their plain indexes are dropped and built again around the update.
SEGMENT_SHARE = 10
# The advisory lock every import's transaction holds on PostgreSQL: (namespace "PRM\x01", import).
IMPORT_LOCK = (0x50524D01, 1)
# The session settings of the import's transaction on PostgreSQL (as a KPI run's).
PG_SETTINGS = {"work_mem": "256MB", "maintenance_work_mem": "256MB"}


def pg() -> bool:
    return connection.vendor == "postgresql"


def q(name: str) -> str:
    return connection.ops.quote_name(name)


def column_type(field: models.Field | None) -> str:
    """A staging column's type: the model field's own (same storage, so comparisons are exact), text
    for keys and for text fields (a refused row's over-long text must still stage)."""
    if field is None or isinstance(field, models.CharField | models.TextField):
        return "text"
    db_type = field.db_type(connection)
    assert db_type is not None  # the importer stages concrete columns only
    return db_type


class Stage:
    """The staging table of the file being imported: `line`, `ok`, `key`, then the file's columns."""

    def __init__(self) -> None:
        self.columns: list[str] = []

    # --- session ----------------------------------------------------------------------------
    def begin(self) -> None:
        with connection.cursor() as cursor:
            if pg():
                # One import at a time (SQLite's write transactions already are): a second waits for
                # the first to commit and then finds its keys stored, where two writing the same new
                # keys at once would fail the second's INSERT on the unique key (the upsert has no
                # ON CONFLICT).
                cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", IMPORT_LOCK)
                for name, value in PG_SETTINGS.items():
                    cursor.execute("SELECT set_config(%s, %s, true)", [name, value])
                # Temporary tables live in temp_buffers; settable only before the session's first
                # temporary table, so it may fail on a reused session (then the default serves).
                with contextlib.suppress(DatabaseError), transaction.atomic():
                    cursor.execute("SET LOCAL temp_buffers = '512MB'")
            cursor.execute(f"DROP TABLE IF EXISTS {BAD}")
            cursor.execute(f"CREATE TEMPORARY TABLE {BAD} (line integer NOT NULL)")

    def end(self) -> None:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP TABLE IF EXISTS {STAGE}")
            cursor.execute(f"DROP TABLE IF EXISTS {BAD}")

    # --- loading ----------------------------------------------------------------------------
    def load(self, columns: Sequence[tuple[str, str]], rows: Iterable[tuple]) -> None:
        """(Re)create the staging table with `columns` (name, SQL type) after line, ok, key and load
        `rows` (tuples in that order) in bulk."""
        self.create(columns)
        self.append(columns, rows)

    def create(self, columns: Sequence[tuple[str, str]]) -> None:
        """(Re)create the staging table, empty."""
        self.columns = [name for name, _ in columns]
        definitions = ", ".join(f"{q(name)} {sql_type}" for name, sql_type in columns)
        with connection.cursor() as cursor:
            cursor.execute(f"DROP TABLE IF EXISTS {STAGE}")
            cursor.execute(f"DELETE FROM {BAD}")
            cursor.execute(
                f"CREATE TEMPORARY TABLE {STAGE} (line integer NOT NULL, ok boolean NOT NULL, "
                f"key text, {definitions})"
            )

    def append(
        self, columns: Sequence[tuple[str, str]], rows: Iterable[tuple], *, analyze: bool = True
    ) -> None:
        """Add `rows` to the staging table in bulk."""
        with connection.cursor() as cursor:
            names = ", ".join(["line", "ok", "key", *(q(c) for c in self.columns)])
            if pg():
                # csv.writer quotes every value but numbers; FORCE_NULL reads an empty typed cell
                # (None) as NULL, while an empty text cell stays ''.
                typed = ", ".join(["key", *(q(name) for name, sql_type in columns if sql_type != "text")])
                cursor.copy_expert(
                    f"COPY {STAGE} ({names}) FROM STDIN WITH (FORMAT csv, FORCE_NULL ({typed}))",
                    _CsvStream(rows),
                    size=1 << 18,
                )
                if analyze:
                    cursor.execute(f"ANALYZE {STAGE}")
            else:
                placeholders = ", ".join(["%s"] * (3 + len(self.columns)))
                sql = f"INSERT INTO {STAGE} ({names}) VALUES ({placeholders})"
                batch: list[tuple] = []
                for row in rows:
                    batch.append(tuple(_sqlite_value(v) for v in row))
                    if len(batch) >= BATCH_ROWS:
                        cursor.executemany(sql, batch)
                        batch = []
                if batch:
                    cursor.executemany(sql, batch)

    def load_raw(self, table: str, columns: Sequence[str], rows: Iterable[tuple]) -> None:
        """PostgreSQL: (re)create `table` (line, py, then `columns` as text) and COPY `rows` into it."""
        with connection.cursor() as cursor:
            cursor.execute(f"DROP TABLE IF EXISTS {table}")
            definitions = ", ".join(f"{q(c)} text NOT NULL" for c in columns)
            cursor.execute(
                f"CREATE TEMPORARY TABLE {table} (line integer NOT NULL, py boolean NOT NULL, {definitions})"
            )
            names = ", ".join(["line", "py", *(q(c) for c in columns)])
            cursor.copy_expert(
                f"COPY {table} ({names}) FROM STDIN WITH (FORMAT csv)", _CsvStream(rows), size=1 << 18
            )

    # --- checks -----------------------------------------------------------------------------
    def fetch(self, sql: str, params: Sequence[Any] = ()) -> Iterator[tuple]:
        """The rows of a check query, read in chunks (a file with a million bad rows lists them all)."""
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            while chunk := cursor.fetchmany(2000):
                yield from chunk

    def refuse_lines(self, lines: Iterable[int]) -> None:
        """Flag the staged rows of these lines as refused (they are not written)."""
        with connection.cursor() as cursor:
            batch: list[tuple[int]] = []
            for line in lines:
                batch.append((line,))
                if len(batch) >= BATCH_ROWS:
                    cursor.executemany(f"INSERT INTO {BAD} (line) VALUES (%s)", batch)
                    batch = []
            if batch:
                cursor.executemany(f"INSERT INTO {BAD} (line) VALUES (%s)", batch)
            cursor.execute(f"SELECT EXISTS (SELECT 1 FROM {BAD})")
            if cursor.fetchone()[0]:
                cursor.execute(f"UPDATE {STAGE} SET ok = false WHERE ok AND line IN (SELECT line FROM {BAD})")
                cursor.execute(f"DELETE FROM {BAD}")

    def count(self, sql: str, params: Sequence[Any] = ()) -> int:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchone()[0]

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run a write; returns the rows it wrote."""
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.rowcount


def constant_columns(
    model: type[models.Model], given: Iterable[str], *, now: datetime
) -> tuple[list[str], list[Any]]:
    """The columns an import does not supply and the values a new row gets for them (the model's
    defaults, `now` for auto_now / auto_now_add, NULL for nullable fields), adapted for the database."""
    names, values = [], []
    for field in model._meta.concrete_fields:
        if field.primary_key or field.attname in given:
            continue
        if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
            value = now
        elif field.has_default():
            value = field.get_default()
        elif field.null:
            value = None
        else:  # pragma: no cover - every imported table's other columns have a default
            raise ValueError(f"{model.__name__}.{field.name} needs a value")
        assert field.column is not None  # every concrete field has a column
        names.append(field.column)
        values.append(field.get_db_prep_save(value, connection))
    return names, values


class BulkWrite:
    """What `bulk_write` needs to know of the write it wraps: how many rows it wrote (`wrote`)."""

    def __init__(self) -> None:
        self.written = 0
        self.unique_dropped = False  # the write must keep the dropped unique constraint itself

    def wrote(self, rows: int) -> int:
        self.written = rows
        return rows


@contextlib.contextmanager
def bulk_write(
    model: type[models.Model],
    rows: int,
    *,
    unique: str | None = None,
    sets_segments: bool = False,
    segments_of: str | None = None,
) -> Iterator[BulkWrite]:
    """PostgreSQL, large files: write the table as a bulk load does, then put it back as it was.

    - Its foreign keys are dropped and added back after (one set-based validation per key instead
      of a deferred trigger per row; the import has already checked every reference).
    - When the file adds at least a quarter of the rows the table holds, its plain indexes (not
      unique, so no upsert needs them) are dropped and built again after: a build sorts once, where
      each inserted row cost a random probe into every index (a million touches into seven indexes:
      most of PostgreSQL's time). So is the constraint `unique` names, if any (`unique_dropped`
      tells the write, which must then keep it itself; adding it back checks that it did).
    - When the write is so large that the next KPI run builds its facts in full anyway
      (kpis.engine.incremental.delta_facts.builds_in_full), the fact change log's triggers are off
      during it and the import logs one "truncate" row instead of one row per written row; a write
      that changed nothing logs nothing (the next run may still patch its facts).
    - The deal segment triggers of the table are off during it (interchange.segments): a deal write
      that `sets_segments` computes each row's segment itself; after a touch write, the deals that
      `segments_of` selects (a condition on the deal `d`) get theirs set once the indexes are back.
    Holds the table's lock until the import commits."""
    write = BulkWrite()
    if not pg() or rows < BULK_ROWS:
        yield write
        return
    table = model._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conrelid = %s::regclass AND contype = 'f' ORDER BY conname",
            [table],
        )
        dropped = cursor.fetchall()
        for name, _definition in dropped:
            cursor.execute(f"ALTER TABLE {q(table)} DROP CONSTRAINT {q(name)}")
        indexes = _drop_plain_indexes(cursor, table, rows)
        constraints = []
        if indexes and unique:
            cursor.execute(
                "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
                "WHERE conrelid = %s::regclass AND conname = %s",
                [table, unique],
            )
            constraints = cursor.fetchall()
            for name, _definition in constraints:
                cursor.execute(f"ALTER TABLE {q(table)} DROP CONSTRAINT {q(name)}")
            write.unique_dropped = bool(constraints)
        triggers = _fact_triggers(cursor, table) if _builds_facts_in_full(cursor, rows) else []
        for name in triggers:
            cursor.execute(f"ALTER TABLE {q(table)} DISABLE TRIGGER {q(name)}")
        keeps_segments = sets_segments or segments_of is not None
        segment_triggers = segments.triggers_off(cursor, table) if keeps_segments else []
    yield write
    with connection.cursor() as cursor:
        for name in triggers:
            cursor.execute(f"ALTER TABLE {q(table)} ENABLE TRIGGER {q(name)}")
        if triggers and write.written:
            cursor.execute(
                f"INSERT INTO {q(FactChange._meta.db_table)} (source, row_id, xid) "
                "VALUES (%s, 0, CAST(CAST(pg_current_xact_id() AS text) AS bigint))",
                [FactChange.Source.TRUNCATE],
            )
        for _name, definition in indexes:
            cursor.execute(definition)
        if segments_of is not None and write.written:
            _set_segments(cursor, segments_of)
        segments.triggers_on(cursor, table, segment_triggers)
        for name, definition in [*constraints, *dropped]:
            cursor.execute(f"ALTER TABLE {q(table)} ADD CONSTRAINT {q(name)} {definition}")
        cursor.execute("SET CONSTRAINTS ALL DEFERRED")


def _set_segments(cursor: Any, deals: str) -> None:
    """The segments of the deals `deals` selects (a condition on the deal `d`) set by the rule where
    it changes them (interchange.segments). Each deal updated writes a new row version into every
    index of the deals (fourteen, most larger than the buffer cache: 280,000 deals took 68 s), so
    when they are a tenth of the deals or more the plain indexes are dropped and built again."""
    changed = segments.changes(cursor, deals)
    if not changed:
        return
    indexes = _drop_plain_indexes(cursor, Deal._meta.db_table, changed, share=SEGMENT_SHARE)
    segments.apply(cursor)
    for _name, definition in indexes:
        cursor.execute(definition)


def _drop_plain_indexes(cursor: Any, table: str, rows: int, *, share: int = 4) -> list[tuple[str, str]]:
    """Drop the table's indexes that back no constraint and are not unique when `rows` rows are at
    least 1/`share` of the table (the planner's count; a quarter for new rows); returns (name,
    definition) to build them again."""
    if rows * share < _planned_rows(cursor, table):
        return []
    cursor.execute(
        "SELECT c.relname, pg_get_indexdef(i.indexrelid) FROM pg_index i "
        "JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = %s::regclass "
        "AND NOT i.indisunique AND NOT i.indisprimary ORDER BY c.relname",
        [table],
    )
    indexes = cursor.fetchall()
    for name, _definition in indexes:
        cursor.execute(f"DROP INDEX {q(name)}")
    return indexes


def _fact_triggers(cursor: Any, table: str) -> list[str]:
    """The enabled triggers of `table` that log inserts and updates to the fact change log: kpis'
    own, and the deal update's variant that leaves out segment-only updates (deals 0005)."""
    cursor.execute(
        "SELECT t.tgname FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid "
        "WHERE t.tgrelid = %s::regclass AND t.tgenabled <> 'D' "
        "AND p.proname IN ('kpis_log_fact_change', 'deals_log_deal_update') "
        "AND (t.tgtype & 4 <> 0 OR t.tgtype & 16 <> 0) ORDER BY t.tgname",
        [table],
    )
    return [name for (name,) in cursor.fetchall()]


def _builds_facts_in_full(cursor: Any, rows: int) -> bool:
    """Whether `rows` changed rows make the next KPI run build its facts in full (the planner's
    count of the deals: the share is a threshold, not an exact figure)."""
    return builds_in_full(rows, _planned_rows(cursor, Deal._meta.db_table))


def _planned_rows(cursor: Any, table: str) -> float:
    """The table's rows as the planner last counted them (0 for a table never analysed)."""
    cursor.execute("SELECT GREATEST(reltuples, 0) FROM pg_class WHERE oid = %s::regclass", [table])
    return cursor.fetchone()[0]


def now() -> datetime:
    return timezone.now()


# --- value encoding ----------------------------------------------------------------------------
def _sqlite_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return connection.ops.adapt_datetimefield_value(value)
    if isinstance(value, date):
        return connection.ops.adapt_datefield_value(value)
    if isinstance(value, Decimal):
        return str(value)
    return value


class _CsvStream(io.RawIOBase):
    """A readable file over rows, encoding them as COPY CSV only as fast as COPY reads them."""

    def __init__(self, rows: Iterable[tuple]) -> None:
        self.rows = iter(rows)
        self.buffer = b""
        self.text = io.StringIO()
        self.writer = csv.writer(self.text, quoting=csv.QUOTE_NONNUMERIC, lineterminator="\n")

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        self.text.seek(0)
        self.text.truncate()
        write, text = self.writer.writerow, self.text
        want = size - len(self.buffer)
        while size < 0 or text.tell() < want:
            row = next(self.rows, None)
            if row is None:
                break
            write(row)
        data = self.buffer + text.getvalue().encode("utf-8")
        if size < 0 or len(data) <= size:
            self.buffer = b""
            return data
        self.buffer = data[size:]
        return data[:size]
