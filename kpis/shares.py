"""Won deals' attributed cents per partner under one or more models, for other apps and pages.

The one place outside a KPI run that builds the engine's facts for some deals and splits them:
the commission ledger ("% of attributed revenue", the program's model) and the deal page (one
deal under all five models, kpis.deal_attribution) both call `build_attributed_shares`. The
split is the KPI engine's own (kpis.engine.attribution.build): sourced deals give the whole
amount to the sourcing partner; influenced deals split by the model, floored to cents, leftover
cents to the largest remainders. Nothing is re-implemented here: this builds the engine's fact
tables (kx_partner, kx_touch_all and the kx_touch view, kx_deal) for the won deals asked for with
the engine's own SELECTs, runs the attribution stage once per model and copies kx_attr to a
table the caller names. (The attribution explorer, kpis.published_attribution, builds no facts:
it splits copies of the publishing run's facts, so it calls the attribution stage directly.)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from deals.models import Deal, Touch
from kpis.engine import attribution, facts
from kpis.engine.context import EngineSettings, RunContext
from program.attribution import AttributionModel
from program.models import ProgramSettings, program_today

# What this module creates in the session besides the caller's table (dropped before returning).
_VIEWS = ("kx_touch",)
_TABLES = ("kx_attr", "kx_tw", "kx_deal", "kx_touch_all", "kx_partner")


def build_attributed_shares(
    table: str, *, deal_ids: Iterable[int] | None = None, models: Sequence[str] | None = None
) -> None:
    """CREATE TEMP TABLE `table` (model, deal_id, partner_id, cents, seg): the attributed cents
    of each won deal (of `deal_ids`, default every won deal) under each of `models` (default the
    program's model), seg 's' (sourced: all to the sourcing partner) or 'i' (influenced), in this
    session. The facts are built once whatever the number of models; a fixed number of
    statements whatever the number of deals. The caller runs it in its transaction (with its
    settings, e.g. prm.database.transaction_settings) and drops the table; the engine's kx_*
    tables are dropped before returning."""
    if not table.isidentifier():
        raise ValueError(f"not a table name: {table!r}")
    program = ProgramSettings.load()
    names = list(models or [program.attribution_model])
    ctx = RunContext(EngineSettings.from_program(program), program_today(program))
    ids = None if deal_ids is None else sorted({int(i) for i in deal_ids})
    _drop(ctx)
    ctx.exec(f"DROP TABLE IF EXISTS {table}")
    try:
        with ctx.sql.session_time_zone():
            _build_facts(ctx, ids)
            split_shares(ctx, table, names)
    finally:
        _drop(ctx)


def split_shares(
    ctx: RunContext,
    table: str,
    models: Sequence[str],
    *,
    deal_rows: str = "kx_deal",
    touch_rows: str = "kx_touch",
) -> None:
    """CREATE TEMP TABLE `table` (model, deal_id, partner_id, cents, seg): the engine's split
    (kpis.engine.attribution.build) of the facts in this session (kx_partner, and `deal_rows`,
    `touch_rows` as the engine's kx_deal and kx_touch) under each of `models` in turn. Leaves
    the last model's kx_tw and kx_attr for the caller to drop (ctx.settings: the last model)."""
    names = [AttributionModel(m).value for m in models]
    for n, model in enumerate(names):
        if n:  # the previous model's split
            ctx.exec("DROP TABLE IF EXISTS kx_attr")
            ctx.exec("DROP TABLE IF EXISTS kx_tw")
        ctx.settings.attribution_model = model
        attribution.build(ctx, deal_rows=deal_rows, touch_rows=touch_rows)
        shares = f"SELECT '{model}' AS model, deal_id, partner_id, cents, seg FROM kx_attr"
        ctx.exec(f"INSERT INTO {table} {shares}" if n else f"CREATE TEMP TABLE {table} AS {shares}")


def _build_facts(ctx: RunContext, ids: list[int] | None) -> None:
    """kx_partner, kx_touch_all (and the kx_touch view), kx_deal of the won deals `ids` (None:
    every won deal), by the engine's own SELECTs; only their partners when ids are given."""
    deal, touch = Deal._meta.db_table, Touch._meta.db_table
    where, partners = "d.status = 'won'", "1 = 1"
    touches: str | None = None
    if ids is not None:
        in_ids = f"IN ({', '.join(map(str, ids))})" if ids else "IN (NULL)"  # IN (NULL): no deal
        where += f" AND d.id {in_ids}"
        touches = f"(SELECT * FROM {touch} WHERE deal_id {in_ids})"
        partners = (
            f"p.id IN (SELECT partner_id FROM {touch} WHERE deal_id {in_ids}) "
            f"OR p.id IN (SELECT sourcing_partner_id FROM {deal} WHERE id {in_ids})"
        )
    ctx.fill("kx_partner", facts.partner_select(ctx, where=partners))
    won = f"(SELECT * FROM {deal} d WHERE {where})"
    ctx.fill("kx_touch_all", facts.touch_select(ctx, touches=touches, deals=won))
    facts.touch_view(ctx)
    ctx.fill("kx_deal", facts.deal_select(ctx, segment_from_base=False, where=where))
    ctx.analyze("kx_partner", "kx_touch_all", "kx_deal")


def _drop(ctx: RunContext) -> None:
    for view in _VIEWS:
        ctx.exec(f"DROP VIEW IF EXISTS {view}")
    for name in _TABLES:
        ctx.exec(f"DROP TABLE IF EXISTS {name}")
