from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from economics.ledger import build_ledger
from prm.acting import Actor, acting


class Command(BaseCommand):
    help = "Build the commission ledger: pending entries for won deals and approved registrations."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--deal", type=int, action="append", help="Only this deal (repeatable).")

    def handle(self, *args: Any, **options: Any) -> None:
        deal_ids = options.get("deal")
        with acting(actor=Actor.command("build_commission_ledger")):
            result = build_ledger(deal_ids=deal_ids, registration_ids=[] if deal_ids else None)
        self.stdout.write(
            f"ledger: {result.keys_changed} keys changed, {result.created} entries created, "
            f"{result.adjusted} adjusted, {result.removed} removed"
        )
