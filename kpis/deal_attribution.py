"""One deal's attribution split under every model, computed by the engine's own attribution stage.

The deal page shows how a won deal's amount is split between partners under each of the five
models. The split is never re-implemented here: `deal_attribution_splits` asks
`kpis.shares.build_attributed_shares` for that one deal under all five models (the engine's fact
tables built once with the engine's own SELECTs, `kpis.engine.attribution.build` run once per
model) and reads the shares with the partners' names. The shares are therefore exactly the cents
a KPI run would attribute (largest remainders, ties to the earlier first touch), and they add up
to the deal's amount under every model.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from django.db import connection

from deals.models import Deal
from kpis.engine.session import engine_transaction
from kpis.shares import build_attributed_shares
from partners.models import Partner
from program.attribution import AttributionModel

CENT = Decimal("0.01")
MODELS: tuple[str, ...] = tuple(m.value for m in AttributionModel)
_TABLE = "kx_deal_shares"  # this module's temp table, dropped again in its transaction


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
    shares: dict[str, list[Share]] = {m: [] for m in MODELS}
    with engine_transaction(), connection.cursor() as cursor:
        build_attributed_shares(_TABLE, deal_ids=[deal.pk], models=MODELS)
        cursor.execute(
            f"""SELECT s.model, s.partner_id, p.name, s.cents, s.seg
            FROM {_TABLE} s LEFT JOIN {Partner._meta.db_table} p ON p.id = s.partner_id
            ORDER BY s.cents DESC, s.partner_id"""
        )
        for model, pid, name, cents, seg in cursor.fetchall():
            shares[model].append(
                Share(
                    partner_id=pid,
                    partner_name=name if name is not None else str(pid),
                    amount=(Decimal(int(cents)) * CENT).quantize(CENT),
                    segment="sourced" if seg == "s" else "influenced",
                )
            )
        cursor.execute(f"DROP TABLE {_TABLE}")
    return [ModelSplit(model=m, shares=tuple(shares[m])) for m in MODELS]
