"""Attribution: each won deal's amount split into partners' cents (kx_attr), and on-request totals."""

from __future__ import annotations

from datetime import date
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
    s = ctx.sql
    model = ctx.settings.attribution_model
    ctx.exec(
        f"""CREATE {ctx.fact_table("kx_tw")} AS
        SELECT t.deal_id, t.partner_id, t.js, t.touched_at, d.closed_at, d.cents, d.closed_mi,
               ROW_NUMBER() OVER (PARTITION BY t.deal_id ORDER BY t.touched_at, t.id) AS rn,
               COUNT(*) OVER (PARTITION BY t.deal_id) AS n
        FROM {touch_rows} t JOIN {deal_rows} d ON d.id = t.deal_id
        WHERE d.status = 'won' AND d.seg = 'i'"""
    )
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
        floored = f"""
            SELECT deal_id, partner_id, js, cents, closed_mi, first_rn, {s.floor_int("exact")} AS base,
                   {s.round_double(f"exact - {s.floor_int('exact')}", 9)} AS rem
            FROM ({shares}) e"""
    else:
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
        floored = f"""
            SELECT deal_id, partner_id, js, cents, closed_mi, first_rn,
                   cents * u / den AS base, cents * u - (cents * u / den) * den AS rem
            FROM (SELECT deal_id, partner_id, js, cents, closed_mi, MIN(rn) AS first_rn,
                         CAST(SUM({unit}) AS BIGINT) AS u, CAST(MAX({den}) AS BIGINT) AS den
                  FROM kx_tw GROUP BY deal_id, partner_id, js, cents, closed_mi) c"""
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


def totals(ctx: RunContext, date_from: date, date_to: date) -> list[dict[str, Any]]:
    from decimal import Decimal

    facts.build(ctx)
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
