"""Data quality: the suspicious-but-legal facts of KPIS.md (kx_recon)."""

from __future__ import annotations

from kpis.engine.context import RunContext
from kpis.models import ReconciliationItem


def reconciliation_items_replaced(alias: str) -> str:
    """The condition on published reconciliation items (`alias`) that a patched-cells run's
    kx_recon replaces: those of the affected deals and of the affected registrations' accounts."""
    recon = ReconciliationItem._meta.db_table
    # Two lookups, each through its own index (an OR of both would scan every item).
    return (
        f"{alias}.id IN (SELECT r.id FROM {recon} r "
        "WHERE r.kind IN ('sourced_before_joined', 'touch_after_close') "
        "AND r.deal_id IN (SELECT k FROM kx_aff_deal) "
        f"UNION ALL SELECT r.id FROM {recon} r WHERE r.kind = 'duplicate_registration_claim' "
        "AND r.account_id IN (SELECT k FROM kx_aff_claim))"
    )


def build(ctx: RunContext, *, affected_only: bool = False) -> None:
    """kx_recon: the suspicious-but-legal facts of KPIS.md, listed with the rows involved.
    `affected_only` (patched cells): only the items of the affected deals and of the accounts of
    the affected registrations (`reconciliation_items_replaced`), which replace the published ones."""
    s = ctx.sql
    deals = "kx_aff_deal_now" if affected_only else "kx_deal"
    touches = "kx_aff_touch_now" if affected_only else "kx_touch_all"
    claims = "account_id IN (SELECT k FROM kx_aff_claim)" if affected_only else "1 = 1"
    ctx.exec(
        f"""CREATE {ctx.fact_table("kx_recon")} AS
        SELECT 'sourced_before_joined' AS kind, d.id AS deal_id, d.sp AS partner_id,
               CAST(NULL AS BIGINT) AS touch_id, d.account_id,
               CAST('' AS VARCHAR(2000)) AS registration_ids,
               CASE WHEN p.joined IS NULL THEN 'never joined' ELSE 'joined later' END AS detail
        FROM {deals} d JOIN kx_partner p ON p.id = d.sp
        WHERE p.joined IS NULL OR d.created_d < p.joined
        UNION ALL
        SELECT 'touch_after_close', t.deal_id, t.partner_id, t.id, d.account_id, '', 'touched after close'
        FROM {touches} t JOIN {deals} d ON d.id = t.deal_id
        WHERE t.late = 1
        UNION ALL
        SELECT 'duplicate_registration_claim', CAST(NULL AS BIGINT), CAST(NULL AS BIGINT),
               CAST(NULL AS BIGINT), r.account_id, {s.group_concat_ids("r.id")},
               'claims by several partners'
        FROM (SELECT id, account_id FROM kx_reg WHERE status IN ('submitted', 'approved') AND {claims}
              ORDER BY id) r
        WHERE r.account_id IN (
            SELECT account_id FROM kx_reg WHERE status IN ('submitted', 'approved') AND {claims}
            GROUP BY account_id HAVING COUNT(DISTINCT partner_id) > 1)
        GROUP BY r.account_id"""
    )
