"""Each won deal's attributed cents per partner, for other apps (the commission ledger).

The split is the KPI engine's own (kpis.engine.attribution.build): sourced deals give the whole
amount to the sourcing partner; influenced deals split by the program's model, floored to cents,
leftover cents to the largest remainders. Nothing is re-implemented here: this only builds the
engine's facts for the won deals asked for and copies kx_attr to a table the caller names.
"""

from __future__ import annotations

from collections.abc import Iterable

from deals.models import Deal
from kpis.engine import attribution, facts
from kpis.engine.context import EngineSettings, RunContext
from program.models import ProgramSettings, program_today


def build_attributed_shares(table: str, *, deal_ids: Iterable[int] | None = None) -> None:
    """CREATE TEMP TABLE `table` (deal_id, partner_id, cents): the attributed cents of each won
    deal (of `deal_ids`, default every won deal) under the program's attribution model, in this
    session. Set-based: a handful of statements whatever the number of deals. The caller drops
    the table; the engine's own kx_* tables are dropped before returning."""
    if not table.isidentifier():
        raise ValueError(f"not a table name: {table!r}")
    ctx = RunContext(EngineSettings.from_program(ProgramSettings.load()), program_today())
    where = "d.status = 'won'"
    if deal_ids is not None:
        ids = sorted({int(i) for i in deal_ids})
        where += f" AND d.id IN ({', '.join(map(str, ids))})" if ids else " AND 1 = 0"
    ctx.drop()
    ctx.exec(f"DROP TABLE IF EXISTS {table}")
    try:
        with ctx.sql.session_time_zone():
            ctx.fill("kx_partner", facts.partner_select(ctx))
            won = f"(SELECT * FROM {Deal._meta.db_table} d WHERE {where})"
            ctx.fill("kx_touch_all", facts.touch_select(ctx, deals=won))
            facts.touch_view(ctx)
            ctx.fill("kx_deal", facts.deal_select(ctx, segment_from_base=False, where=where))
            ctx.analyze("kx_partner", "kx_touch_all", "kx_deal")
            attribution.build(ctx)
            ctx.exec(f"CREATE TEMP TABLE {table} AS SELECT deal_id, partner_id, cents FROM kx_attr")
    finally:
        ctx.drop()
