"""Lifecycle facts and rows: qualifying activities (activation, active partners), first sales, cohorts."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

from kpis.engine.context import RunContext


def activity_sources(
    ctx: RunContext, regs: str = "kx_reg", deals: str = "kx_deal", touches: str = "kx_touch"
) -> list[str]:
    """The activity rows (partner_id, d: local date, mi: its month) of the program's qualifying
    activities, from registrations `regs`, deals `deals` and counting touches `touches`."""
    sources = []
    if ctx.settings.activity_registrations:
        sources.append(f"SELECT partner_id, submitted_d AS d, submitted_mi AS mi FROM {regs}")
    if ctx.settings.activity_sourced_deals:
        sources.append(
            f"SELECT sp AS partner_id, created_d AS d, created_mi AS mi FROM {deals} WHERE sp IS NOT NULL"
        )
    if ctx.settings.activity_touches:
        sources.append(f"SELECT partner_id, touched_d AS d, touched_mi AS mi FROM {touches}")
    return sources


def activity_select(ctx: RunContext, partners: str | None = None) -> str:
    """kx_actm's rows: each partner's first and latest qualifying activity per month (program
    setting), dated on or after the partner joined; `partners`: only those in that table."""
    only = f"a.partner_id IN (SELECT k FROM {partners})" if partners else "1 = 1"
    sources = activity_sources(ctx)
    # Each source is reduced to its first and latest activity per partner and local date's month
    # before the union (3M touches become ~0.2M rows): enough for the first activity (MIN) and
    # for "active in the 90 days to E" (the latest activity of each month).
    grouped = [
        f"""SELECT a.partner_id, a.mi, MIN(a.d) AS mind, MAX(a.d) AS maxd
        FROM ({source}) a JOIN kx_partner p ON p.id = a.partner_id
        WHERE p.joined IS NOT NULL AND a.d >= p.joined AND {only}
        GROUP BY a.partner_id, a.mi"""
        for source in sources
    ] or ["SELECT partner_id, 0 AS mi, submitted_d AS mind, submitted_d AS maxd FROM kx_reg WHERE 1 = 0"]
    return f"""SELECT a.partner_id, p.js, a.mi, MIN(a.mind) AS mind, MAX(a.maxd) AS maxd
        FROM ({" UNION ALL ".join(grouped)}) a JOIN kx_partner p ON p.id = a.partner_id
        GROUP BY a.partner_id, p.js, a.mi"""


def first_sale_select(ctx: RunContext, partners: str | None = None) -> str:
    """kx_fs's rows: each partner's earliest won deal closed on/after joining (and by the as-of
    date) that it sourced or that counts as influenced revenue for it; `partners`: only those
    in that table."""
    as_of = ctx.sql.date_literal(ctx.as_of)
    return f"""SELECT p.id AS partner_id, MIN(x.closed_d) AS fs_d
        FROM kx_partner p JOIN ({sale_rows(partners=partners)}) x ON x.partner_id = p.id
        WHERE p.joined IS NOT NULL AND x.closed_d >= p.joined AND x.closed_d <= {as_of}
        GROUP BY p.id"""


def sale_rows(deals: str = "kx_deal", touches: str = "kx_touch", *, partners: str | None = None) -> str:
    """The sales (partner_id, closed_d) a first sale is the earliest of: the won deals `deals`
    a partner sourced, and those it influenced through a counting touch of `touches`;
    `partners`: only those in that table (looked up in each part: the touches by partner)."""
    sourced = touched = ""
    if partners:
        sourced, touched = (
            f" AND {column} IN (SELECT k FROM {partners})" for column in ("sp", "t.partner_id")
        )
    return f"""SELECT sp AS partner_id, closed_d FROM {deals}
        WHERE status = 'won' AND sp IS NOT NULL{sourced}
        UNION ALL
        SELECT t.partner_id, d.closed_d FROM {touches} t JOIN {deals} d ON d.id = t.deal_id
        WHERE d.status = 'won' AND d.seg = 'i'{touched}"""


def build(ctx: RunContext) -> None:
    ctx.fill("kx_actm", activity_select(ctx))
    ctx.fill("kx_fs", first_sale_select(ctx))
    ctx.analyze("kx_actm", "kx_fs")


def cohort_rows(ctx: RunContext, table: Callable[[str], str], as_of_date: date) -> str:
    """Each joined partner with its join month, whether it activated within the window, and
    whether its cohort is still inside the window on the as-of date (provisional)."""
    s = ctx.sql
    window = ctx.settings.activation_window_days
    as_of = s.date_literal(as_of_date)
    return f"""SELECT p.id AS partner_id, p.js, p.joined_mi,
            CASE WHEN a.activated IS NOT NULL AND {s.days_between("a.activated", "p.joined")} <= {window}
                 THEN 1 ELSE 0 END AS activated,
            CASE WHEN p.joined <= {as_of} AND {s.days_between(as_of, "p.joined")} <= {window}
                 THEN 1 ELSE 0 END AS inside
        FROM {table("kx_partner")} p
        LEFT JOIN (SELECT partner_id, MIN(mind) AS activated FROM {table("kx_actm")}
                   GROUP BY partner_id) a ON a.partner_id = p.id
        WHERE p.joined IS NOT NULL"""


def first_sale_rows(ctx: RunContext, table: Callable[[str], str]) -> str:
    """Each joined partner with its join month and the days to its first sale (if any)."""
    return f"""SELECT p.id AS partner_id, p.js, p.joined_mi,
            CASE WHEN f.fs_d IS NULL THEN 0 ELSE 1 END AS has_sale,
            {ctx.sql.days_between("f.fs_d", "p.joined")} AS v
        FROM {table("kx_partner")} p LEFT JOIN {table("kx_fs")} f ON f.partner_id = p.id
        WHERE p.joined IS NOT NULL"""
