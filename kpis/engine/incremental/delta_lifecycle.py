"""Delta facts, lifecycle: each affected partner's activities and first sale patched."""

from __future__ import annotations

from datetime import date

from kpis.engine import lifecycle
from kpis.engine.context import RunContext


def patch_lifecycle(ctx: RunContext, previous_as_of: date, *, as_of_moved: bool) -> None:
    """Patch each partner's activities (kx_actm: the earliest and latest per month) and first
    sale (kx_fs), and list the partners whose rows may have changed (kx_recalc_partner).

    An extreme changes only through a row that appeared or went: the affected keys' activity
    and sale rows before and after patching are compared as sets (a sale also appears or goes
    as the as-of date passes it: the other deals won between the two dates). New rows extend
    the extremes; a row gone that held one, or a partner's own change, recomputes that partner
    from all its rows (kx_recalc_actm, kx_recalc_fs)."""
    s = ctx.sql

    def joined(rows: str, columns: str, where: str = "") -> str:
        """`rows` of partners that joined, dated on or after it, not recomputed anyway."""
        return (
            f"SELECT {columns} FROM ({rows}) x JOIN kx_partner p ON p.id = x.partner_id "
            "WHERE p.joined IS NOT NULL AND x.partner_id NOT IN (SELECT k FROM kx_chg_partner) "
            f"AND {where}"
        )

    def compare(name: str, before: str, after: str) -> None:
        before, after = f"SELECT * FROM ({before}) b", f"SELECT * FROM ({after}) a"
        ctx.exec(f"CREATE TEMP TABLE {name}_gone AS {before} EXCEPT {after}")
        ctx.exec(f"CREATE TEMP TABLE {name}_new AS {after} EXCEPT {before}")

    def activities(regs: str, deals: str, touches: str) -> str:
        sources = lifecycle.activity_sources(ctx, regs, deals, touches) or [
            "SELECT partner_id, submitted_d AS d, submitted_mi AS mi FROM kx_reg WHERE 1 = 0"
        ]
        return joined(" UNION ALL ".join(sources), "x.partner_id, x.mi, x.d", "x.d >= p.joined")

    compare(
        "kx_act",
        activities("kx_aff_reg_before", "kx_aff_deal_before", "kx_aff_count_before"),
        activities("kx_aff_reg_now", "kx_aff_deal_now", "kx_aff_count_now"),
    )

    def sales(deals: str, touches: str, as_of: date) -> str:
        eligible = f"x.closed_d >= p.joined AND x.closed_d <= {s.date_literal(as_of)}"
        rows = joined(lifecycle.sale_rows(deals, touches), "x.partner_id, x.closed_d AS d", eligible)
        if as_of_moved:
            rows += " UNION " + joined(
                lifecycle.sale_rows("kx_asof_deal"), "x.partner_id, x.closed_d AS d", eligible
            )
        return rows

    compare(
        "kx_sale",
        sales("kx_aff_deal_before", "kx_aff_count_before", previous_as_of),
        sales("kx_aff_deal_now", "kx_aff_count_now", ctx.as_of),
    )
    _list_partners_to_recompute(ctx)
    patch_extremes(ctx)


def _list_partners_to_recompute(ctx: RunContext) -> None:
    """From the rows compared (kx_act_* and kx_sale_*): the partners whose activity extremes
    (kx_recalc_actm) or first sale (kx_recalc_fs) a row gone may have held, and every partner
    whose partner-keyed rows may have changed (kx_recalc_partner)."""
    keys = ctx.keys
    keys(
        "kx_recalc_actm",
        "SELECT k FROM kx_chg_partner",
        "SELECT g.partner_id AS k FROM kx_act_gone g "
        "LEFT JOIN kx_actm a ON a.partner_id = g.partner_id AND a.mi = g.mi "
        "WHERE a.partner_id IS NULL OR g.d <= a.mind OR g.d >= a.maxd",
    )
    keys(
        "kx_recalc_fs",
        "SELECT k FROM kx_chg_partner",
        "SELECT g.partner_id AS k FROM kx_sale_gone g LEFT JOIN kx_fs f ON f.partner_id = g.partner_id "
        "WHERE f.partner_id IS NULL OR g.d <= f.fs_d",
    )
    # The partners whose activities or first sale may have changed, and those whose rows do
    # otherwise (kx_own_partner): the rows of the partner-keyed families compared.
    keys(
        "kx_recalc_partner",
        "SELECT k FROM kx_own_partner",
        *(
            f"SELECT partner_id AS k FROM {t}"
            for t in ("kx_act_gone", "kx_act_new", "kx_sale_gone", "kx_sale_new")
        ),
    )


def patch_extremes(ctx: RunContext) -> None:
    """kx_actm and kx_fs patched: new rows extend the kept extremes (kx_act_adj, kx_fs_adj), the
    partners in kx_recalc_actm / kx_recalc_fs are recomputed from all their rows."""
    recalc_actm, recalc_fs = "IN (SELECT k FROM kx_recalc_actm)", "IN (SELECT k FROM kx_recalc_fs)"
    ctx.exec(
        f"""CREATE TEMP TABLE kx_act_adj AS
        SELECT x.partner_id, p.js, x.mi, MIN(x.mind) AS mind, MAX(x.maxd) AS maxd FROM (
            SELECT a.partner_id, a.mi, a.mind, a.maxd FROM kx_actm a
            WHERE (a.partner_id, a.mi) IN (SELECT partner_id, mi FROM kx_act_new)
            UNION ALL SELECT partner_id, mi, d, d FROM kx_act_new) x
        JOIN kx_partner p ON p.id = x.partner_id
        WHERE x.partner_id NOT {recalc_actm}
        GROUP BY x.partner_id, p.js, x.mi"""
    )
    ctx.exec(f"DELETE FROM kx_actm WHERE partner_id {recalc_actm}")
    ctx.exec("DELETE FROM kx_actm WHERE (partner_id, mi) IN (SELECT partner_id, mi FROM kx_act_adj)")
    ctx.exec("INSERT INTO kx_actm SELECT * FROM kx_act_adj")
    ctx.exec(f"INSERT INTO kx_actm {lifecycle.activity_select(ctx, 'kx_recalc_actm')}")
    ctx.exec(
        f"""CREATE TEMP TABLE kx_fs_adj AS SELECT x.partner_id, MIN(x.d) AS fs_d FROM (
            SELECT f.partner_id, f.fs_d AS d FROM kx_fs f
            WHERE f.partner_id IN (SELECT partner_id FROM kx_sale_new)
            UNION ALL SELECT partner_id, d FROM kx_sale_new) x
        WHERE x.partner_id NOT {recalc_fs}
        GROUP BY x.partner_id"""
    )
    ctx.exec(f"DELETE FROM kx_fs WHERE partner_id {recalc_fs}")
    ctx.exec("DELETE FROM kx_fs WHERE partner_id IN (SELECT partner_id FROM kx_fs_adj)")
    ctx.exec("INSERT INTO kx_fs SELECT * FROM kx_fs_adj")
    ctx.exec(f"INSERT INTO kx_fs {lifecycle.first_sale_select(ctx, 'kx_recalc_fs')}")
