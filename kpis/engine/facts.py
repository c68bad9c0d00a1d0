"""Stage 1, facts: the kx_* tables of the live rows (local dates, months, segments) every stage reads."""

from __future__ import annotations

from deals.models import Deal, DealRegistration, Touch
from kpis.engine.context import RunContext
from kpis.engine.tables import DELTA_INDEXES, DRILL_INDEXES, delta_index
from kpis.models import BOOKED_CATEGORIES, BOOKED_SOURCES, CostEntry, CostEntryLink, Target
from partners.models import JoinSource, Partner


def index_for_patching(ctx: RunContext, *tables: str) -> None:
    """Build `tables`' DELTA_INDEXES now (index_state skips what exists)."""
    _build_indexes(ctx, DELTA_INDEXES, tables)


def index_for_drilldown(ctx: RunContext, *tables: str) -> None:
    """Build `tables`' DRILL_INDEXES now (index_state skips what exists)."""
    _build_indexes(ctx, DRILL_INDEXES, tables)


def _build_indexes(ctx: RunContext, indexes: list[tuple[str, str]], tables: tuple[str, ...]) -> None:
    # The run's transaction settings (ctx.begin_local) give the builds their memory.
    for table, columns in indexes:
        if table in tables:
            ctx.exec(delta_index(table, columns))


def build(ctx: RunContext) -> None:
    facts_touches(ctx)
    facts_pipeline(ctx)
    facts_deals(ctx, segment_from_base=False)


def partner_select(ctx: RunContext, where: str = "1 = 1") -> str:
    s = ctx.sql
    return f"""SELECT p.id, p.join_source_id AS js, p.joined_at AS joined, p.applied_at AS applied,
               {s.month_index("p.joined_at")} AS joined_mi, {s.month_index("p.applied_at")} AS applied_mi
        FROM {Partner._meta.db_table} p WHERE {where}"""


def touch_select(ctx: RunContext, *, touches: str | None = None, deals: str | None = None) -> str:
    """Every touch (kx_touch_all) of `touches` (default the touch table), whose deals are in
    `deals` (default the deal table); `late`: dated after its deal's close, so it does not count."""
    s = ctx.sql
    deal, touch = deals or Deal._meta.db_table, touches or Touch._meta.db_table
    return f"""SELECT x.id, x.deal_id, x.partner_id, x.touched_at, x.touched_d,
               {s.month_index("x.touched_d")} AS touched_mi, p.js, x.late
        FROM (SELECT t.id, t.deal_id, t.partner_id, t.touched_at,
                     {s.local_date("t.touched_at")} AS touched_d,
                     CASE WHEN d.closed_at IS NOT NULL AND t.touched_at > d.closed_at
                          THEN 1 ELSE 0 END AS late
              FROM {touch} t JOIN {deal} d ON d.id = t.deal_id) x
        JOIN kx_partner p ON p.id = x.partner_id"""


def facts_touches(ctx: RunContext) -> None:
    """kx_js, kx_keys, kx_partner, kx_touch_all (and the kx_touch view)."""
    facts_labels(ctx)
    ctx.fill("kx_partner", partner_select(ctx))
    # Only touches dated on or before the deal's close count (open deals: every touch): kx_touch
    # is a view of those; the late ones stay in kx_touch_all for the reconciliation report.
    ctx.fill("kx_touch_all", touch_select(ctx))
    touch_view(ctx)
    if not ctx.sql.pg:  # PostgreSQL hash-joins on deal_id; SQLite's nested loops need the index
        ctx.exec("CREATE INDEX kx_touch_all_deal_id ON kx_touch_all (deal_id)")
    ctx.analyze("kx_partner", "kx_touch_all")


def facts_labels(ctx: RunContext) -> None:
    """kx_js and kx_keys: the join sources, and the labels of the published rows, so the next
    incremental run can tell a renamed key. Small: rebuilt by every run."""
    partner, join_source = Partner._meta.db_table, JoinSource._meta.db_table
    ctx.exec(f"CREATE {ctx.fact_table('kx_js')} AS SELECT id FROM {join_source}")
    ctx.exec(
        f"""CREATE {ctx.fact_table("kx_keys")} AS
        SELECT 'partner' AS scope, id, key FROM {partner}
        UNION ALL SELECT 'join_source', id, key FROM {join_source}"""
    )
    # The staged rows join their labels from it (metrics.py); unanalyzed, the planner guessed
    # a sixth of its rows and sorted every staged row for a merge join.
    ctx.analyze("kx_keys")


def touch_view(ctx: RunContext) -> None:
    view = f"VIEW {ctx.schema}.kx_touch" if ctx.schema else "TEMP VIEW kx_touch"
    ctx.exec(
        f"CREATE {view} AS SELECT id, deal_id, partner_id, touched_at, touched_d, touched_mi, js "
        "FROM kx_touch_all WHERE late = 0"
    )


def reg_select(ctx: RunContext, where: str = "1 = 1") -> str:
    s = ctx.sql
    partners = f"(SELECT id, join_source_id AS js FROM {Partner._meta.db_table})"
    return f"""SELECT x.id, x.partner_id, p.js, x.status, x.account_id,
               {s.month_index("x.submitted_d")} AS submitted_mi, x.submitted_d,
               {s.month_index("x.decided_d")} AS decided_mi
        FROM (SELECT r.id, r.partner_id, r.status, r.account_id,
                     {s.local_date("r.submitted_at")} AS submitted_d,
                     {s.local_date("r.decided_at")} AS decided_d
              FROM {DealRegistration._meta.db_table} r WHERE {where}) x
        JOIN {partners} p ON p.id = x.partner_id"""


def cost_select(ctx: RunContext, where: str = "1 = 1") -> str:
    """kx_cost's rows: the cost entries the KPIs count (`cat`: the category), without the recorded
    ones a booked cost supersedes (`counted_cost`)."""
    partners = f"(SELECT id, join_source_id AS js FROM {Partner._meta.db_table})"
    return f"""SELECT c.id, CAST(ROUND(c.amount * 100) AS BIGINT) AS cents,
               {ctx.sql.month_index("c.date")} AS mi,
               c.partner_id, c.join_source_id AS tag_js, p.js AS partner_js, c.category AS cat
        FROM {CostEntry._meta.db_table} c LEFT JOIN {partners} p ON p.id = c.partner_id
        WHERE ({where}) AND {counted_cost(ctx, "c")}"""


def counted_cost(ctx: RunContext, c: str) -> str:
    """The condition on the cost entry `c` that the KPIs count it (docs/kpis.md, "Booked costs
    are never counted twice"; the ORM's twin is kpis.costs.superseded): every booked entry and
    every recorded one, except a recorded commission or MDF entry of a partner for which the
    program has booked that category in the entry's month or before."""
    table, month = CostEntry._meta.db_table, ctx.sql.month_index
    booked = ", ".join(f"'{source}'" for source in BOOKED_SOURCES)
    kinds = ", ".join(f"'{category}'" for category in BOOKED_CATEGORIES)
    return f"""NOT ({c}.source = '{CostEntry.Source.RECORDED}' AND {c}.category IN ({kinds})
        AND {c}.partner_id IS NOT NULL AND EXISTS (
            SELECT 1 FROM {table} b WHERE b.partner_id = {c}.partner_id AND b.category = {c}.category
            AND b.source IN ({booked}) AND {month("b.date")} <= {month(f"{c}.date")}))"""


def link_select(where: str = "1 = 1") -> str:
    """kx_link: each deal a cost entry produced (CostEntryLink), named directly or as a linked
    registration's deal (a registration without a deal yet reaches none); each pair once."""
    link, reg = CostEntryLink._meta.db_table, DealRegistration._meta.db_table
    return f"""SELECT DISTINCT l.cost_entry_id AS cost_id, COALESCE(l.deal_id, r.deal_id) AS deal_id
        FROM {link} l LEFT JOIN {reg} r ON r.id = l.registration_id
        WHERE ({where}) AND COALESCE(l.deal_id, r.deal_id) IS NOT NULL"""


def target_select(ctx: RunContext) -> str:
    # Read with the other facts, so a chunk computing targets later still sees the run's snapshot.
    return f"""SELECT partner_id, join_source_id, grain, period_start, metric, value,
               {ctx.sql.month_index("period_start")} AS start_mi
        FROM {Target._meta.db_table}"""


def facts_pipeline(ctx: RunContext) -> None:
    """kx_reg, kx_cost, kx_link and kx_tgt (the targets), from the live tables only (a session
    may build them beside the one building kx_partner)."""
    ctx.fill("kx_reg", reg_select(ctx))
    ctx.fill("kx_cost", cost_select(ctx))
    ctx.fill("kx_link", link_select())
    ctx.fill("kx_tgt", target_select(ctx))
    ctx.analyze("kx_reg", "kx_cost", "kx_link", "kx_tgt")


def deal_select(ctx: RunContext, *, segment_from_base: bool, where: str = "1 = 1") -> str:
    """kx_deal's rows. `segment_from_base`: find counting touches in the touch table itself (a
    session building kx_deal beside the one building kx_touch, on the same snapshot)."""
    s = ctx.sql
    counting_touch = (
        f"SELECT 1 FROM {Touch._meta.db_table} t WHERE t.deal_id = x.id "
        "AND (x.closed_at IS NULL OR t.touched_at <= x.closed_at)"
        if segment_from_base
        else "SELECT 1 FROM kx_touch t WHERE t.deal_id = x.id"
    )
    # Segment: s(ourced), i(nfluenced: no sourcing partner, at least one counting touch), d(irect).
    return f"""SELECT x.*, {s.month_index("x.closed_d")} AS closed_mi,
               {s.month_index("x.created_d")} AS created_mi,
               CASE WHEN x.sp IS NOT NULL THEN 's'
                    WHEN EXISTS ({counting_touch}) THEN 'i'
                    ELSE 'd' END AS seg
        FROM (SELECT d.id, d.account_id, d.key AS dkey, CAST(ROUND(d.amount * 100) AS BIGINT) AS cents,
                     d.status, d.sourcing_partner_id AS sp, d.created_at, d.closed_at,
                     {s.local_date("d.created_at")} AS created_d,
                     {s.local_date("d.closed_at")} AS closed_d
              FROM {Deal._meta.db_table} d WHERE {where}) x"""


def facts_deals(ctx: RunContext, *, segment_from_base: bool) -> None:
    """kx_deal."""
    ctx.fill("kx_deal", deal_select(ctx, segment_from_base=segment_from_base))
    ctx.exec("CREATE INDEX kx_deal_id ON kx_deal (id)")
    ctx.analyze("kx_deal")


def new_customers(ctx: RunContext, *, accounts: str | None = None) -> None:
    """kx_newcust: accounts whose first ever won deal (earliest closed_at, ties to the lowest
    key) was partner-sourced, with that deal, its sourcing partner and close month. `accounts`:
    delta facts, replace only the rows of the accounts in that table (column k)."""
    s = ctx.sql
    only = f"account_id IN (SELECT k FROM {accounts})" if accounts else "1 = 1"
    ctx.fill(
        "kx_newcust",
        f"""SELECT d.id AS deal_id, d.sp AS partner_id, p.js, d.closed_mi, d.account_id
        FROM (SELECT id, sp, closed_mi, account_id, ROW_NUMBER() OVER (
                    PARTITION BY account_id
                    ORDER BY closed_at, CASE WHEN dkey IS NULL THEN 1 ELSE 0 END,
                             {s.text_key_order("dkey")}, id) AS rn
              FROM kx_deal WHERE status = 'won' AND {only}) d
        JOIN kx_partner p ON p.id = d.sp WHERE d.rn = 1""",
        replace=only if accounts else None,
    )
