"""Period helpers for the pages, on top of `kpis.periods` (the engine's own period labels)."""

from kpis.metrics import Grain
from kpis.periods import Period, parse_period, period_of

__all__ = ["Period", "parse", "period_of", "months_ending"]


def parse(label: str | None) -> Period | None:
    """The period a label names (`2026-03`, `2026-Q1`, `2026`), or None for anything else."""
    try:
        return parse_period(label or "")
    except ValueError:
        return None


def months_ending(period: Period, count: int) -> list[Period]:
    """The `count` months that end with the period's last month, oldest first."""
    last = Period(Grain.MONTH, period.last_month_index)
    return [last.shifted(-offset) for offset in range(count - 1, -1, -1)]
