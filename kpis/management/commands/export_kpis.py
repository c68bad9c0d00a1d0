import csv
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from kpis.export import EXPORT_COLUMNS, export_rows
from kpis.metrics import Grain
from kpis.models import Target
from program.attribution import AttributionModel


class Command(BaseCommand):
    help = "Write the published KPI set as INTERCHANGE.md CSV (scope, scope_key, period, metric, value)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--out", required=True, help="CSV file to write ('-' for stdout)")
        parser.add_argument("--grain", choices=[g.value for g in Grain], default=Grain.MONTH.value)
        parser.add_argument(
            "--model",
            choices=[m.value for m in AttributionModel],
            default=None,
            help="attribution model; another than the program's is computed on request",
        )

    def handle(self, *args: Any, out: Any, grain: Any, model: Any, **options: Any) -> None:
        # target_metric is an optional column: present when targets exist (INTERCHANGE.md).
        columns = list(EXPORT_COLUMNS if Target.objects.exists() else EXPORT_COLUMNS[:-1])
        path = None if out == "-" else Path(out)
        if path is not None and not path.parent.exists():
            raise CommandError(f"directory {path.parent} does not exist")
        handle = self.stdout if path is None else path.open("w", newline="", encoding="utf-8")
        count = 0
        try:
            writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore", lineterminator="\r\n")
            writer.writeheader()
            for row in export_rows(grain=grain, model=model):
                writer.writerow(row)
                count += 1
        finally:
            if path is not None:
                handle.close()
        if path is not None:
            self.stdout.write(f"{count} rows written to {path}")
