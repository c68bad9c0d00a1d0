"""Monthly payout batches: threshold carry-over, negative balances, booked costs (hand-computed)."""

from datetime import date
from decimal import Decimal

import pytest
from auditlog.models import LogEntry
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import ValidationError

from economics.models import CommissionEntry, CommissionSettings
from economics.payout_models import Payout, PayoutBatch
from economics.payout_selectors import ap_rows, partner_earnings, statement_rows
from economics.payouts import payout_batch_create, payout_batch_mark_paid
from events.models import Event
from kpis.models import CostEntry, FactChange
from prm.acting import Actor, Channel, acting
from tests.factories import DealRegistrationFactory, PartnerFactory, UserFactory
from tests.support.payouts import entry

pytestmark = pytest.mark.django_db

OCT, NOV, DEC = date(2026, 10, 1), date(2026, 11, 1), date(2026, 12, 1)
NOTE = "Commission payout 2026-10 (USD)"


@pytest.fixture(autouse=True)
def minimum_50():
    settings = CommissionSettings.load()
    settings.minimum_payout = Decimal("50.00")
    settings.save()


def payout(batch, partner) -> Payout:
    return Payout.objects.get(batch=batch, partner=partner)


def figures(p: Payout) -> tuple[str, ...]:
    return (
        str(p.carried_in),
        str(p.entries_total),
        str(p.balance),
        str(p.amount),
        str(p.carried_out),
        p.status,
    )


def test_a_balance_under_the_minimum_carries_to_the_next_month_and_is_paid_once_it_reaches_it():
    alpha, bravo = PartnerFactory(name="Alpha"), PartnerFactory(name="Bravo")
    a1 = entry(alpha, "30.00", approved_on=date(2026, 10, 3))
    a2 = entry(alpha, "15.50", approved_on=date(2026, 10, 31))
    b1 = entry(bravo, "120.00", approved_on=date(2026, 10, 12))
    # Approved after October's end: November's batch settles it.
    a3 = entry(alpha, "20.00", approved_on=date(2026, 11, 2))
    pending = entry(alpha, "999.00", approved_on=date(2026, 10, 5), status=CommissionEntry.Status.PENDING)

    october, created = payout_batch_create(month=OCT)
    assert created
    # 30.00 + 15.50 = 45.50 < 50: nothing paid, all carried. Bravo's 120.00 is paid.
    assert figures(payout(october, alpha)) == ("0.00", "45.50", "45.50", "0.00", "45.50", "carried")
    assert figures(payout(october, bravo)) == ("0.00", "120.00", "120.00", "120.00", "0.00", "payable")
    assert list(ap_rows(october))[1:] == [
        ["Bravo", str(bravo.pk), "120.00", "USD", "2026-10", payout(october, bravo).reference]
    ]

    payout_batch_mark_paid(batch=october, paid_on=date(2026, 11, 5))
    statuses = {e.pk: e.status for e in CommissionEntry.objects.all()}
    assert statuses[b1.pk] == "paid"
    assert statuses[a1.pk] == statuses[a2.pk] == statuses[a3.pk] == "approved"
    assert statuses[pending.pk] == "pending"
    assert partner_earnings(alpha).balance == Decimal("65.50")  # 45.50 carried + 20.00 not yet batched

    november, _ = payout_batch_create(month=NOV)
    # 45.50 carried in + 20.00 = 65.50 >= 50: all of it is paid.
    assert figures(payout(november, alpha)) == ("45.50", "20.00", "65.50", "65.50", "0.00", "payable")
    assert not Payout.objects.filter(batch=november, partner=bravo).exists()  # nothing new, nothing carried

    payout_batch_mark_paid(batch=november, paid_on=date(2026, 12, 2))
    assert set(CommissionEntry.objects.filter(partner=alpha, status="paid").values_list("pk", flat=True)) == {
        a1.pk,
        a2.pk,
        a3.pk,
    }
    earnings = partner_earnings(alpha)
    assert (earnings.pending, earnings.approved, earnings.paid) == (Decimal("999.00"), 0, Decimal("65.50"))
    costs = CostEntry.objects.filter(partner=alpha)
    assert [(c.amount, c.date, c.category, c.source) for c in costs] == [
        (Decimal("65.50"), date(2026, 12, 2), "commission", "commission_payout")
    ]
    assert costs.get().reference == f"payout:{payout(november, alpha).pk}"


def test_a_clawback_leaves_a_negative_balance_that_later_earnings_pay_off_first():
    charlie = PartnerFactory(name="Charlie")
    entry(charlie, "200.00", approved_on=date(2026, 9, 20))
    september, _ = payout_batch_create(month=date(2026, 9, 1))
    payout_batch_mark_paid(batch=september, paid_on=date(2026, 10, 1))
    assert payout(september, charlie).amount == Decimal("200.00")

    clawback = entry(charlie, "-80.00", approved_on=date(2026, 10, 8))
    october, _ = payout_batch_create(month=OCT)
    assert figures(payout(october, charlie)) == ("0.00", "-80.00", "-80.00", "0.00", "-80.00", "carried")
    payout_batch_mark_paid(batch=october, paid_on=date(2026, 11, 1))
    assert CommissionEntry.objects.get(pk=clawback.pk).status == "approved"

    entry(charlie, "100.00", approved_on=date(2026, 11, 9))
    november, _ = payout_batch_create(month=NOV)
    # -80.00 + 100.00 = 20.00 < 50: still carried.
    assert figures(payout(november, charlie)) == ("-80.00", "100.00", "20.00", "0.00", "20.00", "carried")
    payout_batch_mark_paid(batch=november, paid_on=date(2026, 12, 1))

    entry(charlie, "45.00", approved_on=date(2026, 12, 1))
    december, _ = payout_batch_create(month=DEC)
    # 20.00 + 45.00 = 65.00 >= 50: paid, and the clawback is settled with it.
    assert figures(payout(december, charlie)) == ("20.00", "45.00", "65.00", "65.00", "0.00", "payable")
    payout_batch_mark_paid(batch=december, paid_on=date(2026, 12, 3))
    assert CommissionEntry.objects.get(pk=clawback.pk).status == "paid"
    assert not CommissionEntry.objects.filter(partner=charlie, status="approved").exists()
    assert sorted(CostEntry.objects.filter(partner=charlie).values_list("amount", flat=True)) == [
        Decimal("65.00"),
        Decimal("200.00"),
    ]
    rows = list(statement_rows(payout(december, charlie)))
    assert rows[1] == ["", "carried_in", "", "", "", "20.00"]
    assert rows[-3:] == [
        ["", "balance", "", "", "", "65.00"],
        ["", "paid", "", "", "paid", "65.00"],
        ["", "carried_out", "", "", "", "0.00"],
    ]


def test_a_batch_paid_twice_books_exactly_one_cost_per_payout():
    alpha, bravo, carla = PartnerFactory(), PartnerFactory(), PartnerFactory()
    entry(alpha, "70.00", approved_on=date(2026, 10, 1))
    entry(bravo, "50.00", approved_on=date(2026, 10, 2))  # exactly the minimum: paid
    entry(carla, "49.99", approved_on=date(2026, 10, 3))  # a cent short: carried
    batch, _ = payout_batch_create(month=OCT)
    paid, first = payout_batch_mark_paid(batch=batch, paid_on=date(2026, 11, 3))
    again, second = payout_batch_mark_paid(batch=batch, paid_on=date(2026, 11, 4))
    assert (first, second) == (True, False)
    assert again.paid_on == date(2026, 11, 3)
    assert sorted(CostEntry.objects.values_list("partner_id", "amount")) == sorted(
        [(alpha.pk, Decimal("70.00")), (bravo.pk, Decimal("50.00"))]
    )
    assert Payout.objects.get(partner=carla).status == "carried"
    assert Event.objects.filter(type="payout_batch.paid").count() == 1
    assert Event.objects.filter(type="payout_batch.created").count() == 1


def test_making_a_month_twice_gives_the_same_batch():
    entry(PartnerFactory(), "70.00", approved_on=date(2026, 10, 1))
    first, created = payout_batch_create(month=OCT)
    second, created_again = payout_batch_create(month=OCT)
    assert (created, created_again) == (True, False)
    assert first.pk == second.pk
    assert PayoutBatch.objects.count() == 1 and Payout.objects.count() == 1


@pytest.mark.parametrize(
    ("month", "message"),
    [
        (date(2027, 1, 1), "has not"),
        (date(2026, 10, 2), "first day"),
    ],
)
def test_a_month_that_cannot_have_a_batch_is_refused(month, message):
    with pytest.raises(ValidationError) as error:
        payout_batch_create(month=month)
    assert message in str(error.value.message_dict["month"])


def test_batches_are_made_in_order_and_an_open_one_is_paid_first():
    payout_batch_create(month=OCT)
    with pytest.raises(ValidationError, match="mark the 2026-10 batch paid first"):
        payout_batch_create(month=NOV)
    with pytest.raises(ValidationError, match="month order"):
        payout_batch_create(month=date(2026, 9, 1))


def test_a_payment_date_before_the_month_is_refused():
    batch, _ = payout_batch_create(month=OCT)
    with pytest.raises(ValidationError, match="on or after 2026-10-01"):
        payout_batch_mark_paid(batch=batch, paid_on=date(2026, 9, 30))
    assert PayoutBatch.objects.get().status == "open"


def test_marking_a_batch_paid_books_each_payout_with_its_links_and_one_trail_entry_by_the_payer():
    alpha, bravo = PartnerFactory(name="Alpha"), PartnerFactory(name="Bravo")
    carla, delta = PartnerFactory(name="Carla"), PartnerFactory(name="Delta")
    registration = DealRegistrationFactory(partner=alpha)
    a1 = entry(alpha, "70.00", approved_on=date(2026, 10, 2))
    entry(alpha, "25.00", approved_on=date(2026, 10, 3), registration=registration)
    b1 = entry(bravo, "120.00", approved_on=date(2026, 10, 4))
    b2 = entry(bravo, "-20.00", approved_on=date(2026, 10, 5))
    entry(carla, "49.99", approved_on=date(2026, 10, 6))  # under the minimum: carried, not booked
    d1 = entry(delta, "50.00", approved_on=date(2026, 10, 7))
    batch, _ = payout_batch_create(month=OCT)
    treasurer = UserFactory(username="treasurer", email="treasurer@example.com")

    with acting(channel=Channel.PAGE, actor=Actor(label="treasurer", user=treasurer)) as context:
        payout_batch_mark_paid(batch=batch, paid_on=date(2026, 11, 5), paid_by=treasurer)

    # Alpha 70.00 + 25.00 = 95.00; Bravo 120.00 - 20.00 = 100.00; Delta 50.00 (the minimum): booked
    # in the order of the batch's payouts (by partner name).
    pa, pb, pd = payout(batch, alpha), payout(batch, bravo), payout(batch, delta)
    costs = list(CostEntry.objects.order_by("id"))
    # Each: category commission, source commission_payout, paid on 2026-11-05, the batch's note.
    assert {(c.category, c.source, c.date, c.note) for c in costs} == {
        ("commission", "commission_payout", date(2026, 11, 5), NOTE)
    }
    assert [(c.partner_id, c.amount, c.reference) for c in costs] == [
        (alpha.pk, Decimal("95.00"), f"payout:{pa.pk}"),
        (bravo.pk, Decimal("100.00"), f"payout:{pb.pk}"),
        (delta.pk, Decimal("50.00"), f"payout:{pd.pk}"),
    ]
    assert [{(x.deal_id, x.registration_id) for x in c.links.all()} for c in costs] == [
        {(a1.deal_id, None), (None, registration.pk)},
        {(b1.deal_id, None), (b2.deal_id, None)},
        {(d1.deal_id, None)},
    ]

    # One "created" entry per cost, as a saved cost gets from auditlog, by the user who paid.
    cost_type = ContentType.objects.get_for_model(CostEntry)
    trail = list(LogEntry.objects.filter(content_type=cost_type).order_by("object_id"))
    expected = [
        (costs[0].pk, "2026-11-05 Commission / payout 95.00", alpha.pk, "95.00", pa.pk),
        (costs[1].pk, "2026-11-05 Commission / payout 100.00", bravo.pk, "100.00", pb.pk),
        (costs[2].pk, "2026-11-05 Commission / payout 50.00", delta.pk, "50.00", pd.pk),
    ]
    assert len(trail) == 3
    for log, (cost_id, text, partner_id, amount, payout_id) in zip(trail, expected, strict=True):
        assert (log.object_pk, log.object_id, log.object_repr, log.action) == (
            str(cost_id),
            cost_id,
            text,
            LogEntry.Action.CREATE,
        )
        assert log.changes == {
            "date": ["None", "2026-11-05"],
            "amount": ["None", amount],
            "category": ["None", "commission"],
            "partner": ["None", str(partner_id)],
            "join_source": ["None", "None"],
            "note": ["None", NOTE],
            "source": ["None", "commission_payout"],
            "reference": ["None", f"payout:{payout_id}"],
        }
        assert (log.actor, log.actor_email) == (treasurer, "treasurer@example.com")
        assert log.cid == context.correlation_id
        assert log.additional_data == {"channel": "page", "actor": "treasurer"}

    # The KPI change log sees each booked cost (an incremental run patches its facts with them).
    logged = set(FactChange.objects.filter(source="cost").values_list("row_id", flat=True))
    assert logged == {costs[0].pk, costs[1].pk, costs[2].pk}
