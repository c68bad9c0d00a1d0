from typing import Any

from django.core.management.base import BaseCommand

from kpis.forecast_store import forecast_snapshot_compute


class Command(BaseCommand):
    help = (
        "Compute the pipeline forecast now and store it as the latest snapshot, in-process (a KPI "
        "publication does this through its Celery task)."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        snapshot = forecast_snapshot_compute()
        self.stdout.write(
            f"Forecast #{snapshot.pk} {snapshot.quarter}, as of {snapshot.as_of}: "
            f"{snapshot.rows.count()} scopes in {snapshot.duration_seconds:.2f} s"
        )
