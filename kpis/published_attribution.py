"""The attribution explorer's figures from the published facts, not from a computation of every deal.

Per partner: sourced, influenced and attributed revenue of the deals won between two local dates,
under each attribution model asked for. The deals, touches and partners are the state of the run
that published the KPI set (kpis.drilldown.published_facts), so the explorer agrees with the
published values. The program's own model reads that run's shares (kx_attr) as they are; another
model splits only the won influenced deals of those dates again, with the engine's own SQL
(kpis.shares.split_shares, i.e. kpis.engine.attribution.build) over copies of their rows: exact,
and bounded by the dates asked for. It builds no facts of its own (kpis.shares.build_attributed_shares
builds them from the deal tables as they are now; these are the publishing run's).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from django.db import connection

from kpis.drilldown import Facts
from kpis.engine.context import EngineSettings, RunContext
from kpis.engine.session import engine_transaction
from kpis.shares import split_shares
from partners.models import Partner
from program.attribution import AttributionModel
from program.models import ProgramSettings

# The temp tables and view this module writes (dropped again at the end of its transaction).
_TEMP = ("kx_pa_deal", "kx_pa_touch", "kx_tw", "kx_attr", "kx_pa_base", "kx_pa_share")


def store_explorer_rows(
    period_id: int, *, facts: Facts, period_from: date, period_to: date, table: str, columns: Sequence[str]
) -> None:
    """Insert into `table` one row per partner with revenue won between the dates: `period_id`,
    partner, sourced and influenced cents, then the attributed cents of each model in `columns`
    order (kpis.explorer's memo): per partner, the sourced and influenced revenue of the won deals
    of the dates and each model's shares of them, summed and pivoted in the database in one
    statement; the caller holds the transaction."""
    models = [AttributionModel(m).value for m in columns]
    with engine_transaction():
        _build(facts, models, period_from, period_to)
        tagged = " UNION ALL ".join(
            f"SELECT partner_id, 0 AS src, 0 AS inf, {i} AS m, cents FROM ({_shares(facts, model)}) s{i}"
            for i, model in enumerate(models)
        )
        pivot = ", ".join(f"SUM(CASE WHEN x.m = {i} THEN x.cents ELSE 0 END)" for i in range(len(models)))
        _exec(
            f"""INSERT INTO {table} (period_id, partner_id, sourced, influenced, {", ".join(models)})
            SELECT {int(period_id)}, p.id, SUM(x.src), SUM(x.inf), {pivot} FROM (
                SELECT partner_id, src, inf, -1 AS m, 0 AS cents FROM kx_pa_base
                UNION ALL {tagged}
            ) x JOIN {Partner._meta.db_table} p ON p.id = x.partner_id
            GROUP BY p.id"""
        )
        _drop(facts.sql().pg)


def _build(facts: Facts, models: Sequence[str], period_from: date, period_to: date) -> None:
    """The temp tables: the won deals of the dates, their touches, the model-independent sourced
    and influenced rows (kx_pa_base), and the shares of the models other than the run's (kx_pa_share)."""
    program = ProgramSettings.load()
    sql = facts.sql()
    _drop(sql.pg)
    lo, hi = sql.date_literal(period_from), sql.date_literal(period_to)
    _exec(
        f"""CREATE TEMP TABLE kx_pa_deal AS SELECT * FROM {facts.t("kx_deal")}
        WHERE status = 'won' AND closed_d >= {lo} AND closed_d <= {hi}"""
    )
    _exec(
        f"""CREATE TEMP TABLE kx_pa_touch AS
        SELECT t.id, t.deal_id, t.partner_id, t.touched_at, t.js FROM {facts.t("kx_touch_all")} t
        WHERE t.late = 0 AND t.deal_id IN (SELECT id FROM kx_pa_deal WHERE seg = 'i')"""
    )
    # Sourced and influenced revenue do not depend on the model.
    _exec(
        """CREATE TEMP TABLE kx_pa_base AS
        SELECT sp AS partner_id, cents AS src, 0 AS inf FROM kx_pa_deal WHERE sp IS NOT NULL
        UNION ALL
        SELECT t.partner_id, 0, d.cents FROM (SELECT DISTINCT partner_id, deal_id FROM kx_pa_touch) t
        JOIN kx_pa_deal d ON d.id = t.deal_id"""
    )
    # The other models: the engine's split of the copied rows (kpis.shares.split_shares).
    others = [m for m in dict.fromkeys(models) if m != facts.attribution_model]
    if others:
        ctx = RunContext(EngineSettings.from_program(program), facts.as_of)
        _exec(f"CREATE TEMP VIEW kx_partner AS SELECT * FROM {facts.t('kx_partner')}")
        split_shares(ctx, "kx_pa_share", others, deal_rows="kx_pa_deal", touch_rows="kx_pa_touch")


def _shares(facts: Facts, model: str) -> str:
    """(partner_id, cents) of each share of the won deals in kx_pa_deal under `model`: the run's
    own shares (kx_attr) for its model, the split copies otherwise."""
    if model == facts.attribution_model:
        return f"""SELECT a.partner_id, a.cents FROM {facts.t("kx_attr")} a
            WHERE a.deal_id IN (SELECT id FROM kx_pa_deal)"""
    return f"SELECT partner_id, cents FROM kx_pa_share WHERE model = '{model}'"


def _exec(statement: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(statement)


def _drop(pg: bool) -> None:
    _exec("DROP VIEW IF EXISTS kx_partner")
    for table in _TEMP:
        _exec(f"DROP TABLE IF EXISTS {'pg_temp.' if pg else ''}{table}")
