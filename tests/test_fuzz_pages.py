"""Property-based fuzz of every public page and form: whatever a browser sends, never a 500.

GET every dashboard, portal and public page with fuzzed query parameters (as staff, as a partner
user and anonymously), and POST fuzzed fields to every form: the portal registration form, the
registration decision form, the recompute button, the login form, the admin's changelist filters
and search, and the admin add forms whose values feed the KPIs. Invalid input must be answered with
a 4xx, a form error or a redirect. The strategies (tests/fuzzing.py) always include the classes
of value that gave server errors before: NUL, years 0000/0001/9999, non-ASCII digits, exponent
notation, very long strings, empty and blank values, non-numeric ids.

Reproducible: derandomized, no example database. FUZZ_EXAMPLES=N runs N examples per test.
"""

import re
import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib import admin
from django.test import Client
from hypothesis import example, given
from hypothesis import strategies as st

from deals.services import registration_submit
from kpis.models import KpiRun
from tests.factories import DEFAULT_PASSWORD, T0, SuperUserFactory
from tests.fuzzing import (
    NASTY,
    fuzz_settings,
    maybe_valid,
    nasty_text,
    query_pairs,
    query_string,
    send,
)
from tests.support.api import *  # noqa: F403
from tests.support.api import PartnerWorld
from tests.support.dashboards import publish

pytestmark = pytest.mark.django_db

# {placeholders} are filled with the fixture's own ids, or a fuzzed id.
PAGES = (
    "/",
    "/login/",
    "/dashboard/",
    "/dashboard/join-sources/",
    "/dashboard/partners/",
    "/dashboard/partners/{partner}/",
    "/dashboard/registrations/",
    "/dashboard/attribution/",
    "/dashboard/reconciliation/",
    "/dashboard/runs/{run}/status.json",
    "/dashboard/deals/",
    "/dashboard/deals/{deal}/",
    "/dashboard/insights/heat-map/",
    "/dashboard/insights/forecast/",
    "/portal/",
    "/portal/register/",
    "/portal/register/conflicts.json",
    "/portal/registrations/",
    "/portal/registrations/{registration}/",
    "/portal/deals/",
    "/portal/deals/{deal}/",
    "/portal/users/",
    "/portal/profile/",
    "/portal/forecast/",
    "/partners/{partner}/logo/",
    "/apply/",
    "/apply/thanks/",
    "/invitations/{partner}/",
    "/dashboard/applications/",
    "/dashboard/commissions/plans/",
    "/dashboard/commissions/plans/new/",
    "/dashboard/commissions/review/",
    "/dashboard/payouts/",
    "/portal/earnings/",
)
# What the pages read (dashboards.forms.PeriodForm, dashboards.filters, pagination, the portal's
# conflict check, the login redirect) and what the API's KPI endpoints read, in case a page adopts them.
PAGE_PARAMETERS = (
    "period",
    "period_from",
    "period_to",
    "grain",
    "scope",
    "model",
    "metric",
    "sort",
    "direction",
    "page",
    "q",
    "tier",
    "type",
    "join_source",
    "manager",
    "status",
    "partner",
    "format",
    "domain",
    "next",
    "source",
    "ref",
    "origin",
    # The deal list and the heat map.
    "segment",
    "date_from",
    "date_to",
    "date_basis",
    "amount_min",
    "amount_max",
    "metrics",
    "group",
    "only",
)
path_id = st.one_of(st.none(), st.none(), st.integers(0, 2**70))


@pytest.fixture
def site(world_a: PartnerWorld, world_b: PartnerWorld, manager, admin_a) -> dict:
    """Two partners with data, a channel conflict to decide, a published KPI set, one client a persona."""
    conflicting = registration_submit(
        partner=world_b.partner,
        account_name="Alpha's customer, again",
        domain=world_a.account.domain,
        amount=Decimal("700.00"),
        submitted_at=T0 + timedelta(days=2),
    )
    run = publish(
        [
            (None, "2026-01", "sourced_revenue", "1200.00"),
            (None, "2026-01", "won_revenue", "1200.00"),
            (None, "2026-Q1", "sourced_revenue", "1200.00"),
            (None, "2026", "sourced_revenue", "1200.00"),
            (None, "2025-12", "activation_rate", "0.5000"),
            (None, "2026-01", "target", "1000.0", "sourced_revenue"),
            (world_a.partner, "2026-01", "sourced_revenue", "1200.00"),
            (world_a.partner.join_source, "2026-01", "applications", "3"),
        ]
    )
    clients = {"staff": Client(), "partner": Client(), "superuser": Client(), "anonymous": Client()}
    clients["staff"].force_login(manager)
    clients["partner"].force_login(admin_a)
    clients["superuser"].force_login(SuperUserFactory(username="fuzz-admin"))
    return {
        "clients": clients,
        "ids": {
            "partner": world_a.partner.pk,
            "registration": world_a.registration.pk,
            "deal": world_a.deal.pk,
            "run": run.pk,
        },
        "pending": {
            "pending": world_a.registration.pk,
            "other": world_b.registration.pk,
            "conflicting": conflicting.pk,
        },
        "world_a": world_a,
    }


def _get(client: Client, path: str, pairs: list[tuple]) -> None:
    query = query_string(pairs)
    send(f"GET {path}?{query}", lambda: client.get(path, QUERY_STRING=query))


@pytest.mark.parametrize("persona", ["staff", "partner", "anonymous"])
@fuzz_settings(max_examples=80)
@given(page=st.sampled_from(PAGES), pairs=query_pairs(PAGE_PARAMETERS), fuzzed_id=path_id)
@example(page="/dashboard/", pairs=[("period", "0000")], fuzzed_id=None)
@example(page="/dashboard/partners/", pairs=[("grain", "quarter"), ("period", "0000-Q1")], fuzzed_id=None)
@example(page="/portal/register/conflicts.json", pairs=[("domain", "acme.com\x00")], fuzzed_id=None)
def test_every_page_answers_any_query_without_a_server_error(site, persona, page, pairs, fuzzed_id):
    ids = {name: fuzzed_id if fuzzed_id is not None else pk for name, pk in site["ids"].items()}
    _get(site["clients"][persona], page.format(**ids), pairs)


@fuzz_settings(max_examples=60)
@given(
    registration=st.one_of(st.sampled_from(["pending", "other", "conflicting"]), nasty_text),
    decision=maybe_valid("approve", "reject", "override"),
    reason=maybe_valid("", "Duplicate of an older claim."),
    override_reason=maybe_valid("", "The customer asked for this partner."),
    prefixed=st.booleans(),
    pairs=query_pairs(("page",), max_size=2),
)
@example(registration="abc", decision="approve", reason="", override_reason="", prefixed=True, pairs=[])
@example(registration="", decision="approve", reason="", override_reason="", prefixed=True, pairs=[])
@example(registration="1.5", decision="reject", reason="x", override_reason="", prefixed=False, pairs=[])
@example(registration="\x00", decision="approve", reason="", override_reason="", prefixed=True, pairs=[])
def test_the_registration_decision_form_never_answers_a_server_error(
    site, registration, decision, reason, override_reason, prefixed, pairs
):
    registration = str(site["pending"].get(registration, registration))
    prefix = f"r{registration}-" if prefixed else ""
    data = {
        "registration": registration,
        f"{prefix}decision": decision,
        f"{prefix}reason": reason,
        f"{prefix}override_reason": override_reason,
    }
    path = f"/dashboard/registrations/?{query_string(pairs)}"
    send(f"POST {path} {data!r}", lambda: site["clients"]["staff"].post(path, data))


@fuzz_settings(max_examples=20)
@given(target=maybe_valid("/dashboard/partners/?period=2026-01", ""), fetch=st.booleans())
def test_the_recompute_button_never_answers_a_server_error(site, target, fetch):
    headers = {"X-Requested-With": "fetch"} if fetch else {}
    send(
        f"POST /dashboard/recompute/ next={target!r} fetch={fetch}",
        lambda: site["clients"]["staff"].post("/dashboard/recompute/", {"next": target}, headers=headers),
    )
    assert KpiRun.objects.filter(status=KpiRun.Status.QUEUED).count() <= 1


@fuzz_settings(max_examples=60)
@given(
    account_name=maybe_valid("Initech", "Alpha's customer"),
    domain=maybe_valid("initech.example", "alpha-customer.example", "https://www.Initech.example/x"),
    amount=maybe_valid("1200.00", "0.01"),
    expected_close_date=maybe_valid("", "2031-01-31"),
    notes=maybe_valid("", "Met at the summit."),
    action=maybe_valid("check", "submit"),
)
@example(
    account_name="Initech",
    domain="initech.example\x00",
    amount="1200.00",
    expected_close_date="",
    notes="",
    action="check",
)
def test_the_portal_registration_form_never_answers_a_server_error(
    site, account_name, domain, amount, expected_close_date, notes, action
):
    data = {
        "account_name": account_name,
        "domain": domain,
        "amount": amount,
        "expected_close_date": expected_close_date,
        "notes": notes,
        "action": action,
    }
    send(
        f"POST /portal/register/ {data!r}",
        lambda: site["clients"]["partner"].post("/portal/register/", data),
    )


@fuzz_settings(max_examples=30)
@given(
    username=maybe_valid("alice", "manager", ""),
    password=maybe_valid(DEFAULT_PASSWORD, ""),
    posted_next=maybe_valid("", "/portal/"),
    query_next=maybe_valid("", "/dashboard/"),
)
def test_the_login_form_never_answers_a_server_error(site, username, password, posted_next, query_next):
    client = Client()  # a fresh browser each time: a successful login must not carry over
    path = f"/login/?{query_string([('next', query_next)])}"
    data = {"username": username, "password": password, "next": posted_next}
    send(f"POST {path} {data!r}", lambda: client.post(path, data))


def _changelist_parameters(model_admin: admin.ModelAdmin) -> list[str]:
    """The query parameters a changelist reads: its filters' lookups, the date drill-down, search,
    ordering, paging and the admin's own flags."""
    fields = [f[0] if isinstance(f, tuple | list) else f for f in model_admin.list_filter]
    fields = [f for f in fields if isinstance(f, str)]
    if model_admin.date_hierarchy:
        fields.append(model_admin.date_hierarchy)
    suffixes = (
        "",
        "__exact",
        "__isnull",
        "__gte",
        "__lt",
        "__in",
        "__id__exact",
        "__year",
        "__month",
        "__day",
    )
    names = [f"{field}{suffix}" for field in fields for suffix in suffixes]
    return [*names, "id__exact", "pk", "q", "o", "p", "e", "all", "_to_field", "_popup", "_facets"]


CHANGELISTS = {
    f"/admin/{model._meta.app_label}/{model._meta.model_name}/": _changelist_parameters(model_admin)
    for model, model_admin in admin.site._registry.items()
}
ALL_CHANGELIST_PARAMETERS = sorted({name for names in CHANGELISTS.values() for name in names})


@fuzz_settings(max_examples=80)
@given(path=st.sampled_from(sorted(CHANGELISTS)), pairs=query_pairs(ALL_CHANGELIST_PARAMETERS, max_size=4))
@example(path="/admin/deals/deal/", pairs=[("status", "\x00")])
@example(path="/admin/deals/deal/", pairs=[("status__exact", "\x00")])
@example(path="/admin/deals/deal/", pairs=[("q", "\x00")])
@example(path="/admin/deals/dealregistration/", pairs=[("q", "acme\x00")])
def test_admin_changelist_filters_and_search_never_answer_a_server_error(site, path, pairs):
    _get(site["clients"]["superuser"], path, pairs)


def _autocomplete_sources() -> list[tuple[str, str, str]]:
    """(app_label, model_name, field_name) of every admin autocomplete widget, inlines included."""
    sources = []
    for model, model_admin in admin.site._registry.items():
        owners = [(model, model_admin.autocomplete_fields)]
        owners += [(inline.model, inline.autocomplete_fields) for inline in model_admin.inlines]
        for owner, fields in owners:
            sources += [(owner._meta.app_label, owner._meta.model_name, field) for field in fields]
    return sorted(set(sources))


AUTOCOMPLETE_SOURCES = _autocomplete_sources()


@fuzz_settings(max_examples=30)
@given(source=st.sampled_from(AUTOCOMPLETE_SOURCES), term=nasty_text, page=maybe_valid("1", "2"))
@example(source=("deals", "deal", "account"), term="acme\x00", page="1")
def test_the_admin_autocomplete_search_never_answers_a_server_error(site, source, term, page):
    app_label, model_name, field_name = source
    pairs = [("app_label", app_label), ("model_name", model_name), ("field_name", field_name)]
    _get(site["clients"]["superuser"], "/admin/autocomplete/", [*pairs, ("term", term), ("page", page)])


def _admin_forms(world: PartnerWorld) -> dict[str, dict[str, str]]:
    """A valid add form per admin page whose values reach the KPIs (dates, amounts, periods)."""
    no_inline = {"-TOTAL_FORMS": "0", "-INITIAL_FORMS": "0", "-MIN_NUM_FORMS": "0", "-MAX_NUM_FORMS": "1000"}
    return {
        "deals/deal": {
            "account": str(world.account.pk),
            "name": "Fuzzed deal",
            "amount": "1000.00",
            "created_at_0": "2026-01-15",
            "created_at_1": "12:00:00",
            "status": "open",
            "closed_at_0": "",
            "closed_at_1": "",
            "sourcing_partner": "",
            **{f"touches{k}": v for k, v in no_inline.items()},
        },
        "deals/touch": {
            "deal": str(world.deal.pk),
            "partner": str(world.partner.pk),
            "kind": "co_sell",
            "touched_at_0": "2026-01-20",
            "touched_at_1": "10:00:00",
        },
        "kpis/costentry": {"date": "2026-03-31", "amount": "250.00", "category": "mdf", "note": ""},
        "kpis/target": {"metric": "sourced_revenue", "period": "2026-03", "value": "1000"},
        "partners/partner": {
            "name": "Fuzzed partner",
            "type": "reseller",
            "join_source": str(world.partner.join_source_id),
            "applied_at": "2026-01-02",
            "status": "applied",
            "joined_at": "",
            **{f"users{k}": v for k, v in no_inline.items()},
        },
        "deals/account": {"name": "Fuzzed customer", "domain": "fuzzed.example"},
        "partners/joinsource": {"name": "Fuzzed source", "kind": "website"},
    }


ADMIN_FORM_FIELDS = {
    "deals/deal": (
        "account",
        "name",
        "amount",
        "created_at_0",
        "created_at_1",
        "status",
        "closed_at_0",
        "closed_at_1",
        "sourcing_partner",
        "key",
        "touches-TOTAL_FORMS",
    ),
    "deals/touch": ("deal", "partner", "kind", "touched_at_0", "touched_at_1"),
    "kpis/costentry": ("date", "amount", "category", "partner", "join_source", "note"),
    "kpis/target": ("metric", "period", "value", "partner", "join_source"),
    "partners/partner": (
        "name",
        "type",
        "join_source",
        "applied_at",
        "joined_at",
        "status",
        "referred_by",
        "manager",
        "tier",
        "key",
        "users-TOTAL_FORMS",
    ),
    "deals/account": ("name", "domain", "key"),
    "partners/joinsource": ("name", "kind", "key"),
}


@fuzz_settings(max_examples=60)
@given(
    page=st.sampled_from(sorted(ADMIN_FORM_FIELDS)),
    changes=st.data(),
)
def test_admin_add_forms_never_answer_a_server_error(site, page, changes):
    fields = ADMIN_FORM_FIELDS[page]
    data = _admin_forms(site["world_a"])[page]
    data.update(
        changes.draw(
            st.dictionaries(
                st.sampled_from(fields), st.one_of(st.sampled_from(NASTY), nasty_text), max_size=3
            ),
            label="changed fields",
        )
    )
    path = f"/admin/{page}/add/"
    send(f"POST {path} {data!r}", lambda: site["clients"]["superuser"].post(path, data))


def test_the_admin_form_fields_fuzzed_are_the_ones_the_pages_show(site):
    """Guards the list above: a renamed field would otherwise silently stop being fuzzed."""
    client = site["clients"]["superuser"]
    for page, fields in ADMIN_FORM_FIELDS.items():
        html = client.get(f"/admin/{page}/add/").content.decode()
        shown = set(re.findall(r'name="([^"]+)"', html))
        assert set(fields) <= shown, (page, set(fields) - shown)


@fuzz_settings(max_examples=40)
@given(
    company=maybe_valid("Northwind Traders"),
    partner_type=maybe_valid("reseller", "msp"),
    contact_name=maybe_valid("Nora North"),
    contact_email=maybe_valid("nora@northwind.example", "NORA@northwind.example"),
    website=maybe_valid("", "northwind.example"),
    pitch=maybe_valid("Nordic retail."),
    join_source=maybe_valid("", "1"),
    honeypot=maybe_valid(""),
    pairs=query_pairs(("source", "ref"), max_size=2),
)
def test_the_application_form_never_answers_a_server_error(
    site,
    settings,
    company,
    partner_type,
    contact_name,
    contact_email,
    website,
    pitch,
    join_source,
    honeypot,
    pairs,
):
    settings.APPLY_RATE_LIMIT = "10000/h"
    data = {
        "company": company,
        "partner_type": partner_type,
        "contact_name": contact_name,
        "contact_email": contact_email,
        "website": website,
        "pitch": pitch,
        "join_source": join_source,
        "fax_number": honeypot,
    }
    path = f"/apply/?{query_string(pairs)}"
    send(f"POST {path} {data!r}", lambda: Client().post(path, data))


@fuzz_settings(max_examples=30)
@given(
    application=st.one_of(st.just("pending"), nasty_text),
    decision=maybe_valid("approve", "reject"),
    reason=maybe_valid("", "Not a fit."),
    prefixed=st.booleans(),
)
def test_the_application_decision_form_never_answers_a_server_error(
    site, application, decision, reason, prefixed
):
    from partners.applications import application_submit

    pending = application_submit(
        company="Applicant",
        partner_type="reseller",
        contact_name="A",
        contact_email=f"{uuid.uuid4().hex}@example.com",  # examples share the database
        website="",
        pitch="Retail.",
    )
    application = str(pending.pk) if application == "pending" else application
    prefix = f"a{application}-" if prefixed else ""
    data = {"application": application, f"{prefix}decision": decision, f"{prefix}reason": reason}
    send(
        f"POST /dashboard/applications/ {data!r}",
        lambda: site["clients"]["staff"].post("/dashboard/applications/", data),
    )


@fuzz_settings(max_examples=30)
@given(
    username=maybe_valid("newbie"),
    password=maybe_valid("violet-harbour-lantern-42", "12345678"),
    confirmation=maybe_valid("violet-harbour-lantern-42"),
    tamper=st.booleans(),
)
def test_the_invitation_form_never_answers_a_server_error(site, username, password, confirmation, tamper):
    from partners.invitations import invitation_create

    issued = invitation_create(
        partner=site["world_a"].partner,
        email=f"{uuid.uuid4().hex}@example.com",
        role="member",
        invited_by=SuperUserFactory(),
    )
    path = issued.path if not tamper else issued.path.replace(":", "%3A", 1)
    data = {"username": username, "password": password, "password_confirmation": confirmation}
    send(f"POST {path} {data!r}", lambda: Client().post(path, data))
