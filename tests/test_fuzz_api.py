"""Property-based fuzz of the API's inputs with the values Schemathesis does not try.

tests/test_api_schema.py fuzzes every operation from its schema; this adds the nasty classes of
tests/fuzzing.py: a valid body with a few fields replaced by NUL, ancient or far-future dates, naive
datetimes, non-ASCII digits, exponent notation, huge numbers, wrong JSON types, deep nesting; whole
bodies that are not objects or not JSON at all; every list filter with such values; and uploaded
imports whose extra CSV row carries them (what an import accepts must also read back). Property:
never a 5xx, and every refusal is the API's one error body (api/exceptions.py).
"""

import csv
import io
import json
import zipfile
from pathlib import Path

import pytest
from django.conf import settings
from django.test import override_settings
from hypothesis import example, given
from hypothesis import strategies as st
from rest_framework.test import APIClient

from api.services import api_token_create
from tests.factories import PartnerFactory
from tests.fuzzing import fuzz_settings, nasty_text, query_pairs, query_string, send
from tests.support.api import *  # noqa: F403
from tests.support.api import API, error_of

pytestmark = pytest.mark.django_db

UNTHROTTLED = {
    **settings.REST_FRAMEWORK,
    "DEFAULT_THROTTLE_RATES": {
        scope: "100000/minute" for scope in settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]
    },
}
DEEPLY_NESTED = "[" * 5000 + "]" * 5000

json_value = st.recursive(
    st.one_of(
        nasty_text,
        st.none(),
        st.booleans(),
        st.integers(-(2**70), 2**70),
        st.floats(allow_nan=False, allow_infinity=False),
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=6,
)
field_value = st.one_of(nasty_text, nasty_text, json_value)

# (method, path, persona): the fields of a valid body, filled in with the fixture's ids by `_bodies`.
WRITES = (
    ("POST", "accounts/", "manager"),
    ("POST", "auth/tokens/", "manager"),
    ("POST", "costs/", "manager"),
    ("POST", "deals/", "manager"),
    ("PATCH", "deals/{deal}/", "manager"),
    ("POST", "deals/{deal}/close/", "manager"),
    ("POST", "kpi-runs/", "manager"),
    ("POST", "partner-users/", "manager"),
    ("POST", "partners/", "manager"),
    ("POST", "partners/{applicant}/approve/", "manager"),
    ("POST", "partners/{partner}/status/", "manager"),
    ("POST", "registrations/", "manager"),
    ("POST", "registrations/", "partner"),
    ("POST", "registrations/{registration}/approve/", "manager"),
    ("POST", "registrations/{registration}/override/", "manager"),
    ("POST", "registrations/{registration}/reject/", "manager"),
    ("POST", "targets/", "manager"),
    ("POST", "touches/", "manager"),
)


def _bodies(w) -> dict[str, dict]:
    p, js, acc, deal = w["partner"], w["join_source"], w["account"], w["deal"]
    return {
        "accounts/": {"name": "Initech", "domain": "initech.example", "key": "a-initech"},
        "auth/tokens/": {"name": "ci"},
        "costs/": {"date": "2026-03-31", "amount": "250.00", "category": "mdf", "partner": p, "note": "Q1"},
        "deals/": {
            "account": acc,
            "name": "Rollout",
            "amount": "18000.00",
            "created_at": "2026-03-10T12:00:00Z",
            "status": "open",
            "sourcing_partner": p,
        },
        "deals/{deal}/": {"amount": "21000.00", "name": "Bigger", "created_at": "2026-01-15T12:00:00Z"},
        "deals/{deal}/close/": {"status": "won", "closed_at": "2026-05-20T16:30:00Z"},
        "kpi-runs/": {"mode": "full", "as_of": "2026-03-31"},
        "partner-users/": {
            "partner": p,
            "username": "newbie",
            "email": "newbie@example.com",
            "password": "a-long-enough-password",
            "role": "member",
        },
        "partners/": {
            "name": "Newco",
            "type": "reseller",
            "join_source": js,
            "applied_at": "2026-01-02",
            "tier": "",
            "referred_by": None,
        },
        "partners/{applicant}/approve/": {"joined_at": "2026-01-20"},
        "partners/{partner}/status/": {"status": "inactive"},
        "registrations/": {
            "partner": p,
            "account_name": "Initech",
            "domain": "initech.example",
            "amount": "1200.00",
            "expected_close_date": "2031-01-31",
            "notes": "",
        },
        "registrations/{registration}/approve/": {"reason": "", "override_reason": ""},
        "registrations/{registration}/override/": {"override_reason": "Asked by the customer.", "reason": ""},
        "registrations/{registration}/reject/": {"reason": "Duplicate."},
        "targets/": {"metric": "sourced_revenue", "period": "2026-Q2", "value": "250000", "partner": p},
        "touches/": {"deal": deal, "partner": p, "kind": "co_sell", "touched_at": "2026-02-01T10:00:00Z"},
    }


@pytest.fixture
def api(world_a, world_b, manager, admin_a) -> dict:
    applicant = PartnerFactory(applied=True, name="Applicant")
    clients = {}
    for persona, user in (("manager", manager), ("partner", admin_a)):
        _, secret = api_token_create(user=user, name=f"fuzz-{persona}")
        clients[persona] = APIClient(HTTP_AUTHORIZATION=f"Bearer {secret}")
    ids = {
        "partner": world_a.partner.pk,
        "applicant": applicant.pk,
        "join_source": world_a.partner.join_source_id,
        "account": world_a.account.pk,
        "deal": world_a.deal.pk,
        "registration": world_a.registration.pk,
    }
    with override_settings(REST_FRAMEWORK=UNTHROTTLED):
        yield {"clients": clients, "ids": ids, "bodies": _bodies(ids)}


def _assert_refusals_in_the_error_shape(response) -> None:
    if response.status_code >= 400:
        assert response["Content-Type"].startswith("application/json"), (
            response.status_code,
            response.content[:300],
        )
        error_of(response)


FIELD_NAMES = sorted(
    {
        name
        for body in _bodies(dict.fromkeys(("partner", "join_source", "account", "deal"), 1)).values()
        for name in body
    }
)
body_change = st.one_of(
    # a valid body with a few fields replaced (or added)
    st.tuples(
        st.just("fields"),
        st.dictionaries(
            st.one_of(st.sampled_from(FIELD_NAMES), st.text(max_size=8)), field_value, min_size=1, max_size=3
        ),
    ),
    # a whole body of any JSON type
    st.tuples(st.just("json"), json_value),
    # not JSON at all, or not even UTF-8
    st.tuples(st.just("raw"), st.one_of(nasty_text, st.binary(max_size=40))),
)


@fuzz_settings(max_examples=150)
@given(write=st.sampled_from(WRITES), change=body_change)
@example(write=("POST", "registrations/", "partner"), change=("json", None))
@example(write=("POST", "registrations/", "partner"), change=("json", 123))
@example(write=("POST", "deals/", "manager"), change=("raw", DEEPLY_NESTED))
@example(write=("PATCH", "deals/{deal}/", "manager"), change=("raw", DEEPLY_NESTED))
@example(write=("POST", "targets/", "manager"), change=("fields", {"period": "0000"}))
def test_every_write_answers_any_body_without_a_server_error_and_in_the_error_shape(api, write, change):
    method, path, persona = write
    kind, value = change
    if kind == "fields":
        body = json.dumps({**api["bodies"][path], **value})
    elif kind == "json":
        body = json.dumps(value)
    else:
        body = value
    data = body if isinstance(body, bytes) else body.encode()
    url = f"{API}/{path.format(**api['ids'])}"
    client = api["clients"][persona]
    response = send(
        f"{method} {url} as {persona} {body[:300]!r}",
        lambda: client.generic(method, url, data, "application/json"),
    )
    _assert_refusals_in_the_error_shape(response)


# Each list's query parameters (the schema's), with nasty values; ids in paths fuzzed too.
READS = {
    "accounts/": ("cursor", "domain", "key", "name", "ordering", "page_size"),
    "auth/tokens/": ("page", "page_size"),
    "costs/": (
        "category",
        "date_after",
        "date_before",
        "join_source",
        "ordering",
        "page",
        "page_size",
        "partner",
    ),
    "deals/": (
        "account",
        "amount_max",
        "amount_min",
        "closed_after",
        "closed_before",
        "created_after",
        "created_before",
        "cursor",
        "key",
        "ordering",
        "page_size",
        "sourced",
        "sourcing_partner",
        "status",
        "touched_by",
    ),
    "join-sources/": ("key", "kind", "name", "ordering", "page", "page_size"),
    "kpi-attribution/": ("model", "period_from", "period_to"),
    "kpi-export/": ("format", "grain", "model"),
    "kpi-runs/": ("mode", "ordering", "page", "page_size", "status", "trigger"),
    "kpi-values/": (
        "attribution_model",
        "cursor",
        "grain",
        "join_source",
        "metric",
        "ordering",
        "page_size",
        "partner",
        "period_from",
        "period_to",
        "scope",
        "scope_key",
    ),
    "partner-users/": ("ordering", "page", "page_size", "partner", "role"),
    "partners/": (
        "applied_after",
        "applied_before",
        "join_source",
        "joined_after",
        "joined_before",
        "key",
        "manager",
        "name",
        "ordering",
        "page",
        "page_size",
        "referred_by",
        "status",
        "tier",
        "type",
    ),
    "reconciliation/": (),
    "registrations/": (
        "account",
        "cursor",
        "decided_after",
        "decided_before",
        "domain",
        "in_conflict",
        "key",
        "ordering",
        "page_size",
        "partner",
        "status",
        "submitted_after",
        "submitted_before",
    ),
    "registrations/conflicts/": ("domain", "partner"),
    "targets/": ("grain", "join_source", "metric", "ordering", "page", "page_size", "partner", "period"),
    "touches/": (
        "cursor",
        "deal",
        "kind",
        "ordering",
        "page_size",
        "partner",
        "touched_after",
        "touched_before",
    ),
}
ALL_READ_PARAMETERS = sorted({name for names in READS.values() for name in names})


@fuzz_settings(max_examples=120)
@given(
    path=st.sampled_from(sorted(READS)),
    pairs=query_pairs(ALL_READ_PARAMETERS, max_size=4),
    persona=st.sampled_from(["manager", "partner"]),
)
@example(path="kpi-values/", pairs=[("period_from", "0000"), ("period_to", "9999-12")], persona="manager")
@example(path="targets/", pairs=[("period", "0000")], persona="manager")
@example(path="registrations/conflicts/", pairs=[("domain", "acme.com\x00")], persona="partner")
def test_every_list_answers_any_filter_without_a_server_error_and_in_the_error_shape(
    api, path, pairs, persona
):
    url = f"{API}/{path}"
    query = query_string(pairs)
    client = api["clients"][persona]
    response = send(f"GET {url}?{query} as {persona}", lambda: client.get(url, QUERY_STRING=query))
    _assert_refusals_in_the_error_shape(response)


# The valid program folder, and the first data row of each file to vary.
PROGRAM = {
    path.name: path.read_text(encoding="utf-8")
    for path in (Path(__file__).parent / "data" / "program_valid").iterdir()
}
FIRST_ROWS = {name: list(csv.reader(io.StringIO(text)))[:2] for name, text in PROGRAM.items()}
COLUMNS = sorted({column for header, _ in FIRST_ROWS.values() for column in header})


def _program_zip(file: str, changes: dict[str, str]) -> io.BytesIO:
    """The valid program, with one more row in `file`: its first row, renamed, with `changes`."""
    header, row = FIRST_ROWS[file]
    cells = dict(zip(header, row, strict=True))
    if "key" in cells:
        cells["key"] = "fuzzed-row"
    cells.update({column: value for column, value in changes.items() if column in cells})
    extra = io.StringIO()
    csv.writer(extra, lineterminator="\n").writerow([cells[column] for column in header])
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zipped:
        for name, text in PROGRAM.items():
            zipped.writestr(name, text + extra.getvalue() if name == file else text)
    archive.seek(0)
    archive.name = "program.zip"
    return archive


@fuzz_settings(max_examples=40)
@given(
    file=st.sampled_from(sorted(PROGRAM)),
    changes=st.dictionaries(st.sampled_from(COLUMNS), nasty_text, min_size=1, max_size=3),
)
@example(file="accounts.csv", changes={"name": "Nul\x00 Corp"})
@example(file="targets.csv", changes={"period": "0000"})
@example(file="registrations.csv", changes={"submitted_at": "9999-12-31T23:59:59+00:00"})
@example(
    file="deals.csv", changes={"created_at": "9999-12-31T23:59:59-01:00", "closed_at": "", "status": "open"}
)
def test_an_uploaded_import_with_any_cell_answers_without_a_server_error(api, file, changes):
    archive = _program_zip(file, changes)
    client = api["clients"]["manager"]
    response = send(
        f"POST {API}/imports/ with {file} row changed: {changes!r}",
        lambda: client.post(f"{API}/imports/", {"file": archive}, format="multipart"),
    )
    _assert_refusals_in_the_error_shape(response)
    if response.status_code == 200:
        # What was accepted must read back: a moment stored outside Python's range would not.
        for listed in (
            "join-sources/",
            "partners/",
            "accounts/",
            "deals/",
            "registrations/",
            "touches/",
            "costs/",
            "targets/",
        ):
            send(
                f"GET {API}/{listed} after importing {file} with {changes!r}",
                lambda u=f"{API}/{listed}": client.get(u),
            )
