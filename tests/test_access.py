"""Permission scoping: a partner's users see only that partner's rows, staff readers see everything.

Personas (after healthchecks): Alpha's portal user, Beta's portal user, the staff roles, a plain
login with no role, and an anonymous visitor. Every `visible_*` function gets an ownership test.
"""

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from django.contrib.auth.models import AnonymousUser

from deals.selectors import visible_accounts, visible_deals, visible_registrations, visible_touches
from kpis.models import CostEntry, Target
from kpis.selectors import visible_costs, visible_targets
from partners.access import (
    can_import,
    can_trigger_recompute,
    can_write_all,
    is_staff_reader,
    partner_of,
    visible_partners,
)
from partners.roles import StaffRole
from tests.factories import (
    DealFactory,
    DealRegistrationFactory,
    PartnerFactory,
    PartnerUserFactory,
    StaffUserFactory,
    SuperUserFactory,
    TouchFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 2, 1, tzinfo=UTC)


class Program:
    """Two partners with sourced, touched, registered and shared deals, costs and targets."""

    def __init__(self) -> None:
        self.alpha = PartnerFactory(name="Alpha")
        self.beta = PartnerFactory(name="Beta")
        self.alpha_user = PartnerUserFactory(partner=self.alpha).user
        self.beta_user = PartnerUserFactory(partner=self.beta, role="member").user

        self.alpha_sourced = DealFactory(name="alpha sourced", sourcing_partner=self.alpha)
        self.alpha_touched = DealFactory(name="alpha touched")
        self.alpha_registered = DealFactory(name="alpha registered")
        self.beta_sourced = DealFactory(name="beta sourced", sourcing_partner=self.beta)
        self.shared = DealFactory(name="shared")
        self.direct = DealFactory(name="direct")

        self.alpha_touch = TouchFactory(deal=self.alpha_touched, partner=self.alpha)
        self.alpha_shared_touch = TouchFactory(deal=self.shared, partner=self.alpha)
        self.beta_shared_touch = TouchFactory(deal=self.shared, partner=self.beta, kind="co_sell")
        self.beta_touch = TouchFactory(deal=self.beta_sourced, partner=self.beta)

        self.alpha_registration = DealRegistrationFactory(
            partner=self.alpha,
            account=self.alpha_registered.account,
            status="approved",
            decided_at=T0,
            submitted_at=T0,
            deal=self.alpha_registered,
        )
        self.alpha_pending = DealRegistrationFactory(partner=self.alpha, submitted_at=T0)
        self.beta_pending = DealRegistrationFactory(partner=self.beta, submitted_at=T0)

        cost = {"date": date(2026, 2, 1), "amount": Decimal("100.00"), "category": "mdf"}
        self.alpha_cost = CostEntry.objects.create(partner=self.alpha, **cost)
        self.beta_cost = CostEntry.objects.create(partner=self.beta, **cost)
        self.program_cost = CostEntry.objects.create(**cost)

        target = {
            "metric": "sourced_revenue",
            "grain": "month",
            "period": "2026-02",
            "value": Decimal("1000"),
        }
        target["period_start"] = date(2026, 2, 1)
        self.alpha_target = Target.objects.create(partner=self.alpha, **target)
        self.beta_target = Target.objects.create(partner=self.beta, **target)
        self.program_target = Target.objects.create(**target)


@pytest.fixture
def program() -> Program:
    return Program()


def _ids(queryset) -> set[int]:
    return set(queryset.values_list("pk", flat=True))


def test_a_partner_user_acts_for_its_partner_and_staff_for_none(program):
    assert partner_of(program.alpha_user) == program.alpha
    assert partner_of(program.beta_user) == program.beta
    assert partner_of(StaffUserFactory()) is None
    assert partner_of(AnonymousUser()) is None


def test_alpha_sees_only_itself_among_partners(program):
    assert _ids(visible_partners(program.alpha_user)) == {program.alpha.pk}


def test_alpha_sees_the_deals_it_sourced_touched_or_registered(program):
    assert _ids(visible_deals(program.alpha_user)) == {
        program.alpha_sourced.pk,
        program.alpha_touched.pk,
        program.alpha_registered.pk,
        program.shared.pk,
    }


def test_beta_sees_its_own_deals_and_the_shared_one_but_nothing_of_alphas(program):
    assert _ids(visible_deals(program.beta_user)) == {program.beta_sourced.pk, program.shared.pk}


def test_a_deal_touched_twice_by_a_partner_is_listed_once(program):
    TouchFactory(deal=program.shared, partner=program.alpha, kind="technical")
    assert visible_deals(program.alpha_user).filter(pk=program.shared.pk).count() == 1


def test_partners_see_only_their_own_touches_even_on_a_shared_deal(program):
    assert _ids(visible_touches(program.alpha_user)) == {
        program.alpha_touch.pk,
        program.alpha_shared_touch.pk,
    }
    assert _ids(visible_touches(program.beta_user)) == {program.beta_shared_touch.pk, program.beta_touch.pk}


def test_partners_see_only_their_own_registrations(program):
    assert _ids(visible_registrations(program.alpha_user)) == {
        program.alpha_registration.pk,
        program.alpha_pending.pk,
    }
    assert _ids(visible_registrations(program.beta_user)) == {program.beta_pending.pk}


def test_partners_see_the_accounts_behind_their_deals_and_registrations(program):
    assert _ids(visible_accounts(program.alpha_user)) == {
        program.alpha_sourced.account_id,
        program.alpha_touched.account_id,
        program.alpha_registered.account_id,
        program.shared.account_id,
        program.alpha_pending.account_id,
    }
    assert program.direct.account_id not in _ids(visible_accounts(program.beta_user))
    assert program.alpha_pending.account_id not in _ids(visible_accounts(program.beta_user))


def test_partners_see_only_costs_and_targets_tagged_with_them(program):
    assert _ids(visible_costs(program.alpha_user)) == {program.alpha_cost.pk}
    assert _ids(visible_targets(program.alpha_user)) == {program.alpha_target.pk}
    assert _ids(visible_costs(program.beta_user)) == {program.beta_cost.pk}
    assert _ids(visible_targets(program.beta_user)) == {program.beta_target.pk}


VISIBLE = [
    visible_partners,
    visible_registrations,
    visible_deals,
    visible_touches,
    visible_accounts,
    visible_costs,
    visible_targets,
]


@pytest.mark.parametrize("visible", VISIBLE, ids=lambda f: f.__name__)
def test_no_visible_function_leaks_a_row_of_the_other_partner(program, visible):
    alpha_rows, beta_rows = _ids(visible(program.alpha_user)), _ids(visible(program.beta_user))
    everything = _ids(visible(SuperUserFactory()))
    shared = {program.shared.pk} if visible is visible_deals else set()
    shared |= {program.shared.account_id} if visible is visible_accounts else set()
    assert alpha_rows and beta_rows
    assert alpha_rows & beta_rows == shared
    assert alpha_rows | beta_rows <= everything


@pytest.mark.parametrize(
    "make_user",
    [
        lambda: StaffUserFactory(role=StaffRole.PARTNER_MANAGER),
        lambda: StaffUserFactory(role=StaffRole.SALES_OPS),
        SuperUserFactory,
    ],
    ids=["partner manager", "sales ops", "superuser"],
)
@pytest.mark.parametrize("visible", VISIBLE, ids=lambda f: f.__name__)
def test_staff_readers_see_every_row(program, make_user, visible):
    model = visible(program.alpha_user).model
    assert _ids(visible(make_user())) == set(model.objects.values_list("pk", flat=True))


@pytest.mark.parametrize("make_user", [UserFactory, AnonymousUser], ids=["plain login", "anonymous"])
@pytest.mark.parametrize("visible", VISIBLE, ids=lambda f: f.__name__)
def test_anyone_else_sees_nothing(program, make_user, visible):
    assert _ids(visible(make_user())) == set()


def test_a_django_is_staff_flag_alone_grants_nothing(program):
    bare_staff = UserFactory(is_staff=True)
    assert not is_staff_reader(bare_staff)
    assert _ids(visible_deals(bare_staff)) == set()


def test_what_each_role_may_do(program):
    manager = StaffUserFactory(role=StaffRole.PARTNER_MANAGER)
    ops = StaffUserFactory(role=StaffRole.SALES_OPS)
    admin = SuperUserFactory()
    abilities = {
        name: (is_staff_reader(u), can_write_all(u), can_trigger_recompute(u), can_import(u))
        for name, u in [
            ("manager", manager),
            ("ops", ops),
            ("admin", admin),
            ("partner", program.alpha_user),
            ("anonymous", AnonymousUser()),
        ]
    }
    assert abilities == {
        "manager": (True, True, True, True),
        "ops": (True, False, True, True),
        "admin": (True, True, True, True),
        "partner": (False, False, False, False),
        "anonymous": (False, False, False, False),
    }
