from datetime import date
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from kpis.models import KpiRun
from kpis.services import kpi_recompute_request, kpi_run_create, kpi_run_execute


class Command(BaseCommand):
    help = "Recompute and publish the KPI set (synchronously in-process unless --async)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--mode", choices=KpiRun.Mode.values, default=KpiRun.Mode.FULL)
        parser.add_argument("--trigger", choices=KpiRun.Trigger.values, default=KpiRun.Trigger.COMMAND)
        parser.add_argument(
            "--as-of", type=date.fromisoformat, default=None, help="YYYY-MM-DD (default today)"
        )
        parser.add_argument(
            "--async", action="store_true", dest="run_async", help="queue it for the Celery worker"
        )

    def handle(self, *args: Any, mode: Any, trigger: Any, as_of: Any, run_async: Any, **options: Any) -> None:
        try:
            if run_async:
                run = kpi_recompute_request(trigger=trigger, mode=mode, as_of=as_of)
                self.stdout.write(f"KPI run #{run.pk} {run.status} (queued for the Celery worker)")
                return
            run, created = kpi_run_create(trigger=trigger, mode=mode, as_of=as_of)
        except ValidationError as exc:
            raise CommandError(
                "; ".join(f"{k}: {', '.join(v)}" for k, v in exc.message_dict.items())
            ) from exc
        if not created:
            # A stuck run would have been replaced: this one is alive (`kpi_runs` lists it).
            seconds = (timezone.now() - run.last_sign_of_life).total_seconds()
            raise CommandError(
                f"KPI run #{run.pk} is already {run.status} (last sign of life {seconds:.0f} s ago); "
                "try again when it has finished (`manage.py kpi_runs` shows the runs)"
            )
        try:
            run = kpi_run_execute(run_id=run.pk)
        except Exception as exc:
            raise CommandError(f"KPI run #{run.pk} failed: {exc}") from exc
        self.stdout.write(
            f"KPI run #{run.pk} {run.status}: mode {run.mode}, as of {run.as_of}, "
            f"model {run.attribution_model}, "
            f"{run.periods_recomputed} periods, {run.rows_written} rows written, {run.rows_deleted} removed, "
            + (
                "facts built in full, "
                if run.changed_rows is None
                else f"facts patched with {run.changed_rows} changed rows, "
            )
            + f"{run.duration_seconds:.2f} s"
        )
