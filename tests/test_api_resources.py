"""Resources through the API: writes via the services, filters, ordering, pagination, query counts."""

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from deals.models import Account, Deal, Touch
from kpis.models import CostEntry, Target
from partners.models import Partner, PartnerUser
from tests.factories import DealFactory, JoinSourceFactory, PartnerFactory, PartnerUserFactory
from tests.support.api import *  # noqa: F403
from tests.support.api import API, count_queries, error_of, ids, make_partner_world

LIST_PATHS = [
    "join-sources",
    "partners",
    "partner-users",
    "accounts",
    "registrations",
    "deals",
    "touches",
    "costs",
    "targets",
]


def _cost_and_target(partner, month: int) -> None:
    CostEntry.objects.create(
        date=date(2026, month, 1), amount=Decimal("10.00"), category="mdf", partner=partner
    )
    Target.objects.create(
        metric="sourced_revenue",
        grain="month",
        period=f"2026-{month:02d}",
        period_start=date(2026, month, 1),
        value=Decimal("100"),
        partner=partner,
    )


# --- Query counts -------------------------------------------------------------------------------
@pytest.mark.parametrize("path", LIST_PATHS)
def test_a_list_costs_the_same_queries_for_one_row_as_for_many(
    path, world_a, admin_a, manager, as_manager, as_admin_a, django_assert_max_num_queries
):
    _cost_and_target(world_a.partner, 1)
    one_manager, first = count_queries(as_manager, f"{API}/{path}/")
    one_partner, _ = count_queries(as_admin_a, f"{API}/{path}/")
    assert first.status_code == 200
    for n in range(6):
        extra = make_partner_world(f"Extra {n}", f"extra{n}.example")
        _cost_and_target(extra.partner, n + 2)
        _cost_and_target(world_a.partner, n + 2)
        PartnerUserFactory(partner=extra.partner)
        PartnerUserFactory(partner=world_a.partner)
        DealFactory(sourcing_partner=world_a.partner)
    with django_assert_max_num_queries(one_manager):
        many = as_manager.get(f"{API}/{path}/")
    with django_assert_max_num_queries(one_partner):
        as_admin_a.get(f"{API}/{path}/")
    assert len(many.json()["results"]) > len(first.json()["results"])


@pytest.mark.parametrize("path", ["deals", "registrations", "touches", "accounts", "partners"])
def test_a_detail_costs_a_constant_number_of_queries(
    path, world_a, as_manager, django_assert_max_num_queries
):
    attribute = {"deals": "deal", "registrations": "registration", "touches": "touch", "accounts": "account"}
    obj = getattr(world_a, attribute.get(path, "partner"))
    with django_assert_max_num_queries(5):
        assert as_manager.get(f"{API}/{path}/{obj.pk}/").status_code == 200


# --- Pagination ---------------------------------------------------------------------------------
def test_big_lists_page_by_cursor_without_counting(world_a, as_manager):
    for n in range(5):
        DealFactory(name=f"Paged {n}")
    first = as_manager.get(f"{API}/deals/", {"page_size": 2}).json()
    assert "count" not in first
    assert len(first["results"]) == 2
    seen = [row["id"] for row in first["results"]]
    page = first
    while page["next"]:
        page = as_manager.get(page["next"]).json()
        seen.extend(row["id"] for row in page["results"])
    assert seen == sorted(Deal.objects.values_list("id", flat=True), reverse=True)


def test_small_lists_page_by_number_with_a_count(world_a, world_b, as_manager):
    body = as_manager.get(f"{API}/partners/", {"page_size": 1}).json()
    assert body["count"] == 2
    assert len(body["results"]) == 1
    assert body["next"]


def test_ordering_a_big_list_by_an_indexed_field(as_manager, db):
    older = DealFactory(created_at=datetime(2026, 1, 1, tzinfo=UTC))
    newer = DealFactory(created_at=datetime(2026, 2, 1, tzinfo=UTC))
    assert [
        r["id"] for r in as_manager.get(f"{API}/deals/", {"ordering": "created_at"}).json()["results"]
    ] == [
        older.pk,
        newer.pk,
    ]


# --- Filters ------------------------------------------------------------------------------------
def test_deals_filter_by_status_sourcing_and_close_date(world_a, as_manager):
    won = DealFactory(
        status="won",
        created_at=datetime(2026, 3, 1, tzinfo=UTC),
        closed_at=datetime(2026, 3, 20, tzinfo=UTC),
        sourcing_partner=world_a.partner,
    )
    direct_won = DealFactory(
        status="won", created_at=datetime(2026, 3, 1, tzinfo=UTC), closed_at=datetime(2026, 4, 2, tzinfo=UTC)
    )
    assert ids(as_manager.get(f"{API}/deals/", {"status": "won"})) == {won.pk, direct_won.pk}
    assert ids(as_manager.get(f"{API}/deals/", {"status": "won", "sourced": "true"})) == {won.pk}
    assert ids(as_manager.get(f"{API}/deals/", {"closed_after": "2026-04-01T00:00:00Z"})) == {direct_won.pk}
    assert ids(as_manager.get(f"{API}/deals/", {"sourcing_partner": world_a.partner.pk})) == {
        world_a.deal.pk,
        won.pk,
    }


def test_a_list_that_filters_nothing_skips_the_filterset_and_returns_the_same_rows(
    world_a, world_b, as_manager, monkeypatch
):
    from api.filters import DealFilterSet

    built = []
    original = DealFilterSet.__init__

    def counting_init(self, *args, **kwargs):
        built.append(kwargs.get("data"))
        original(self, *args, **kwargs)

    monkeypatch.setattr(DealFilterSet, "__init__", counting_init)
    unfiltered = ids(as_manager.get(f"{API}/deals/?page_size=2&ordering=id"))
    assert built == [], "pagination and ordering alone filter nothing"
    # An empty filter value goes through the filterset, and selects the same rows.
    assert ids(as_manager.get(f"{API}/deals/?page_size=2&ordering=id&key=")) == unfiltered
    assert len(built) == 1 and len(unfiltered) == 2
    assert ids(as_manager.get(f"{API}/deals/?sourcing_partner={world_b.partner.pk}")) == {world_b.deal.pk}


def test_the_spelled_out_deal_and_touch_rows_equal_drfs_rendering_of_the_declared_fields(world_a, as_manager):
    """DealSerializer and TouchSerializer write their rows out by hand for speed: DRF's own
    field-by-field rendering of the fields they declare (what the schema documents) must give the
    same output, for every shape."""
    from rest_framework import serializers as drf

    from api.serializers import DealSerializer, TouchSerializer

    march = datetime(2026, 3, 1, 8, 30, 15, 123456, tzinfo=UTC)
    DealFactory(
        key=None,
        status="won",
        amount=Decimal("1200"),
        created_at=march,
        closed_at=march.replace(day=9),
        sourcing_partner=world_a.partner,
    )
    DealFactory(key="open-one", status="open", amount=Decimal("0.50"), created_at=march, closed_at=None)
    deals = list(Deal.objects.select_related("account").order_by("id"))
    serializer = DealSerializer()
    for deal in deals:
        assert serializer.to_representation(deal) == drf.ModelSerializer.to_representation(serializer, deal)
    touches = TouchSerializer()
    touch_rows = list(Touch.objects.all())
    assert touch_rows  # world_a's
    for touch in touch_rows:
        assert touches.to_representation(touch) == drf.ModelSerializer.to_representation(touches, touch)
    listed = {row["id"]: row for row in as_manager.get(f"{API}/deals/").json()["results"]}
    assert {row["amount"] for row in listed.values()} >= {"1200.00", "0.50"}
    assert all(row["created_at"].endswith("Z") for row in listed.values())


def test_moment_filters_take_any_utc_offset(world_a, as_manager):
    """Bounds are compared as instants; offsets PostgreSQL refuses (beyond ±15:59) are converted
    first, and a bound that leaves the calendar in UTC is a 400 naming the filter."""
    march = datetime(2026, 3, 1, tzinfo=UTC)
    closed = DealFactory(status="won", created_at=march, closed_at=march.replace(day=20, hour=12))
    url = f"{API}/deals/"
    # 2026-03-20T12:00Z is 2026-03-21T06:30+18:30 and 2026-03-19T17:30-18:30.
    assert ids(as_manager.get(url, {"closed_after": "2026-03-21T06:30:00+18:30"})) == {closed.pk}
    assert ids(as_manager.get(url, {"closed_after": "2026-03-21T06:31:00+18:30"})) == set()
    assert ids(as_manager.get(url, {"closed_before": "2026-03-19T17:30:00-18:30"})) == {closed.pk}
    assert ids(as_manager.get(url, {"closed_after": "0214-04-18T06:09:23.662-18:49"})) == {closed.pk}
    for bound in ("0001-01-01T00:00:00+23:00", "9999-12-31T23:00:00-23:00"):
        response = as_manager.get(url, {"closed_after": bound})
        assert response.status_code == 400, bound
        assert set(error_of(response)["fields"]) & {"closed", "closed_after"}, error_of(response)


def test_a_bad_filter_value_is_a_400_naming_the_filter(as_manager, db):
    response = as_manager.get(f"{API}/deals/", {"status": "maybe"})
    assert response.status_code == 400
    assert "status" in error_of(response)["fields"]
    too_big = as_manager.get(f"{API}/deals/", {"account": 2**70})
    assert too_big.status_code == 400
    assert "account" in error_of(too_big)["fields"]


def test_accounts_filter_by_normalised_domain(world_a, as_manager):
    found = ids(as_manager.get(f"{API}/accounts/", {"domain": "https://WWW.alpha-customer.example/about"}))
    assert found == {world_a.account.pk}


# --- Writes -------------------------------------------------------------------------------------
def test_a_manager_records_and_approves_a_partner_application(as_manager, db):
    source = JoinSourceFactory()
    created = as_manager.post(
        f"{API}/partners/",
        {
            "name": "Initech",
            "type": "msp",
            "join_source": source.pk,
            "applied_at": "2026-02-01",
            "key": "P-9",
        },
        format="json",
    )
    assert created.status_code == 201, created.content
    assert created.json()["status"] == "applied"
    assert created.json()["joined_at"] is None
    partner_id = created.json()["id"]
    approved = as_manager.post(
        f"{API}/partners/{partner_id}/approve/", {"joined_at": "2026-02-10"}, format="json"
    )
    assert approved.status_code == 200, approved.content
    assert approved.json()["status"] == "active"
    assert approved.json()["joined_at"] == "2026-02-10"
    churned = as_manager.post(f"{API}/partners/{partner_id}/status/", {"status": "churned"}, format="json")
    assert churned.status_code == 200, churned.content
    assert Partner.objects.get(pk=partner_id).status == "churned"


def test_approving_before_the_application_date_is_refused(as_manager, db):
    partner = PartnerFactory(applied=True, applied_at=datetime(2026, 2, 1).date())
    response = as_manager.post(
        f"{API}/partners/{partner.pk}/approve/", {"joined_at": "2026-01-01"}, format="json"
    )
    assert response.status_code == 400
    assert "joined_at" in error_of(response)["fields"]


def test_a_manager_creates_a_partner_login(world_a, as_manager):
    response = as_manager.post(
        f"{API}/partner-users/",
        {
            "partner": world_a.partner.pk,
            "username": "carol",
            "email": "carol@alpha.example",
            "password": "a long passphrase for carol",
            "role": "member",
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    assert "password" not in response.json()
    membership = PartnerUser.objects.get(user__username="carol")
    assert membership.partner == world_a.partner
    assert membership.user.check_password("a long passphrase for carol")


def test_a_manager_creates_updates_and_closes_a_deal(world_a, as_manager):
    created = as_manager.post(
        f"{API}/deals/",
        {"account": world_a.account.pk, "amount": "900.00", "created_at": "2026-03-01T10:00:00Z"},
        format="json",
    )
    assert created.status_code == 201, created.content
    deal_id = created.json()["id"]
    assert created.json()["account_name"] == "Alpha Partners customer"
    patched = as_manager.patch(f"{API}/deals/{deal_id}/", {"amount": "950.50"}, format="json")
    assert patched.status_code == 200
    assert patched.json()["amount"] == "950.50"
    closed = as_manager.post(
        f"{API}/deals/{deal_id}/close/", {"status": "won", "closed_at": "2026-04-01T10:00:00Z"}, format="json"
    )
    assert closed.status_code == 200, closed.content
    deal = Deal.objects.get(pk=deal_id)
    assert (deal.status, deal.amount) == ("won", Decimal("950.50"))


def test_a_deal_patch_refuses_a_status_or_close_time_change_and_changes_nothing(world_a, as_manager):
    url = f"{API}/deals/{world_a.deal.pk}/"
    read = as_manager.get(url).json()
    refused = as_manager.patch(
        url, {"amount": "1.00", "status": "won", "closed_at": "2026-04-01T10:00:00Z"}, format="json"
    )
    assert refused.status_code == 400, refused.content
    fields = error_of(refused)["fields"]
    assert set(fields) == {"status", "closed_at"} and "/close/" in fields["status"][0]
    world_a.deal.refresh_from_db()
    assert (world_a.deal.status, world_a.deal.closed_at, str(world_a.deal.amount)) == (
        "open",
        None,
        read["amount"],
    )
    # What it read, sent back with a new amount: the unchanged status and close time are accepted.
    patched = as_manager.patch(url, {**read, "amount": "777.00"}, format="json")
    assert patched.status_code == 200, patched.content
    assert (patched.json()["amount"], patched.json()["status"]) == ("777.00", "open")


def test_closing_a_deal_before_it_was_created_is_refused(world_a, as_manager):
    response = as_manager.post(
        f"{API}/deals/{world_a.deal.pk}/close/",
        {"status": "won", "closed_at": "2025-01-01T00:00:00Z"},
        format="json",
    )
    assert response.status_code == 400
    assert error_of(response)["fields"]["closed_at"] == ["closed_at is before created_at"]
    world_a.deal.refresh_from_db()
    assert world_a.deal.status == "open"


def test_a_deal_with_a_non_positive_amount_is_refused(world_a, as_manager):
    response = as_manager.post(
        f"{API}/deals/",
        {"account": world_a.account.pk, "amount": "0", "created_at": "2026-03-01T10:00:00Z"},
        format="json",
    )
    assert response.status_code == 400
    assert error_of(response)["fields"]["amount"] == ["must be greater than 0"]


def test_a_manager_records_a_touch_and_a_duplicate_is_refused(world_a, world_b, as_manager):
    body = {
        "deal": world_a.deal.pk,
        "partner": world_b.partner.pk,
        "kind": "co_sell",
        "touched_at": "2026-02-01T09:00:00Z",
    }
    assert as_manager.post(f"{API}/touches/", body, format="json").status_code == 201
    again = as_manager.post(f"{API}/touches/", body, format="json")
    assert again.status_code == 400
    assert "touched_at" in error_of(again)["fields"]
    assert Touch.objects.filter(deal=world_a.deal, partner=world_b.partner).count() == 1


def test_creating_an_account_reuses_the_one_with_the_same_domain(world_a, as_manager):
    response = as_manager.post(
        f"{API}/accounts/", {"name": "Alpha again", "domain": "WWW.alpha-customer.example"}, format="json"
    )
    assert response.status_code == 201
    assert response.json()["id"] == world_a.account.pk
    assert Account.objects.count() == 1


def test_an_unknown_reference_in_a_body_is_a_field_error(as_manager, db):
    response = as_manager.post(
        f"{API}/deals/",
        {"account": 424242, "amount": "10.00", "created_at": "2026-03-01T10:00:00Z"},
        format="json",
    )
    assert response.status_code == 400
    assert "account" in error_of(response)["fields"]


def test_malformed_json_is_a_400_in_the_error_shape(as_manager, db):
    response = as_manager.post(f"{API}/deals/", "{not json", content_type="application/json")
    assert response.status_code == 400
    assert error_of(response)["code"] == "parse_error"


def test_put_and_delete_on_deals_are_not_allowed(world_a, as_manager):
    response = as_manager.delete(f"{API}/deals/{world_a.deal.pk}/")
    assert response.status_code == 405
    assert error_of(response)["code"] == "method_not_allowed"
