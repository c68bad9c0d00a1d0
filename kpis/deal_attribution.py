"""One deal's attribution split under every model, computed by the engine's own attribution stage.

The deal page shows how a won deal's amount is split between partners under each of the five
models. The split is never re-implemented here: `deal_attribution_splits` builds the engine's fact
tables (kx_partner, kx_touch_all / kx_touch, kx_deal) for that one deal with the engine's own
SELECTs, runs `kpis.engine.attribution.build` once per model, and reads kx_attr. The shares are
therefore exactly the cents a KPI run would attribute (largest remainders, ties to the earlier
first touch), and they add up to the deal's amount under every model.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from deals.models import Deal, Touch
from kpis.engine import attribution, facts
from kpis.engine.context import EngineSettings, RunContext
from partners.models import Partner
from prm.database import transaction_settings
from program.attribution import AttributionModel
from program.models import ProgramSettings, program_today

CENT = Decimal("0.01")
# The engine tables this computation creates in the request's connection, dropped afterwards.
_TABLES = ("kx_attr", "kx_tw", "kx_deal", "kx_touch_all", "kx_partner")
MODELS: tuple[str, ...] = tuple(m.value for m in AttributionModel)


@dataclass(frozen=True)
class Share:
    partner_id: int
    partner_name: str
    amount: Decimal
    segment: str  # "sourced" or "influenced"


@dataclass(frozen=True)
class ModelSplit:
    model: str
    shares: tuple[Share, ...]

    @property
    def total(self) -> Decimal:
        return sum((s.amount for s in self.shares), Decimal("0.00"))


def deal_attribution_splits(deal: Deal) -> list[ModelSplit]:
    """The deal's split under each attribution model, in `MODELS` order (empty shares for a deal
    that is not won: only won deals are attributed). A fixed number of queries whatever the deal."""
    if deal.status != Deal.Status.WON:
        return [ModelSplit(model=m, shares=()) for m in MODELS]
    program = ProgramSettings.load()
    ctx = RunContext(EngineSettings.from_program(program), program_today())
    names = dict(Partner.objects.filter(id__in=_involved_partners(deal.pk)).values_list("id", "name"))
    splits: list[ModelSplit] = []
    with transaction_settings({}), ctx.sql.session_time_zone():
        _drop(ctx)
        _one_deal_facts(ctx, deal.pk)
        for model in MODELS:
            ctx.settings.attribution_model = model
            ctx.exec("DROP TABLE IF EXISTS kx_attr")
            ctx.exec("DROP TABLE IF EXISTS kx_tw")
            attribution.build(ctx)
            rows = ctx.fetch("SELECT partner_id, cents, seg FROM kx_attr ORDER BY cents DESC, partner_id")
            splits.append(
                ModelSplit(
                    model=model,
                    shares=tuple(
                        Share(
                            partner_id=pid,
                            partner_name=names.get(pid, str(pid)),
                            amount=(Decimal(int(cents)) * CENT).quantize(CENT),
                            segment="sourced" if seg == "s" else "influenced",
                        )
                        for pid, cents, seg in rows
                    ),
                )
            )
        _drop(ctx)
    return splits


def _involved_partners(deal_id: int) -> list[int]:
    touching = Touch.objects.filter(deal_id=deal_id).values_list("partner_id", flat=True)
    sourcing = Deal.objects.filter(pk=deal_id).values_list("sourcing_partner_id", flat=True)
    return [*touching, *(p for p in sourcing if p is not None)]


def _one_deal_facts(ctx: RunContext, deal_id: int) -> None:
    """The engine's fact tables restricted to one deal, built by the engine's own SELECTs."""
    deal_id = int(deal_id)
    touches = f"(SELECT * FROM {Touch._meta.db_table} WHERE deal_id = {deal_id})"
    deals = f"(SELECT * FROM {Deal._meta.db_table} WHERE id = {deal_id})"
    ctx.exec(f"CREATE TEMP TABLE kx_partner AS {facts.partner_select(ctx, where=_partner_filter(deal_id))}")
    ctx.exec(f"CREATE TEMP TABLE kx_touch_all AS {facts.touch_select(ctx, touches=touches, deals=deals)}")
    facts.touch_view(ctx)
    ctx.exec(
        "CREATE TEMP TABLE kx_deal AS "
        + facts.deal_select(ctx, segment_from_base=False, where=f"d.id = {deal_id}")
    )


def _partner_filter(deal_id: int) -> str:
    return (
        f"p.id IN (SELECT partner_id FROM {Touch._meta.db_table} WHERE deal_id = {deal_id}) "
        f"OR p.id IN (SELECT sourcing_partner_id FROM {Deal._meta.db_table} WHERE id = {deal_id})"
    )


def _drop(ctx: RunContext) -> None:
    ctx.exec("DROP VIEW IF EXISTS kx_touch")
    for table in _TABLES:
        ctx.exec(f"DROP TABLE IF EXISTS {table}")


def split_total_matches(splits: list[ModelSplit], amount: Decimal) -> bool:
    """Every model's shares add up to the deal's amount (a won deal with partners involved)."""
    return all(s.total == amount for s in splits if s.shares)
