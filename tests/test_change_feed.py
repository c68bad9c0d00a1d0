"""GET /api/v1/changes/: every change in order behind an opaque cursor, scoped by role, and a change
that commits late is never skipped (two real PostgreSQL connections commit out of order)."""

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal

import pytest
from django.db import connection, connections, transaction
from django.db.models import Count

from deals import services as deals
from deals.models import Deal, Touch
from tests.factories import AccountFactory, DealFactory, StaffUserFactory
from tests.support.api import *  # noqa: F403
from tests.support.api import API, client_for, error_of
from tests.support.services import own_session


def read_until(client, count: int, cursor: str = "") -> tuple[list[tuple], str]:
    """Read until `count` changes came (or 30 s passed): on PostgreSQL the feed holds rows back while
    any write transaction older than them is in flight on the server, even in another database."""
    seen: list[tuple] = []
    deadline = time.monotonic() + 30
    while len(seen) < count and time.monotonic() < deadline:
        more, cursor = read_all(client, cursor)
        seen += more
        if len(seen) < count:
            time.sleep(0.2)
    return seen, cursor


def read_all(client, cursor: str = "") -> tuple[list[tuple], str]:
    seen = []
    while True:
        response = client.get(f"{API}/changes/", {"after": cursor, "limit": 2})
        assert response.status_code == 200, response.content
        body = response.json()
        seen += [(c["resource"], c["id"], c["action"]) for c in body["results"]]
        cursor = body["next_cursor"]
        if not body["has_more"]:
            return seen, cursor


# The feed serves only committed transactions (on PostgreSQL a test's own open transaction would
# hold every row back), so these tests commit their data.
@pytest.mark.django_db(transaction=True)
def test_the_feed_lists_creates_updates_and_deletes_in_order_and_resumes_from_its_cursor(as_manager):
    account = AccountFactory()
    deal = DealFactory(account=account)
    seen, cursor = read_until(as_manager, 2)
    assert seen == [("accounts", account.pk, "created"), ("deals", deal.pk, "created")]
    deals.deal_update(deal=deal, amount=Decimal("2500.00"))
    deal_id = deal.pk
    Deal.objects.get(pk=deal_id).delete()
    again, cursor = read_until(as_manager, 2, cursor)
    assert again == [("deals", deal_id, "updated"), ("deals", deal_id, "deleted")]
    assert read_all(as_manager, cursor) == ([], cursor)
    body = as_manager.get(f"{API}/changes/", {"after": ""}).json()
    assert body["results"][0]["url"] == f"/api/v1/accounts/{account.pk}/"
    assert body["results"][-1]["url"] is None  # deleted


@pytest.mark.django_db(transaction=True)
def test_a_partner_user_reads_only_its_own_partners_changes(world_a, world_b, as_admin_a):
    seen, _ = read_until(as_admin_a, 4)
    a = world_a
    assert set(seen) == {
        ("partners", a.partner.pk, "created"),
        ("deals", a.deal.pk, "created"),
        ("registrations", a.registration.pk, "created"),
        ("touches", a.touch.pk, "created"),
    }


@pytest.mark.django_db
@pytest.mark.parametrize("after", ["not-a-cursor", "djI6MTox", "%00", "dj" * 80])
def test_a_cursor_the_feed_did_not_hand_out_is_a_400(as_manager, after):
    response = as_manager.get(f"{API}/changes/", {"after": after})
    assert response.status_code == 400 and "after" in error_of(response)["fields"]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_change_committed_late_is_not_skipped_by_a_client_polling_in_between():
    """Transaction A changes deal 1 first (earlier updated_at) but commits last; B changes deal 2
    and commits first. A client polling between the two commits, then again, gets both changes;
    a client filtering on updated_at would have skipped deal 1."""
    first, second = DealFactory(), DealFactory()
    client = client_for(StaffUserFactory(username="feed-reader"))
    _, cursor = read_until(client, 4)
    a_wrote, a_may_commit, a_done = threading.Event(), threading.Event(), threading.Event()

    def transaction_a():
        try:
            with transaction.atomic():
                deals.deal_update(deal=first, amount=Decimal("111.00"))
                a_wrote.set()
                assert a_may_commit.wait(30)
        finally:
            connections.close_all()
            a_done.set()

    thread = threading.Thread(target=transaction_a)
    thread.start()
    assert a_wrote.wait(30)
    deals.deal_update(deal=second, amount=Decimal("222.00"))  # B: this connection, autocommit
    first_at = Deal.objects.get(pk=first.pk).updated_at  # A's row is not visible yet: the old time
    second_at = Deal.objects.get(pk=second.pk).updated_at
    assert first_at < second_at

    between, cursor = read_all(client, cursor)
    assert between == []  # B's change waits behind A, which is still in flight
    a_may_commit.set()
    assert a_done.wait(30)
    thread.join()
    assert Deal.objects.get(pk=first.pk).updated_at < second_at  # A: the earlier updated_at, committed last

    after, cursor = read_until(client, 2, cursor)
    assert after == [("deals", first.pk, "updated"), ("deals", second.pk, "updated")]
    assert connection.vendor == "postgresql"


@contextmanager
def a_write_in_flight_in_another_database() -> Iterator[None]:
    """A write transaction (it has an id) left open in the server's `postgres` database."""
    other = own_session("postgres")
    try:
        with other.cursor() as elsewhere:
            elsewhere.execute("SELECT pg_current_xact_id()")
            yield
    finally:
        other.rollback()
        other.close()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_transaction_in_another_database_does_not_hold_the_feed_back():
    client = client_for(StaffUserFactory(username="feed-reader-2"))
    _, cursor = read_until(client, 0)
    with a_write_in_flight_in_another_database():
        deal = DealFactory()
        seen, cursor = read_all(client, cursor)
        assert ("deals", deal.pk, "created") in seen


@pytest.mark.postgres
@pytest.mark.django_db
def test_a_reader_sees_its_own_transactions_rows_while_another_database_has_a_write_in_flight():
    """A transaction that writes and then reads the feed (as test_query_counts does): its own id is
    the newest, no later one has completed, so the snapshot's xmax is not past it."""
    from events.changes import Cursor, changes_after, visible_horizon

    with a_write_in_flight_in_another_database():
        deal = DealFactory()
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_current_xact_id()::text")
            (own,) = cursor.fetchone()
        assert visible_horizon() > int(own)  # its own rows are below the horizon
        rows = changes_after(Cursor(0, 0), partner_id=None, staff=True, limit=100)
        assert ("deals", deal.pk) in [(row.resource, row.object_id) for row in rows]


@pytest.mark.django_db
def test_an_import_tells_the_feed_of_exactly_the_objects_it_created_or_changed(tmp_path):
    """The import writes set-based (no signals): its feed rows come from the staged rows."""
    import csv

    from events.models import Change
    from interchange.demo import DemoSize
    from interchange.importer import import_program
    from interchange.seeding import seed_to_folder
    from partners.models import Partner

    folder = tmp_path / "program"
    seed_to_folder(DemoSize(partners=6, deals=30, seed=3), folder)
    import_program(folder)
    created = dict(
        Change.objects.filter(action="created").values_list("resource").annotate(n=Count("id")).order_by()
    )
    assert created["deals"] == Deal.objects.count() == 30
    assert created["partners"] == Partner.objects.count()
    assert created["touches"] == Touch.objects.count() > 0
    assert not Change.objects.exclude(action="created").exists()

    # One deal's amount changes; everything else is imported again as it is.
    with (folder / "deals.csv").open(newline="") as stream:
        rows = list(csv.DictReader(stream))
    rows[4]["amount"] = str(Decimal(rows[4]["amount"]) + 1)
    with (folder / "deals.csv").open("w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    before = Change.objects.count()
    import_program(folder)
    again = list(Change.objects.filter(id__gt=Change.objects.order_by("id")[before - 1].id))
    changed = Deal.objects.get(key=rows[4]["key"])
    assert [(c.resource, c.object_id, c.action, c.partner_id) for c in again] == [
        ("deals", changed.id, "updated", changed.sourcing_partner_id)
    ]
