"""`python manage.py seed_demo`: a realistic, deterministic demo program and the demo logins."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from interchange.demo import DemoSize
from interchange.seed_mdf import seed_mdf
from interchange.seeding import seed_database, seed_to_folder
from partners.models import Partner


class Command(BaseCommand):
    help = (
        "Seed ~3 years of demo partner-program data ending this month, plus the demo logins "
        "(or write it as an INTERCHANGE folder with --out)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        defaults = DemoSize()
        parser.add_argument(
            "--seed", type=int, default=defaults.seed, help="random seed (same seed, same program)"
        )
        parser.add_argument("--partners", type=int, default=defaults.partners, help="partner applications")
        parser.add_argument("--deals", type=int, default=defaults.deals, help="deals")
        parser.add_argument("--if-empty", action="store_true", help="do nothing when partners already exist")
        parser.add_argument("--out", type=Path, help="write INTERCHANGE CSV files to this folder instead")

    def handle(
        self, *args, seed: int, partners: int, deals: int, if_empty: bool, out: Path | None, **options
    ):
        if partners < 1 or deals < 0:
            raise CommandError("--partners must be at least 1 and --deals at least 0.")
        size = DemoSize(partners=partners, deals=deals, seed=seed)
        progress = self._progress if self.stdout.isatty() else (lambda _: None)
        if out is not None:
            summary = seed_to_folder(size, out, progress=progress)
            self._finish_progress()
            for line in summary.lines():
                self.stdout.write(line)
            self.stdout.write(
                self.style.SUCCESS(f"Wrote the demo program to {out}/ (import it with import_program).")
            )
            return
        existing = Partner.objects.count()
        if existing:
            if if_empty:
                self.stdout.write(
                    f"The database already has {existing} partners; seed_demo --if-empty did nothing."
                )
                return
            raise CommandError(
                f"The database already has {existing} partners; seed_demo fills an empty program "
                "(use --if-empty to skip quietly, or --out DIR to write CSV files)."
            )
        summary = seed_database(size, progress=progress)
        seed_mdf()  # demo MDF budgets, requests and claims (interchange/seed_mdf.py)
        self._finish_progress()
        for line in summary.lines():
            self.stdout.write(line)
        if summary.partner_login_for:
            self.stdout.write(f"The partner login acts for {summary.partner_login_for}.")
        self.stdout.write(
            self.style.SUCCESS("Demo program ready; `python manage.py demo_logins` lists the logins.")
        )

    def _progress(self, message: str) -> None:
        self.stdout.write(f"\r  {message}…", ending="")
        self.stdout.flush()

    def _finish_progress(self) -> None:
        if self.stdout.isatty():
            self.stdout.write("")
