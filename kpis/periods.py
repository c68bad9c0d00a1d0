"""Period labels (`2026-03`, `2026-Q1`, `2026`) and the month index the engine buckets by.

A month index is `year * 12 + month - 1`; a quarter index is `month_index // 3` and a year index
`month_index // 12`, so every grain is an integer the database can compute from a local date.
"""

import calendar
import re
from dataclasses import dataclass
from datetime import date, timedelta

from kpis.metrics import Grain
from program.validation import latest_month_index, year_errors

_MONTH = re.compile(r"^(\d{4})-(\d{2})$", re.ASCII)
_QUARTER = re.compile(r"^(\d{4})-Q([1-4])$", re.ASCII)
_YEAR = re.compile(r"^(\d{4})$", re.ASCII)


@dataclass(frozen=True)
class Period:
    grain: Grain
    index: int  # month, quarter or year index

    @property
    def first_month_index(self) -> int:
        return {Grain.MONTH: self.index, Grain.QUARTER: self.index * 3, Grain.YEAR: self.index * 12}[
            self.grain
        ]

    @property
    def last_month_index(self) -> int:
        size = {Grain.MONTH: 1, Grain.QUARTER: 3, Grain.YEAR: 12}[self.grain]
        return self.first_month_index + size - 1

    @property
    def start(self) -> date:
        return month_start(self.first_month_index)

    @property
    def end(self) -> date:
        first = month_start(self.last_month_index)
        return first.replace(day=calendar.monthrange(first.year, first.month)[1])

    @property
    def label(self) -> str:
        if self.grain == Grain.MONTH:
            return f"{self.index // 12:04d}-{self.index % 12 + 1:02d}"
        if self.grain == Grain.QUARTER:
            return f"{self.index // 4:04d}-Q{self.index % 4 + 1}"
        return f"{self.index:04d}"

    def shifted(self, steps: int) -> "Period":
        return Period(self.grain, self.index + steps)

    @property
    def previous(self) -> "Period":
        return self.shifted(-1)

    @property
    def year_earlier(self) -> "Period":
        per_year = {Grain.MONTH: 12, Grain.QUARTER: 4, Grain.YEAR: 1}[self.grain]
        return self.shifted(-per_year)


def month_index(day: date) -> int:
    return day.year * 12 + day.month - 1


def month_start(index: int) -> date:
    return date(index // 12, index % 12 + 1, 1)


def period_of(day: date, grain: Grain | str) -> Period:
    grain = Grain(grain)
    mi = month_index(day)
    return Period(grain, {Grain.MONTH: mi, Grain.QUARTER: mi // 3, Grain.YEAR: mi // 12}[grain])


def parse_period(label: str) -> Period:
    """`2026-03` / `2026-Q1` / `2026` -> Period; ValueError on anything else, or a year outside the
    plausible range (program.validation)."""
    label = label.strip()
    if m := _MONTH.match(label):
        month = int(m.group(2))
        if not 1 <= month <= 12:
            raise ValueError(f"invalid month in period {label!r}")
        period = Period(Grain.MONTH, int(m.group(1)) * 12 + month - 1)
    elif m := _QUARTER.match(label):
        period = Period(Grain.QUARTER, int(m.group(1)) * 4 + int(m.group(2)) - 1)
    elif m := _YEAR.match(label):
        period = Period(Grain.YEAR, int(m.group(1)))
    else:
        raise ValueError(f"period must look like 2026-03, 2026-Q1 or 2026, not {label!r}")
    if errors := year_errors(int(m.group(1))):
        raise ValueError(f"period {label!r}: {errors[0]}")
    if period.last_month_index > latest_month_index():
        raise ValueError(
            f"period {label!r} ends after {month_start(latest_month_index()):%Y-%m}, the last accepted month"
        )
    return period


def active_window_start(period_end: date, days: int) -> date:
    """First day of the `days` calendar days that end on `period_end` (that day included)."""
    return period_end - timedelta(days=days - 1)


def period_or_none(label: str | None) -> Period | None:
    """The period a label names (`2026-03`, `2026-Q1`, `2026`), or None for anything else."""
    try:
        return parse_period(label or "")
    except ValueError:
        return None


def months_ending(period: Period, count: int) -> list[Period]:
    """The `count` months that end with the period's last month, oldest first."""
    last = Period(Grain.MONTH, period.last_month_index)
    return [last.shifted(-offset) for offset in range(count - 1, -1, -1)]
