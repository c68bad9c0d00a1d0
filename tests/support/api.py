"""Shared API test fixtures (after healthchecks' personas and NetBox's API test cases).

Two partners, A and B, each with data, and one persona per role: partner manager, sales ops,
partner A's admin and member, partner B's admin, a signed-in user with no role, and anonymous.
Import into a test module with `from tests.support.api import *  # noqa: F403`.
"""

from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from deals.models import Account, Deal, DealRegistration, Touch
from partners.models import Partner, PartnerUser
from partners.roles import StaffRole
from tests.factories import (
    T0,
    AccountFactory,
    DealFactory,
    DealRegistrationFactory,
    PartnerFactory,
    PartnerUserFactory,
    StaffUserFactory,
    TouchFactory,
    UserFactory,
)

API = "/api/v1"


@dataclass
class PartnerWorld:
    """One partner's rows: a registration, the deal it sourced, a touch on it, their account."""

    partner: Partner
    account: Account
    registration: DealRegistration
    deal: Deal
    touch: Touch


def make_partner_world(name: str, domain: str) -> PartnerWorld:
    partner = PartnerFactory(name=name)
    account = AccountFactory(name=f"{name} customer", domain=domain)
    deal = DealFactory(account=account, sourcing_partner=partner, amount=Decimal("1200.00"))
    registration = DealRegistrationFactory(partner=partner, account=account, deal=None)
    touch = TouchFactory(deal=deal, partner=partner, touched_at=T0 + timedelta(days=1))
    return PartnerWorld(partner, account, registration, deal, touch)


def client_for(user) -> APIClient:
    client = APIClient()
    if user is not None:
        client.force_login(user)
    return client


def count_queries(client: APIClient, url: str) -> tuple[int, object]:
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url)
    return len(ctx.captured_queries), response


def error_of(response) -> dict:
    """The one error body every failure has; fails the test when the shape is different."""
    body = response.json()
    assert set(body) == {"error"}, body
    assert {"status", "code", "detail", "fields"} <= set(body["error"]), body
    assert body["error"]["status"] == response.status_code
    return body["error"]


def ids(response) -> set[int]:
    assert response.status_code == 200, response.content
    body = response.json()
    rows = body["results"] if isinstance(body, dict) else body
    return {row["id"] for row in rows}


@pytest.fixture(autouse=True)
def fresh_throttle_history():
    # Throttle counters live in the cache; ids repeat across tests on SQLite.
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def world_a(db) -> PartnerWorld:
    return make_partner_world("Alpha Partners", "alpha-customer.example")


@pytest.fixture
def world_b(db) -> PartnerWorld:
    return make_partner_world("Bravo Partners", "bravo-customer.example")


@pytest.fixture
def manager(db):
    return StaffUserFactory(username="manager", role=StaffRole.PARTNER_MANAGER)


@pytest.fixture
def salesops(db):
    return StaffUserFactory(username="salesops", role=StaffRole.SALES_OPS)


@pytest.fixture
def admin_a(world_a):
    return PartnerUserFactory(
        partner=world_a.partner, role=PartnerUser.Role.ADMIN, user__username="alice"
    ).user


@pytest.fixture
def member_a(world_a):
    return PartnerUserFactory(
        partner=world_a.partner, role=PartnerUser.Role.MEMBER, user__username="arthur"
    ).user


@pytest.fixture
def admin_b(world_b):
    return PartnerUserFactory(partner=world_b.partner, role=PartnerUser.Role.ADMIN, user__username="bob").user


@pytest.fixture
def outsider(db):
    return UserFactory(username="outsider")


@pytest.fixture
def as_manager(manager) -> APIClient:
    return client_for(manager)


@pytest.fixture
def as_salesops(salesops) -> APIClient:
    return client_for(salesops)


@pytest.fixture
def as_admin_a(admin_a) -> APIClient:
    return client_for(admin_a)


@pytest.fixture
def as_member_a(member_a) -> APIClient:
    return client_for(member_a)


@pytest.fixture
def as_admin_b(admin_b) -> APIClient:
    return client_for(admin_b)


@pytest.fixture
def as_outsider(outsider) -> APIClient:
    return client_for(outsider)


@pytest.fixture
def anonymous() -> APIClient:
    return APIClient()
