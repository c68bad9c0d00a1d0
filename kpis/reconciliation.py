"""The reconciliation report the last published run stored (KPIS.md "Data quality"): its items,
counts per kind, and each item as the report shows it, with the rows it involves named."""

from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from django.db.models import Count, QuerySet

from kpis.models import ReconciliationItem
from partners.models import Partner


def reconciliation_items() -> list[dict[str, Any]]:
    """The reconciliation report stored by the last published run (all of it: see
    `iter_reconciliation_items` and `reconciliation_queryset` for lists that grow with the program)."""
    return list(iter_reconciliation_items())


def reconciliation_queryset(kind: str | None = None) -> QuerySet[ReconciliationItem]:
    """The stored items in report order (kind, id), optionally of one kind; for paginating."""
    items = ReconciliationItem.objects.order_by("kind", "id")
    return items.filter(kind=kind) if kind else items


def reconciliation_counts() -> dict[str, int]:
    """Items per kind (one grouped count)."""
    rows = ReconciliationItem.objects.values_list("kind").annotate(n=Count("id")).order_by()
    return {kind: n for kind, n in rows}


def iter_reconciliation_items(kind: str | None = None) -> Iterator[dict[str, Any]]:
    """The report item by item, read in chunks: memory stays flat however long it is."""
    for item in reconciliation_queryset(kind).iterator(chunk_size=2000):
        yield reconciliation_item(item)


def reconciliation_item(
    item: ReconciliationItem, names: Mapping[tuple[str, int], str] | None = None
) -> dict[str, Any]:
    """One stored ReconciliationItem as the report shows it: kind, description and the ids involved;
    with `names` (reconciliation_names), the description names the rows instead of numbering them."""
    ids: dict[str, int | list[int]] = {
        name: value
        for name, value in (
            ("deal", item.deal_id),
            ("partner", item.partner_id),
            ("touch", item.touch_id),
            ("account", item.account_id),
        )
        if value is not None
    }
    if item.registration_ids:
        ids["registrations"] = [int(x) for x in item.registration_ids.split(",")]
    return {
        "kind": item.kind,
        "description": _describe(item.kind, ids, item.description, names or {}),
        "ids": ids,
    }


def reconciliation_names(items: Iterable[ReconciliationItem]) -> dict[tuple[str, int], str]:
    """(kind, id) -> a readable name for the rows a page of items involves. Four queries."""
    from deals.models import Account, Deal, DealRegistration

    items = list(items)
    wanted: dict[str, set[int]] = defaultdict(set)
    for item in items:
        for kind, pk in (("partner", item.partner_id), ("deal", item.deal_id), ("account", item.account_id)):
            if pk is not None:
                wanted[kind].add(pk)
        if item.registration_ids:
            wanted["registrations"].update(int(x) for x in item.registration_ids.split(","))
    names: dict[tuple[str, int], str] = {}
    for pk, name in Partner.objects.filter(pk__in=wanted["partner"]).values_list("pk", "name"):
        names[("partner", pk)] = name
    for pk, name, account in Deal.objects.filter(pk__in=wanted["deal"]).values_list(
        "pk", "name", "account__name"
    ):
        names[("deal", pk)] = f"{name or f'#{pk}'} ({account})"
    for pk, name in Account.objects.filter(pk__in=wanted["account"]).values_list("pk", "name"):
        names[("account", pk)] = name
    registrations = DealRegistration.objects.filter(pk__in=wanted["registrations"]).values_list(
        "pk", "partner__name"
    )
    for pk, partner in registrations:
        names[("registrations", pk)] = f"#{pk} by {partner}"
    return names


def _describe(kind: str, ids: Mapping[str, object], detail: str, names: Mapping[tuple[str, int], str]) -> str:
    def named(what: str, key: str | None = None) -> str:
        pk = ids.get(what)
        found = names.get((key or what, pk)) if isinstance(pk, int) else None
        return found if found is not None else str(pk)

    if kind == "sourced_before_joined":
        return f"Deal {named('deal')} is sourced by partner {named('partner')}, which {detail}."
    if kind == "touch_after_close":
        return (
            f"Touch {ids.get('touch')} by partner {named('partner')} is dated after "
            f"deal {named('deal')} closed."
        )
    registrations = ids.get("registrations")
    regs = (
        ", ".join(names.get(("registrations", r), str(r)) for r in registrations)
        if isinstance(registrations, list)
        else ""
    )
    return f"Registrations {regs} by different partners claim account {named('account')}."
