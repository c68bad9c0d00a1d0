"""A small program that grows by units, for tests that compare pages on less and more data.

One unit adds a partner (with its admin, join source, costs, target, MDF budget) and, for it and
the main partner (the one of the portal logins) alike: sourced, influenced and direct deals with
touches, registrations (approved, pending, conflicting, rejected), commission entries, MDF requests
and claims (one reimbursed); plus an application, an invitation, a commission plan, API tokens, a
webhook endpoint and two members of the main partner. `program_grow` then settles a payout batch,
records webhook attempts and publishes a KPI run, as the pages read them.
"""

from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal

from django.utils import timezone

from api.services import api_token_create
from deals.models import Deal, DealRegistration
from economics.models import CommissionEntry, CommissionPlan, CommissionRule, PayoutBatch
from economics.payouts import payout_batch_create, payout_batch_mark_paid
from economics.services import plan_save
from events.types import EventType
from integrations.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from integrations.services import endpoint_create
from interchange.models import ImportJob
from kpis.forecast_store import forecast_snapshot_compute
from kpis.services import cost_entry_create, target_set
from mdf.services import budget_set, claim_decide, claim_reimburse
from partners.applications import application_submit
from partners.invitations import invitation_create
from partners.models import Partner, PartnerUser
from partners.roles import StaffRole
from tests.factories import (
    AccountFactory,
    DealFactory,
    DealRegistrationFactory,
    JoinSourceFactory,
    PartnerFactory,
    PartnerUserFactory,
    StaffUserFactory,
    TouchFactory,
)
from tests.support import kpis as t
from tests.support import mdf as m
from tests.support.payouts import entry

EVENTS = [str(e) for e in EventType if e != EventType.WEBHOOK_TEST]


@dataclass
class World:
    manager: object
    salesops: object
    admin: object
    member: object
    main: Partner  # the partner of the portal logins, whose rows grow with every unit too
    main_deal: Deal  # a deal that gets more touches with every unit
    main_registration: DealRegistration  # a registration that every unit's partner conflicts with
    units: int = 0


def _when(month: int, day: int = 10) -> datetime:
    return datetime(2026, month, day, 12, 0, tzinfo=UTC)


def program_setup() -> World:
    """The logins, the main partner with a deal and a registration that every unit adds to."""
    t.program()
    manager = StaffUserFactory(username="qc-manager", role=StaffRole.PARTNER_MANAGER)
    salesops = StaffUserFactory(username="qc-salesops", role=StaffRole.SALES_OPS)
    main = PartnerFactory(name="Main partner", tier="gold", manager=manager)
    admin = PartnerUserFactory(partner=main, role=PartnerUser.Role.ADMIN, user__username="qc-admin").user
    member = PartnerUserFactory(partner=main, role=PartnerUser.Role.MEMBER, user__username="qc-member").user
    main_deal = DealFactory(sourcing_partner=main, status="won", created_at=_when(2), closed_at=_when(3))
    main_registration = DealRegistrationFactory(partner=main, submitted_at=_when(11, 1))
    budget_set(quarter="2026-Q2", amount=Decimal("1000000.00"), partner=main)
    endpoint_create(url="https://hooks.example.com/prm", event_types=EVENTS, owner=manager)
    ImportJob.objects.create(requested_by=manager, filename="program.zip", progress_id="qc-progress-1")
    return World(manager, salesops, admin, member, main, main_deal, main_registration)


def program_grow(w: World, units: int, *, payout_month: int) -> None:
    """Add `units` of every kind of row, settle this phase's payouts and republish the KPIs."""
    for _ in range(units):
        w.units += 1
        _unit(w, w.units, payout_month)
    for partner in Partner.objects.filter(status="active").exclude(pk=w.main.pk):
        entry(partner, "120.00", approved_on=date(2026, payout_month, 15))
    batch = PayoutBatch.objects.filter(status=PayoutBatch.Status.OPEN).first()
    if batch is not None:
        payout_batch_mark_paid(batch=batch, paid_on=date(2026, payout_month, 3))
    payout_batch_create(month=date(2026, payout_month, 1))
    endpoint = WebhookEndpoint.objects.order_by("pk").first()
    for delivery in WebhookDelivery.objects.filter(endpoint=endpoint, attempts=0):
        WebhookAttempt.objects.create(delivery=delivery, number=1, started_at=timezone.now(), status_code=500)
        delivery.attempts = 1
        delivery.save(update_fields=["attempts"])
    t.recompute(as_of=timezone.localdate().isoformat())
    # What the publication's task stores once it commits (never here: the module's transaction).
    forecast_snapshot_compute()


def _unit(w: World, i: int, payout_month: int) -> None:
    source = JoinSourceFactory(name=f"Source {i}")
    partner = PartnerFactory(name=f"Partner {i}", tier="gold", join_source=source, manager=w.manager)
    PartnerUserFactory(partner=partner, role=PartnerUser.Role.ADMIN)
    PartnerUserFactory.create_batch(2, partner=w.main, role=PartnerUser.Role.MEMBER)
    application_submit(
        company=f"Applicant {i}",
        partner_type="reseller",
        contact_name=f"Contact {i}",
        contact_email=f"contact{i}@applicant{i}.example",
        website=f"https://applicant{i}.example",
        pitch="We resell.",
        chosen_source=source,
    )
    invitation_create(partner=w.main, email=f"invitee{i}@example.com", role="member", invited_by=w.admin)
    plan_save(
        plan=CommissionPlan(key=f"qc-plan-{i}", name=f"Plan {i}", effective_from=date(2026, 1, 1)),
        rules=[{"kind": CommissionRule.Kind.PERCENT_SOURCED, "rate": Decimal("5")}],
    )
    for user in (w.manager, w.admin):
        api_token_create(user=user, name=f"token {i}")
    endpoint_create(url=f"https://hooks{i}.example.com/prm", event_types=EVENTS, owner=w.manager)
    month = 1 + i % 9
    DealRegistrationFactory(
        partner=partner,
        account=w.main_registration.account,
        submitted_at=_when(11, 2),
        conflict_with=w.main_registration,
    )
    for owner, other in ((partner, w.main), (w.main, partner)):
        account = AccountFactory()
        won = DealFactory(
            account=account,
            sourcing_partner=owner,
            status="won",
            created_at=_when(month),
            closed_at=_when(10),
        )
        lost = DealFactory(
            sourcing_partner=owner, status="lost", created_at=_when(month), closed_at=_when(11)
        )
        open_ = DealFactory(sourcing_partner=owner, created_at=_when(11, i))  # young: the forecast counts it
        for deal in (won, lost, open_):
            TouchFactory(deal=deal, partner=owner, touched_at=_when(month, 12))
            TouchFactory(deal=deal, partner=other, touched_at=_when(month, 14))
        TouchFactory(deal=w.main_deal, partner=owner, touched_at=_when(2, 1 + i))
        influenced = DealFactory(status="won", created_at=_when(month), closed_at=_when(10, 2))
        TouchFactory(deal=influenced, partner=owner, touched_at=_when(month, 12))
        TouchFactory(deal=influenced, partner=other, touched_at=_when(month, 13))
        DealFactory(status="won", created_at=_when(month), closed_at=_when(10, 3))  # direct
        DealFactory(status="lost", created_at=_when(month), closed_at=_when(10, 4))
        DealRegistrationFactory(
            partner=owner,
            account=account,
            deal=won,
            status="approved",
            submitted_at=_when(month, 1),
            decided_at=_when(month, 5),
        )
        pending = DealRegistrationFactory(partner=owner, submitted_at=_when(11, 1 + i))
        DealRegistrationFactory(
            partner=other, account=pending.account, submitted_at=_when(11, 2 + i), conflict_with=pending
        )
        DealRegistrationFactory(
            partner=owner, status="rejected", submitted_at=_when(month), decided_at=_when(month, 20)
        )
        cost_entry_create(date=date(2026, month, 1), amount="100.00", category="mdf", partner=owner)
        cost_entry_create(
            date=date(2026, month, 2), amount="50.00", category="enablement", join_source=source
        )
        target_set(metric="sourced_revenue", period=f"2026-{month:02d}", value="5000", partner=owner)
        if owner is w.main:  # the main statement gets more lines; every partner gets a payout below
            entry(owner, "120.00", approved_on=date(2026, payout_month, 15))
        entry(owner, "80.00", approved_on=date(2026, payout_month, 16), status=CommissionEntry.Status.PENDING)
        user = w.admin if owner == w.main else None
        if owner is partner:
            budget_set(quarter="2026-Q2", amount=Decimal("100000.00"), partner=partner)
        m.submit(owner, user, amount="100.00")  # waits for a decision
        m.claim(m.approve(m.submit(owner, user, amount="200.00"), w.manager), user, amount="150.00")
        paid = m.claim(
            m.approve(m.submit(owner, user, amount="300.00"), w.manager),
            user,
            amount="250.00",
            deal_ids=[won.pk],
        )
        claim_decide(claim=paid, decided_by=w.manager, approve=True)
        claim_reimburse(claim=paid, reimbursed_by=w.manager, on=m.AFTER)
