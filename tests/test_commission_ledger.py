"""The commission ledger, computed by hand from small data (docs/economics.md)."""

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError

from economics import services
from economics.ledger import build_ledger
from economics.models import CommissionEntry, CommissionPlan, CommissionRule, CommissionSettings
from tests.factories import (
    AccountFactory,
    DealFactory,
    DealRegistrationFactory,
    PartnerFactory,
    StaffUserFactory,
    TouchFactory,
)

pytestmark = pytest.mark.django_db
CLOSED = datetime(2026, 3, 10, 15, 0, tzinfo=UTC)
AFTER_HOLD = CLOSED + timedelta(days=31)


def plan(name="Standard", priority=0, rules=(), **fields):
    p = CommissionPlan.objects.create(name=name, priority=priority, effective_from=date(2026, 1, 1), **fields)
    for kind, value, cap in rules:
        percent = kind in CommissionRule.PERCENT_KINDS
        CommissionRule.objects.create(
            plan=p,
            kind=kind,
            rate=Decimal(value) if percent else None,
            amount=None if percent else Decimal(value),
            cap=None if cap is None else Decimal(cap),
        )
    return p


def won(partner=None, amount="1000.00", closed_at=CLOSED, **fields):
    return DealFactory(
        sourcing_partner=partner, amount=Decimal(amount), status="won", closed_at=closed_at, **fields
    )


def ledger(**filters):
    return sorted(
        (e.partner_id, e.deal_id, e.registration_id, e.basis, e.kind, e.sequence, e.amount, e.status)
        for e in CommissionEntry.objects.filter(**filters)
    )


def amounts(**filters):
    return sorted(CommissionEntry.objects.filter(**filters).values_list("amount", flat=True))


def approve_all(now=AFTER_HOLD):
    ids = CommissionEntry.objects.filter(status="pending").values_list("pk", flat=True)
    return services.entries_approve(entry_ids=ids, by=StaffUserFactory(), now=now)


def test_percent_of_sourced_revenue_floored_to_the_cent():
    partner = PartnerFactory()
    plan(rules=[(CommissionRule.Kind.PERCENT_SOURCED, "7.5", None)])
    deal = won(partner, "1234.57")
    build_ledger()
    # 7.5 % of 1234.57 = 92.59275 -> 92.59
    assert ledger() == [(partner.pk, deal.pk, None, "revenue", "earning", 0, Decimal("92.59"), "pending")]
    entry = CommissionEntry.objects.get()
    assert entry.hold_until == CLOSED + timedelta(days=30)
    assert entry.base_amount == Decimal("1234.57") and entry.rate == Decimal("7.5")


def test_running_twice_changes_nothing():
    partner = PartnerFactory()
    plan(rules=[(CommissionRule.Kind.PERCENT_SOURCED, "10", None)])
    won(partner, "500.00")
    first = build_ledger()
    second = build_ledger()
    assert (first.created, second.keys_changed, second.created) == (1, 0, 0)
    assert amounts() == [Decimal("50.00")]


def test_overlapping_rules_follow_priority_and_kinds_stack():
    gold = PartnerFactory(tier="gold")
    other = PartnerFactory(tier="silver")
    plan("Everyone", rules=[(CommissionRule.Kind.PERCENT_SOURCED, "10", None)])
    plan(
        "Gold",
        priority=5,
        tiers=["gold"],
        rules=[
            (CommissionRule.Kind.PERCENT_ATTRIBUTED, "15", None),
            (CommissionRule.Kind.FIXED_FIRST_SALE, "100", None),
        ],
    )
    gold_deal = won(gold, "2000.00")
    other_deal = won(other, "2000.00")
    build_ledger()
    assert ledger() == sorted(
        [
            # Gold's revenue: the priority-5 rule wins over the 10 % rule: 15 % of 2000 (sourced = 100 %).
            (gold.pk, gold_deal.pk, None, "revenue", "earning", 0, Decimal("300.00"), "pending"),
            # A different basis stacks: the account's first sale.
            (gold.pk, gold_deal.pk, None, "first_sale", "earning", 0, Decimal("100.00"), "pending"),
            (other.pk, other_deal.pk, None, "revenue", "earning", 0, Decimal("200.00"), "pending"),
        ]
    )


def test_equal_priority_goes_to_the_older_rule():
    partner = PartnerFactory()
    plan("A", rules=[(CommissionRule.Kind.PERCENT_SOURCED, "4", None)])
    plan("B", rules=[(CommissionRule.Kind.PERCENT_SOURCED, "9", None)])
    won(partner, "100.00")
    build_ledger()
    assert amounts() == [Decimal("4.00")]


def test_attributed_revenue_uses_the_kpi_split():
    a, b, c = PartnerFactory(), PartnerFactory(), PartnerFactory()
    plan(rules=[(CommissionRule.Kind.PERCENT_ATTRIBUTED, "10", None)])
    deal = won(None, "100.00")
    for partner, hours in ((a, 1), (b, 2), (c, 3)):
        TouchFactory(deal=deal, partner=partner, touched_at=CLOSED - timedelta(hours=hours))
    build_ledger()
    # Linear: 100.00 / 3 = 33.33 each, the leftover cent to the first touch (c: earliest) -> 33.34;
    # 10 % floored: 3.33, 3.33, 3.33.
    shares = dict(CommissionEntry.objects.values_list("partner_id", "base_amount"))
    assert shares == {a.pk: Decimal("33.33"), b.pk: Decimal("33.33"), c.pk: Decimal("33.34")}
    assert amounts() == [Decimal("3.33")] * 3


def test_cap_limits_one_entry():
    partner = PartnerFactory()
    plan(rules=[(CommissionRule.Kind.PERCENT_SOURCED, "10", "2000.00")])
    won(partner, "50000.00")
    won(partner, "15000.00")
    build_ledger()
    assert amounts() == [Decimal("1500.00"), Decimal("2000.00")]


def test_applicability_and_effective_dates():
    source = PartnerFactory().join_source
    named = PartnerFactory(type="agency")
    same_source = PartnerFactory(join_source=source, type="agency")
    p = plan(
        "Agencies of one source",
        partner_types=["agency"],
        rules=[(CommissionRule.Kind.PERCENT_SOURCED, "10", None)],
    )
    p.join_sources.set([source])
    ended = plan(
        "Ended", effective_to=date(2026, 3, 9), rules=[(CommissionRule.Kind.PERCENT_SOURCED, "50", None)]
    )
    ended.partners.set([named])
    d1 = won(named, "100.00")
    d2 = won(same_source, "100.00")
    build_ledger()
    # named: not of that join source, and its own plan ended the day before the close.
    assert ledger() == [(same_source.pk, d2.pk, None, "revenue", "earning", 0, Decimal("10.00"), "pending")]
    assert not CommissionEntry.objects.filter(deal=d1).exists()


def test_fixed_per_approved_registration():
    partner = PartnerFactory()
    plan(rules=[(CommissionRule.Kind.FIXED_REGISTRATION, "25.00", None)])
    reg = DealRegistrationFactory(partner=partner, status="approved", decided_at=CLOSED)
    DealRegistrationFactory(partner=partner)  # submitted: nothing
    build_ledger()
    assert ledger() == [(partner.pk, None, reg.pk, "registration", "earning", 0, Decimal("25.00"), "pending")]


def test_first_sale_is_the_accounts_first_won_deal():
    partner = PartnerFactory()
    plan(rules=[(CommissionRule.Kind.FIXED_FIRST_SALE, "100.00", None)])
    account = AccountFactory()
    first = won(partner, account=account, closed_at=CLOSED)
    won(partner, account=account, closed_at=CLOSED + timedelta(days=1))
    # Another partner's deal closed earlier on another account does not matter.
    won(PartnerFactory(), account=AccountFactory(), closed_at=CLOSED - timedelta(days=1))
    build_ledger()
    assert ledger(partner=partner) == [
        (partner.pk, first.pk, None, "first_sale", "earning", 0, Decimal("100.00"), "pending")
    ]


def test_first_sale_ties_go_to_the_lower_id_and_an_earlier_direct_win_counts():
    partner = PartnerFactory()
    plan(rules=[(CommissionRule.Kind.FIXED_FIRST_SALE, "100.00", None)])
    tied = AccountFactory()
    lower = won(partner, account=tied, closed_at=CLOSED)
    won(partner, account=tied, closed_at=CLOSED)
    # The account's first win had no sourcing partner: the partner's later win is not a first sale.
    direct_first = AccountFactory()
    won(None, account=direct_first, closed_at=CLOSED - timedelta(days=1))
    won(partner, account=direct_first, closed_at=CLOSED)
    build_ledger()
    assert ledger(partner=partner) == [
        (partner.pk, lower.pk, None, "first_sale", "earning", 0, Decimal("100.00"), "pending")
    ]


def test_hold_period_blocks_approval_until_it_ends():
    CommissionSettings.objects.update_or_create(pk=1, defaults={"hold_days": 10})
    partner = PartnerFactory()
    plan(rules=[(CommissionRule.Kind.PERCENT_SOURCED, "10", None)])
    won(partner, "100.00")
    build_ledger()
    entry = CommissionEntry.objects.get()
    assert entry.hold_until == CLOSED + timedelta(days=10)
    early = services.entries_approve(entry_ids=[entry.pk], by=None, now=CLOSED + timedelta(days=9))
    assert early.on_hold == [entry.pk] and early.decided == []
    late = services.entries_approve(entry_ids=[entry.pk], by=None, now=CLOSED + timedelta(days=10))
    assert late.decided == [entry.pk]
    entry.refresh_from_db()
    assert entry.status == "approved" and entry.decided_at == CLOSED + timedelta(days=10)


def test_pending_entry_follows_the_deal_but_approved_one_is_clawed_back():
    partner = PartnerFactory()
    plan(rules=[(CommissionRule.Kind.PERCENT_SOURCED, "10", None)])
    deal = won(partner, "1000.00")
    build_ledger()
    # Pending: adjusted in place when the amount is lowered.
    deal.amount = Decimal("800.00")
    deal.save()
    build_ledger()
    assert ledger() == [(partner.pk, deal.pk, None, "revenue", "earning", 0, Decimal("80.00"), "pending")]
    approve_all()
    # Approved: lowering to 500 claws back 30.00 as a new negative entry.
    deal.amount = Decimal("500.00")
    deal.save()
    build_ledger()
    assert ledger() == [
        (partner.pk, deal.pk, None, "revenue", "clawback", 0, Decimal("-30.00"), "pending"),
        (partner.pk, deal.pk, None, "revenue", "earning", 0, Decimal("80.00"), "approved"),
    ]
    assert build_ledger().keys_changed == 0


def test_clawback_after_payment_when_the_deal_is_lost_then_re_won():
    partner = PartnerFactory()
    plan(rules=[(CommissionRule.Kind.PERCENT_SOURCED, "10", None)])
    deal = won(partner, "1000.00")
    build_ledger()
    approve_all()
    CommissionEntry.objects.update(status="paid", paid_at=AFTER_HOLD)  # what the payout batch does
    deal.status = "lost"
    deal.save()
    build_ledger()
    assert amounts(kind="clawback") == [Decimal("-100.00")]
    clawback = CommissionEntry.objects.get(kind="clawback")
    assert clawback.hold_until <= clawback.earned_at + timedelta(seconds=1)  # no hold on a clawback
    approve_all(now=clawback.hold_until)
    # Re-won later for 1200.00: a new earning (sequence 1) of 10 % of 1200.
    deal.status, deal.closed_at, deal.amount = "won", CLOSED + timedelta(days=60), Decimal("1200.00")
    deal.save()
    build_ledger()
    assert ledger() == [
        (partner.pk, deal.pk, None, "revenue", "clawback", 0, Decimal("-100.00"), "approved"),
        (partner.pk, deal.pk, None, "revenue", "earning", 0, Decimal("100.00"), "paid"),
        (partner.pk, deal.pk, None, "revenue", "earning", 1, Decimal("120.00"), "pending"),
    ]
    assert CommissionEntry.objects.get(sequence=1).hold_until == CLOSED + timedelta(days=90)


def test_plan_change_never_rewrites_decided_entries_but_adjusts_pending():
    partner = PartnerFactory()
    p = plan(rules=[(CommissionRule.Kind.PERCENT_SOURCED, "10", None)])
    d1 = won(partner, "1000.00")
    build_ledger()
    approve_all()
    d2 = won(partner, "1000.00", closed_at=CLOSED + timedelta(days=40))
    build_ledger()
    rule = p.rules.get()
    rule.rate = Decimal("5")
    services.rule_save(rule=rule)
    build_ledger()
    got = dict(CommissionEntry.objects.values_list("deal_id", "amount"))
    assert got == {d1.pk: Decimal("100.00"), d2.pk: Decimal("50.00")}
    # The approved deal's amount raised: the top-up keeps the approved terms (10 %), not the new 5 %.
    d1.amount = Decimal("1500.00")
    d1.save()
    build_ledger()
    assert amounts(deal=d1) == [Decimal("50.00"), Decimal("100.00")]


def test_declined_entry_stays_declined():
    partner = PartnerFactory()
    plan(rules=[(CommissionRule.Kind.PERCENT_SOURCED, "10", None)])
    deal = won(partner, "1000.00")
    build_ledger()
    entry = CommissionEntry.objects.get()
    with pytest.raises(ValidationError):
        services.entries_decline(entry_ids=[entry.pk], reason=" ", by=None)
    result = services.entries_decline(entry_ids=[entry.pk], reason="Duplicate of an older deal", by=None)
    assert result.decided == [entry.pk]
    assert build_ledger().keys_changed == 0
    deal.status = "lost"
    deal.save()
    # Nothing was approved: nothing to claw back.
    assert build_ledger().keys_changed == 0
    assert ledger() == [(partner.pk, deal.pk, None, "revenue", "earning", 0, Decimal("100.00"), "declined")]


def test_a_pending_entry_whose_deal_is_lost_disappears():
    partner = PartnerFactory()
    plan(rules=[(CommissionRule.Kind.PERCENT_SOURCED, "10", None)])
    deal = won(partner, "1000.00")
    build_ledger()
    deal.status = "lost"
    deal.save()
    assert build_ledger().removed == 1
    assert ledger() == []


def test_scoped_build_touches_only_its_rows():
    partner = PartnerFactory()
    plan(rules=[(CommissionRule.Kind.PERCENT_SOURCED, "10", None)])
    d1 = won(partner, "100.00")
    won(partner, "200.00")
    build_ledger(deal_ids=[d1.pk], registration_ids=[])
    assert ledger() == [(partner.pk, d1.pk, None, "revenue", "earning", 0, Decimal("10.00"), "pending")]


def test_a_deal_won_through_the_service_builds_its_entry_after_commit(
    eager_tasks, django_capture_on_commit_callbacks
):
    from deals import services as deals

    partner = PartnerFactory()
    plan(rules=[(CommissionRule.Kind.PERCENT_SOURCED, "10", None)])
    deal = DealFactory(sourcing_partner=partner, amount=Decimal("250.00"))
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        deals.deal_close(deal=deal, status="won", closed_at=CLOSED)
        assert not CommissionEntry.objects.exists()  # not before the commit
    assert len(callbacks) >= 1
    assert ledger() == [(partner.pk, deal.pk, None, "revenue", "earning", 0, Decimal("25.00"), "pending")]
