"""Published-KPI reads are cached and tagged per publication (api/caching.py), and never stale.

The publication version (kpis.models.KpiPublication) is kept by database triggers, so these tests
write the watched tables every way a writer can: the ORM, raw SQL, a recompute, a settings change.
"""

import uuid

import pytest
from django.db import connection, transaction
from django.test import override_settings

from kpis.models import KpiValue, ReconciliationItem
from kpis.selectors import publication_version
from partners.models import PartnerUser
from program.models import ProgramSettings
from tests.factories import PartnerUserFactory
from tests.support import kpis as k
from tests.support.api import *  # noqa: F403
from tests.support.api import API, client_for, count_queries

SOURCED_MARCH = f"{API}/kpi-values/?metric=sourced_revenue&period_from=2026-03&period_to=2026-03"


@pytest.fixture
def program(db):
    """March 2026: alpha sources a 1000.00 win, bravo a 400.00 win."""
    source = k.join_source("web")
    alpha = k.partner("alpha", source, joined="2026-01-05")
    bravo = k.partner("bravo", source, joined="2026-01-05")
    k.deal("1000.00", created="2026-02-01 10:00", closed="2026-03-10 10:00", sourced_by=alpha)
    k.deal("400.00", created="2026-02-01 10:00", closed="2026-03-12 10:00", sourced_by=bravo)
    k.recompute(as_of="2026-06-30")
    return {"alpha": alpha, "bravo": bravo, "source": source}


def _partner_client(partner):
    return client_for(PartnerUserFactory(partner=partner, role=PartnerUser.Role.MEMBER).user)


def _sourced(response) -> list[tuple[str, str, str]]:
    assert response.status_code == 200, response.content
    return [(r["scope"], r["scope_key"], r["value"]) for r in response.json()["results"]]


def test_every_write_to_the_published_set_changes_the_version_and_others_do_not(program):
    before = publication_version()
    k.deal("5.00", created="2026-04-01 10:00", closed="2026-04-02 10:00", sourced_by=program["alpha"])
    assert publication_version() == before, "a deal is not part of the published set"

    versions = [before]

    def changed() -> bool:
        versions.append(publication_version())
        return versions[-1] != versions[-2]

    row = KpiValue.objects.filter(metric="sourced_revenue").first()
    KpiValue.objects.filter(pk=row.pk).update(value=row.value + 1)
    assert changed()
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {KpiValue._meta.db_table} SET value = value - 1 WHERE id = %s", [row.pk])
    assert changed()
    KpiValue.objects.filter(pk=row.pk).delete()
    assert changed()
    settings = ProgramSettings.load()
    settings.attribution_model = "first_touch"
    settings.save()
    assert changed()
    ProgramSettings.objects.all().delete()
    assert changed()
    assert len(set(versions)) == len(versions)
    # Every publication rewrites the reconciliation items; they are not part of the KPI reads.
    ReconciliationItem.objects.create(kind="touch_after_close", description="x", run=row.run)
    assert publication_version() == versions[-1]


def test_a_run_that_changes_nothing_keeps_the_version_and_the_etag(program, as_manager):
    before = as_manager.get(SOURCED_MARCH)
    version = publication_version()
    k.recompute(as_of="2026-06-30")
    assert publication_version() == version
    assert as_manager.get(SOURCED_MARCH, HTTP_IF_NONE_MATCH=before["ETag"]).status_code == 304


@pytest.mark.postgres
def test_a_writer_with_another_search_path_still_changes_the_version(program):
    """A data-only pg_restore runs with an empty search_path; a chunked run puts its schema first."""
    before = publication_version()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT current_schema()")
        table = f'"{cursor.fetchone()[0]}".{KpiValue._meta.db_table}'
        cursor.execute("SET LOCAL search_path = ''")
        cursor.execute(f"UPDATE {table} SET value = value WHERE id IN (SELECT MIN(id) FROM {table})")
        cursor.execute("SET LOCAL search_path TO DEFAULT")  # the test's own transaction goes on
    assert publication_version() != before


def test_a_rolled_back_write_leaves_the_version_as_it_was(program):
    before = publication_version()
    with pytest.raises(RuntimeError), transaction.atomic():
        KpiValue.objects.filter(metric="won_revenue").delete()
        assert publication_version() != before  # the writer sees its own change
        raise RuntimeError("abort")
    assert publication_version() == before


def test_a_repeated_read_is_served_from_the_cache_with_an_etag(program, as_manager):
    first_queries, first = count_queries(as_manager, SOURCED_MARCH)
    again_queries, again = count_queries(as_manager, SOURCED_MARCH)
    assert again.content == first.content
    assert again["ETag"] == first["ETag"] and first["ETag"].startswith('"')
    assert first["Cache-Control"] == "private, no-cache"
    assert "Authorization" in first["Vary"]
    # Session, user and roles, then the version: no filters, page query or serializer any more.
    assert again_queries < first_queries
    not_modified = as_manager.get(SOURCED_MARCH, HTTP_IF_NONE_MATCH=first["ETag"])
    assert not_modified.status_code == 304 and not_modified.content == b""
    assert not_modified["ETag"] == first["ETag"]
    weak = as_manager.get(SOURCED_MARCH, HTTP_IF_NONE_MATCH=f'"other", W/{first["ETag"]}')
    assert weak.status_code == 304
    assert as_manager.get(SOURCED_MARCH, HTTP_IF_NONE_MATCH='"other"').status_code == 200


def test_requests_that_differ_get_their_own_body(program, as_manager):
    plain = as_manager.get(SOURCED_MARCH, HTTP_ACCEPT="application/json")
    indented = as_manager.get(SOURCED_MARCH, HTTP_ACCEPT="application/json; indent=4")
    again = as_manager.get(SOURCED_MARCH, HTTP_ACCEPT="application/json")
    assert b"\n    " in indented.content and b"\n" not in plain.content
    assert again.content == plain.content and indented["ETag"] != plain["ETag"]
    # The last value of a single-valued filter wins: the order of a repeated parameter matters.
    url = f"{API}/kpi-values/?metric=sourced_revenue&scope=program"
    years = as_manager.get(f"{url}&grain=month&grain=year").json()["results"]
    months = as_manager.get(f"{url}&grain=year&grain=month").json()["results"]
    assert {r["grain"] for r in years} == {"year"} and {r["grain"] for r in months} == {"month"}


def test_unknown_parameters_are_answered_but_never_cached(program, as_manager):
    first_queries, first = count_queries(as_manager, f"{SOURCED_MARCH}&utm_source=x")
    again_queries, again = count_queries(as_manager, f"{SOURCED_MARCH}&utm_source=x")
    assert again.content == first.content and again_queries == first_queries
    _, known = count_queries(as_manager, SOURCED_MARCH)
    known_again, _ = count_queries(as_manager, SOURCED_MARCH)
    assert known_again < first_queries


def test_the_next_publication_is_read_at_once(program, as_manager):
    old = as_manager.get(f"{SOURCED_MARCH}&scope=partner&scope_key=alpha")
    assert _sourced(old) == [("partner", "alpha", "1000.00")]
    k.deal("300.00", created="2026-02-01 10:00", closed="2026-03-15 10:00", sourced_by=program["alpha"])
    k.recompute(as_of="2026-06-30")
    new = as_manager.get(f"{SOURCED_MARCH}&scope=partner&scope_key=alpha", HTTP_IF_NONE_MATCH=old["ETag"])
    assert _sourced(new) == [("partner", "alpha", "1300.00")]
    assert new["ETag"] != old["ETag"]


def test_a_reader_never_gets_a_page_cached_for_another(program, as_manager):
    staff = _sourced(as_manager.get(f"{SOURCED_MARCH}&scope=partner"))
    assert sorted(staff) == [("partner", "alpha", "1000.00"), ("partner", "bravo", "400.00")]
    alpha = _partner_client(program["alpha"])
    bravo = _partner_client(program["bravo"])
    for _ in range(2):  # the second round is served from the cache
        assert _sourced(alpha.get(f"{SOURCED_MARCH}&scope=partner")) == [("partner", "alpha", "1000.00")]
        assert _sourced(bravo.get(f"{SOURCED_MARCH}&scope=partner")) == [("partner", "bravo", "400.00")]
    tags = {
        as_manager.get(SOURCED_MARCH)["ETag"],
        alpha.get(SOURCED_MARCH)["ETag"],
        bravo.get(SOURCED_MARCH)["ETag"],
    }
    assert len(tags) == 3
    assert client_for(None).get(SOURCED_MARCH).status_code == 401


def test_a_new_program_model_is_read_without_a_recompute(program, as_manager):
    assert len(_sourced(as_manager.get(SOURCED_MARCH))) == 4  # program, source, alpha, bravo
    k.program(attribution_model="first_touch")
    # Nothing is published under first_touch until the next run: the API says so, not the cache.
    response = as_manager.get(SOURCED_MARCH)
    assert response.status_code == 200 and response.json()["results"] == []


def test_the_published_export_is_tagged_and_answers_304_until_the_next_publication(program, as_manager):
    url = f"{API}/kpi-export/?grain=month&format=csv"
    first = as_manager.get(url)
    csv_rows = b"".join(first.streaming_content)
    assert first.status_code == 200 and b"sourced_revenue,1000.00" in csv_rows and first["ETag"]
    assert as_manager.get(url, HTTP_IF_NONE_MATCH=first["ETag"]).status_code == 304
    json_export = as_manager.get(f"{API}/kpi-export/?grain=month")
    assert json_export["ETag"] != first["ETag"]
    # Computed on request under another model: nothing to tag.
    assert "ETag" not in as_manager.get(f"{API}/kpi-export/?grain=month&model=first_touch")
    k.deal("300.00", created="2026-02-01 10:00", closed="2026-03-15 10:00", sourced_by=program["alpha"])
    k.recompute(as_of="2026-06-30")
    fresh = as_manager.get(url, HTTP_IF_NONE_MATCH=first["ETag"])
    assert fresh.status_code == 200 and b"sourced_revenue,1300.00" in b"".join(fresh.streaming_content)


def test_web_processes_share_the_cache_through_redis(program, as_manager, redis_url):
    import redis

    prefix = f"prm-test-{uuid.uuid4().hex}"
    shared = {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": redis_url}
    try:
        aliases = ("default", "kpi_responses")
        shared_caches = {alias: {**shared, "KEY_PREFIX": f"{prefix}-{alias}"} for alias in aliases}
        with override_settings(CACHES=shared_caches):
            url = f"{SOURCED_MARCH}&scope=partner&scope_key=alpha"
            assert _sourced(as_manager.get(url)) == [("partner", "alpha", "1000.00")]
            keys = redis.Redis.from_url(redis_url).keys(f"{prefix}-kpi_responses:*api:published:*")
            assert len(keys) == 1, keys
            cached_queries, cached = count_queries(as_manager, url)
            alpha = program["alpha"]
            k.deal("300.00", created="2026-02-01 10:00", closed="2026-03-15 10:00", sourced_by=alpha)
            k.recompute(as_of="2026-06-30")
            fresh_queries, fresh = count_queries(as_manager, url)
            assert _sourced(cached) == [("partner", "alpha", "1000.00")]
            assert _sourced(fresh) == [("partner", "alpha", "1300.00")]
            assert cached_queries < fresh_queries
    finally:
        client = redis.Redis.from_url(redis_url)
        for key in client.scan_iter(f"{prefix}-*"):
            client.delete(key)
