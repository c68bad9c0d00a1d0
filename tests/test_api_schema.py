"""The OpenAPI schema, its viewers, and Schemathesis fuzzing the whole API against it."""

import os
import re

import pytest
import schemathesis
from django.conf import settings
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from django.test import override_settings
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api.services import api_token_create
from kpis.forecast_store import forecast_snapshot_compute
from tests.factories import StaffUserFactory
from tests.support.api import *  # noqa: F403
from tests.support.api import API, error_of

# Generated in-process, exactly what /api/v1/schema/ serves; loading it needs no database.
OPENAPI = SchemaGenerator().get_schema(request=None, public=True)
schema = schemathesis.openapi.from_dict(OPENAPI)
schema.app = get_wsgi_application()
schema.config.phases.update(phases=os.environ.get("API_FUZZ_PHASES", "examples,fuzzing").split(","))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
# Fuzzing writes hundreds of rows: lift the write throttle so the examples reach the code under test.
UNTHROTTLED = {
    **settings.REST_FRAMEWORK,
    "DEFAULT_THROTTLE_RATES": {
        scope: "100000/minute" for scope in settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]
    },
}


def test_the_schema_is_served_as_openapi_3(anonymous, db):
    response = anonymous.get(f"{API}/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    body = response.json()
    assert body["openapi"].startswith("3.")
    assert f"{API}/deals/" in body["paths"]
    assert f"{API}/registrations/{{id}}/approve/" in body["paths"]


def test_every_operation_has_a_summary_and_documents_401_in_the_error_shape():
    for path, operations in OPENAPI["paths"].items():
        for method, operation in operations.items():
            assert operation.get("summary"), f"{method.upper()} {path} has no summary"
            responses = operation["responses"]
            assert "401" in responses, f"{method.upper()} {path} does not document 401"
            ref = responses["401"]["content"]["application/json"]["schema"]["$ref"]
            assert ref.endswith("/Error"), (path, method, ref)


def test_every_operation_with_a_body_has_an_example():
    def has_example(operation) -> bool:
        bodies = list(operation.get("requestBody", {}).get("content", {}).values())
        for code, response in operation["responses"].items():
            if code.startswith("2"):
                bodies.extend(response.get("content", {}).values())
        return any("examples" in body for body in bodies)

    missing = [
        f"{method.upper()} {path}"
        for path, operations in OPENAPI["paths"].items()
        for method, operation in operations.items()
        if set(operation["responses"]) & {"200", "201", "202"} and not has_example(operation)
    ]
    assert missing == []


def test_the_error_body_is_one_documented_shape():
    error = OPENAPI["components"]["schemas"]["ErrorDetail"]
    assert set(error["properties"]) == {"status", "code", "detail", "fields"}


@pytest.mark.parametrize("path", ["docs/", "redoc/"])
def test_the_viewers_load_their_assets_from_the_app_not_a_cdn(path, anonymous, db):
    response = anonymous.get(f"{API}/{path}")
    assert response.status_code == 200
    html = response.content.decode()
    assert "/static/drf_spectacular_sidecar/" in html
    external = [url for url in re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)""", html) if "//" in url]
    assert external == []


def test_an_unknown_path_under_the_api_is_a_404_in_the_error_shape(as_manager):
    for path in (f"{API}/deals/not-a-number/", f"{API}/deals/0.5/", f"{API}/no-such-thing/", "/api/v2/"):
        response = as_manager.get(path)
        assert response.status_code == 404, path
        assert error_of(response)["code"] == "not_found"


@pytest.fixture
def wsgi_keeps_the_test_connection():
    """Like Django's test client: requests must not close the connection holding the test transaction."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def manager_token(world_a, world_b, wsgi_keeps_the_test_connection) -> str:
    forecast_snapshot_compute()  # what the KPI publication's task stores: the forecast endpoint reads it
    manager = StaffUserFactory(username="fuzz-manager")
    _, secret = api_token_create(user=manager, name="schemathesis")
    return secret


@pytest.mark.django_db
@schema.parametrize()
@hypothesis_settings(
    max_examples=6,
    deadline=None,
    derandomize=True,
    database=None,  # no .hypothesis/ example database in the checkout
    suppress_health_check=list(HealthCheck),
)
def test_the_api_conforms_to_its_schema(case, manager_token):
    with override_settings(REST_FRAMEWORK=UNTHROTTLED):
        case.call_and_validate(headers={"Authorization": f"Bearer {manager_token}"}, checks=CHECKS)
