"""The quarters MDF budgets are set for.

ProgramSettings has no fiscal-year start, so a fiscal quarter is a calendar quarter (Q1 = January to
March). `FISCAL_YEAR_START_MONTH` is the one place to change once the program settings carry one
(docs/mdf.md).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, timedelta

FISCAL_YEAR_START_MONTH = 1
_LABEL = re.compile(r"^(\d{4})-Q([1-4])$", re.ASCII)
NOT_A_QUARTER = "'{text}' is not a quarter (e.g. 2026-Q1)"


@dataclass(frozen=True)
class Quarter:
    year: int
    number: int

    @property
    def label(self) -> str:
        return f"{self.year}-Q{self.number}"

    @property
    def starts_on(self) -> date:
        month0 = FISCAL_YEAR_START_MONTH - 1 + 3 * (self.number - 1)
        return date(self.year + month0 // 12, month0 % 12 + 1, 1)

    @property
    def ends_on(self) -> date:
        return self.next().starts_on - timedelta(days=1)

    def next(self) -> Quarter:
        return Quarter(self.year + self.number // 4, self.number % 4 + 1)

    def __str__(self) -> str:
        return self.label


def quarter_of(day: date) -> Quarter:
    months = (day.year * 12 + day.month - 1) - (FISCAL_YEAR_START_MONTH - 1)
    return Quarter(months // 12, (months % 12) // 3 + 1)


def parse_quarter(text: str) -> Quarter:
    """`2026-Q1` -> Quarter; ValueError with the message users read otherwise."""
    match = _LABEL.match((text or "").strip())
    if not match or int(match.group(1)) < 1:
        raise ValueError(NOT_A_QUARTER.format(text=(text or "")[:20]))
    return Quarter(int(match.group(1)), int(match.group(2)))
