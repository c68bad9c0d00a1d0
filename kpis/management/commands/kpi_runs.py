import getpass
import socket
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from kpis.models import KpiRun
from kpis.recovery import reap, release_run


def operator() -> str:
    """Who runs this command, for the record of a run it releases."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown user"
    return f"command kpi_runs ({user}@{socket.gethostname()})"


class Command(BaseCommand):
    help = (
        "List recent KPI runs with their heartbeat and whether they are stuck; release a stuck run "
        "(--release ID: it is marked failed and a replacement is queued); run the reaper once (--reap)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--limit", type=int, default=20, help="how many runs to list (default 20)")
        parser.add_argument("--stuck", action="store_true", help="list only stuck runs")
        parser.add_argument("--release", type=int, metavar="ID", help="release this stuck run")
        parser.add_argument(
            "--force", action="store_true", help="with --release: also a run whose worker looks alive"
        )
        parser.add_argument("--no-requeue", action="store_true", help="with --release: queue no replacement")
        parser.add_argument(
            "--reap",
            action="store_true",
            dest="run_reaper",
            help="replace dead runs and send unclaimed ones again now (what the beat task does)",
        )

    def handle(
        self,
        *args: Any,
        limit: Any,
        stuck: Any,
        release: Any,
        force: Any,
        no_requeue: Any,
        run_reaper: Any,
        **options: Any,
    ) -> None:
        if release is not None:
            self._release(release, force=force, requeue=not no_requeue)
        elif run_reaper:
            self._reap()
        self._list(limit=limit, stuck_only=stuck)

    def _release(self, run_id: int, *, force: bool, requeue: bool) -> None:
        try:
            released, replacement = release_run(run_id, by=operator(), force=force, requeue=requeue)
        except ValidationError as exc:
            raise CommandError("; ".join(exc.message_dict["run"])) from exc
        self.stdout.write(f"KPI run #{released.pk} released: {released.error}")
        if replacement is not None:
            where = replacement.queue or "the default queue"
            self.stdout.write(f"KPI run #{replacement.pk} queued in its place (sent to {where})")

    def _reap(self) -> None:
        done = reap(by=operator())
        for abandoned, replacement in done.replaced:
            self.stdout.write(
                f"KPI run #{abandoned} abandoned; "
                + (f"replaced by run #{replacement}" if replacement else "not replaced (attempts used up)")
            )
        for run_id in done.resent:
            self.stdout.write(f"KPI run #{run_id} sent again")
        if not done:
            self.stdout.write("No stuck KPI run.")

    def _list(self, *, limit: int, stuck_only: bool) -> None:
        now = timezone.now()
        chosen = KpiRun.objects.stuck(now) if stuck_only else KpiRun.objects.all()
        runs = list(chosen.select_related("replaced_by").order_by("-id")[: max(limit, 1)])
        self.stdout.write(
            f"Lease {settings.KPI_RUN_LEASE_SECONDS} s, "
            f"heartbeat every {settings.KPI_RUN_HEARTBEAT_SECONDS} s, "
            f"queued runs sent again after {settings.KPI_RUN_QUEUED_RESEND_SECONDS} s."
        )
        header = (
            f"{'id':>6}  {'status':<9}  {'trigger':<8}  {'mode':<11}  {'try':>3}  {'created (UTC)':<19}  "
        )
        self.stdout.write(header + f"{'last sign of life':<17}  state")
        for run in runs:
            self.stdout.write(
                f"{run.pk:>6}  {run.status:<9}  {run.trigger:<8}  {run.mode:<11}  {run.attempt:>3}  "
                f"{run.created_at:%Y-%m-%d %H:%M:%S}  {_age(run, now):<17}  {_state(run, now)}"
            )
        if not runs:
            self.stdout.write("(no stuck run)" if stuck_only else "(no run)")


def _age(run: KpiRun, now: datetime) -> str:
    if run.status not in (KpiRun.Status.QUEUED, KpiRun.Status.RUNNING):
        return "-"
    seconds = (now - run.last_sign_of_life).total_seconds()
    return f"{seconds:.0f} s ago"


def _state(run: KpiRun, now: datetime) -> str:
    replaced = getattr(run, "replaced_by", None)
    if run.status in (KpiRun.Status.QUEUED, KpiRun.Status.RUNNING):
        if not run.is_stuck(now):
            return "alive" if run.status == KpiRun.Status.RUNNING else "waiting for a worker"
        return f"STUCK: release with --release {run.pk}"
    if run.status == KpiRun.Status.FAILED:
        text = f"ended by {run.released_by}: " if run.released_by else ""
        text += run.error.splitlines()[0][:120] if run.error else ""
        if replaced is not None and f"#{replaced.pk}" not in text:
            text += f" (replaced by #{replaced.pk})"
        return text
    return f"{run.duration_seconds:.1f} s" if run.duration_seconds is not None else ""
