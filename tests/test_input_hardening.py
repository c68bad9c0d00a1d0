"""One deterministic test per input that gave a server error or was wrongly accepted, so that a
regression names itself (the property-based fuzz in test_fuzz_pages.py / test_fuzz_api.py hunts for
new ones).

What a refusal looks like: the API answers 400 (413 for a body over the size limit) in its one error
body (api/exceptions.py) with the field named; a page answers 400 or shows a form error; the
importer refuses the file with `file:line: column: reason` and no traceback.
"""

import io
import json
import zipfile
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from django.contrib import admin
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from drf_spectacular.generators import SchemaGenerator
from rest_framework.test import APIClient

from api.services import api_token_create
from deals.models import Deal, DealRegistration, Touch
from interchange.importer import ImportFailed, import_program
from kpis.models import CostEntry, Target
from tests.factories import PartnerFactory, SuperUserFactory
from tests.support.api import *  # noqa: F403
from tests.support.api import API, error_of

pytestmark = pytest.mark.django_db

NUL = "\x00"
DEEPLY_NESTED = "[" * 5000 + "]" * 5000
VALID_PROGRAM = Path(__file__).parent / "data" / "program_valid"


# --- API: bodies that are not what a JSON object should be -------------------------------------
def _json_writes() -> list[tuple[str, str]]:
    schema = SchemaGenerator().get_schema(request=None, public=True)
    return [
        (method.upper(), path)
        for path, operations in schema["paths"].items()
        for method, operation in operations.items()
        if method in ("post", "put", "patch")
        and "application/json" in operation.get("requestBody", {}).get("content", {})
    ]


JSON_WRITES = _json_writes()


@pytest.fixture
def tokens(manager, admin_a) -> dict[str, APIClient]:
    clients = {}
    for persona, user in (("manager", manager), ("partner", admin_a)):
        _, secret = api_token_create(user=user, name=persona)
        clients[persona] = APIClient(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return clients


def _path(path: str, world_a, applicant, more: dict[str, int] | None = None) -> str:
    """An operation's path with an id it can act on (a 404 would stop before the body is read)."""
    ids = {"deals": world_a.deal.pk, "registrations": world_a.registration.pk, "partners": applicant.pk}
    ids.update(more or {})
    resource = path.removeprefix(f"{API}/").split("/", 1)[0]
    return path.replace("{id}", str(ids.get(resource, 1)))


# Writes only a partner makes (an MDF request or claim is its own): its admin's token sends them.
PARTNER_WRITES = {("POST", f"{API}/mdf-requests/"), ("POST", f"{API}/mdf-claims/")}


def _money_objects(world_a, manager) -> dict[str, int]:
    """An MDF request and claim of world A, and a payout batch, for the paths that act on one."""
    from economics.payouts import payout_batch_create
    from mdf import services as mdf
    from tests.support.mdf import approve, claim, png_upload, submit
    from tests.support.payouts import entry

    mdf.budget_set(quarter="2026-Q2", amount=Decimal("5000.00"), partner=world_a.partner)
    request = approve(submit(world_a.partner, amount="1000.00"), manager)
    made = claim(request, amount="900.00", files=[png_upload()])
    entry(world_a.partner, "80.00", approved_on=date(2026, 10, 2))
    batch, _ = payout_batch_create(month=date(2026, 10, 1))
    return {"mdf-requests": request.pk, "mdf-claims": made.pk, "payout-batches": batch.pk}


def test_the_schema_yields_the_json_writes_the_next_test_covers():
    assert len(JSON_WRITES) >= 15, JSON_WRITES


@pytest.mark.parametrize(("method", "path"), JSON_WRITES, ids=[f"{m} {p}" for m, p in JSON_WRITES])
def test_a_deeply_nested_json_body_is_a_400_parse_error(tokens, world_a, manager, method, path):
    applicant = PartnerFactory(applied=True)
    more = _money_objects(world_a, manager) if "/mdf-" in path or "/payout-" in path else {}
    persona = "partner" if (method, path) in PARTNER_WRITES else "manager"
    response = tokens[persona].generic(
        method, _path(path, world_a, applicant, more), DEEPLY_NESTED, "application/json"
    )
    assert response.status_code == 400, response.content[:300]
    assert error_of(response)["code"] == "parse_error"


def test_a_json_body_over_the_size_limit_is_refused_in_the_api_error_shape(tokens, world_a):
    body = json.dumps({"account": world_a.account.pk, "name": "x" * 20_000_000, "amount": "1.00"})
    response = tokens["manager"].generic("POST", f"{API}/deals/", body, "application/json")
    assert response.status_code in (400, 413), response.status_code
    assert response["Content-Type"].startswith("application/json"), response.content[:200]
    error_of(response)


@pytest.mark.parametrize("body", ["null", "123", "true", '"text"', "[]", "[{}]"])
@pytest.mark.parametrize("persona", ["partner", "manager"])
def test_a_registration_body_that_is_not_an_object_is_a_400(tokens, world_a, persona, body):
    response = tokens[persona].generic("POST", f"{API}/registrations/", body, "application/json")
    assert response.status_code == 400, response.content[:300]
    assert error_of(response)["code"] == "invalid"
    assert DealRegistration.objects.count() == 1  # world_a's only


# --- API: absurd values, refused with the field named ------------------------------------------
YEAR_1 = "0001-01-01T00:00:00Z"
YEAR_9999 = "9999-12-31T23:59:59Z"
NAIVE = "2026-03-10T12:00:00"
ARABIC_DATE = "٢٠٢٦-٠٣-١٠"
ABSURD = [
    # (method, path, field, value)
    ("POST", "deals/", "created_at", YEAR_1),
    ("POST", "deals/", "created_at", YEAR_9999),
    ("POST", "deals/", "created_at", NAIVE),
    ("POST", "deals/", "created_at", "9999-12-31T23:59:59-01:00"),
    ("POST", "deals/", "created_at", f"{ARABIC_DATE}T12:00:00Z"),
    ("POST", "deals/", "amount", "1E+5"),
    ("POST", "deals/", "amount", "٣"),
    ("PATCH", "deals/{deal}/", "created_at", YEAR_1),
    ("PATCH", "deals/{deal}/", "created_at", YEAR_9999),
    ("PATCH", "deals/{deal}/", "created_at", NAIVE),
    ("PATCH", "deals/{deal}/", "amount", "1E+5"),
    ("PATCH", "deals/{deal}/", "amount", "٣"),
    ("POST", "deals/{deal}/close/", "closed_at", YEAR_9999),
    ("POST", "deals/{deal}/close/", "closed_at", NAIVE),
    ("POST", "touches/", "touched_at", YEAR_1),
    ("POST", "touches/", "touched_at", YEAR_9999),
    ("POST", "touches/", "touched_at", NAIVE),
    ("POST", "costs/", "date", "0001-01-01"),
    ("POST", "costs/", "date", "9999-12-31"),
    ("POST", "costs/", "date", ARABIC_DATE),
    ("POST", "costs/", "amount", "1E+5"),
    ("POST", "costs/", "amount", "٣"),
    ("POST", "targets/", "period", "0000"),
    ("POST", "targets/", "period", "0000-Q1"),
    ("POST", "targets/", "period", "0001"),
    ("POST", "targets/", "period", "0001-01"),
    ("POST", "targets/", "period", "9999"),
    ("POST", "targets/", "period", "9999-Q4"),
    ("POST", "targets/", "period", "٢٠٢٦"),
    ("POST", "targets/", "value", "-5"),
    ("POST", "targets/", "value", "1E+5"),
    ("POST", "targets/", "value", "٣"),
    ("POST", "registrations/", "amount", "1E+5"),
    ("POST", "registrations/", "amount", "٣"),
    ("POST", "registrations/", "expected_close_date", "9999-12-31"),
]


def _valid_bodies(world_a) -> dict[str, dict]:
    return {
        "deals/": {"account": world_a.account.pk, "amount": "18000.00", "created_at": "2026-03-10T12:00:00Z"},
        "deals/{deal}/": {"amount": "21000.00"},
        "deals/{deal}/close/": {"status": "won", "closed_at": "2026-05-20T16:30:00Z"},
        "touches/": {
            "deal": world_a.deal.pk,
            "partner": world_a.partner.pk,
            "kind": "co_sell",
            "touched_at": "2026-02-01T10:00:00Z",
        },
        "costs/": {"date": "2026-03-31", "amount": "250.00", "category": "mdf"},
        "targets/": {"metric": "sourced_revenue", "period": "2026-Q2", "value": "250000"},
        "registrations/": {"account_name": "Initech", "domain": "initech.example", "amount": "1200.00"},
    }


@pytest.mark.parametrize(
    ("method", "path", "field", "value"), ABSURD, ids=[f"{m} {p} {f}={v}" for m, p, f, v in ABSURD]
)
def test_an_absurd_value_is_a_400_naming_its_field(tokens, world_a, method, path, field, value):
    """Years 1 and 9999, naive datetimes, exponent notation, non-ASCII digits, negative targets:
    Python parses them all, so each must be refused explicitly (the importer already refuses naive
    datetimes and exponents; the API must agree with it)."""
    persona = "partner" if path == "registrations/" else "manager"
    body = {**_valid_bodies(world_a)[path], field: value}
    url = f"{API}/{path.format(deal=world_a.deal.pk)}"
    before = (Deal.objects.count(), Touch.objects.count(), CostEntry.objects.count(), Target.objects.count())
    response = tokens[persona].generic(method, url, json.dumps(body), "application/json")
    assert response.status_code == 400, (response.status_code, response.content[:300])
    assert field in error_of(response)["fields"], error_of(response)
    after = (Deal.objects.count(), Touch.objects.count(), CostEntry.objects.count(), Target.objects.count())
    assert after == before


def test_the_valid_bodies_above_are_accepted(tokens, world_a):
    """Guards the table: each refusal above must come from the one absurd field, not the rest."""
    for method, path, _field, _value in {(m, p, None, None) for m, p, _, _ in ABSURD}:
        persona = "partner" if path == "registrations/" else "manager"
        url = f"{API}/{path.format(deal=world_a.deal.pk)}"
        body = json.dumps(_valid_bodies(world_a)[path])
        response = tokens[persona].generic(method, url, body, "application/json")
        assert response.status_code in (200, 201), (method, path, response.content[:300])
        if path == "deals/{deal}/close/":
            Deal.objects.filter(pk=world_a.deal.pk).update(status="open", closed_at=None)


# --- Pages -------------------------------------------------------------------------------------
@pytest.fixture
def staff(manager) -> Client:
    client = Client()
    client.force_login(manager)
    return client


@pytest.fixture
def superuser() -> Client:
    client = Client()
    client.force_login(SuperUserFactory(username="hardening-admin"))
    return client


DASHBOARD_PAGES = [
    "/dashboard/",
    "/dashboard/join-sources/",
    "/dashboard/partners/",
    "/dashboard/partners/{partner}/",
    "/dashboard/registrations/",
    "/dashboard/attribution/",
    "/dashboard/reconciliation/",
]


@pytest.mark.parametrize("query", ["period=0000", "grain=quarter&period=0000-Q1", "grain=year&period=0000"])
@pytest.mark.parametrize("page", DASHBOARD_PAGES)
def test_period_year_zero_on_a_dashboard_is_refused_or_ignored_with_a_warning(staff, world_a, page, query):
    response = staff.get(f"{page.format(partner=world_a.partner.pk)}?{query}")
    assert response.status_code in (200, 400), response.status_code
    if response.status_code == 200 and "period_form" in response.context:
        warnings = [str(m) for m in response.context["messages"]]
        assert any("0000" in m for m in warnings), warnings


@pytest.mark.parametrize("registration", ["abc", "", " ", "1.5", NUL, "1e3", "-1x"])
def test_a_decision_for_a_malformed_registration_id_is_a_400(staff, world_a, registration):
    data = {"registration": registration, f"r{registration}-decision": "approve"}
    response = staff.post("/dashboard/registrations/", data)
    assert response.status_code == 400, response.status_code
    world_a.registration.refresh_from_db()
    assert world_a.registration.status == DealRegistration.Status.SUBMITTED


@pytest.fixture
def partner_user(admin_a) -> Client:
    client = Client()
    client.force_login(admin_a)
    return client


@pytest.mark.parametrize("domain", [f"acme.com{NUL}", f"{NUL}", f"a{NUL}b.example"])
def test_a_nul_in_the_portal_conflict_check_is_a_400_in_json(partner_user, domain):
    response = partner_user.get("/portal/register/conflicts.json", {"domain": domain})
    assert response.status_code == 400, response.status_code
    assert response["Content-Type"].startswith("application/json")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("amount", "1E+5"),
        ("amount", "٣"),
        ("expected_close_date", "9999-12-31"),
        ("domain", f"acme.com{NUL}"),
    ],
)
def test_the_portal_registration_form_refuses_absurd_values_with_a_form_error(partner_user, field, value):
    data = {"account_name": "Initech", "domain": "initech.example", "amount": "1200.00", "action": "submit"}
    response = partner_user.post("/portal/register/", {**data, field: value})
    assert response.status_code == 400, response.status_code
    if NUL in value:  # refused before any view reads the form (prm.middleware), with its reason
        assert b"NUL character" in response.content
    else:
        assert field in response.context["form"].errors


ADMIN_CHOICE_FILTERS = [
    ("deals/deal", "status"),
    ("deals/deal", "status__exact"),
    ("deals/touch", "kind__exact"),
    ("deals/dealregistration", "status__exact"),
    ("kpis/costentry", "category__exact"),
    ("kpis/target", "metric__exact"),
    ("partners/partner", "status__exact"),
    ("partners/joinsource", "kind__exact"),
]


@pytest.mark.parametrize(("page", "parameter"), ADMIN_CHOICE_FILTERS)
def test_a_nul_in_an_admin_list_filter_is_not_a_server_error(superuser, world_a, page, parameter):
    response = superuser.get(f"/admin/{page}/", {parameter: NUL})
    # The admin answers a filter it cannot apply with a redirect to ?e=1; an empty list or 400 is fine.
    assert response.status_code in (200, 302, 400), response.status_code


SEARCHABLE = sorted(
    f"/admin/{model._meta.app_label}/{model._meta.model_name}/"
    for model, model_admin in admin.site._registry.items()
    if model_admin.search_fields
)


@pytest.mark.parametrize("page", SEARCHABLE)
def test_a_nul_in_an_admin_search_is_not_a_server_error(superuser, world_a, page):
    response = superuser.get(page, {"q": f"acme{NUL}"})
    assert response.status_code in (200, 400), response.status_code


@pytest.mark.parametrize(
    ("model", "field"),
    [("deal", "account"), ("deal", "sourcing_partner"), ("touch", "deal"), ("touch", "partner")],
)
def test_a_nul_in_an_admin_autocomplete_search_is_not_a_server_error(superuser, world_a, model, field):
    query = {"app_label": "deals", "model_name": model, "field_name": field, "term": f"acme{NUL}"}
    response = superuser.get("/admin/autocomplete/", query)
    assert response.status_code in (200, 400), response.status_code


@pytest.mark.parametrize(
    ("page", "data", "field"),
    [
        ("deals/touch", {"deal": "abc"}, "deal"),
        ("deals/touch", {"partner": "1.5"}, "partner"),
        ("deals/deal", {"account": "abc"}, "account"),
        ("deals/deal", {"sourcing_partner": "x"}, "sourcing_partner"),
        ("partners/partner", {"join_source": "2026-01-02"}, "join_source"),
        ("partners/partner", {"referred_by": "abc"}, "referred_by"),
    ],
)
def test_a_non_numeric_id_in_an_admin_autocomplete_field_is_a_form_error(
    superuser, world_a, page, data, field
):
    base = {
        "deals/touch": {
            "deal": world_a.deal.pk,
            "partner": world_a.partner.pk,
            "kind": "co_sell",
            "touched_at_0": "2026-01-20",
            "touched_at_1": "10:00:00",
        },
        "deals/deal": {
            "account": world_a.account.pk,
            "amount": "1000.00",
            "created_at_0": "2026-01-15",
            "created_at_1": "12:00:00",
            "status": "open",
            **{f"touches-{k}": v for k, v in (("TOTAL_FORMS", 0), ("INITIAL_FORMS", 0))},
        },
        "partners/partner": {
            "name": "Newco",
            "type": "reseller",
            "join_source": world_a.partner.join_source_id,
            "applied_at": "2026-01-02",
            "status": "applied",
            **{f"users-{k}": v for k, v in (("TOTAL_FORMS", 0), ("INITIAL_FORMS", 0))},
        },
    }[page]
    response = superuser.post(f"/admin/{page}/add/", {**base, **data})
    assert response.status_code == 200, response.status_code
    assert field in response.context["adminform"].form.errors


@pytest.mark.parametrize(("period", "saved"), [("2026-03", True), ("0000", False), ("2026-13", False)])
def test_the_admin_target_form_saves_a_valid_target_and_refuses_a_bad_period(superuser, period, saved):
    data = {"metric": "sourced_revenue", "grain": "month", "period": period, "value": "1000"}
    response = superuser.post("/admin/kpis/target/add/", data)
    if saved:
        assert response.status_code == 302, response.status_code
        target = Target.objects.get()
        assert (target.period, target.period_start.isoformat()) == ("2026-03", "2026-03-01")
    else:
        assert response.status_code == 200, response.status_code
        assert "period" in response.context["adminform"].form.errors
        assert not Target.objects.exists()


# --- Importer ----------------------------------------------------------------------------------
def _program(tmp_path: Path, **append: str) -> Path:
    """The valid program folder with one line appended to some files (`costs="..."`)."""
    folder = tmp_path / "program"
    folder.mkdir()
    for source in VALID_PROGRAM.iterdir():
        (folder / source.name).write_bytes(source.read_bytes())
    for stem, line in append.items():
        with (folder / f"{stem}.csv").open("a", encoding="utf-8", newline="") as stream:
            stream.write(line + "\n")
    return folder


def _import_errors(folder: Path) -> list[str]:
    with pytest.raises(ImportFailed) as failed:
        import_program(folder)
    return failed.value.errors


@pytest.mark.parametrize(
    ("stem", "line", "where"),
    [
        ("join_sources", f"js-n{NUL}l,Nul source,website", "join_sources.csv:5: key: "),
        ("accounts", f"a-nul,Nul{NUL} Corp,nul.example", "accounts.csv:5: name: "),
        ("costs", f"2025-03-01,10.00,mdf,,,note{NUL}", "costs.csv:5: note: "),
    ],
)
def test_a_nul_in_an_imported_cell_fails_the_command_naming_file_line_and_column(tmp_path, stem, line, where):
    stderr = io.StringIO()
    with pytest.raises(CommandError):
        call_command(
            "import_program", str(_program(tmp_path, **{stem: line})), stderr=stderr, stdout=io.StringIO()
        )
    assert [e for e in stderr.getvalue().splitlines() if e.startswith(where)], stderr.getvalue()
    assert "Traceback" not in stderr.getvalue()


@pytest.mark.parametrize(
    ("stem", "line", "where"),
    [
        ("accounts", f"a-nul,Nul{NUL} Corp,nul.example", "accounts.csv:5: name: "),
        ("targets", "sourced_revenue,0000,100,,", "targets.csv:6: period: "),
        (
            "registrations",
            "r-9,p-north,a-globex,100.00,9999-12-31T23:59:59+00:00,submitted,,",
            "registrations.csv:5: submitted_at: ",
        ),
    ],
)
def test_an_uploaded_import_with_a_bad_cell_is_a_400_listing_file_line_and_column(
    tmp_path, tokens, stem, line, where
):
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zipped:
        for path in _program(tmp_path, **{stem: line}).iterdir():
            zipped.writestr(path.name, path.read_bytes())
    archive.seek(0)
    archive.name = "program.zip"
    response = tokens["manager"].post(f"{API}/imports/", {"file": archive}, format="multipart")
    assert response.status_code == 400, response.status_code
    assert [e for e in error_of(response)["fields"]["file"] if e.startswith(where)], error_of(response)


def test_invalid_utf8_on_line_5001_is_reported_on_that_line_alone(tmp_path):
    """The decoder reads ahead in blocks: the bad byte used to be blamed on an earlier line, and the
    rows of the batch it broke vanished, so every later reference to them was a follow-on error."""
    folder = tmp_path / "program"
    folder.mkdir()
    lines = [b"key,name,domain"] + [f"a-{n},Customer {n},c{n}.example".encode() for n in range(2, 6002)]
    lines[5000] = b"a-5001,Caf\xe9 (Latin-1),c5001.example"  # lines[i] is line i + 1
    (folder / "accounts.csv").write_bytes(b"\n".join(lines) + b"\n")
    deals = ["key,account,amount,created_at,status"]
    deals += [f"d-{n},a-{n},100.00,2025-01-01T00:00:00+00:00,open" for n in range(2, 5001, 7)]
    (folder / "deals.csv").write_text("\n".join(deals) + "\n", encoding="utf-8")
    errors = _import_errors(folder)
    assert len(errors) == 1, errors[:5]
    assert errors[0].startswith("accounts.csv:5001: ") and "UTF-8" in errors[0], errors[0]


ABSURD_CELLS = [
    # (file stem, appended line, "file:line: column: ")
    ("deals", "d-9,a-acme,,100.00,0001-01-01T00:00:00+00:00,,open,", "deals.csv:6: created_at: "),
    ("deals", "d-9,a-acme,,100.00,9999-12-31T23:59:59+00:00,,open,", "deals.csv:6: created_at: "),
    ("deals", "d-9,a-acme,,100.00,2025-05-01T10:00:00,,open,", "deals.csv:6: created_at: "),
    # Stored on PostgreSQL as years 10000 and 0 (UTC), which no later read of the deal survives.
    ("deals", "d-9,a-acme,,100.00,9999-12-31T23:59:59-01:00,,open,", "deals.csv:6: created_at: "),
    ("deals", "d-9,a-acme,,100.00,0001-01-01T00:00:00+01:00,,open,", "deals.csv:6: created_at: "),
    ("deals", "d-9,a-acme,,1E+5,2025-05-01T10:00:00+00:00,,open,", "deals.csv:6: amount: "),
    ("deals", "d-9,a-acme,,٣,2025-05-01T10:00:00+00:00,,open,", "deals.csv:6: amount: "),
    ("touches", "d-4,p-blue,introduction,0001-01-01T00:00:00+00:00", "touches.csv:7: touched_at: "),
    ("touches", "d-4,p-blue,introduction,9999-12-31T23:59:59+00:00", "touches.csv:7: touched_at: "),
    ("costs", "0001-01-01,10.00,mdf,,,", "costs.csv:5: date: "),
    ("costs", "9999-12-31,10.00,mdf,,,", "costs.csv:5: date: "),
    ("costs", "2025-03-01,٣,mdf,,,", "costs.csv:5: amount: "),
    ("targets", "sourced_revenue,0000,100,,", "targets.csv:6: period: "),
    ("targets", "sourced_revenue,0000-Q1,100,,", "targets.csv:6: period: "),
    ("targets", "sourced_revenue,0001-01,100,,", "targets.csv:6: period: "),
    ("targets", "sourced_revenue,9999,100,,", "targets.csv:6: period: "),
    ("targets", "sourced_revenue,2026,-5,,", "targets.csv:6: value: "),
    ("targets", "sourced_revenue,2026,٣,,", "targets.csv:6: value: "),
    (
        "registrations",
        "r-9,p-north,a-globex,100.00,9999-12-31T23:59:59+00:00,submitted,,",
        "registrations.csv:5: submitted_at: ",
    ),
]


@pytest.mark.parametrize(
    ("stem", "line", "where"), ABSURD_CELLS, ids=[f"{where}{line}" for _, line, where in ABSURD_CELLS]
)
def test_an_absurd_cell_is_refused_naming_its_line_and_column(tmp_path, stem, line, where):
    errors = _import_errors(_program(tmp_path, **{stem: line}))
    file_and_line = where.rsplit(" ", 2)[0]
    assert all(e.startswith(file_and_line) for e in errors), errors
    assert [e for e in errors if e.startswith(where)], errors
