"""The families' declarations (kpis.engine.families): every component declared once, and, per
declared family, the edits of `_mutate` / `_mutate_more` change that family's rows, and the
incremental run after them publishes exactly what a full run from scratch publishes (patched cells;
chunked on PostgreSQL). A family added to the declaration is covered here without touching this
file, and fails it if the edits never change its rows."""

import contextlib
import random
from collections.abc import Callable

import pytest
from django.db import connection

from kpis.engine import components, families
from kpis.engine.incremental import delta_facts
from kpis.engine.tables import COMPONENTS, DELTA_TABLES, MEDIAN_COMPONENTS
from tests.kpi_hooks import on_statement, statements
from tests.support import kpis as t
from tests.test_kpi_delta import _mutate_more, reconciliation_items
from tests.test_kpi_incremental import (
    _mutate,
    demo_program,  # noqa: F401 - fixture
    full_recompute_set,
    incremental,
)
from tests.test_kpi_runs import published

FAMILIES = {family.name: family for family in families.FAMILIES}


def test_the_families_declare_every_component_and_name_what_the_engine_builds():
    assert families.declared_components() == sorted(COMPONENTS)
    medians = {
        c for f in families.FAMILIES for a in f.aggregates if a.shape == "medians" for c in a.components
    }
    assert medians == set(MEDIAN_COMPONENTS)
    for family in families.FAMILIES:
        assert (family.key is None) == (family.keys is None), family.name
        assert family.keys is None or family.keys in delta_facts.AFFECTED_KEYS, family.name
        assert f"kx_before_{families.family_index(family.name)}" in DELTA_TABLES
        if family.key is not None:
            assert f"kx_signed_{family.name}" in DELTA_TABLES
        for aggregate in family.aggregates:
            assert aggregate.shape == "medians" or aggregate.shape in components.SHAPES, family.name
            assert aggregate.expand in components.EXPANDERS, family.name
            assert (aggregate.full is None) == (aggregate.shape == "medians"), family.name
    assert len(FAMILIES) == len(families.FAMILIES), "family names are unique"


def _names(family: families.Family) -> str:
    return families.Contribution(family.columns, "", family.months).names()


def _count(sql: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute(sql)
        return cursor.fetchone()[0]


def _changed_rows(family: families.Family) -> tuple[str, Callable[[], int]]:
    """(the statement after which to count, the count of the family's rows that differ from the
    previous run's) for a run that patches cells."""
    names = _names(family)
    if family.key is not None:
        # Patched cells read the family's affected rows now (+1) and before (-1): net of those
        # that cancel, the rows that changed.
        return rf"^CREATE TEMP TABLE kx_signed_{family.name} ", lambda: _count(
            f"SELECT COUNT(*) FROM (SELECT {names} FROM kx_signed_{family.name} "
            f"GROUP BY {names} HAVING SUM(sign) <> 0) x"
        )
    # A family compared whole: its rows before (kx_before_<i>) against the patched facts'.
    before = f"kx_before_{families.family_index(family.name)}"
    now = f"SELECT {family.columns} FROM {family.rows(None, families.plain, None)} WHERE {family.where}"
    differ = families.multiset_difference(names, now, f"SELECT {names} FROM {before}")
    return r"^CREATE TEMP TABLE kx_pubcell ", lambda: _count(f"SELECT COUNT(*) FROM ({differ}) x")


def _assert_the_edits_change_every_family_and_equal_a_full_run() -> None:
    """One incremental run after the edits: each declared family's rows must have changed (counted
    by its own hook), and the published set must equal a full run's. One run for all families keeps
    the suite's time flat as families are added."""
    rng = random.Random(20261204)
    first = t.recompute(as_of="2026-08-20")
    assert first.status == "succeeded", first.error
    _mutate(rng, 1)
    _mutate_more(rng, 1)
    changed: dict[str, list[int]] = {name: [] for name in FAMILIES}
    with contextlib.ExitStack() as hooks:
        for family in families.FAMILIES:
            pattern, count = _changed_rows(family)
            record = changed[family.name].append
            hooks.enter_context(on_statement(pattern, lambda _, c=count, r=record: r(c()), after=True))
        patching = hooks.enter_context(statements(r"^CREATE TEMP TABLE kx_dmed "))
        run = incremental(as_of="2026-09-02")
    assert run.changed_rows and len(patching) == 1, "the run patched its facts and cells"
    unchanged = sorted(name for name, counts in changed.items() if not counts or counts[0] <= 0)
    assert not unchanged, f"no edit changes the rows of {unchanged}: extend the edits"
    after, items = published(), reconciliation_items()
    assert full_recompute_set(as_of="2026-09-02") == after
    assert reconciliation_items() == items


@pytest.mark.django_db
def test_a_change_of_every_family_patched_equals_a_full_run(demo_program):  # noqa: F811
    _assert_the_edits_change_every_family_and_equal_a_full_run()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_change_of_every_family_chunked_equals_a_full_run(settings, demo_program):  # noqa: F811
    settings.KPI_CHUNKS = 2
    _assert_the_edits_change_every_family_and_equal_a_full_run()
