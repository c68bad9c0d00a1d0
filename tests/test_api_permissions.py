"""Who sees and changes what through the API: every resource, every role, across partners.

Partner B must not list, read, change or infer any row of partner A — not through lists, filters,
detail ids, or write endpoints — and another partner's object answers exactly like a missing one.
"""

import pytest

from tests.support.api import *  # noqa: F403
from tests.support.api import API, error_of, ids

# (list path, the world attribute whose id appears there)
ROW_RESOURCES = [
    ("partners", "partner"),
    ("accounts", "account"),
    ("registrations", "registration"),
    ("deals", "deal"),
    ("touches", "touch"),
]
# (list path, filter parameter, the world attribute whose id is passed)
FILTERS_BY_ANOTHER_PARTNERS_ID = [
    ("registrations", "partner", "partner"),
    ("registrations", "account", "account"),
    ("deals", "sourcing_partner", "partner"),
    ("deals", "touched_by", "partner"),
    ("deals", "account", "account"),
    ("touches", "partner", "partner"),
    ("touches", "deal", "deal"),
    ("partner-users", "partner", "partner"),
    ("partners", "join_source", "partner.join_source"),
    ("costs", "partner", "partner"),
    ("targets", "partner", "partner"),
]


def _id(world, attribute: str) -> int:
    obj = world
    for part in attribute.split("."):
        obj = getattr(obj, part)
    return obj.pk


@pytest.mark.parametrize(("path", "attribute"), ROW_RESOURCES)
def test_a_partner_lists_only_its_own_rows(path, attribute, world_a, world_b, as_admin_b):
    listed = ids(as_admin_b.get(f"{API}/{path}/"))
    assert _id(world_b, attribute) in listed
    assert _id(world_a, attribute) not in listed


@pytest.mark.parametrize(("path", "attribute"), ROW_RESOURCES)
def test_staff_list_every_partners_rows(path, attribute, world_a, world_b, as_manager, as_salesops):
    for client in (as_manager, as_salesops):
        listed = ids(client.get(f"{API}/{path}/"))
        assert {_id(world_a, attribute), _id(world_b, attribute)} <= listed


@pytest.mark.parametrize(("path", "attribute"), ROW_RESOURCES)
def test_another_partners_row_answers_404_exactly_like_a_missing_one(
    path, attribute, world_a, world_b, as_admin_b
):
    theirs = as_admin_b.get(f"{API}/{path}/{_id(world_a, attribute)}/")
    missing = as_admin_b.get(f"{API}/{path}/987654321/")
    assert theirs.status_code == missing.status_code == 404
    assert error_of(theirs)["code"] == error_of(missing)["code"] == "not_found"
    assert theirs.json()["error"]["detail"] == missing.json()["error"]["detail"]
    assert as_admin_b.get(f"{API}/{path}/{_id(world_b, attribute)}/").status_code == 200


@pytest.mark.parametrize(("path", "parameter", "attribute"), FILTERS_BY_ANOTHER_PARTNERS_ID)
def test_filtering_by_another_partners_id_returns_nothing(
    path, parameter, attribute, world_a, world_b, admin_a, as_admin_b, as_manager
):
    value = _id(world_a, attribute)
    assert ids(as_admin_b.get(f"{API}/{path}/", {parameter: value})) == set()
    # The same filter is not empty for someone who may see A's rows, so the test can fail.
    if path not in ("costs", "targets"):
        assert ids(as_manager.get(f"{API}/{path}/", {parameter: value}))


def test_filtering_by_another_partners_domain_returns_nothing(world_a, as_admin_b):
    assert ids(as_admin_b.get(f"{API}/registrations/", {"domain": world_a.account.domain})) == set()
    assert ids(as_admin_b.get(f"{API}/accounts/", {"domain": world_a.account.domain})) == set()


def test_a_partner_member_sees_what_its_admin_sees(world_a, world_b, as_member_a):
    assert ids(as_member_a.get(f"{API}/deals/")) == {world_a.deal.pk}
    assert ids(as_member_a.get(f"{API}/registrations/")) == {world_a.registration.pk}


def test_a_partner_sees_its_own_partner_users_only(admin_a, member_a, admin_b, as_admin_b, as_manager):
    listed = as_admin_b.get(f"{API}/partner-users/").json()["results"]
    assert [row["username"] for row in listed] == ["bob"]
    everyone = {row["username"] for row in as_manager.get(f"{API}/partner-users/").json()["results"]}
    assert everyone == {"alice", "arthur", "bob"}


def test_a_partner_sees_only_the_join_source_it_joined_through(world_a, world_b, as_admin_b, as_manager):
    assert ids(as_admin_b.get(f"{API}/join-sources/")) == {world_b.partner.join_source_id}
    assert as_admin_b.get(f"{API}/join-sources/{world_a.partner.join_source_id}/").status_code == 404
    assert ids(as_manager.get(f"{API}/join-sources/")) == {
        world_a.partner.join_source_id,
        world_b.partner.join_source_id,
    }


def test_a_deal_touched_by_two_partners_shows_each_only_its_own_touch(world_a, world_b, as_admin_b):
    from tests.factories import TouchFactory

    shared_touch = TouchFactory(deal=world_a.deal, partner=world_b.partner)
    assert world_a.deal.pk in ids(as_admin_b.get(f"{API}/deals/"))
    assert ids(as_admin_b.get(f"{API}/touches/")) == {world_b.touch.pk, shared_touch.pk}
    assert ids(as_admin_b.get(f"{API}/touches/", {"deal": world_a.deal.pk})) == {shared_touch.pk}


def test_a_user_without_a_role_sees_nothing(world_a, as_outsider):
    for path, attribute in ROW_RESOURCES:
        assert ids(as_outsider.get(f"{API}/{path}/")) == set()
        assert as_outsider.get(f"{API}/{path}/{_id(world_a, attribute)}/").status_code == 404


def test_anonymous_requests_get_401_with_the_error_body(world_a, anonymous):
    response = anonymous.get(f"{API}/deals/")
    assert response.status_code == 401
    assert error_of(response)["code"] == "not_authenticated"
    assert response["WWW-Authenticate"].startswith("Bearer")


# --- Writes -------------------------------------------------------------------------------------
def test_a_partner_cannot_change_another_partners_deal_and_learns_nothing(world_a, world_b, as_admin_b):
    theirs = as_admin_b.patch(f"{API}/deals/{world_a.deal.pk}/", {"amount": "1.00"}, format="json")
    assert theirs.status_code == 404
    own = as_admin_b.patch(f"{API}/deals/{world_b.deal.pk}/", {"amount": "1.00"}, format="json")
    assert own.status_code == 403
    assert error_of(own)["code"] == "permission_denied"
    world_a.deal.refresh_from_db()
    assert str(world_a.deal.amount) == "1200.00"


def test_a_partner_cannot_decide_registrations(world_a, world_b, as_admin_b):
    theirs = as_admin_b.post(f"{API}/registrations/{world_a.registration.pk}/approve/", {}, format="json")
    assert theirs.status_code == 404
    own = as_admin_b.post(f"{API}/registrations/{world_b.registration.pk}/approve/", {}, format="json")
    assert own.status_code == 403
    rejected = as_admin_b.post(
        f"{API}/registrations/{world_b.registration.pk}/reject/", {"reason": "mine"}, format="json"
    )
    assert rejected.status_code == 403
    world_b.registration.refresh_from_db()
    assert world_b.registration.status == "submitted"


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("partners", {"name": "X", "type": "reseller", "join_source": 1, "applied_at": "2026-01-01"}),
        ("accounts", {"name": "X", "domain": "x.example"}),
        ("deals", {"account": 1, "amount": "10.00", "created_at": "2026-01-01T00:00:00Z"}),
        ("touches", {"deal": 1, "partner": 1, "kind": "co_sell", "touched_at": "2026-01-01T00:00:00Z"}),
        (
            "partner-users",
            {"partner": 1, "username": "x", "email": "x@x.example", "password": "x", "role": "admin"},
        ),
    ],
)
def test_only_partner_managers_create_rows(path, body, world_a, as_admin_a, as_salesops, as_outsider):
    for client in (as_admin_a, as_salesops, as_outsider):
        response = client.post(f"{API}/{path}/", body, format="json")
        assert response.status_code == 403, (path, response.content)
        assert error_of(response)["code"] == "permission_denied"


def test_sales_ops_reads_everything_but_changes_nothing(world_a, as_salesops):
    assert as_salesops.get(f"{API}/deals/{world_a.deal.pk}/").status_code == 200
    assert (
        as_salesops.patch(f"{API}/deals/{world_a.deal.pk}/", {"name": "x"}, format="json").status_code == 403
    )
    approve = as_salesops.post(f"{API}/registrations/{world_a.registration.pk}/approve/", {}, format="json")
    assert approve.status_code == 403


def test_staff_only_endpoints_refuse_partner_users(world_a, as_admin_a):
    for path in ("kpi-runs/", "reconciliation/", "kpi-export/"):
        response = as_admin_a.get(f"{API}/{path}")
        assert response.status_code == 403, path
        assert error_of(response)["code"] == "permission_denied"
    assert as_admin_a.post(f"{API}/kpi-runs/", {}, format="json").status_code == 403
    assert as_admin_a.post(f"{API}/imports/", {}, format="multipart").status_code == 403


def test_another_partners_login_cost_target_and_kpi_value_answer_404(
    world_a, world_b, admin_a, as_admin_b, as_admin_a
):
    from datetime import date
    from decimal import Decimal

    from kpis.models import CostEntry, KpiRun, KpiValue, Target

    cost = CostEntry.objects.create(
        date=date(2026, 3, 1), amount=Decimal("5.00"), category="mdf", partner=world_a.partner
    )
    target = Target.objects.create(
        metric="sourced_revenue",
        grain="month",
        period="2026-03",
        period_start=date(2026, 3, 1),
        value=Decimal("10"),
        partner=world_a.partner,
    )
    run = KpiRun.objects.create(trigger="command", status="succeeded")
    value = KpiValue.objects.create(
        scope="partner",
        scope_key=world_a.partner.export_key,
        partner=world_a.partner,
        grain="month",
        period="2026-03",
        period_start=date(2026, 3, 1),
        metric="sourced_revenue",
        attribution_model="linear",
        value=Decimal("1200"),
        run=run,
    )
    membership_a = admin_a.partner_membership
    for path, pk in (
        ("partner-users", membership_a.pk),
        ("costs", cost.pk),
        ("targets", target.pk),
        ("kpi-values", value.pk),
    ):
        response = as_admin_b.get(f"{API}/{path}/{pk}/")
        assert response.status_code == 404, path
        assert error_of(response)["code"] == "not_found"
        assert as_admin_a.get(f"{API}/{path}/{pk}/").status_code == 200, path
    assert ids(as_admin_b.get(f"{API}/kpi-values/", {"scope_key": world_a.partner.export_key})) == set()
