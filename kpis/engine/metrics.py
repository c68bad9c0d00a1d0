"""Stage 4, metrics and targets: one formula per metric over the components, targets, kx_pub."""

from __future__ import annotations

from kpis.engine.context import RunContext
from kpis.engine.dialect import SCALE, rdiv
from kpis.engine.tables import CELL_NAMES, COMPONENTS, NULLABLE_COMPONENTS
from kpis.metrics import METRICS
from partners.models import JoinSource, Partner

# Metrics whose "no facts" value is 0 (money sums and counts); the rest are undefined without facts.
ZERO_WHEN_EMPTY = frozenset(
    {
        "won_revenue",
        "sourced_revenue",
        "influenced_revenue",
        "attributed_revenue",
        "applications",
        "partners_joined",
        "activated_partners",
        "active_partners",
        "first_sales",
        "leads_generated",
        "opportunities_sourced",
        "opportunities_influenced",
        "program_cost",
        "new_customers_sourced",
        "commission_paid",
        "mdf_spent",
    }
)


# Attributed revenue in cents: the program's is sourced + influenced (KPIS.md).
ATTRIBUTED_CENTS = "CASE WHEN m.scope = 'program' THEN m.src_c + m.inf_c ELSE m.attr_c END"


# v4 formula per metric over kx_m columns (m.*). Program attributed revenue is sourced + influenced.
FORMULAS: dict[str, str] = {
    "won_revenue": "m.won_c * 100",
    "sourced_revenue": "m.src_c * 100",
    "influenced_revenue": "m.inf_c * 100",
    "attributed_revenue": f"({ATTRIBUTED_CENTS}) * 100",
    "sourced_share": rdiv("m.src_c", "m.won_c", SCALE),
    "avg_deal_size_sourced": f"{rdiv('m.src_c', 'm.src_n')} * 100",
    "avg_deal_size_influenced": f"{rdiv('m.inf_c', 'm.inf_n')} * 100",
    "avg_deal_size_direct": f"{rdiv('m.dir_c', 'm.dir_n')} * 100",
    "revenue_per_active_partner": f"{rdiv('m.src_c + m.inf_c', 'm.active_n')} * 100",
    "applications": f"m.apps_n * {SCALE}",
    "partners_joined": f"m.joined_n * {SCALE}",
    "approval_rate_partners": rdiv("m.apps_ok", "m.apps_n", SCALE),
    "activation_rate": rdiv("m.activated_n", "m.joined_n", SCALE),
    # The rate's numerator: the partners of the cohort activated within the window (KPIS.md).
    "activated_partners": f"m.activated_n * {SCALE}",
    # prov: how many partners of the cohort are still inside their activation window.
    "activation_provisional": (
        f"(CASE WHEN m.joined_n > 0 THEN (CASE WHEN m.prov > 0 THEN {SCALE} ELSE 0 END) END)"
    ),
    "active_partners": f"m.active_n * {SCALE}",
    "first_sales": f"m.fs_n * {SCALE}",
    "ttfs_median_days": "m.ttfs_med * 1000",
    "ttfs_mean_days": f"{rdiv('m.ttfs_sum', 'm.fs_n', 10)} * 1000",
    "leads_generated": f"m.leads_n * {SCALE}",
    "opportunities_sourced": f"m.regs_ok * {SCALE}",
    "registration_approval_rate": rdiv("m.regs_ok", "m.regs_ok + m.regs_rej", SCALE),
    "opportunities_influenced": f"m.opp_inf * {SCALE}",
    "win_rate_sourced": rdiv("m.src_n", "m.src_n + m.lost_src", SCALE),
    "win_rate_influenced": rdiv("m.inf_n", "m.inf_n + m.lost_inf", SCALE),
    "win_rate_direct": rdiv("m.dir_n", "m.dir_n + m.lost_dir", SCALE),
    "sales_cycle_median_days_sourced": "m.cyc_src_med * 1000",
    "sales_cycle_median_days_influenced": "m.cyc_inf_med * 1000",
    "sales_cycle_median_days_direct": "m.cyc_dir_med * 1000",
    "program_cost": "m.cost_c * 100",
    "new_customers_sourced": f"m.newcust_n * {SCALE}",
    "cac": f"{rdiv('m.cost_c', 'm.newcust_n')} * 100",
    "roi": rdiv("m.src_c - m.cost_c", "m.cost_c", SCALE),
    # Partner economics (docs/kpis.md, "Commissions and MDF in the KPIs"): counted commission cost
    # over attributed revenue (sourced deals in full plus the attributed shares of influenced
    # ones, each cent once); counted MDF cost; revenue of the won deals linked to MDF over it.
    "commission_paid": "m.comm_c * 100",
    "commission_rate": rdiv("m.comm_c", f"({ATTRIBUTED_CENTS})", SCALE),
    "mdf_spent": "m.mdf_c * 100",
    "mdf_return": rdiv("m.mdfrev_c", "m.mdf_c", SCALE),
}


COMPUTED_METRICS = tuple(m for m in METRICS if m.name in FORMULAS)


assert {m.name for m in COMPUTED_METRICS} == set(FORMULAS), "every non-target metric needs a formula"


def build(ctx: RunContext) -> None:
    merge_cells(ctx)
    metric_values(ctx)


def merge_cells(ctx: RunContext) -> None:
    """kx_m: one row of components per cell, from kx_s."""
    merged = ", ".join(
        f"MAX({c}) AS {c}" if c in NULLABLE_COMPONENTS else f"COALESCE(MAX({c}), 0) AS {c}"
        for c in COMPONENTS
    )
    ctx.analyze(f"kx_s ({CELL_NAMES})")
    ctx.exec(
        f"CREATE TEMP TABLE kx_m AS SELECT scope, sid, grain, pidx, {merged} "
        "FROM kx_s GROUP BY scope, sid, grain, pidx"
    )


def metric_values(ctx: RunContext) -> None:
    """kx_v: every metric's value of the cells in kx_m, and the targets' rows."""
    ctx.analyze(f"kx_m ({CELL_NAMES})")
    ctx.exec(
        "CREATE TEMP TABLE kx_metric "
        "(code INTEGER, name VARCHAR(64), scope VARCHAR(12), zero_when_empty INTEGER)"
    )
    codes = {name: code for code, name in enumerate(FORMULAS)}
    rows = ", ".join(
        f"({codes[m.name]}, '{m.name}', '{scope}', {1 if m.name in ZERO_WHEN_EMPTY else 0})"
        for m in COMPUTED_METRICS
        for scope in m.scopes()
    )
    ctx.exec(f"INSERT INTO kx_metric (code, name, scope, zero_when_empty) VALUES {rows}")
    # Integer codes: one CASE per row over ~30 branches must not compare strings.
    value = "CASE k.code " + " ".join(f"WHEN {codes[n]} THEN {f}" for n, f in FORMULAS.items()) + " END"
    ctx.exec(
        "CREATE TEMP TABLE kx_v (scope VARCHAR(12), sid BIGINT, grain VARCHAR(8), pidx INTEGER, "
        "metric VARCHAR(64), target_metric VARCHAR(64), v4 BIGINT)"
    )
    # Partner rows are stored only where the partner has facts: non-zero sums, defined ratios.
    ctx.exec(
        f"""INSERT INTO kx_v (scope, sid, grain, pidx, metric, target_metric, v4)
        SELECT scope, sid, grain, pidx, metric, '', v4 FROM (
            SELECT m.scope, m.sid, m.grain, m.pidx, k.name AS metric, k.zero_when_empty, {value} AS v4
            FROM kx_m m JOIN kx_metric k ON k.scope = m.scope) x
        WHERE scope <> 'partner' OR (v4 IS NOT NULL AND (v4 <> 0 OR zero_when_empty = 0))"""
    )
    targets(ctx)


def targets(ctx: RunContext) -> None:
    scope = (
        "CASE WHEN t.partner_id IS NOT NULL THEN 'partner' "
        "WHEN t.join_source_id IS NOT NULL THEN 'join_source' ELSE 'program' END"
    )
    chunk = ctx.chunk
    in_chunk = " OR ".join(
        (["(t.partner_id IS NULL AND t.join_source_id IS NULL)"] if chunk.program else [])
        + (
            [
                f"(t.partner_id IS NOT NULL AND {chunk.join_source_filter('p.js')})",
                f"(t.join_source_id IS NOT NULL AND {chunk.join_source_filter('t.join_source_id')})",
            ]
            if chunk.partners
            else []
        )
    )
    pidx = (
        "CASE t.grain WHEN 'month' THEN t.start_mi WHEN 'quarter' THEN t.start_mi / 3 "
        "ELSE t.start_mi / 12 END"
    )
    ctx.exec(
        f"""CREATE TEMP TABLE kx_target AS
        SELECT {scope} AS scope, COALESCE(t.partner_id, t.join_source_id, 0) AS sid, t.grain,
               {pidx} AS pidx, t.metric, CAST(ROUND(t.value * {SCALE}) AS BIGINT) AS v4
        FROM kx_tgt t LEFT JOIN kx_partner p ON p.id = t.partner_id
        WHERE {in_chunk}"""
    )
    ctx.exec(
        """INSERT INTO kx_v (scope, sid, grain, pidx, metric, target_metric, v4)
        SELECT scope, sid, grain, pidx, 'target', metric, v4 FROM kx_target"""
    )
    # The actual value is recomputed from kx_m for the few target rows (a missing partner row
    # reads as 0 for money and counts, as in kpi_card_values).
    ctx.analyze("kx_target")
    codes = {name: code for code, name in enumerate(FORMULAS)}
    value = "CASE k.code " + " ".join(f"WHEN {codes[n]} THEN {f}" for n, f in FORMULAS.items()) + " END"
    actual = f"COALESCE({value}, CASE WHEN k.zero_when_empty = 1 THEN 0 END)"
    ctx.exec(
        f"""INSERT INTO kx_v (scope, sid, grain, pidx, metric, target_metric, v4)
        SELECT t.scope, t.sid, t.grain, t.pidx, 'target_progress', t.metric, {rdiv(actual, "t.v4", SCALE)}
        FROM kx_target t
        LEFT JOIN kx_metric k ON k.name = t.metric AND k.scope = t.scope
        LEFT JOIN kx_m m
               ON m.scope = t.scope AND m.sid = t.sid AND m.grain = t.grain AND m.pidx = t.pidx"""
    )


def publishable(ctx: RunContext) -> None:
    """kx_pub: kx_v in KpiValue's columns (labels, keys, Decimal values)."""
    # Unanalysed, kx_v looks like a few hundred rows and the planner looks its ~1M partners up
    # one by one (7 s instead of 1 s at 1M deals).
    ctx.analyze(f"kx_v ({CELL_NAMES}, metric, target_metric)")
    s = ctx.sql
    partner, join_source = Partner._meta.db_table, JoinSource._meta.db_table
    # The labels are the keys of the run's facts (kx_keys, read on its snapshot), so the state
    # names the keys its rows carry: a key renamed while a run computes is the next run's to
    # relabel (its facts see the key changed, and it compares every row). A partner or join
    # source deleted meanwhile has lost its rows (they cascade) and gets none.
    ctx.exec(
        f"""CREATE TEMP TABLE kx_pub AS
        SELECT v.scope,
               CASE v.scope WHEN 'program' THEN '' ELSE COALESCE(k.key, {s.int_to_text("v.sid")})
               END AS scope_key,
               p.id AS partner_id, j.id AS join_source_id, v.grain, pe.label AS period,
               pe.start_d AS period_start, v.metric, v.target_metric,
               '{ctx.settings.attribution_model}' AS attribution_model,
               {s.v4_to_value("v.v4")} AS value
        FROM kx_v v JOIN kx_period pe ON pe.grain = v.grain AND pe.pidx = v.pidx
        LEFT JOIN kx_keys k ON k.scope = v.scope AND k.id = v.sid
        LEFT JOIN {partner} p ON v.scope = 'partner' AND p.id = v.sid
        LEFT JOIN {join_source} j ON v.scope = 'join_source' AND j.id = v.sid
        WHERE v.scope = 'program' OR p.id IS NOT NULL OR j.id IS NOT NULL"""
    )
    ctx.result.staged_rows = ctx.fetch("SELECT COUNT(*) FROM kx_pub")[0][0]
