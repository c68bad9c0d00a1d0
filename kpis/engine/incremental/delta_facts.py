"""Delta facts: the previous run's facts patched with the rows changed since (FactChange)."""

from __future__ import annotations

from datetime import date, timedelta

from deals.models import DealRegistration, Touch
from kpis.engine import attribution, facts, families, periods, state
from kpis.engine.context import RunContext
from kpis.engine.incremental import delta_lifecycle
from kpis.engine.tables import (
    CHANGE_TABLES,
    DELTA_INDEXES,
    DELTA_TABLES,
    FACT_TABLES,
    STATE_TABLES,
    delta_index,
    run_schema,
    set_aside,
    state_table,
)
from kpis.models import CostEntry, CostEntryLink
from kpis.periods import month_index

# Delta facts patch the previous run's facts while fewer rows than this share of its deals changed;
# past it, building the facts again costs less than patching them.
DELTA_MAX_SHARE = 0.2


# ...and always while fewer than this many did (a small program's facts are quick either way).
DELTA_MIN_ROWS = 1_000


def patched_facts(ctx: RunContext) -> bool:
    """Read the change mark, then patch the previous run's facts if it can (_delta_base):
    whether it did. Otherwise the caller builds the facts in full."""
    state.read_change_mark(ctx)
    base = delta_base(ctx)
    if base is not None:
        delta_facts(ctx, base)
    return base is not None


def builds_in_full(changed_rows: int, deals: float) -> bool:
    """Whether a run builds its facts in full (not patched) after `changed_rows` changed rows in a
    program of `deals` deals: the CSV import logs one "truncate" row in place of such a write's rows."""
    return changed_rows > max(DELTA_MAX_SHARE * deals, DELTA_MIN_ROWS)


# The change log's mark a state was computed at (state.read_change_mark): snapshot, change id, own xid.
Mark = tuple[str | None, int, int]


def delta_base(ctx: RunContext) -> tuple[date, Mark, int] | None:
    """(as-of date, change mark, changed rows) of the previous run's state when this run can
    patch its facts instead of building them: the state was computed by this code with these
    settings, no table was truncated since, and few rows changed (under DELTA_MAX_SHARE of the
    deals, or under DELTA_MIN_ROWS); None otherwise."""
    if ctx.previous is None:
        return None
    old_state = state_table(ctx.previous, "kx_state")
    (code,), *_ = ctx.fetch(f"SELECT code FROM {old_state}")
    if code != state.code_and_settings(ctx):
        return None  # another engine or other settings built those facts (nor has it a mark)
    (as_of, snap, change_id, own_xid), *_ = ctx.fetch(
        f"SELECT as_of, snap, change_id, own_xid FROM {old_state}"
    )
    mark: Mark = (snap, change_id, own_xid)
    changes, truncated = ctx.fetch(
        f"""SELECT COUNT(*), SUM(CASE WHEN x.source = 'truncate' THEN 1 ELSE 0 END)
            FROM (SELECT DISTINCT source, row_id FROM ({state.changes_since(ctx, mark)}) c) x"""
    )[0]
    if truncated or builds_in_full(changes, state_deals(ctx, ctx.previous)):
        return None
    return date.fromisoformat(str(as_of)[:10]), mark, int(changes)


def state_deals(ctx: RunContext, previous: int) -> float:
    """How many deals the previous run's facts hold: on PostgreSQL as its planner last counted
    them (enough for the share of changes, without reading a million rows)."""
    table = state_table(previous, "kx_deal")
    if ctx.sql.pg:
        (estimate,), *_ = ctx.fetch(f"SELECT reltuples FROM pg_class WHERE oid = CAST('{table}' AS regclass)")
        if estimate >= 0:
            return float(estimate)
    return float(ctx.fetch(f"SELECT COUNT(*) FROM {table}")[0][0])


def adopt_state(ctx: RunContext) -> None:
    """Take the previous run's facts as this run's, to patch: on PostgreSQL its schema becomes
    this run's (so a failure leaves no state, and the next run builds its facts in full), on
    SQLite its tables are copied into this session's temp tables."""
    previous = ctx.previous
    assert previous is not None, "a run patching its facts has a previous state"
    drop_delta_tables(ctx)
    if ctx.sql.pg:
        ctx.exec(f"DROP SCHEMA {ctx.schema} CASCADE")
        ctx.exec(f"ALTER SCHEMA {run_schema(previous)} RENAME TO {ctx.schema}")
        for table in FACT_TABLES + CHANGE_TABLES + ["kx_del", "kx_ins", "kx_chunks"]:
            if table not in STATE_TABLES:
                ctx.exec(f"DROP TABLE IF EXISTS {ctx.schema}.{table}")
    else:
        for table in STATE_TABLES:
            ctx.exec(f'CREATE TEMP TABLE {table} AS SELECT * FROM "{state_table(previous, table)}"')
        facts.touch_view(ctx)
    # Set aside what every run rebuilds, for the comparison with the previous run.
    for table in ("kx_js", "kx_keys", "kx_allper", "kx_state"):
        ctx.exec(f"CREATE TEMP TABLE {set_aside(table)} AS SELECT * FROM {table}")
        ctx.exec(f"DROP TABLE {table}")
    # The lookups patching needs (on PostgreSQL the state has them already: index_state).
    for table, columns in DELTA_INDEXES:
        ctx.exec(delta_index(table, columns))


def drop_delta_tables(ctx: RunContext) -> None:
    """The session's own tables of patching (a session may compute one run after another)."""
    for table in DELTA_TABLES:
        ctx.exec(f"DROP TABLE IF EXISTS {'pg_temp' if ctx.sql.pg else 'temp'}.{table}")


def delta_facts(ctx: RunContext, base: tuple[date, Mark, int]) -> None:
    """Patch the previous run's facts with the rows changed since it read them (FactChange).

    Every fact row is a function of some live rows: a deal's row of the deal and its touches, a
    touch's of the touch, its deal and its partner, a partner's activities and first sale of its
    deals, touches and registrations, an account's new-customer row of its deals... From the
    changed rows the affected keys follow (kx_aff_*: deals, partners, accounts, registrations,
    costs), read from the previous facts and from the live rows; the facts of exactly those
    keys are deleted and computed again, from the live rows or the patched facts. The rows of
    every contribution family for those keys are kept first (kx_before_*), so the comparison
    with the previous run reads only them.
    """
    previous_as_of, mark, ctx.result.changed_rows = base
    adopt_state(ctx)
    if ctx.sql.pg:
        # The affected keys are a sliver of the facts, which are in memory: index probes beat
        # scanning them all, which PostgreSQL's default page costs (for disks) would choose.
        ctx.exec("SET LOCAL random_page_cost = 1.1")
    ctx.exec(
        f"CREATE TEMP TABLE kx_chg AS SELECT DISTINCT source, row_id, related_id "
        f"FROM ({state.changes_since(ctx, mark)}) c"
    )

    as_of_moved = affected_keys(ctx, previous_as_of)
    keep_previous_rows(ctx, previous_as_of)
    patch_facts(ctx, previous_as_of, as_of_moved=as_of_moved)


def affected_keys(ctx: RunContext, previous_as_of: date) -> bool:
    """kx_aff_* (deals, accounts, registrations, costs, partners: the key tables the families
    name, families.Family.keys) and kx_own_partner from the changed rows (kx_chg), with the
    affected deals' rows and touches before and after patching; returns whether the as-of date
    moved since the previous run."""
    ctx.keys("kx_chg_partner", changed("partner"))
    affected_costs(ctx)
    affected_deals(ctx)
    ctx.keys(
        "kx_aff_account",
        "SELECT account_id AS k FROM kx_aff_deal_before",
        "SELECT account_id AS k FROM kx_aff_deal_now",
    )
    ctx.keys(
        "kx_aff_reg",
        changed("registration"),
        f"SELECT id AS k FROM kx_reg WHERE partner_id {IN_CHANGED_PARTNERS}",
    )
    return affected_partners(ctx, previous_as_of)


# The tables of affected keys affected_keys writes, which a family may name (families.Family.keys).
AFFECTED_KEYS = ("kx_aff_deal", "kx_aff_account", "kx_aff_reg", "kx_aff_cost", "kx_aff_partner")


# The partners whose own row changed (kx_chg_partner).
IN_CHANGED_PARTNERS = "IN (SELECT k FROM kx_chg_partner)"


def changed(source: str) -> str:
    """The keys of the changed rows of `source` (a deal, partner, touch... of the change log)."""
    return f"SELECT row_id AS k FROM kx_chg WHERE source = '{source}'"


def affected_deals(ctx: RunContext) -> None:
    """kx_aff_deal: the deals whose rows (or touches) may have changed, and their rows and touches
    before patching and after."""
    in_costs = "IN (SELECT k FROM kx_aff_cost)"
    ctx.keys(
        "kx_aff_deal",
        changed("deal"),
        "SELECT related_id AS k FROM kx_chg WHERE source = 'touch' AND related_id IS NOT NULL",
        # A partner's join source is in its touches' and sourced deals' rows.
        f"SELECT deal_id AS k FROM kx_touch_all WHERE partner_id {IN_CHANGED_PARTNERS}",
        f"SELECT id AS k FROM kx_deal WHERE sp {IN_CHANGED_PARTNERS}",
        # The deals the affected costs produced, before and now (their mdf_deals rows).
        f"SELECT deal_id AS k FROM kx_link WHERE cost_id {in_costs}",
        f"SELECT deal_id AS k FROM ({facts.link_select(f'l.cost_entry_id {in_costs}')}) l",
    )
    in_deals = "IN (SELECT k FROM kx_aff_deal)"
    # The affected deals' rows and touches, before patching and after, each read once for the
    # statements that need them: small tables, where PostgreSQL might plan a scan of the facts.
    # Their rows after patching come from the live tables (kx_aff_deal_now: every column but
    # those read from the patched partners), their touches' (kx_aff_touch_live) too.
    ctx.exec(f"CREATE TEMP TABLE kx_aff_deal_before AS SELECT * FROM kx_deal WHERE id {in_deals}")
    ctx.exec(f"CREATE TEMP TABLE kx_aff_touch AS SELECT * FROM kx_touch_all WHERE deal_id {in_deals}")
    ctx.exec(
        "CREATE TEMP TABLE kx_aff_deal_now AS "
        + facts.deal_select(ctx, segment_from_base=True, where=f"d.id {in_deals}")
    )
    ctx.exec(
        "CREATE TEMP TABLE kx_aff_touch_live AS SELECT t.id, t.deal_id, t.partner_id, t.touched_at "
        f"FROM {Touch._meta.db_table} t WHERE t.deal_id {in_deals}"
    )
    ctx.analyze("kx_aff_touch", "kx_aff_deal_now")
    # Their counting touches (kx_touch's), before and (below) after.
    ctx.exec("CREATE TEMP TABLE kx_aff_count_before AS SELECT * FROM kx_aff_touch WHERE late = 0")


def affected_partners(ctx: RunContext, previous_as_of: date) -> bool:
    """kx_aff_partner: partners whose rows may have changed: their own row, the partners of the
    affected deals and registrations (before and now), and, when the as-of date moved, those it
    moves into or out of their activation window or past a first sale. Their rows are compared;
    only some of them have their activities and first sale recomputed (kx_recalc_partner,
    delta_lifecycle). kx_own_partner: those whose own activities may have changed. Returns
    whether the as-of date moved."""
    reg = DealRegistration._meta.db_table
    own_sets = [
        "SELECT k FROM kx_chg_partner",
        "SELECT partner_id AS k FROM kx_reg WHERE id IN (SELECT k FROM kx_aff_reg)",
        f"SELECT partner_id AS k FROM {reg} WHERE id IN (SELECT k FROM kx_aff_reg)",
    ]
    partner_sets = own_sets + [
        "SELECT sp AS k FROM kx_aff_deal_before WHERE sp IS NOT NULL",
        "SELECT sp AS k FROM kx_aff_deal_now WHERE sp IS NOT NULL",
        "SELECT partner_id AS k FROM kx_aff_touch",
        "SELECT partner_id AS k FROM kx_aff_touch_live",
    ]
    as_of_moved = previous_as_of != ctx.as_of
    if as_of_moved:
        as_of_partners(ctx, previous_as_of)
        partner_sets.append("SELECT k FROM kx_asof_partner")
        own_sets.append("SELECT k FROM kx_asof_partner")
    ctx.keys("kx_aff_partner", *partner_sets)
    # Read now: once kx_reg is patched it no longer holds a moved or deleted registration's partner.
    ctx.keys("kx_own_partner", *own_sets)
    return as_of_moved


def as_of_partners(ctx: RunContext, previous_as_of: date) -> None:
    """kx_asof_partner: the partners the as-of date's move (from `previous_as_of`) moves into or
    out of their activation window, or past a first sale."""
    s = ctx.sql
    lo, hi = sorted((previous_as_of, ctx.as_of))
    window_lo = s.date_literal(lo - timedelta(days=ctx.settings.activation_window_days + 1))
    lo_d, hi_d = s.date_literal(lo), s.date_literal(hi)
    # The other deals won between the two dates, whose sales may now count or no longer. Their
    # months too, redundant, so the state's index on closed_mi finds them (not a scan of every deal).
    ctx.exec(
        f"CREATE TEMP TABLE kx_asof_deal AS SELECT * FROM kx_deal WHERE status = 'won' "
        f"AND closed_mi BETWEEN {month_index(lo)} AND {month_index(hi)} "
        f"AND closed_d > {lo_d} AND closed_d <= {hi_d} AND id NOT IN (SELECT k FROM kx_aff_deal)"
    )
    ctx.analyze("kx_asof_deal")
    ctx.keys(
        "kx_asof_partner",
        f"SELECT id AS k FROM kx_partner WHERE joined >= {window_lo} AND joined <= {hi_d}",
        "SELECT sp AS k FROM kx_asof_deal WHERE sp IS NOT NULL",
        "SELECT t.partner_id AS k FROM kx_touch t JOIN kx_asof_deal d ON d.id = t.deal_id WHERE d.seg = 'i'",
    )


def affected_costs(ctx: RunContext) -> None:
    """kx_aff_cost: the costs whose fact rows (kx_cost, kx_link) may have changed. A cost written
    (a write to one of its links is logged as one to the cost), every cost of a partner such a
    cost names, before or now (a booked cost moves where the partner's recorded costs of its
    category stop counting), every cost of a changed partner (its join source), and every cost
    linked to a changed registration (the registration's deal)."""
    cost, link = CostEntry._meta.db_table, CostEntryLink._meta.db_table
    in_changed = f"IN ({changed('cost')})"
    ctx.keys(
        "kx_aff_cost",
        changed("cost"),
        "SELECT id AS k FROM kx_cost WHERE partner_id IN (SELECT k FROM kx_chg_partner)",
        f"""SELECT id AS k FROM {cost} WHERE partner_id IN (
            SELECT partner_id FROM kx_cost WHERE id {in_changed}
            UNION SELECT partner_id FROM {cost} WHERE id {in_changed})""",
        f"SELECT cost_entry_id AS k FROM {link} WHERE registration_id IN ({changed('registration')})",
    )


def keep_previous_rows(ctx: RunContext, previous_as_of: date) -> None:
    """The affected rows' month bounds, and every contribution family's rows of the affected keys
    as the previous run read them (kx_before_*), before the facts are patched."""
    ctx.affected_bounds["before"] = periods.fact_bounds(ctx, affected="before")

    # The previous rows of the affected keys, as the previous run read them (its as-of date).
    for i, family in enumerate(
        families.contributions(ctx, families.affected_touches("kx_aff_touch"), previous_as_of)
    ):
        ctx.exec(
            f"CREATE TEMP TABLE kx_before_{i} AS "
            f"SELECT {family.columns} FROM {family.source(affected_only=True)}"
        )


def patch_facts(ctx: RunContext, previous_as_of: date, *, as_of_moved: bool) -> None:
    """Patch each fact of the affected keys from what it depends on."""
    reg = DealRegistration._meta.db_table
    in_changed_partners, in_deals = "IN (SELECT k FROM kx_chg_partner)", "IN (SELECT k FROM kx_aff_deal)"
    keys = ctx.keys
    # Partners first: the other facts carry their join source.
    ctx.fill(
        "kx_partner",
        facts.partner_select(ctx, f"p.id {in_changed_partners}"),
        replace=f"id {in_changed_partners}",
    )
    facts.facts_labels(ctx)
    ctx.fill("kx_deal", "SELECT * FROM kx_aff_deal_now", replace=f"id {in_deals}")
    ctx.exec(
        "CREATE TEMP TABLE kx_aff_touch_now AS "
        + facts.touch_select(ctx, touches="kx_aff_touch_live", deals="kx_aff_deal_now")
    )
    ctx.analyze("kx_aff_touch_now")
    ctx.exec("CREATE TEMP TABLE kx_aff_count_now AS SELECT * FROM kx_aff_touch_now WHERE late = 0")
    ctx.fill("kx_touch_all", "SELECT * FROM kx_aff_touch_now", replace=f"deal_id {in_deals}")
    in_regs, in_costs = "IN (SELECT k FROM kx_aff_reg)", "IN (SELECT k FROM kx_aff_cost)"
    # The accounts whose duplicate-claim items may change, read before kx_reg is patched.
    keys(
        "kx_aff_claim",
        f"SELECT account_id AS k FROM kx_reg WHERE id {in_regs}",
        f"SELECT account_id AS k FROM {reg} WHERE id {in_regs}",
    )
    ctx.exec(f"CREATE TEMP TABLE kx_aff_reg_before AS SELECT * FROM kx_reg WHERE id {in_regs}")
    ctx.exec(f"CREATE TEMP TABLE kx_aff_reg_now AS {facts.reg_select(ctx, f'r.id {in_regs}')}")
    ctx.fill("kx_reg", "SELECT * FROM kx_aff_reg_now", replace=f"id {in_regs}")
    ctx.fill("kx_cost", facts.cost_select(ctx, f"c.id {in_costs}"), replace=f"id {in_costs}")
    ctx.fill("kx_link", facts.link_select(f"l.cost_entry_id {in_costs}"), replace=f"cost_id {in_costs}")
    ctx.exec("DROP TABLE kx_tgt")
    ctx.fill("kx_tgt", facts.target_select(ctx))
    delta_lifecycle.patch_lifecycle(ctx, previous_as_of, as_of_moved=as_of_moved)
    attribution.build(
        ctx,
        deals="kx_aff_deal",
        deal_rows="kx_aff_deal_now",
        touch_rows="kx_aff_count_now",
    )
    facts.new_customers(ctx, accounts="kx_aff_account")
    ctx.analyze("kx_tgt")
    ctx.affected_bounds["after"] = periods.fact_bounds(ctx, affected="after")
