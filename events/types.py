"""Every domain event type, declared once: services record them, consumers subscribe to them.

The value is what a webhook receiver reads in `type`; docs/integrations.md lists each with its
object. Adding a type is one line here (and the call in the service that causes it).
"""

from enum import StrEnum


class EventType(StrEnum):
    PARTNER_APPLIED = "partner.applied"
    PARTNER_APPROVED = "partner.approved"
    PARTNER_REJECTED = "partner.rejected"
    REGISTRATION_SUBMITTED = "registration.submitted"
    REGISTRATION_APPROVED = "registration.approved"
    REGISTRATION_REJECTED = "registration.rejected"
    REGISTRATION_EXPIRING = "registration.expiring"
    REGISTRATION_EXPIRED = "registration.expired"
    DEAL_WON = "deal.won"
    DEAL_LOST = "deal.lost"
    KPI_RUN_PUBLISHED = "kpi_run.published"
    COMMISSION_PLAN_SAVED = "commission_plan.saved"
    COMMISSION_SETTINGS_SAVED = "commission_settings.saved"
    COMMISSION_ENTRY_APPROVED = "commission_entry.approved"
    COMMISSION_ENTRY_DECLINED = "commission_entry.declined"
    PAYOUT_BATCH_CREATED = "payout_batch.created"
    PAYOUT_BATCH_PAID = "payout_batch.paid"
    # Market development funds (mdf/, docs/mdf.md).
    MDF_REQUEST_SUBMITTED = "mdf_request.submitted"
    MDF_REQUEST_DECIDED = "mdf_request.decided"
    MDF_REQUEST_EXPIRED = "mdf_request.expired"
    MDF_CLAIM_SUBMITTED = "mdf_claim.submitted"
    MDF_CLAIM_DECIDED = "mdf_claim.decided"
    MDF_CLAIM_REIMBURSED = "mdf_claim.reimbursed"
    # Sent to one webhook endpoint on request ("send a test event"); never by a change.
    WEBHOOK_TEST = "webhook.test"

    @property
    def label(self) -> str:
        return LABELS[self]


LABELS = {
    EventType.PARTNER_APPLIED: "An organisation applied to the program",
    EventType.PARTNER_APPROVED: "A partner application was approved",
    EventType.PARTNER_REJECTED: "A partner application was rejected",
    EventType.REGISTRATION_SUBMITTED: "A deal registration was submitted",
    EventType.REGISTRATION_APPROVED: "A deal registration was approved (and became a deal)",
    EventType.REGISTRATION_REJECTED: "A deal registration was rejected",
    EventType.REGISTRATION_EXPIRING: "A deal registration's protection ends within a few days (told once)",
    EventType.REGISTRATION_EXPIRED: "A deal registration's protection ended undecided",
    EventType.DEAL_WON: "A deal was closed as won",
    EventType.DEAL_LOST: "A deal was closed as lost",
    EventType.KPI_RUN_PUBLISHED: "A KPI run published new figures",
    EventType.COMMISSION_PLAN_SAVED: "A commission plan or its rules were created or changed",
    EventType.COMMISSION_SETTINGS_SAVED: "The commission hold period or minimum payout changed",
    EventType.COMMISSION_ENTRY_APPROVED: "A commission ledger entry was approved for payout",
    EventType.COMMISSION_ENTRY_DECLINED: "A commission ledger entry was declined (with a reason)",
    EventType.PAYOUT_BATCH_CREATED: "A month's commission payout batch was made",
    EventType.PAYOUT_BATCH_PAID: "A payout batch was marked paid (its payouts booked as costs)",
    EventType.MDF_REQUEST_SUBMITTED: "A partner requested market development funds",
    EventType.MDF_REQUEST_DECIDED: "An MDF request was approved or rejected",
    EventType.MDF_REQUEST_EXPIRED: "An approved MDF request's claim deadline passed unclaimed",
    EventType.MDF_CLAIM_SUBMITTED: "A partner claimed MDF with proof of performance",
    EventType.MDF_CLAIM_DECIDED: "An MDF claim was approved (fully or in part) or rejected",
    EventType.MDF_CLAIM_REIMBURSED: "An approved MDF claim was reimbursed (and booked as a cost)",
    EventType.WEBHOOK_TEST: "A test event sent on request",
}

# What an endpoint may subscribe to: every type a change causes.
SUBSCRIBABLE = tuple(t for t in EventType if t is not EventType.WEBHOOK_TEST)
