"""The SQL spelled differently on PostgreSQL and SQLite, and exact integer division (`rdiv`)."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from datetime import date
from zoneinfo import ZoneInfo

from django.db import DatabaseError, connection

SCALE = 10_000  # v4 = value * SCALE


_TZ_NAME = re.compile(r"^[A-Za-z0-9_+\-/]+$")


@contextlib.contextmanager
def session_setting(name: str, value: str) -> Iterator[None]:
    """PostgreSQL: set a session setting for the block, then put the previous value back."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting(%s)", [name])
        previous = cursor.fetchone()[0]
    if previous == value:  # already so (a program in UTC, Django's session zone): nothing to undo
        yield
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT set_config(%s, %s, false)", [name, value])
    try:
        yield
    finally:
        # A rolled-back transaction has already undone the change; the connection may be unusable.
        with contextlib.suppress(DatabaseError), connection.cursor() as cursor:
            cursor.execute("SELECT set_config(%s, %s, false)", [name, previous])


class Dialect:
    """The SQL spelled differently on PostgreSQL and SQLite."""

    def __init__(self, tz_name: str) -> None:
        ZoneInfo(tz_name)  # raises on an unknown zone
        if not _TZ_NAME.match(tz_name):
            raise ValueError(f"invalid time zone name {tz_name!r}")
        self.tz = tz_name
        self.pg = connection.vendor == "postgresql"

    def local_date(self, col: str) -> str:
        """The calendar date of a stored (UTC) datetime in the program time zone."""
        if self.pg:
            # The computation sets the session time zone to the program's (`session_time_zone`):
            # a plain cast then converts with the cached zone, ~2x faster than AT TIME ZONE per row.
            return f"CAST({col} AS DATE)"
        # Django's own SQLite function behind TruncDate(tzinfo=...): exact zoneinfo conversion.
        return f"django_datetime_cast_date({col}, '{self.tz}', 'UTC')"

    def month_index(self, day: str) -> str:
        if self.pg:
            # date_part works in doubles (exact for these integers); EXTRACT returns numeric, 2x slower.
            return f"CAST(date_part('year', {day}) * 12 + date_part('month', {day}) - 1 AS INTEGER)"
        return f"(CAST(substr({day}, 1, 4) AS INTEGER) * 12 + CAST(substr({day}, 6, 2) AS INTEGER) - 1)"

    @contextlib.contextmanager
    def session_time_zone(self) -> Iterator[None]:
        """PostgreSQL: the session converts datetimes to dates in the program time zone meanwhile."""
        if not self.pg:
            yield
            return
        with session_setting("TimeZone", self.tz):
            yield

    def days_between(self, later: str, earlier: str) -> str:
        if self.pg:
            return f"({later} - {earlier})"
        return f"CAST(julianday({later}) - julianday({earlier}) AS INTEGER)"

    def date_literal(self, day: date) -> str:
        return f"DATE '{day.isoformat()}'" if self.pg else f"'{day.isoformat()}'"

    def epoch_seconds_between(self, later: str, earlier: str) -> str:
        """Exact elapsed seconds (fractional) between two stored datetimes, as a double."""
        if self.pg:
            return f"CAST(EXTRACT(EPOCH FROM ({later} - {earlier})) AS DOUBLE PRECISION)"

        def seconds(col: str) -> str:
            # Django stores `YYYY-MM-DD HH:MM:SS[.ffffff]`; the microseconds start at character 20.
            return f"(CAST(strftime('%s', {col}) AS INTEGER) + CAST(COALESCE(substr({col}, 20), '') AS REAL))"

        return f"CAST({seconds(later)} - {seconds(earlier)} AS REAL)"

    def floor_int(self, expr: str) -> str:
        return f"CAST(FLOOR({expr}) AS BIGINT)"

    def round_double(self, expr: str, places: int) -> str:
        if self.pg:
            return f"ROUND(CAST({expr} AS NUMERIC), {places})"
        return f"ROUND({expr}, {places})"

    def text_key_order(self, col: str) -> str:
        """Byte-order comparison of keys on both databases (PostgreSQL collations differ)."""
        return f'{col} COLLATE "C"' if self.pg else col

    def int_to_text(self, col: str) -> str:
        return f"CAST({col} AS VARCHAR(20))" if self.pg else f"CAST({col} AS TEXT)"

    def v4_to_value(self, col: str) -> str:
        if self.pg:
            return f"CAST({col} AS NUMERIC(24, 4)) / {SCALE}"
        return f"{col} / {SCALE}.0"

    def null_safe_equal(self, a: str, b: str) -> str:
        return f"{a} IS NOT DISTINCT FROM {b}" if self.pg else f"{a} IS {b}"

    def median_times_ten(self, value: str, rows: str, keys: str) -> str:
        """SELECT keys, 10 x the median of the integer `value` over `rows` per keys (the mean of the
        two middle values for an even count: 10 x that is a whole number, so both spellings agree
        exactly)."""
        if self.pg:
            # An ordered-set aggregate sorts each group once: 2.5x faster than the two windows
            # (840k cycle rows at 1M deals: 0.82 s against 2.09 s).
            return (
                f"SELECT {keys}, CAST(percentile_cont(0.5) WITHIN GROUP (ORDER BY {value}) * 10 AS BIGINT) "
                f"FROM ({rows}) q GROUP BY {keys}"
            )
        return f"""SELECT {keys}, CAST(SUM({value}) AS BIGINT) * 10 / COUNT(*)
            FROM (SELECT {keys}, {value},
                         ROW_NUMBER() OVER (PARTITION BY {keys} ORDER BY {value}) AS rn,
                         COUNT(*) OVER (PARTITION BY {keys}) AS cnt
                  FROM ({rows}) q) w
            WHERE rn = (cnt + 1) / 2 OR rn = (cnt + 2) / 2
            GROUP BY {keys}"""

    def group_concat_ids(self, col: str) -> str:
        if self.pg:
            return f"string_agg(CAST({col} AS TEXT), ',' ORDER BY {col})"
        return f"group_concat({col}, ',')"


def rdiv(num: str, den: str, scale: int = 1) -> str:
    """round(num * scale / den) half away from zero, in integer arithmetic; NULL when den is 0."""
    return (
        f"(CASE WHEN ({den}) IS NULL OR ({den}) = 0 OR ({num}) IS NULL THEN NULL "
        f"ELSE (CASE WHEN (({num}) < 0) <> (({den}) < 0) THEN -1 ELSE 1 END) * "
        f"((2 * {scale} * ABS({num}) + ABS({den})) / (2 * ABS({den}))) END)"
    )
