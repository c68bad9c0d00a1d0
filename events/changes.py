"""The change log behind GET /api/v1/changes/: one row per created, updated or deleted object.

Rows are written by post_save / post_delete receivers in the transaction of the change (and by
`record_changes` for writes that send no signals: queryset updates, the importer's bulk upserts).
On PostgreSQL each row carries its transaction's id (xid8); `changes_after` serves rows in
(txid, id) order and only those of transactions older than the oldest one still in flight, so a
transaction that commits late can never land behind a cursor a client already holds.
"""

import base64
import binascii
from collections.abc import Iterable
from dataclasses import dataclass

from django.apps import apps
from django.db import connection, transaction
from django.db.models import Model, Q, QuerySet
from django.db.models.signals import post_delete, post_save
from django.utils import timezone

from events.models import Change

# model label -> (resource name in the API and the feed, the column naming its partner or None).
FEED_MODELS: dict[str, tuple[str, str | None]] = {
    "partners.JoinSource": ("join-sources", None),
    "partners.Partner": ("partners", "id"),
    "deals.Account": ("accounts", None),
    "deals.Deal": ("deals", "sourcing_partner_id"),
    "deals.DealRegistration": ("registrations", "partner_id"),
    "deals.Touch": ("touches", "partner_id"),
}


def _current_txid() -> int:
    if connection.vendor != "postgresql":
        return 0
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_current_xact_id()::text")
        return int(cursor.fetchone()[0])


def record_changes(model, objects: Iterable, action: str) -> int:
    """Log `action` for each of `objects` (instances of a feed model); returns how many."""
    label = model._meta.label
    if label not in FEED_MODELS:
        return 0
    resource, partner_field = FEED_MODELS[label]
    now = timezone.now()
    rows = [
        Change(
            resource=resource,
            object_id=obj.pk,
            action=action,
            changed_at=now,
            partner_id=getattr(obj, partner_field) if partner_field else None,
        )
        for obj in objects
        if obj.pk is not None
    ]
    if rows:
        txid = _current_txid()
        for row in rows:
            row.txid = txid
        Change.objects.bulk_create(rows)
    return len(rows)


def _saved(sender, instance, created: bool, raw: bool = False, **kwargs) -> None:
    if raw:  # loaddata
        return
    record_changes(sender, [instance], Change.Action.CREATED if created else Change.Action.UPDATED)


def _deleted(sender, instance, **kwargs) -> None:
    record_changes(sender, [instance], Change.Action.DELETED)


def connect() -> None:
    for label in FEED_MODELS:
        model = apps.get_model(label)
        post_save.connect(_saved, sender=model, dispatch_uid=f"events.changes.saved.{label}")
        post_delete.connect(_deleted, sender=model, dispatch_uid=f"events.changes.deleted.{label}")


# --- Reading ------------------------------------------------------------------------------------


class BadCursor(ValueError):
    pass


@dataclass(frozen=True)
class Cursor:
    txid: int
    id: int

    def encode(self) -> str:
        return base64.urlsafe_b64encode(f"v1:{self.txid}:{self.id}".encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> "Cursor":
        if not text:
            return cls(0, 0)
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode("ascii")
            version, txid, id_ = raw.split(":")
            if version != "v1":
                raise ValueError(version)
            cursor = cls(int(txid), int(id_))
        except (ValueError, binascii.Error, UnicodeDecodeError):
            raise BadCursor("not a cursor this feed handed out") from None
        if cursor.txid < 0 or cursor.id < 0 or max(cursor.txid, cursor.id) >= 2**63:
            raise BadCursor("not a cursor this feed handed out")
        return cursor


_SEES_EVERY_BACKEND = (
    "SELECT rolsuper OR pg_has_role(current_user, 'pg_read_all_stats', 'MEMBER') "
    "FROM pg_roles WHERE rolname = current_user"
)
_OUR_DATABASES_XIDS = (
    "SELECT backend_xid::text FROM pg_stat_activity "
    "WHERE datname = current_database() AND backend_xid IS NOT NULL "
    "UNION ALL SELECT transaction::text FROM pg_prepared_xacts WHERE database = current_database()"
)


def visible_horizon() -> int | None:
    """PostgreSQL: the oldest transaction id still in flight that could write rows to this
    database; rows at or above it are held back. None elsewhere (SQLite serialises writers).

    With the right to see every session (superuser or pg_read_all_stats), only transactions of this
    database count: the snapshot's in-progress ids are matched against the sessions connected here
    (read after the snapshot, so one that had an id then is listed). Without it, every transaction
    on the server counts (pg_snapshot_xmin): still sound, but a long write elsewhere delays the feed.
    """
    if connection.vendor != "postgresql":
        return None
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_snapshot_xmin(s)::text, pg_snapshot_xmax(s)::text, "
            "ARRAY(SELECT x::text FROM pg_snapshot_xip(s) AS x), pg_current_xact_id_if_assigned()::text "
            "FROM (SELECT pg_current_snapshot() AS s) t"
        )
        xmin, xmax, in_progress, own = cursor.fetchone()
        if not in_progress and own is None:
            return int(xmax)
        cursor.execute(_SEES_EVERY_BACKEND)
        if not cursor.fetchone()[0]:
            return int(xmin) if in_progress else int(xmax)
        cursor.execute("SELECT pg_stat_clear_snapshot()")  # read the sessions now, not a cached view
        cursor.execute(_OUR_DATABASES_XIDS)
        ours = {int(xid) for (xid,) in cursor.fetchall()}
    if own is not None:
        # A reader that has written in its own transaction (a snapshot never lists its own id, and
        # xmax may not be past it) sees its own rows: serve them when no other transaction of this
        # database is in flight, whatever its id (pg_stat_activity lists those past xmax too).
        ours.discard(int(own) % 2**32)
        if not ours:
            return max(int(xmax), int(own) + 1)
    mine = [int(x) for x in in_progress if int(x) % 2**32 in ours]
    return min(mine) if mine else int(xmax)


def changes_after(cursor: Cursor, *, partner_id: int | None, staff: bool, limit: int) -> QuerySet:
    """The next `limit` changes after `cursor` that are safe to serve, in feed order.

    Staff see every change; a partner user (partner_id) only those of its partner's objects.
    """
    qs = Change.objects.filter(Q(txid__gt=cursor.txid) | Q(txid=cursor.txid, id__gt=cursor.id))
    horizon = visible_horizon()
    if horizon is not None:
        qs = qs.filter(txid__lt=horizon)
    if not staff:
        qs = qs.filter(partner_id=partner_id) if partner_id is not None else qs.none()
    return qs.order_by("txid", "id")[:limit]


def record_keyed_changes(model: type[Model], marks_table: str) -> int:
    """Feed rows for a set-based write (the CSV import's upserts, which send no signals).
    `marks_table` (a table, or a parenthesised query) has a row (key, action) for each object the
    write created or changed, by its key; built before the write, since afterwards nothing tells an
    updated row from an unchanged one."""
    label = model._meta.label
    if label not in FEED_MODELS:
        return 0
    resource, partner_field = FEED_MODELS[label]
    return _insert_changes(
        model,
        f"SELECT %s, %s, t.id, m.action, %s, {_partner_column(partner_field)} FROM {marks_table} m "
        f"JOIN {_quoted(model)} t ON t.key = m.key ORDER BY t.id",
        resource,
    )


def record_created_at(model: type[Model], created_at_param: object) -> int:
    """Feed rows for the objects a set-based insert created, stamped `created_at_param` (the value
    it wrote into created_at): the import's touches, which have no key."""
    label = model._meta.label
    if label not in FEED_MODELS:
        return 0
    resource, partner_field = FEED_MODELS[label]
    return _insert_changes(
        model,
        f"SELECT %s, %s, t.id, 'created', %s, {_partner_column(partner_field)} FROM {_quoted(model)} t "
        "WHERE t.created_at = %s ORDER BY t.id",
        resource,
        [created_at_param],
    )


def _quoted(model: type[Model]) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def _partner_column(partner_field: str | None) -> str:
    return f"t.{connection.ops.quote_name(partner_field)}" if partner_field else "NULL"


def _insert_changes(model: type[Model], select: str, resource: str, extra: list | None = None) -> int:
    table = connection.ops.quote_name(Change._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (txid, resource, object_id, action, changed_at, partner_id) {select}",
            [_current_txid(), resource, timezone.now(), *(extra or [])],
        )
        return cursor.rowcount
