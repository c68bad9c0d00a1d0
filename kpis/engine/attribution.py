"""Attribution: each won deal's amount split into partners' cents (kx_attr), and on-request totals
of the deals won between two dates (from facts of only those deals)."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from kpis.engine import facts
from kpis.engine.context import RunContext
from partners.models import Partner
from program.attribution import AttributionModel


def build(
    ctx: RunContext, *, deals: str | None = None, deal_rows: str = "kx_deal", touch_rows: str = "kx_touch"
) -> None:
    """kx_attr(deal_id, partner_id, js, closed_mi, cents, deal_cents, seg): each won deal's
    amount split to cents (deal_cents: the whole amount; seg: the deal's segment, s or i).

    Sourced deals give everything to the sourcing partner. Influenced deals split by the model:
    each partner's exact share is the sum of its touches' weights; shares are floored to cents
    and the leftover cents go to the largest remainders, ties to the earlier first touch.
    `deals`: delta facts, replace only the shares of the deals in that table (column k), whose
    rows are `deal_rows` and whose counting touches are `touch_rows`.
    """
    ctx.exec(
        f"""CREATE {ctx.fact_table("kx_tw")} AS
        SELECT t.deal_id, t.partner_id, t.js, t.touched_at, d.closed_at, d.cents, d.closed_mi,
               ROW_NUMBER() OVER (PARTITION BY t.deal_id ORDER BY t.touched_at, t.id) AS rn,
               COUNT(*) OVER (PARTITION BY t.deal_id) AS n
        FROM {touch_rows} t JOIN {deal_rows} d ON d.id = t.deal_id
        WHERE d.status = 'won' AND d.seg = 'i'"""
    )
    floored = _floored_shares(ctx)
    ctx.fill(
        "kx_attr",
        f"""SELECT deal_id, partner_id, js, closed_mi,
               base + CASE WHEN place <= leftover THEN 1 ELSE 0 END AS cents,
               cents AS deal_cents, 'i' AS seg
        FROM (SELECT f.*,
                     cents - SUM(base) OVER (PARTITION BY deal_id) AS leftover,
                     ROW_NUMBER() OVER (PARTITION BY deal_id ORDER BY rem DESC, first_rn) AS place
              FROM ({floored}) f) r
        UNION ALL
        SELECT d.id, d.sp, p.js, d.closed_mi, d.cents, d.cents, 's'
        FROM {deal_rows} d JOIN kx_partner p ON p.id = d.sp
        WHERE d.status = 'won' AND d.sp IS NOT NULL""",
        replace=f"deal_id IN (SELECT k FROM {deals})" if deals else None,
    )


def _floored_shares(ctx: RunContext) -> str:
    """SQL over kx_tw: each (deal, partner)'s share of the deal's cents under the program's
    model, floored (base), with the remainder the leftover cents are placed by (rem) and the
    partner's first touch (first_rn) for ties."""
    s = ctx.sql
    model = ctx.settings.attribution_model
    if model == AttributionModel.TIME_DECAY:
        # Weights relative to the deal's latest touch (the same shares, no underflow):
        # 2^-((age - min_age) / half_life) with exact elapsed seconds.
        divisor = repr(86400.0 * ctx.settings.half_life_days)
        age = s.epoch_seconds_between("closed_at", "touched_at")
        shares = f"""
            SELECT deal_id, partner_id, js, cents, closed_mi, first_rn,
                   CAST(cents AS DOUBLE PRECISION) * w / SUM(w) OVER (PARTITION BY deal_id) AS exact
            FROM (SELECT deal_id, partner_id, js, cents, closed_mi, MIN(rn) AS first_rn, SUM(tw) AS w
                  FROM (SELECT deal_id, partner_id, js, cents, closed_mi, rn,
                               POWER(2.0, -(age - MIN(age) OVER (PARTITION BY deal_id)) / {divisor}) AS tw
                        FROM (SELECT deal_id, partner_id, js, cents, closed_mi, rn, {age} AS age
                              FROM kx_tw) a) b
                  GROUP BY deal_id, partner_id, js, cents, closed_mi) c"""
        return f"""
            SELECT deal_id, partner_id, js, cents, closed_mi, first_rn, {s.floor_int("exact")} AS base,
                   {s.round_double(f"exact - {s.floor_int('exact')}", 9)} AS rem
            FROM ({shares}) e"""
    # Rational models in integer units u over a per-deal denominator den.
    unit, den = {
        AttributionModel.FIRST_TOUCH: ("CASE WHEN rn = 1 THEN 1 ELSE 0 END", "1"),
        AttributionModel.LAST_TOUCH: ("CASE WHEN rn = n THEN 1 ELSE 0 END", "1"),
        AttributionModel.LINEAR: ("1", "n"),
        AttributionModel.POSITION_BASED: (
            "CASE WHEN n <= 2 THEN 1 WHEN rn = 1 OR rn = n THEN 2 * (n - 2) ELSE 1 END",
            "CASE WHEN n = 1 THEN 1 WHEN n = 2 THEN 2 ELSE 5 * (n - 2) END",
        ),
    }[AttributionModel(model)]
    return f"""
        SELECT deal_id, partner_id, js, cents, closed_mi, first_rn,
               cents * u / den AS base, cents * u - (cents * u / den) * den AS rem
        FROM (SELECT deal_id, partner_id, js, cents, closed_mi, MIN(rn) AS first_rn,
                     CAST(SUM({unit}) AS BIGINT) AS u, CAST(MAX({den}) AS BIGINT) AS den
              FROM kx_tw GROUP BY deal_id, partner_id, js, cents, closed_mi) c"""


def facts_won_between(ctx: RunContext, date_from: date, date_to: date) -> None:
    """The facts attribution reads, of only the deals won on the local dates `date_from` to
    `date_to` (both included): kx_partner (every partner), kx_deal (those deals), kx_touch_all and
    the kx_touch view (their touches). The same rows as the whole program's facts hold for those
    deals: a deal's row, segment and shares depend only on itself, its touches and partners."""
    s = ctx.sql
    lo, hi = s.date_literal(date_from), s.date_literal(date_to)
    # Bounds on the stored instant the (status, closed_at) index can use: a local date lies within
    # a day of the UTC date (offsets are under 24 hours), so these hold every deal of the range
    # and a few around it; the local close date then decides, as for the whole program.
    after = s.date_literal(date_from - timedelta(days=1))
    before = s.date_literal(date_to + timedelta(days=2))
    won = f"d.status = 'won' AND d.closed_at >= {after} AND d.closed_at < {before}"
    ctx.fill("kx_partner", facts.partner_select(ctx))
    # The segment from the touch table (kx_touch is built from kx_deal, after it): "influenced"
    # when a touch on or before the close counts, as kx_touch would say.
    ctx.fill(
        "kx_deal",
        f"""SELECT * FROM ({facts.deal_select(ctx, segment_from_base=True, where=won)}) w
        WHERE w.closed_d >= {lo} AND w.closed_d <= {hi}""",
    )
    ctx.analyze("kx_deal")
    ctx.fill("kx_touch_all", facts.touch_select(ctx, deals="kx_deal"))
    facts.touch_view(ctx)
    if not s.pg:  # as facts.facts_touches: SQLite's nested loops need it
        ctx.exec("CREATE INDEX kx_touch_all_deal_id ON kx_touch_all (deal_id)")
    ctx.analyze("kx_partner", "kx_touch_all")


def totals(
    ctx: RunContext, date_from: date, date_to: date, *, whole_program: bool = False
) -> list[dict[str, Any]]:
    """Per partner: sourced, influenced and attributed revenue of the deals won on the local dates
    `date_from` to `date_to` (both included), from facts of only those deals (`whole_program`:
    from the whole program's facts, as a run builds them; the same figures, for comparison)."""
    from decimal import Decimal

    if whole_program:
        facts.build(ctx)
    else:
        facts_won_between(ctx, date_from, date_to)
    build(ctx)
    lo, hi = ctx.sql.date_literal(date_from), ctx.sql.date_literal(date_to)
    in_range = f"d.status = 'won' AND d.closed_d >= {lo} AND d.closed_d <= {hi}"
    rows = ctx.fetch(
        f"""SELECT p.id, p.key, p.name, SUM(x.src), SUM(x.inf), SUM(x.att) FROM (
            SELECT d.sp AS partner_id, d.cents AS src, 0 AS inf, 0 AS att FROM kx_deal d
            WHERE {in_range} AND d.sp IS NOT NULL
            UNION ALL
            SELECT t.partner_id, 0, d.cents, 0 FROM (SELECT DISTINCT partner_id, deal_id FROM kx_touch) t
            JOIN kx_deal d ON d.id = t.deal_id WHERE {in_range} AND d.seg = 'i'
            UNION ALL
            SELECT a.partner_id, 0, 0, a.cents FROM kx_attr a JOIN kx_deal d ON d.id = a.deal_id
            WHERE {in_range}
        ) x JOIN {Partner._meta.db_table} p ON p.id = x.partner_id
        GROUP BY p.id, p.key, p.name ORDER BY p.id"""
    )
    cents = Decimal("0.01")
    return [
        {
            "partner_id": pid,
            "partner_key": key or str(pid),
            "partner_name": name,
            "sourced": (Decimal(int(src)) * cents).quantize(cents),
            "influenced": (Decimal(int(inf)) * cents).quantize(cents),
            "attributed": (Decimal(int(att)) * cents).quantize(cents),
        }
        for pid, key, name, src, inf, att in rows
    ]
