"""One validation layer for dates and amounts (program.validation): the API, the services (so the
admin and the portal), and the importer refuse the same implausible values, and whatever the
database holds, a KPI run stays within the plausible periods."""

import json
from datetime import date, datetime
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError

from api.services import api_token_create
from interchange.importer import ImportFailed, import_program
from kpis.models import CostEntry, KpiValue, Target
from kpis.periods import parse_period
from kpis.services import cost_entry_create, target_set
from program import validation as v
from tests.factories import StaffUserFactory
from tests.support import kpis as t

pytestmark = pytest.mark.django_db


# --- the rules themselves ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1E+5", "'1E+5' is not a number in plain notation with ASCII digits (e.g. 1250.00)"),
        ("٣", "'٣' is not a number in plain notation with ASCII digits (e.g. 1250.00)"),
        ("NaN", "'NaN' is not a number in plain notation with ASCII digits (e.g. 1250.00)"),
        ("1,000", "'1,000' is not a number in plain notation with ASCII digits (e.g. 1250.00)"),
    ],
)
def test_numbers_must_be_plain_ascii(text, message):
    with pytest.raises(ValueError) as exc_info:
        v.decimal_from_input(text)
    assert str(exc_info.value) == message


def test_amounts_are_positive_with_at_most_twelve_digits_and_two_decimals():
    assert v.amount_errors(Decimal("9999999999.99")) == []
    assert v.amount_errors(Decimal("0.01")) == []
    assert v.amount_errors(Decimal("10000000000")) == [v.AMOUNT_TOO_LARGE]
    assert v.amount_errors(Decimal("0")) == ["must be greater than 0"]
    assert v.amount_errors(Decimal("-5")) == ["must be greater than 0"]
    assert v.amount_errors(Decimal("1.005")) == ["has more than 2 decimal places"]
    assert v.amount_errors(Decimal("1.500")) == []
    assert v.decimal_from_input(1250.1) == Decimal("1250.1")
    assert v.decimal_from_input(7) == Decimal(7)
    with pytest.raises(ValueError):
        v.decimal_from_input(True)


def test_dates_run_from_2000_to_ten_years_ahead(settings):
    today = date(2026, 12, 3)
    assert v.latest_date(today) == date(2036, 12, 3)
    assert v.latest_date(date(2028, 2, 29)) == date(2038, 2, 28)
    assert v.date_errors(date(2000, 1, 1)) == []
    assert v.date_errors(date(1999, 12, 31)) != []
    assert v.date_errors(date(9999, 12, 31)) != []
    settings.PLAUSIBLE_EARLIEST_YEAR = 1990
    assert v.date_errors(date(1999, 12, 31)) == []


def test_a_naive_datetime_is_refused():
    assert v.datetime_errors(datetime(2026, 3, 1)) == [v.NAIVE_DATETIME]
    assert v.datetime_errors(t.at("2026-03-01 10:00")) == []


def test_periods_outside_the_range_are_not_periods():
    assert parse_period("2026-Q1").label == "2026-Q1"
    for label in ("0000", "0001-01", "1999-Q4", "9999", "٢٠٢٦"):
        with pytest.raises(ValueError):
            parse_period(label)


# --- services (the admin and the portal call these) ---------------------------------------------
def test_costs_and_targets_refuse_implausible_values():
    with pytest.raises(ValidationError) as exc_info:
        cost_entry_create(date=date(1, 1, 1), amount="1E+5", category="mdf")
    errors = exc_info.value.message_dict
    assert errors["amount"] == ["'1E+5' is not a number in plain notation with ASCII digits (e.g. 1250.00)"]
    assert errors["date"][0].startswith("0001-01-01 is outside the accepted range 2000-01-01 to ")
    with pytest.raises(ValidationError) as exc_info:
        target_set(metric="sourced_revenue", period="0000", value="-1")
    errors = exc_info.value.message_dict
    assert errors["value"] == ["must not be negative"]
    assert errors["period"][0].startswith("period '0000': year 0 is outside the accepted range 2000 to ")
    assert not CostEntry.objects.exists() and not Target.objects.exists()


# --- the API ------------------------------------------------------------------------------------
@pytest.fixture
def staff_api(client):
    _token, secret = api_token_create(user=StaffUserFactory(), name="test")
    return lambda method, path, body: getattr(client, method)(
        path, data=json.dumps(body), content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {secret}"
    )


def test_the_api_refuses_implausible_dates_amounts_and_naive_datetimes(staff_api):
    account = t.account()
    response = staff_api(
        "post",
        "/api/v1/deals/",
        {"account": account.pk, "amount": "٣", "created_at": "2026-03-01T10:00:00"},
    )
    assert response.status_code == 400
    fields = response.json()["error"]["fields"]
    assert fields == {
        "amount": ["'٣' is not a number in plain notation with ASCII digits (e.g. 1250.00)"],
        "created_at": ["needs a time zone (an offset such as +00:00)"],
    }
    response = staff_api(
        "post",
        "/api/v1/deals/",
        {"account": account.pk, "amount": "10", "created_at": "9999-12-31T00:00:00Z"},
    )
    assert response.status_code == 400
    assert response.json()["error"]["fields"]["created_at"][0].startswith("9999-12-31 is outside")
    response = staff_api(
        "post", "/api/v1/costs/", {"date": "0001-01-01", "amount": "1E+5", "category": "mdf"}
    )
    assert response.status_code == 400
    assert set(response.json()["error"]["fields"]) == {"date", "amount"}
    response = staff_api(
        "post",
        "/api/v1/targets/",
        {"metric": "sourced_revenue", "period": "0000", "value": "-2"},
    )
    assert response.status_code == 400
    assert set(response.json()["error"]["fields"]) == {"period", "value"}
    assert not CostEntry.objects.exists() and not Target.objects.exists()


def test_json_bodies_are_bounded_in_depth_and_size(client, settings):
    client.force_login(StaffUserFactory())
    nested = client.post("/api/v1/deals/", data="[" * 5000 + "]" * 5000, content_type="application/json")
    assert nested.status_code == 400
    assert nested.json()["error"]["detail"] == "JSON parse error - the body nests too deeply."
    deep = client.post("/api/v1/deals/", data="[" * 40 + "]" * 40, content_type="application/json")
    assert deep.status_code == 400
    assert deep.json()["error"]["detail"] == "JSON parse error - the body nests deeper than 32 levels."
    settings.API_MAX_JSON_BYTES = 1000
    big = client.post(
        "/api/v1/deals/", data=json.dumps({"name": "x" * 2000}), content_type="application/json"
    )
    assert big.status_code == 413
    assert big.json()["error"] == {
        "status": 413,
        "code": "too_large",
        "detail": "The request body is larger than 1,000 bytes.",
        "fields": {},
    }


def test_a_write_whose_body_is_not_an_object_is_a_400(client):
    partner = t.partner("p1", t.join_source("web"), joined="2026-01-05")
    from tests.factories import PartnerUserFactory

    client.force_login(PartnerUserFactory(partner=partner).user)
    for body in ("null", "123", '"text"', "[1, 2]"):
        response = client.post("/api/v1/registrations/", data=body, content_type="application/json")
        assert response.status_code == 400, body
        assert response.json()["error"]["detail"] == "The body must be a JSON object."


def test_a_nul_anywhere_in_a_query_or_form_is_a_400(client):
    client.force_login(StaffUserFactory())
    for path in ("/admin/deals/deal/?status=%00", "/admin/deals/deal/?q=a%00b", "/dashboard/?period=%00"):
        assert client.get(path).status_code == 400, path
    api = client.get("/api/v1/deals/?status=%00")
    assert api.status_code == 400 and api.json()["error"]["code"] == "invalid"
    form = client.post(
        "/dashboard/registrations/", "registration=%00", content_type="application/x-www-form-urlencoded"
    )
    assert form.status_code == 400


def test_a_decision_naming_no_registration_is_a_400_that_changes_nothing(client):
    client.force_login(StaffUserFactory())
    for value in ("abc", "", "1.5", "-3"):
        response = client.post("/dashboard/registrations/", {"registration": value, "r1-decision": "approve"})
        assert response.status_code == 400, value
        assert b"did not name a registration of the queue" in response.content


def test_an_implausible_period_on_a_page_is_no_period(client):
    client.force_login(StaffUserFactory())
    for path in (
        "/dashboard/?period=0000",
        "/dashboard/partners/?period=9999",
        "/dashboard/join-sources/?period=0001-01",
    ):
        assert client.get(path).status_code == 200, path


# --- the importer -------------------------------------------------------------------------------
def _write(folder, name: str, text: bytes) -> None:
    (folder / name).write_bytes(text)


def test_the_importer_reports_a_bad_byte_at_its_own_line_and_keeps_checking(tmp_path):
    _write(tmp_path, "join_sources.csv", b"key,name,kind\nweb,Website,website\n")
    rows = [b"key,name,domain"] + [f"a{i},Account {i},a{i}.com".encode() for i in range(6000)]
    rows[5000] = b"a4999,Acc\xffount,a4999.com"  # file line 5,001
    rows[5500] = b"a5499,Nul\x00here,a5499.com"  # file line 5,501
    _write(tmp_path, "accounts.csv", b"\n".join(rows) + b"\n")
    with pytest.raises(ImportFailed) as exc_info:
        import_program(tmp_path)
    message = "\n".join(exc_info.value.errors)
    assert "accounts.csv:5001: name: is not valid UTF-8" in message
    assert "accounts.csv:5501: name: contains the NUL character" in message
    assert len(exc_info.value.errors) == 2


def test_the_importer_refuses_implausible_dates_amounts_and_periods(tmp_path):
    _write(tmp_path, "join_sources.csv", b"key,name,kind\nweb,Website,website\n")
    _write(
        tmp_path,
        "costs.csv",
        b"date,amount,category\n0001-01-01,10.00,mdf\n2026-01-01,1E+5,mdf\n2026-01-01,\xd9\xa3,mdf\n",
    )
    _write(tmp_path, "targets.csv", b"metric,period,value\nsourced_revenue,9999,-1\n")
    with pytest.raises(ImportFailed) as exc_info:
        import_program(tmp_path)
    message = "\n".join(exc_info.value.errors)
    assert "costs.csv:2: date: 0001-01-01 is outside the accepted range 2000-01-01 to" in message
    assert "costs.csv:3: amount: '1E+5' is not a decimal number (e.g. 1250.00)" in message
    assert "costs.csv:4: amount: '٣' is not a decimal number (e.g. 1250.00)" in message
    assert "targets.csv:2: period: year 9999 is outside the accepted range 2000 to" in message
    assert "targets.csv:2: value: must not be negative" in message
    assert not CostEntry.objects.exists()


# --- the engine ---------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["full", "incremental"])
def test_a_run_stays_within_the_plausible_periods_whatever_the_data_holds(mode):
    web = t.join_source("web")
    p = t.partner("p1", web, joined="2026-01-05")
    t.deal("100.00", created="2026-01-15 10:00", closed="2026-02-10 10:00", sourced_by=p)
    t.recompute(as_of="2026-12-31")
    # Rows written before the validation layer existed, or by hand in SQL.
    CostEntry.objects.bulk_create(
        [
            CostEntry(date=date(1, 1, 1), amount=Decimal("5.00"), category="mdf"),
            CostEntry(date=date(9999, 12, 31), amount=Decimal("7.00"), category="mdf"),
            CostEntry(date=date(1900, 6, 1), amount=Decimal("3.00"), category="mdf"),
        ]
    )
    run = t.recompute(as_of="2026-12-31", mode=mode)
    assert run.status == "succeeded", run.error
    years = sorted(KpiValue.objects.filter(grain="year").values_list("period", flat=True).distinct())
    assert years[0] == "2000"
    assert int(years[-1]) <= v.latest_date().year
    assert run.periods_recomputed <= (v.latest_date().year - 2000 + 1) * (12 + 4 + 1)


# --- a partner sees only its own partner's id on deal fields ------------------------------------
def test_a_partner_never_sees_another_partners_id_on_a_deal(client):
    from tests.factories import PartnerUserFactory

    web = t.join_source("web")
    alpha, beta = t.partner("alpha", web, joined="2026-01-05"), t.partner("beta", web, joined="2026-01-05")
    betas = t.deal("100.00", created="2026-01-15 10:00", closed="2026-02-10 10:00", sourced_by=beta)
    t.touch(betas, alpha, "2026-01-20 10:00")
    alphas = t.deal("50.00", created="2026-01-16 10:00", sourced_by=alpha)
    client.force_login(PartnerUserFactory(partner=alpha).user)

    rows = {row["id"]: row["sourcing_partner"] for row in client.get("/api/v1/deals/").json()["results"]}
    assert rows == {betas.pk: None, alphas.pk: alpha.pk}
    assert client.get(f"/api/v1/deals/{betas.pk}/").json()["sourcing_partner"] is None
    # Filters on another partner's involvement find nothing, rather than telling who sourced a deal.
    for query in (f"sourcing_partner={beta.pk}", f"touched_by={beta.pk}"):
        assert client.get(f"/api/v1/deals/?{query}").json()["results"] == [], query
    sourced = client.get("/api/v1/deals/?sourced=true").json()["results"]
    assert [row["id"] for row in sourced] == [alphas.pk]
    not_sourced = client.get("/api/v1/deals/?sourced=false").json()["results"]
    assert [row["id"] for row in not_sourced] == [betas.pk]
    # Staff see every id.
    client.force_login(StaffUserFactory())
    assert client.get(f"/api/v1/deals/{betas.pk}/").json()["sourcing_partner"] == beta.pk


def test_a_run_as_of_an_implausible_date_is_refused_with_a_message():
    from django.core.management import call_command
    from django.core.management.base import CommandError

    with pytest.raises(CommandError) as exc_info:
        call_command("recompute_kpis", "--as-of", "0001-01-01")
    assert str(exc_info.value).startswith("as_of: 0001-01-01 is outside the accepted range 2000-01-01 to ")


def test_a_nul_in_any_form_body_is_refused_whatever_the_content_type_spelling(client):
    client.force_login(StaffUserFactory())
    mixed = client.post(
        "/dashboard/registrations/", "registration=a%00b", content_type="Application/X-WWW-Form-Urlencoded"
    )
    assert mixed.status_code == 400 and b"NUL character" in mixed.content
    multipart = client.post("/dashboard/registrations/", {"registration": "a\x00b"})  # multipart by default
    assert multipart.status_code == 400 and b"NUL character" in multipart.content


def test_approving_a_partner_refuses_an_implausible_joined_at():
    from partners.services import partner_approve

    applicant = t.partner("applicant", t.join_source("web"), joined=None)
    with pytest.raises(ValidationError) as exc_info:
        partner_approve(partner=applicant, joined_at=date(2999, 1, 1))
    assert exc_info.value.message_dict["joined_at"][0].startswith("2999-01-01 is outside the accepted range")


def test_a_period_starting_after_the_last_accepted_month_is_refused(settings):
    last = v.latest_date()
    beyond = f"{last.year}-{last.month + 1:02d}" if last.month < 12 else f"{last.year + 1}-01"
    with pytest.raises(ValueError):
        parse_period(beyond)
    assert parse_period(f"{last.year}-{last.month:02d}").label == f"{last.year}-{last.month:02d}"
