"""The catalogue of KPI names (INTERCHANGE.md) with how each value is formatted and where it exists.

KPIS.md defines each metric; this module is the single list that the engine, the export, the API
and the dashboards share.
"""

from dataclasses import dataclass
from enum import StrEnum

# A program setting that lives in program/; re-exported because the engine and the migration
# kpis/0001 (ProgramSettings' default, from before the model moved to program/) name it here.
from program.attribution import AttributionModel as AttributionModel


class Unit(StrEnum):
    MONEY = "money"  # 2 decimal places
    RATE = "rate"  # fraction, 4 decimal places
    DAYS = "days"  # 1 decimal place
    COUNT = "count"  # whole number
    FLAG = "flag"  # 0 or 1


class Scope(StrEnum):
    PROGRAM = "program"
    PARTNER = "partner"
    JOIN_SOURCE = "join_source"


class Grain(StrEnum):
    MONTH = "month"
    QUARTER = "quarter"
    YEAR = "year"


@dataclass(frozen=True)
class Metric:
    name: str
    unit: Unit
    partner: bool
    join_source: bool
    cohort: bool = False  # keyed by the cohort's join period, not the period the facts happen in
    multiple: bool = False  # a rate read as a multiple on pages (`12.50×`); exported like any rate

    @property
    def decimal_places(self) -> int:
        return {Unit.MONEY: 2, Unit.RATE: 4, Unit.DAYS: 1, Unit.COUNT: 0, Unit.FLAG: 0}[self.unit]

    def scopes(self) -> tuple[Scope, ...]:
        return tuple(
            s
            for s, on in (
                (Scope.PROGRAM, True),
                (Scope.PARTNER, self.partner),
                (Scope.JOIN_SOURCE, self.join_source),
            )
            if on
        )


_M, _R, _D, _C, _F = Unit.MONEY, Unit.RATE, Unit.DAYS, Unit.COUNT, Unit.FLAG

METRICS: tuple[Metric, ...] = (
    Metric("won_revenue", _M, False, False),
    Metric("sourced_revenue", _M, True, True),
    Metric("influenced_revenue", _M, True, True),
    Metric("attributed_revenue", _M, True, True),
    Metric("sourced_share", _R, False, False),
    Metric("avg_deal_size_sourced", _M, True, True),
    Metric("avg_deal_size_influenced", _M, False, False),
    Metric("avg_deal_size_direct", _M, False, False),
    Metric("revenue_per_active_partner", _M, False, False),
    Metric("applications", _C, False, True),
    Metric("partners_joined", _C, False, True, cohort=True),
    Metric("approval_rate_partners", _R, False, True),
    Metric("activation_rate", _R, False, True, cohort=True),
    Metric("activated_partners", _C, False, True, cohort=True),
    Metric("activation_provisional", _F, False, True, cohort=True),
    Metric("active_partners", _C, False, True),
    Metric("first_sales", _C, True, True, cohort=True),
    Metric("ttfs_median_days", _D, True, True, cohort=True),
    Metric("ttfs_mean_days", _D, True, True, cohort=True),
    Metric("leads_generated", _C, True, True),
    Metric("opportunities_sourced", _C, True, True),
    Metric("registration_approval_rate", _R, True, True),
    Metric("opportunities_influenced", _C, True, True),
    Metric("win_rate_sourced", _R, True, True),
    Metric("win_rate_influenced", _R, False, False),
    Metric("win_rate_direct", _R, False, False),
    Metric("sales_cycle_median_days_sourced", _D, True, True),
    Metric("sales_cycle_median_days_influenced", _D, False, False),
    Metric("sales_cycle_median_days_direct", _D, False, False),
    Metric("program_cost", _M, True, True),
    Metric("new_customers_sourced", _C, True, True),
    Metric("cac", _M, True, True),
    Metric("roi", _R, True, True),
    Metric("commission_paid", _M, True, True),
    Metric("commission_rate", _R, True, True),
    Metric("mdf_spent", _M, True, True),
    Metric("mdf_return", _R, True, True, multiple=True),
    Metric("target", _D, True, True),
    Metric("target_progress", _R, True, True),
)

METRICS_BY_NAME: dict[str, Metric] = {m.name: m for m in METRICS}
METRIC_NAMES: tuple[str, ...] = tuple(m.name for m in METRICS)
# Targets name any metric except the target rows themselves.
TARGETABLE_METRICS: tuple[str, ...] = tuple(n for n in METRIC_NAMES if n not in ("target", "target_progress"))

# How the pages name a metric; the rest read as their name in words (`leads_generated` -> "Leads generated").
LABELS = {
    "won_revenue": "Won revenue",
    "sourced_revenue": "Partner-sourced revenue",
    "influenced_revenue": "Partner-influenced revenue",
    "attributed_revenue": "Attributed revenue",
    "sourced_share": "Sourced share of revenue",
    "active_partners": "Active partners",
    "activation_rate": "Activation rate",
    "ttfs_median_days": "Median time to first sale",
    "first_sales": "First sales",
    "cac": "CAC (partner-sourced)",
    "roi": "Program ROI",
    "win_rate_sourced": "Win rate, sourced",
    "win_rate_influenced": "Win rate, influenced",
    "win_rate_direct": "Win rate, direct",
    "applications": "Applications",
    "partners_joined": "Partners joined",
    "program_cost": "Program cost",
    "new_customers_sourced": "New customers sourced",
    "leads_generated": "Leads generated",
    "opportunities_sourced": "Opportunities sourced",
    "opportunities_influenced": "Opportunities influenced",
    "commission_paid": "Commission paid",
    "commission_rate": "Commission rate",
    "mdf_spent": "MDF spent",
    "mdf_return": "MDF return",
}


def label(metric: str) -> str:
    """The metric's name for a person."""
    return LABELS.get(metric, metric.replace("_", " ").capitalize())
