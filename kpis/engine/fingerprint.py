"""The source fingerprint: a digest of everything the KPIs depend on, so an incremental run with an
empty change log can tell an unchanged program and publish nothing (kpis.run_execution).

`alongside` computes it on another session, in a snapshot taken before the run reads any fact.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from datetime import date

from django.db import connection, transaction
from django.db.models import Count, Max

from deals.models import Deal, DealRegistration, Touch
from kpis.engine.context import EngineSettings
from kpis.engine.session import SessionThread
from kpis.models import CostEntry, CostEntryLink, Target
from partners.models import JoinSource, Partner
from program.models import ProgramSettings


def source_fingerprint(*, as_of: date, program: ProgramSettings | None = None) -> str:
    """A digest of everything the KPIs depend on: per-table row counts, newest id and latest change.

    The newest id moves with every insert (a sequence), even when a row is deleted and another
    added and the clocks that stamp `updated_at` disagree; `updated_at` moves with every edit.
    """
    parts = [f"as_of={as_of}"]
    program = program or ProgramSettings.load()
    parts.append(f"settings={program.updated_at.isoformat()}:{EngineSettings.from_program(program)!r}")
    for model in (Deal, DealRegistration, CostEntry, Target, Partner, Touch):
        agg = model.objects.aggregate(n=Count("pk"), newest=Max("pk"), last=Max("updated_at"))
        parts.append(f"{model._meta.label}={agg['n']}:{agg['newest']}:{agg['last']}")
    # Cost entry links have no updated_at: their count and newest id (MDF return reads them).
    links = CostEntryLink.objects.aggregate(n=Count("pk"), newest=Max("pk"))
    parts.append(f"{CostEntryLink._meta.label}={links['n']}:{links['newest']}")
    # Join sources have no updated_at; their keys label published rows, so a rename must count.
    parts.append(f"join_sources={list(JoinSource.objects.order_by('pk').values_list('pk', 'key'))}")
    return hashlib.sha256("|".join(parts).encode()).hexdigest() + ":" + ";".join(parts)[:900]


def alongside(*, as_of: date, program: ProgramSettings) -> Callable[[], str]:
    """Start computing the source fingerprint; the returned function waits for it and returns it.

    On PostgreSQL outside a transaction it is computed on another session, in a snapshot taken
    before this function returns, so before the caller reads any fact: the facts hold at least
    what it describes (a change committed in between makes the next fingerprint differ). Elsewhere,
    here and now.
    """
    if connection.vendor != "postgresql" or connection.in_atomic_block:
        fingerprint = source_fingerprint(as_of=as_of, program=program)
        return lambda: fingerprint
    found: dict[str, str] = {}
    snapshot_taken = threading.Event()

    def compute() -> None:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            cursor.execute("SELECT 1")  # takes the transaction's snapshot
            snapshot_taken.set()
            found["fingerprint"] = source_fingerprint(as_of=as_of, program=program)

    worker = SessionThread(compute, name="kpi-fingerprint", on_exit=snapshot_taken.set)
    snapshot_taken.wait()

    def finish() -> str:
        worker.finish()
        return found["fingerprint"]

    return finish
