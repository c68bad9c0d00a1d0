"""The charting library is served by the app itself, from the installed plotly package."""

import re
from pathlib import Path

import plotly
import pytest
from django.contrib.staticfiles import finders
from django.core.management import call_command
from django.test import override_settings
from django.urls import reverse

from tests.factories import StaffUserFactory
from tests.support.dashboards import publish

PLOTLY_JS = Path(plotly.__file__).resolve().parent / "package_data" / "plotly.min.js"


def test_the_finder_resolves_plotly_js_to_the_installed_package_file():
    assert finders.find("vendor/plotly/plotly.min.js") == str(PLOTLY_JS)
    assert finders.find("vendor/plotly/plotly.min.js", find_all=True) == [str(PLOTLY_JS)]
    assert finders.find("vendor/plotly/other.js") is None


def test_collectstatic_copies_plotly_js(tmp_path):
    with override_settings(STATIC_ROOT=tmp_path):
        call_command("collectstatic", "--noinput", verbosity=0)
    collected = tmp_path / "vendor" / "plotly" / "plotly.min.js"
    assert collected.read_bytes() == PLOTLY_JS.read_bytes()


@pytest.mark.django_db
def test_pages_load_plotly_from_the_app_not_a_cdn(client):
    client.force_login(StaffUserFactory())
    publish([(None, "2026-03", "won_revenue", "1.00")])
    html = client.get(reverse("dashboards:overview")).content.decode()
    assert '<script src="/static/vendor/plotly/plotly.min.js" defer></script>' in html
    # Every script and stylesheet comes from this app: no absolute or protocol-relative URL.
    assert re.findall(r'(?:src|href)="(?:https?:)?//', html) == []
    response = client.get("/static/vendor/plotly/plotly.min.js")
    assert response.status_code == 200
    assert b"plotly.js v" in b"".join(response.streaming_content)[:200]
