from typing import Any

from django.core.management.base import BaseCommand

from kpis.forecast_store import forecast_snapshot_compute
from kpis.selectors import latest_successful_run


class Command(BaseCommand):
    help = (
        "Compute the pipeline forecast now and store it as the latest snapshot, in-process (each KPI "
        "publication does this through its own Celery task, kpis.tasks.compute_forecast)."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        # Tied to the last publication: its task, if still queued, then finds it done.
        run = latest_successful_run()
        snapshot = forecast_snapshot_compute(run_id=run.pk if run else None, again=True)
        self.stdout.write(
            f"Forecast #{snapshot.pk} {snapshot.quarter}, as of {snapshot.as_of}: "
            f"{snapshot.rows.count()} scopes in {snapshot.duration_seconds:.2f} s"
        )
