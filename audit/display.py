"""Trail entries as people read them: field names, choice labels, related rows by name, UTC times."""

from collections import defaultdict
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from auditlog.models import LogEntry
from django.core.exceptions import FieldDoesNotExist, ValidationError
from django.db import models

from audit.registry import SECRET

EMPTY = "—"
ACTIONS = {
    LogEntry.Action.CREATE: "created",
    LogEntry.Action.UPDATE: "changed",
    LogEntry.Action.DELETE: "deleted",
    LogEntry.Action.ACCESS: "viewed",
}


@dataclass(frozen=True)
class FieldChange:
    field: str
    before: str
    after: str


@dataclass(frozen=True)
class EntryView:
    entry: LogEntry
    object_type: str
    action: str
    actor: str
    channel: str
    token_name: str
    changes: list[FieldChange]


def present(
    entries: Iterable[LogEntry],
    *,
    fields: Collection[str] | None = None,
    actor_label: Callable[[LogEntry], str] | None = None,
) -> list[EntryView]:
    """The entries with readable changes; `fields` limits which changes are shown (None: all).

    Rows the changes point at are read with one query per related model.
    """
    entries = list(entries)
    names = _related_names(entries, fields)
    views = []
    for entry in entries:
        model = entry.content_type.model_class()
        data = entry.additional_data or {}
        views.append(
            EntryView(
                entry=entry,
                object_type=str(model._meta.verbose_name) if model else entry.content_type.model,
                action=ACTIONS.get(entry.action, str(entry.action)),
                actor=actor_label(entry) if actor_label else trail_actor(entry),
                channel=data.get("channel", ""),
                token_name=(data.get("token") or {}).get("name", ""),
                changes=_changes(entry, model, fields, names),
            )
        )
    return views


def trail_actor(entry: LogEntry) -> str:
    """Who the entry says acted: the label recorded with it, which outlives the user's row."""
    label = (entry.additional_data or {}).get("actor")
    if label:
        return label
    if entry.actor_id is not None:
        return entry.actor.get_username()
    return entry.actor_email or "system"


def _field(model: type[models.Model] | None, name: str) -> models.Field[Any, Any] | None:
    """The model's own field of that name (the trail records fields, never reverse relations)."""
    if model is None:
        return None
    try:
        field = model._meta.get_field(name)
    except FieldDoesNotExist:
        return None
    return field if isinstance(field, models.Field) else None


def _related_model(field: models.Field[Any, Any] | None) -> type[models.Model] | None:
    """The model a foreign key (or one-to-one) points at; None for any other field."""
    if field is None or not field.concrete or not (field.many_to_one or field.one_to_one):
        return None
    related = field.related_model
    return related if isinstance(related, type) else None


def _related_names(entries: list[LogEntry], fields: Collection[str] | None) -> dict[tuple, str]:
    wanted: dict[type[models.Model], set] = defaultdict(set)
    for entry in entries:
        model = entry.content_type.model_class()
        for name, values in (entry.changes or {}).items():
            related = _related_model(_field(model, name))
            if related is None or (fields is not None and name not in fields):
                continue
            for value in values if isinstance(values, list) else []:
                if value not in (None, "", "None"):
                    wanted[related].add(value)
    names = {}
    for related, raw_keys in wanted.items():
        keys = {}
        for raw in raw_keys:
            try:
                keys[related._meta.pk.to_python(raw)] = raw
            except (ValidationError, ValueError, TypeError):
                continue  # a key the model cannot read is shown as it was stored
        rows = related._default_manager.select_related().in_bulk(list(keys))
        for key, raw in keys.items():
            row = rows.get(key)
            names[(related, raw)] = str(row) if row is not None else f"#{raw} (deleted)"
    return names


def _changes(
    entry: LogEntry, model, fields: Collection[str] | None, names: dict[tuple, str]
) -> list[FieldChange]:
    """The entry's changes in the model's field order (other keys, such as an import's file names,
    after them by name); a creation or deletion lists only the fields that had a value."""
    order = {field.name: index for index, field in enumerate(model._meta.fields)} if model else {}
    shown = []
    changes = sorted(
        (entry.changes or {}).items(), key=lambda item: (order.get(item[0], len(order)), item[0])
    )
    for name, values in changes:
        if fields is not None and name not in fields:
            continue
        field = _field(model, name)
        label = str(field.verbose_name) if field is not None and hasattr(field, "verbose_name") else name
        if isinstance(values, dict) and values.get("type") == "m2m":
            verb = "added" if values.get("operation") == "add" else "removed"
            shown.append(FieldChange(label, "", f"{verb}: {', '.join(values.get('objects', []))}"))
            continue
        if not isinstance(values, list) or len(values) != 2:
            continue
        before, after = (_value(field, v, names) for v in values)
        if before == after == SECRET:
            after = "(changed)"
        if entry.action == LogEntry.Action.CREATE and after == EMPTY:
            continue
        if entry.action == LogEntry.Action.DELETE and before == EMPTY:
            continue
        shown.append(FieldChange(label, before, after))
    return shown


def _value(field: models.Field | None, value, names: dict[tuple, str]) -> str:
    if value in (None, "", "None"):
        return EMPTY
    value = str(value)
    if field is None or value == SECRET:
        return value
    if (related := _related_model(field)) is not None:
        return names.get((related, value), f"#{value}")
    if field.choices:
        return str(dict(field.flatchoices).get(value, value))
    if isinstance(field, models.BooleanField):
        return {"True": "yes", "False": "no"}.get(value, value)
    if isinstance(field, models.DateTimeField):
        try:
            # auditlog stores datetimes as naive UTC.
            return f"{datetime.fromisoformat(value):%Y-%m-%d %H:%M} UTC"
        except ValueError:
            return value
    return value
