"""`commission_plans.csv`: commission plans and their rules, one row per rule (docs/interchange.md).

A plan's columns repeat on each of its rows and must agree. Plans are upserted by `plan` (their key),
rules by `rule` (their key); rules of a plan that the file does not name are left as they are.
Plans are few: rows are checked one by one and written through economics.services.plan_save, so
an import applies exactly the rules the pages and the API do (and records commission_plan.saved).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol

from django.core.exceptions import ValidationError
from django.db import transaction

from economics.models import CommissionPlan, CommissionRule
from economics.services import plan_save, rule_errors
from interchange.parsing import parse_decimal, parse_money
from partners.models import JoinSource, Partner

if TYPE_CHECKING:
    from interchange.importer import FileSummary, _Row

REQUIRED = ("plan", "name", "effective_from", "rule", "kind")
OPTIONAL = (
    "description", "priority", "effective_to", "active", "tiers", "partner_types", "join_sources",
    "partners", "rate", "amount", "cap",
)  # fmt: skip
PLAN_COLUMNS = ("name", "description", "priority", "effective_from", "effective_to", "active", "tiers",
                "partner_types", "join_sources", "partners")  # fmt: skip
RULE_KINDS = tuple(CommissionRule.Kind.values)
TRUE, FALSE = ("1", "true", "yes"), ("0", "false", "no")


class Importer(Protocol):
    result: Any

    def rows(self, file: str) -> Iterator[_Row]: ...
    def refuse(self, row: _Row, entity: str | None) -> None: ...
    def error(self, file: str, line: int, column: str, reason: str) -> None: ...
    def date_value(self, text: str) -> date: ...


@dataclass
class _Plan:
    key: str
    line: int
    cells: dict[str, str]
    values: dict[str, Any]
    ok: bool
    rules: list[tuple[_Row, dict[str, Any]]] = field(default_factory=list)


def _list(text: str) -> list[str]:
    """`a; b` -> ["a", "b"] (a semicolon inside the cell separates items)."""
    return [item.strip() for item in text.split(";") if item.strip()]


def _rule(row: _Row) -> dict[str, Any]:
    kind = row.choice("kind", RULE_KINDS)
    rate = row.parse("rate", lambda t: parse_decimal(t, places=4, max_digits=7))
    if rate is not None and not Decimal("0") < rate <= Decimal("100"):
        row.error("rate", "must be more than 0 and at most 100 (percent)")
    values = {
        "key": row.text("rule", required=True, max_length=100),
        "kind": kind,
        "rate": rate,
        "amount": row.parse("amount", parse_money),
        "cap": row.parse("cap", parse_money),
    }
    if kind:
        fields = {k: values[k] for k in ("kind", "rate", "amount", "cap")}
        row.add_rule_errors(rule_errors(CommissionRule(**fields)))
    return values


def _plan_values(importer: Importer, row: _Row) -> dict[str, Any]:
    """The plan's own columns, read from its first row (errors reported on that row)."""
    active = row.cells.get("active", "").lower()
    if active and active not in TRUE + FALSE:
        row.error("active", "must be true or false")
    types = _list(row.cells.get("partner_types", ""))
    if bad := [t for t in types if t not in Partner.Type.values]:
        row.error("partner_types", f"'{bad[0]}' is not one of: {', '.join(Partner.Type.values)}")
    return {
        "name": row.text("name", required=True, max_length=200),
        "description": row.text("description", max_length=5000),
        "priority": row.parse("priority", _int) or 0,
        "effective_from": row.parse("effective_from", importer.date_value, required=True),
        "effective_to": row.parse("effective_to", importer.date_value),
        "is_active": active not in FALSE,
        "tiers": _list(row.cells.get("tiers", "")),
        "partner_types": types,
        "join_sources": _keyed(row, JoinSource, "join_sources", "join source"),
        "partners": _keyed(row, Partner, "partners", "partner"),
    }


def import_commission_plans(importer: Importer, file: str) -> None:
    plans: dict[str, _Plan] = {}
    for row in importer.rows(file):
        row.key = row.text("plan", required=True, max_length=100)
        rule = _rule(row)
        plan = plans.get(row.key)
        if plan is None:
            values = _plan_values(importer, row)
            plan = plans[row.key] = _Plan(row.key, row.line, row.cells, values, ok=not row.errors)
        for column in [c for c in PLAN_COLUMNS if row.cells.get(c, "") != plan.cells.get(c, "")]:
            row.error(column, f"differs from plan '{row.key}' on line {plan.line}")
        if row.errors:
            plan.ok = False
            importer.refuse(row, None)
            continue
        plan.rules.append((row, rule))
    summary: FileSummary = importer.result.files[file]
    for plan in plans.values():
        if plan.ok and plan.rules:
            _write(importer, file, plan, summary)


def _write(importer: Importer, file: str, source: _Plan, summary: FileSummary) -> None:
    first_row = source.rules[0][0]
    values = dict(source.values)
    join_sources, partners = values.pop("join_sources"), values.pop("partners")
    plan = CommissionPlan.objects.filter(key=source.key).first() or CommissionPlan(key=source.key)
    created = plan.pk is None
    for name, value in values.items():
        setattr(plan, name, value)
    rules = list(plan.rules.all()) if plan.pk else []
    by_key = {r.key: r for r in rules if r.key}
    items: list[dict[str, Any]] = [{"id": r.pk, "kind": r.kind, "rate": r.rate, "amount": r.amount,
                                    "cap": r.cap} for r in rules]  # fmt: skip
    for row, rule in source.rules:
        other = CommissionRule.objects.filter(key=rule["key"]).exclude(plan=plan.pk).first()
        if other is not None:
            row.error("rule", f"rule '{rule['key']}' belongs to another plan ({other.plan})")
            importer.refuse(row, None)
            continue
        existing = by_key.get(rule["key"])
        fields = {k: rule[k] for k in ("kind", "rate", "amount", "cap")}
        if existing is None:
            items.append({**fields, "key": rule["key"]})
        else:
            items = [({"id": existing.pk, **fields} if i.get("id") == existing.pk else i) for i in items]
    if any(row.errors for row, _ in source.rules):
        return
    try:
        with transaction.atomic():
            plan_save(plan=plan, join_sources=join_sources, partners=partners, rules=items)
    except ValidationError as exc:
        for column, messages in exc.message_dict.items():
            for message in messages:
                importer.error(file, first_row.line, column, message)
        return
    summary.created += len(source.rules) if created else 0
    summary.updated += 0 if created else len(source.rules)


def _int(text: str) -> int:
    from interchange.parsing import CellError

    if not text.lstrip("-").isdigit() or abs(int(text)) > 1000:
        raise CellError(f"'{text}' is not a whole number from -1000 to 1000")
    return int(text)


def _keyed(row: _Row, model: type[JoinSource] | type[Partner], column: str, label: str) -> list[Any]:
    keys = _list(row.cells.get(column, ""))
    found = {obj.key: obj for obj in model.objects.filter(key__in=keys)}
    for key in keys:
        if key not in found:
            row.error(column, f"unknown {label} '{key}'")
    return list(found.values())
