"""Where partners stand among their peers: the KPI heat map and a partner's peer standing.

Read from the published KPI set only (partner rows of one grain and period), ranked in the
database with window functions that PostgreSQL and SQLite share:

- a **peer group** is the partners of one tier, one type or one join source (chosen by the
  reader); the population is the partners that had joined by the period's last day;
- a partner without a stored row reads 0 for money and count metrics and is left out of the
  ranking for ratios, medians and the rest (undefined: no percentile);
- **percentile** = `PERCENT_RANK()` over the peer group in the metric's better direction (higher
  is better, except cost, CAC and day counts): 0 the worst, 100 the best, ties share a rank;
- **top share** = `CUME_DIST()` in the better direction descending: the share of the group whose
  value is at least as good ("top 20%" = at most a fifth of the group is as good or better).

docs/kpis.md, "Peer percentiles", records these decisions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Any

from django.db import connection
from django.db.models import Q

from kpis import formatting
from kpis.metrics import METRICS_BY_NAME, Grain, Scope
from kpis.metrics import label as metric_label
from kpis.models import KpiValue
from kpis.periods import Period
from partners.models import JoinSource, Partner
from program.models import ProgramSettings


class PeerGroup(StrEnum):
    TIER = "tier"
    TYPE = "type"
    JOIN_SOURCE = "join_source"


_GROUP_COLUMN = {
    PeerGroup.TIER: "p.tier",
    PeerGroup.TYPE: "p.type",
    PeerGroup.JOIN_SOURCE: "p.join_source_id",
}
# Metrics where less is better (a cheaper partner, a shorter cycle ranks higher).
LOWER_IS_BETTER = frozenset(
    {"program_cost", "cac", "sales_cycle_median_days_sourced", "ttfs_median_days", "ttfs_mean_days"}
)
# Partner metrics of a period (the cohort metrics are keyed by join month, targets are not KPIs).
HEATMAP_METRICS: tuple[str, ...] = tuple(
    m.name
    for m in METRICS_BY_NAME.values()
    if m.partner and not m.cohort and m.name not in ("target", "target_progress")
)
DEFAULT_METRICS = (
    "sourced_revenue",
    "influenced_revenue",
    "attributed_revenue",
    "win_rate_sourced",
    "leads_generated",
    "roi",
)
STANDING_METRICS = ("sourced_revenue", "influenced_revenue", "win_rate_sourced", "leads_generated")
HEATMAP_SORTS = ("name", *HEATMAP_METRICS)


@dataclass(frozen=True)
class Cell:
    metric: str
    value: Decimal | None
    percentile: Decimal | None  # 0..100, None when undefined or alone in the group
    top: int | None  # the "top N%" figure: the share of the group at least as good
    bottom: int | None  # the share of the group at most as good ("bottom N%")
    peers: int  # partners ranked in the group on this metric

    @property
    def display(self) -> str:
        return formatting.display(self.metric, self.value)

    @property
    def band(self) -> int | None:
        """0 (bottom fifth) to 4 (top fifth) for the cell's colour."""
        if self.percentile is None:
            return None
        return min(4, int(self.percentile // 20))


@dataclass
class HeatRow:
    partner_id: int
    name: str
    tier: str
    type: str
    join_source: str
    group: str
    cells: list[Cell] = field(default_factory=list)


def heat_map_arguments(data: dict[str, Any]) -> dict[str, Any]:
    """`heat_map`'s arguments from validated request data (grain, period, metrics, group, only,
    sort, direction; each optional): the chosen or latest complete period, the default metrics,
    peer group tier; `only` names one group (a tier, a type, or a join source's key or name)."""
    from kpis.readers import choose_period

    grain = data.get("grain") or Grain.QUARTER.value
    period, _ = choose_period(grain, data.get("period") or None)
    metrics = check_metrics(list(data.get("metrics") or DEFAULT_METRICS))
    group = PeerGroup(data.get("group") or PeerGroup.TIER)
    only = data.get("only") or None
    if only is not None and group == PeerGroup.JOIN_SOURCE:
        source = JoinSource.objects.filter(Q(key=only) | Q(name=only)).order_by("pk").first()
        only = str(source.pk) if source else "0"
    sort = data.get("sort") or metrics[0]
    if sort not in metrics and sort != "name":
        sort = metrics[0]
    direction = data.get("direction") or ("asc" if sort == "name" else "desc")
    return {
        "period": period,
        "metrics": metrics,
        "group": group,
        "group_value": only,
        "sort": sort,
        "descending": direction == "desc",
    }


def _zero(metric: str) -> bool:
    from kpis.engine import ZERO_WHEN_EMPTY

    return metric in ZERO_WHEN_EMPTY


def check_metrics(metrics: list[str]) -> list[str]:
    """The metrics in catalogue form, or ValueError naming the first unknown one."""
    for m in metrics:
        if m not in HEATMAP_METRICS:
            raise ValueError(f"{m!r} is not a partner metric of a period")
    return list(dict.fromkeys(metrics))


def _catalogue(metrics: list[str]) -> str:
    """The metrics as rows (metric, mi: its position, zero: a missing row reads 0, sign: -1 where
    lower is better), for the ranking and the standing statements. Metric names come from the
    catalogue (check_metrics), never from the request as such."""
    return " UNION ALL ".join(
        f"SELECT '{m}' AS metric, {i} AS mi, {1 if _zero(m) else 0} AS zero, "
        f"{-1 if m in LOWER_IS_BETTER else 1} AS sign"
        for i, m in enumerate(metrics)
    )


def _ranked_sql(
    metrics: list[str],
    group: PeerGroup,
    period: Period,
    *,
    group_value: str | None,
    attribution_model: str | None = None,
) -> tuple[str, list[Any]]:
    """(SQL, params): per partner of the population and metric, its value, percentile, top share
    and group size (ranked rows only: undefined values are left out)."""
    column = _GROUP_COLUMN[group]
    catalogue = _catalogue(metrics)
    # The period's published partner rows of these metrics, read once (one index range per metric).
    names = ", ".join(f"'{m}'" for m in metrics)
    params: list[Any] = [
        attribution_model or ProgramSettings.load().attribution_model,
        Scope.PARTNER.value,
        period.grain,
        period.start,
        period.end,
        *Partner.JOINED_STATUSES,
    ]
    only_group = ""
    if group_value is not None:
        only_group = f" AND {column} = %s"
        params.append(int(group_value) if group == PeerGroup.JOIN_SOURCE else group_value)
    statuses = ", ".join(["%s"] * len(Partner.JOINED_STATUSES))
    # The partitions only need equal keys: the metric's number, and on PostgreSQL a tier or type
    # compared byte for byte (the database's collation would sort them by locale, for nothing).
    partition = column
    if connection.vendor == "postgresql" and group != PeerGroup.JOIN_SOURCE:
        partition = f'{column} COLLATE "C"'
    # One window order (ascending) for every figure, so the rows are sorted once: the top share,
    # CUME_DIST() in descending order, is the share at least as good, (n - RANK() + 1) / n, the
    # same division of the same integers (float8, as CUME_DIST computes it).
    sql = f"""
        SELECT id, grp, metric, value,
               PERCENT_RANK() OVER w AS pr,
               CAST(COUNT(*) OVER g - RANK() OVER w + 1 AS DOUBLE PRECISION)
                   / CAST(COUNT(*) OVER g AS DOUBLE PRECISION) AS top,
               CUME_DIST() OVER w AS bottom,
               COUNT(*) OVER g AS n
        FROM (SELECT p.id, {column} AS grp, {partition} AS pgrp, m.metric, m.mi,
                     CASE WHEN k.value IS NULL AND m.zero = 1 THEN 0 ELSE k.value END AS value,
                     CASE WHEN k.value IS NULL AND m.zero = 1 THEN 0 ELSE k.value END * m.sign AS ordv
              FROM {Partner._meta.db_table} p CROSS JOIN ({catalogue}) m
              LEFT JOIN (SELECT partner_id, metric, value FROM {KpiValue._meta.db_table}
                         WHERE attribution_model = %s AND scope = %s AND grain = %s AND period_start = %s
                           AND target_metric = '' AND metric IN ({names})) k
                ON k.partner_id = p.id AND k.metric = m.metric
              WHERE p.joined_at <= %s AND p.status IN ({statuses}){only_group}) v
        WHERE value IS NOT NULL
        WINDOW g AS (PARTITION BY pgrp, mi), w AS (PARTITION BY pgrp, mi ORDER BY ordv)"""
    return sql, params


def _cell(metric: str, value: Any, pr: Any, top: Any, bottom: Any, n: Any) -> Cell:
    if value is None:
        return Cell(metric, None, None, None, None, 0)
    peers = int(n)
    if peers < 2:
        return Cell(metric, Decimal(value), None, None, None, peers)
    percentile = (Decimal(str(pr)) * 100).quantize(Decimal("1"))
    return Cell(metric, Decimal(value), percentile, _share(top), _share(bottom), peers)


def _share(fraction: Any) -> int:
    """A CUME_DIST as a whole percentage, rounded up (1 of 3 is 34%)."""
    return math.ceil(round(float(fraction) * 100, 6))


def heat_map(
    *,
    period: Period,
    metrics: list[str],
    group: PeerGroup,
    group_value: str | None = None,
    sort: str = "sourced_revenue",
    descending: bool = True,
    limit: int = 50,
    offset: int = 0,
) -> tuple[int, list[HeatRow]]:
    """(number of partners, one page of rows): partners × metrics, each cell with its percentile
    within the partner's peer group. Sorted and paged in the database; two queries."""
    metrics = check_metrics(metrics)
    ranked, params = _ranked_sql(metrics, group, period, group_value=group_value)
    pivot = ", ".join(
        f"MAX(CASE WHEN r.metric = '{m}' THEN r.{col} END) AS {col}{i}"
        for i, m in enumerate(metrics)
        for col in ("value", "pr", "top", "bottom", "n")
    )
    way = "DESC" if descending else "ASC"
    if sort in metrics:
        order = "CASE WHEN {v} IS NULL THEN 1 ELSE 0 END, {v} " + way + ", {t}.name, {t}.id"
        sort_value = "s.value"
        sort_join = f"LEFT JOIN r s ON s.id = p.id AND s.metric = '{sort}'"
    else:
        order = "{t}.name " + way + ", {t}.id"
        sort_value, sort_join = "NULL", ""
    column = _GROUP_COLUMN[group]
    population, pop_params = _population(group, period, group_value)
    # Ranked once (every partner of the groups: a percentile needs its whole group), then the page
    # chosen on the sort metric's rows alone, and only the page's partners pivoted to one row each.
    sql = f"""
        WITH r AS ({ranked}),
        page AS (
            SELECT p.id, p.name, p.tier, p.type, j.name AS js_name, {column} AS grp, {sort_value} AS sv
            FROM ({population}) p JOIN {JoinSource._meta.db_table} j ON j.id = p.join_source_id
            {sort_join}
            ORDER BY {order.format(v=sort_value, t="p")} LIMIT %s OFFSET %s)
        SELECT x.id, x.name, x.tier, x.type, x.js_name, x.grp, {pivot}
        FROM page x LEFT JOIN r ON r.id = x.id
        GROUP BY x.id, x.name, x.tier, x.type, x.js_name, x.grp, x.sv
        ORDER BY {order.format(v="x.sv", t="x")}"""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT COUNT(*) FROM ({population}) p", pop_params)
        total = int(cursor.fetchone()[0])
        cursor.execute(sql, [*params, *pop_params, int(limit), int(offset)])
        rows = cursor.fetchall()
    types = dict(Partner.Type.choices)
    result = []
    for row in rows:
        pid, name, tier, type_, js_name, grp, *cells = row
        heat = HeatRow(
            pid, name, tier, types.get(type_, type_), js_name, _group_label(group, grp, tier, types, js_name)
        )
        for i, m in enumerate(metrics):
            heat.cells.append(_cell(m, *cells[5 * i : 5 * i + 5]))
        result.append(heat)
    return total, result


def _population(group: PeerGroup, period: Period, group_value: str | None) -> tuple[str, list[Any]]:
    statuses = ", ".join(["%s"] * len(Partner.JOINED_STATUSES))
    sql = f"SELECT * FROM {Partner._meta.db_table} p WHERE p.joined_at <= %s AND p.status IN ({statuses})"
    params: list[Any] = [period.end, *Partner.JOINED_STATUSES]
    if group_value is not None:
        sql += f" AND {_GROUP_COLUMN[group]} = %s"
        params.append(int(group_value) if group == PeerGroup.JOIN_SOURCE else group_value)
    return sql, params


def _group_label(group: PeerGroup, value: Any, tier: str, types: dict[str, str], js_name: str) -> str:
    if group == PeerGroup.TIER:
        return tier or "no tier"
    if group == PeerGroup.TYPE:
        return types.get(value, str(value))
    return js_name


@dataclass(frozen=True)
class Standing:
    """One metric's place of a partner within one peer group."""

    group: PeerGroup
    group_label: str
    cell: Cell

    @property
    def label(self) -> str:
        return metric_label(self.cell.metric)

    @property
    def sentence(self) -> str:
        """ "Top 20% of Gold partners on win rate, sourced (3rd... of 12)"."""
        cell = self.cell
        if cell.value is None:
            return f"{self.label}: undefined for this period"
        if cell.top is None:
            return f"{self.label}: the only {self.group_label} partner with a value"
        where = f"Top {cell.top}%" if cell.top <= 50 or cell.bottom is None else f"Bottom {cell.bottom}%"
        return f"{where} of {cell.peers} {self.group_label} partners on {self.label.lower()}"


def peer_standing(
    partner: Partner,
    period: Period,
    metrics: tuple[str, ...] = STANDING_METRICS,
    *,
    attribution_model: str | None = None,
) -> list[Standing]:
    """Where `partner` stands among its tier (when it has one), its type and its join source on
    each metric, for the period: the heat map's percentile, top and bottom shares and group size
    (same rules, same figures) for this one partner. One query, whatever the number of partners."""
    types = dict(Partner.Type.choices)
    groups = [
        (PeerGroup.TIER, partner.tier, partner.tier),
        (PeerGroup.TYPE, partner.type, types.get(partner.type, partner.type)),
        (PeerGroup.JOIN_SOURCE, str(partner.join_source_id), partner.join_source.name),
    ]
    groups = [g for g in groups if g[1]]
    counts = _standing_counts(
        partner.pk, [(g, v) for g, v, _ in groups], period, list(metrics), attribution_model
    )
    return [
        Standing(group, label, _standing_cell(metric, *counts[(i, metric)]))
        for i, (group, _, label) in enumerate(groups)
        for metric in metrics
    ]


def _standing_counts(
    partner_id: int,
    groups: list[tuple[PeerGroup, str]],
    period: Period,
    metrics: list[str],
    attribution_model: str | None,
) -> dict[tuple[int, str], tuple[Any, int, int, int]]:
    """Per (group index, metric): (the partner's value or None, peers ranked, peers ranked below
    it, peers tied with it), in the metric's better direction.

    Counted, not ranked: ranking every peer with window functions for the one partner's place made
    PostgreSQL misestimate the peers x metrics join at 1M deals (a nested loop re-reading the group's
    KPI rows per peer, 650-800 ms a group). Here the period's stored rows of the partners in any of
    the groups are read once (an inner join, one pass), and the peers without a row (0 for money and
    count metrics) are counted from the group's size."""
    check_metrics(metrics)
    if not groups:
        return {}
    catalogue = _catalogue(metrics)
    names = ", ".join(f"'{m}'" for m in metrics)
    statuses = ", ".join(["%s"] * len(Partner.JOINED_STATUSES))
    flags = ", ".join(
        f"CASE WHEN {_GROUP_COLUMN[g]} = %s THEN 1 ELSE 0 END AS g{i}" for i, (g, _) in enumerate(groups)
    )
    anyof = " OR ".join(f"{_GROUP_COLUMN[g]} = %s" for g, _ in groups) or "1 = 0"
    values = [int(v) if g == PeerGroup.JOIN_SOURCE else v for g, v in groups]
    per_group = ", ".join(
        f"(SELECT SUM(g{i}) FROM pop), "
        f"SUM(CASE WHEN v.g{i} = 1 THEN 1 ELSE 0 END), "
        f"SUM(CASE WHEN v.g{i} = 1 AND v.ordv < me.mine THEN 1 ELSE 0 END), "
        f"SUM(CASE WHEN v.g{i} = 1 AND v.ordv = me.mine THEN 1 ELSE 0 END)"
        for i in range(len(groups))
    )
    sql = f"""
        WITH pop AS (
            SELECT p.id, {flags} FROM {Partner._meta.db_table} p
            WHERE p.joined_at <= %s AND p.status IN ({statuses}) AND ({anyof})),
        m AS ({catalogue}),
        v AS (
            SELECT pop.*, k.metric, k.value, k.value * m.sign AS ordv
            FROM {KpiValue._meta.db_table} k JOIN pop ON pop.id = k.partner_id JOIN m ON m.metric = k.metric
            WHERE k.attribution_model = %s AND k.scope = %s AND k.grain = %s AND k.period_start = %s
              AND k.target_metric = '' AND k.metric IN ({names}) AND k.value IS NOT NULL),
        own AS (SELECT metric, value, ordv FROM v WHERE id = %s),
        me AS (
            SELECT m.metric, m.zero, (SELECT COUNT(*) FROM pop WHERE pop.id = %s) AS member, own.value,
                   COALESCE(own.ordv, CASE WHEN m.zero = 1 THEN 0 END) AS mine
            FROM m LEFT JOIN own ON own.metric = m.metric)
        SELECT me.metric, me.zero, me.member, me.value, me.mine, {per_group}
        FROM me LEFT JOIN v ON v.metric = me.metric
        GROUP BY me.metric, me.zero, me.member, me.value, me.mine"""
    params: list[Any] = [
        *values,
        period.end,
        *Partner.JOINED_STATUSES,
        *values,
        attribution_model or ProgramSettings.load().attribution_model,
        Scope.PARTNER.value,
        period.grain,
        period.start,
        partner_id,
        partner_id,
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    counts: dict[tuple[int, str], tuple[Any, int, int, int]] = {}
    for metric, zero, member, value, mine, *figures in rows:
        for i in range(len(groups)):
            size, stored, below, tied = (int(x or 0) for x in figures[4 * i : 4 * i + 4])
            if not member or mine is None:
                counts[(i, metric)] = (None, 0, 0, 0)
                continue
            if zero:  # the peers without a row read 0
                missing = size - stored
                stored = size
                below += missing if mine > 0 else 0
                tied += missing if mine == 0 else 0
            counts[(i, metric)] = (Decimal(value if value is not None else 0), stored, below, tied)
    return counts


def _standing_cell(metric: str, value: Any, peers: int, below: int, tied: int) -> Cell:
    """The heat map's cell from counts: PERCENT_RANK = below / (peers - 1), the top share
    CUME_DIST from the best = (peers - below) / peers, the bottom share (below + tied) / peers."""
    if value is None:
        return Cell(metric, None, None, None, None, 0)
    if peers < 2:
        return Cell(metric, value, None, None, None, peers)
    return _cell(metric, value, below / (peers - 1), (peers - below) / peers, (below + tied) / peers, peers)
