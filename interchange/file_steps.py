"""The steps every INTERCHANGE file handler takes: stage the file (interchange.staging, or
interchange.screen for the large files on PostgreSQL), check it set-based (duplicate keys, unknown
references, partners that may not act), and write its valid rows (an upsert by key, or an insert of
the new rows for files whose identity is the whole row), telling the change feed.
"""

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from django.db import connection, models

from events.changes import record_keyed_changes
from interchange.screen import Screen, load_screened
from interchange.staging import STAGE, bulk_write, column_type, constant_columns, now, q
from partners.models import Partner
from partners.rules import acting_partner_errors

if TYPE_CHECKING:
    from datetime import date, datetime, timedelta

    from interchange.importer import ImportResult, _Row
    from interchange.parsing import Bounds
    from interchange.staging import Stage

TEXT = "text"
# The keys an upsert creates or changes, with which (see _mark_for_the_feed).
FEED_MARKS = "imp_feed_marks"


def field_type(model: type[models.Model], name: str) -> str:
    field = model._meta.get_field(name)
    assert isinstance(field, models.Field)  # the import stages fields, never reverse relations
    return column_type(field)


class FileSteps:
    """The steps every file handler takes (interchange.import_files.FileHandlers). Mixed into the
    importer (interchange.importer._ProgramImport), which supplies `rows`, `stage`, `error`, `refuse`,
    `refuse_staged`, `unknown`, `guarded`, the summaries and the date parsers."""

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

    def _upsert(
        self,
        file: str,
        model: type[models.Model],
        values: dict[str, str],
        joins: str = "",
        *,
        derived: dict[str, str] | None = None,
    ) -> None:
        """Create the staged valid rows whose key is new, update those whose values differ, leave
        identical rows (and their updated_at) alone. `values`: column -> SQL expression over the
        staged row `s` and `joins`. `derived`: columns computed from the row as written and not
        compared (column -> SQL expression over `x`: the row's `values` by column, and `x.id`, the
        stored row's id or NULL for a new row).

        Two statements where one `INSERT ... ON CONFLICT` served: an UPDATE of the stored rows that
        change and a plain INSERT of the new keys (no speculative insertion into the key index for
        each row). When no staged key is stored (a first import), every valid row is new: nothing
        is marked or compared, and the new keys are not looked up."""
        table = q(model._meta.db_table)
        summary = self.result.files[file]
        valid = self.stage.count(f"SELECT COUNT(*) FROM {STAGE} WHERE ok")
        any_stored = f"SELECT 1 FROM {STAGE} s JOIN {table} w ON w.key = s.key WHERE s.ok LIMIT 1"
        stored = self.stage.count(f"SELECT COUNT(*) FROM ({any_stored}) f")
        changed, new_keys = 0, valid
        if stored:
            self._mark_for_the_feed(table, values, joins)
            changed = self.stage.count(f"SELECT COUNT(*) FROM {FEED_MARKS} WHERE action = 'updated'")
            new_keys = self.stage.count(f"SELECT COUNT(*) FROM {FEED_MARKS} WHERE action = 'created'")
        # A deal's segment written with it (interchange.segments): its row trigger is off for a bulk write.
        with bulk_write(model, valid, sets_segments="segment" in (derived or {})) as write:
            updated = self._update_changed(file, model, values, joins, derived or {}) if changed else 0
            # The new keys are the lines the marks found no stored row for (no second look-up).
            new = f"AND s.line IN (SELECT line FROM {FEED_MARKS} WHERE action = 'created')" if stored else ""
            created = self._insert_new_keys(file, model, values, joins, derived or {}, new) if new_keys else 0
            write.wrote(updated + created)
        # The change feed: the marked rows, or every valid row of a first import (all created).
        record_keyed_changes(
            model, FEED_MARKS if stored else f"(SELECT s.key, 'created' AS action FROM {STAGE} s WHERE s.ok)"
        )
        if stored:
            self.stage.execute(f"DROP TABLE {FEED_MARKS}")
        summary.created += created
        summary.updated += changed
        summary.unchanged += valid - created - changed

    def _update_changed(
        self,
        file: str,
        model: type[models.Model],
        values: dict[str, str],
        joins: str,
        derived: dict[str, str],
    ) -> int:
        """UPDATE the stored rows FEED_MARKS marks as changed with their staged values (and updated_at)."""
        table = q(model._meta.db_table)
        constants, params = constant_columns(model, ["key", *values, *derived], now=now())
        stamp = ["updated_at"] if "updated_at" in constants else []
        sets = ", ".join(
            [
                *(f"{q(c)} = x.{q(c)}" for c in values),
                *(f"{q(c)} = {expression}" for c, expression in derived.items()),
                *(f"{q(c)} = %s" for c in stamp),
            ]
        )
        row = ", ".join(f"{expression} AS {q(c)}" for c, expression in values.items())
        update = (
            f"UPDATE {table} SET {sets} FROM (SELECT m.id AS id, {row} FROM {FEED_MARKS} m "
            f"JOIN {STAGE} s ON s.line = m.line {joins} WHERE m.action = 'updated') x "
            f"WHERE {table}.id = x.id"
        )
        self.stage.execute(f"ANALYZE {FEED_MARKS}")
        stamps = [params[constants.index(c)] for c in stamp]
        return self.guarded(file, lambda: self.stage.execute(update, stamps))

    def _insert_new_keys(
        self,
        file: str,
        model: type[models.Model],
        values: dict[str, str],
        joins: str,
        derived: dict[str, str],
        new: str,
    ) -> int:
        """INSERT the valid staged rows (those `new`, a condition on `s`, selects) in line order."""
        table = q(model._meta.db_table)
        constants, params = constant_columns(model, ["key", *values, *derived], now=now())
        columns = ["key", *values, *derived, *constants]
        selected = ["x.key", *(f"x.{q(c)}" for c in values), *derived.values(), *["%s"] * len(params)]
        row = ", ".join(f"{expression} AS {q(c)}" for c, expression in values.items())
        no_id = f"CAST(NULL AS {model._meta.pk.rel_db_type(connection)})"
        insert = (
            f"INSERT INTO {table} ({', '.join(q(c) for c in columns)}) SELECT {', '.join(selected)} "
            f"FROM (SELECT s.line, s.key, {no_id} AS id, {row} FROM {STAGE} s {joins} "
            f"WHERE s.ok {new}) x ORDER BY x.line"
        )
        return self.guarded(file, lambda: self.stage.execute(insert, params))

    def _mark_for_the_feed(self, table: str, values: dict[str, str], joins: str) -> None:
        """FEED_MARKS: each staged row the upsert will create or change (its line, key, stored id),
        and which; the upsert writes those, and the change feed is told of exactly those
        (events.changes), as the services' signals would."""
        differs = " OR ".join(f"w.{q(c)} IS DISTINCT FROM {expression}" for c, expression in values.items())
        self.stage.execute(f"DROP TABLE IF EXISTS {FEED_MARKS}")
        self.stage.execute(
            f"CREATE TEMPORARY TABLE {FEED_MARKS} AS SELECT s.line AS line, s.key AS key, w.id AS id, "
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
        segments_of: str | None = None,
    ) -> None:
        """For files whose identity is the whole row: insert what `select` gives (the new rows). When a
        bulk write drops the `unique` constraint (staging.bulk_write), `deduplicated` is written
        instead: the same rows, without the constraint's help. `segments_of`: the deals whose segments
        the rows may change (staging.bulk_write), for a write of touches."""
        summary = self.result.files[file]
        valid = self.stage.count(f"SELECT COUNT(*) FROM {STAGE} WHERE ok")
        with bulk_write(model, valid, unique=unique, segments_of=segments_of) as write:
            sql = deduplicated if write.unique_dropped else select
            created = write.wrote(self.guarded(file, lambda: self.stage.execute(sql, params)))
        summary.created += created
        summary.unchanged += valid - created
