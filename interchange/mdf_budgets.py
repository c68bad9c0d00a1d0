"""`mdf_budgets.csv`: MDF budgets per quarter, for a partner (by key) or a tier's pool (docs/mdf.md,
docs/interchange.md).

Columns: quarter, amount, [partner], [tier], [note]; identity: quarter + partner, or quarter + tier
(the amount and note of an existing budget are updated). A file of budgets is small (a row per
partner or tier and quarter), so each row is written through `mdf.services.budget_set`, the service
the dashboard and the API use: the same checks and messages, including "never below what the budget
already holds". Like every file, all or nothing: a refused row rolls the whole import back.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import TYPE_CHECKING

from django.core.exceptions import ValidationError

from interchange.import_files import FileHandlers
from interchange.parsing import parse_money
from mdf.models import MdfBudget
from mdf.quarters import parse_quarter
from mdf.services import budget_set
from partners.models import Partner
from program.validation import amount_errors

if TYPE_CHECKING:
    from interchange.importer import FileSummary, _Row

FILE = "mdf_budgets.csv"
COLUMNS = (("quarter", "amount"), ("partner", "tier", "note"))


class MdfBudgetFile(FileHandlers):
    """Adds the MDF budgets file to the import's handlers (read last, after partners.csv)."""

    def handlers(self) -> dict[str, Callable[[str], None]]:
        return {**super().handlers(), FILE: self._mdf_budgets}

    def _mdf_budgets(self, file: str) -> None:
        summary = self.result.files[file]
        seen: dict[tuple[str, str, str], int] = {}
        for row in self.rows(file):
            quarter_text = row.text("quarter", required=True)
            quarter = None
            if quarter_text:
                try:
                    quarter = parse_quarter(quarter_text).label
                except ValueError as exc:
                    row.error("quarter", str(exc))
            amount = row.parse("amount", parse_money, required=True)
            if amount is not None and (messages := amount_errors(amount)):
                row.add_rule_errors({"amount": messages})
            partner_key, tier = row.cells.get("partner", ""), row.text("tier", max_length=50)
            note = row.text("note", max_length=500)
            partner = None
            if partner_key and tier:
                row.error("tier", "a budget is for one partner or for one tier's pool, not both")
            elif not partner_key and not tier:
                row.error("partner", "name a partner (its key) or a tier")
            elif partner_key:
                partner = Partner.objects.filter(key=partner_key).first()
                if partner is None:
                    row.error("partner", self.unknown("partner", "partner", partner_key))
            identity = (quarter or quarter_text, partner_key, tier)
            if identity in seen:
                first = seen[identity]
                row.error(
                    "quarter",
                    f"a budget for this quarter and partner or tier appears twice (first on line {first})",
                )
            seen.setdefault(identity, row.line)
            if row.errors:
                self.refuse(row, None)
                continue
            assert quarter is not None and isinstance(amount, Decimal)
            self._write_budget(
                row, summary, quarter=quarter, amount=amount, partner=partner, tier=tier, note=note
            )

    def _write_budget(
        self,
        row: _Row,
        summary: FileSummary,
        *,
        quarter: str,
        amount: Decimal,
        partner: Partner | None,
        tier: str,
        note: str,
    ) -> None:
        existing = MdfBudget.objects.filter(
            quarter=quarter, **({"partner": partner} if partner else {"tier": tier})
        )
        before = existing.values_list("amount", "note").first()
        try:
            budget_set(quarter=quarter, amount=amount, partner=partner, tier=tier, note=note)
        except ValidationError as exc:
            for column, messages in exc.message_dict.items():
                for message in messages:
                    row.error(
                        column if column in ("quarter", "amount", "partner", "tier", "note") else "-", message
                    )
            self.refuse(row, None)
            return
        if before is None:
            summary.created += 1
        elif before == (amount, note):
            summary.unchanged += 1
        else:
            summary.updated += 1
