"""`python manage.py import_program DIR`: INTERCHANGE.md import, all or nothing."""

import sys
import zipfile
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from audit.services import import_record
from interchange.importer import ImportFailed, import_program
from prm.acting import Actor, Channel, acting


class Command(BaseCommand):
    help = (
        "Import a program from a folder (or .zip) of INTERCHANGE CSV files; nothing is written on any error."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("source", type=Path, help="folder holding join_sources.csv, partners.csv, ...")

    def handle(self, *args, source: Path, **options) -> None:
        progress = self.stdout.isatty() if hasattr(self.stdout, "isatty") else sys.stdout.isatty()
        if not source.exists():
            raise CommandError(f"{source}: no such folder or zip file.")
        try:
            # The import and its one audit trail entry commit together (or not at all).
            with (
                transaction.atomic(),
                acting(channel=Channel.IMPORT, actor=Actor.command("import_program")),
            ):
                if source.is_file() and zipfile.is_zipfile(source):
                    with zipfile.ZipFile(source) as archive:
                        result = import_program(archive, progress=progress)
                else:
                    result = import_program(source, progress=progress)
                if result.files:
                    import_record(
                        source=source.name, files={name: s.counts() for name, s in result.files.items()}
                    )
        except ImportFailed as failed:
            for line in failed.errors:
                self.stderr.write(line)
            raise CommandError(f"{len(failed.errors)} error(s); nothing was imported.") from None
        if not result.files:
            raise CommandError(f"{source}: no INTERCHANGE files found (join_sources.csv, partners.csv, ...).")
        for line in result.lines():
            self.stdout.write(line)
        for line in result.timing_lines():
            self.stdout.write(line)
        self.stdout.write(self.style.SUCCESS("Import complete."))
