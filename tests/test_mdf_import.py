"""mdf_budgets.csv in the program import: upserts by quarter + partner or tier, all or nothing."""

from decimal import Decimal

import pytest

from interchange.importer import ImportFailed, import_program
from mdf.models import MdfBudget
from tests.factories import PartnerFactory
from tests.support.mdf import submit

pytestmark = pytest.mark.django_db


def write(folder, text: str):
    (folder / "mdf_budgets.csv").write_text(text)
    return folder


def test_budgets_are_imported_then_updated(tmp_path):
    PartnerFactory(key="P-1", name="Alpha")
    folder = write(
        tmp_path, "quarter,amount,partner,tier,note\n2026-Q2,10000.00,P-1,,\n2026-Q2,25000,,Gold,pool\n"
    )
    result = import_program(folder)
    assert result.files["mdf_budgets.csv"].counts() == {"rows": 2, "created": 2, "updated": 0, "unchanged": 0}
    assert set(MdfBudget.objects.values_list("quarter", "partner__key", "tier", "amount")) == {
        ("2026-Q2", "P-1", "", Decimal("10000.00")),
        ("2026-Q2", None, "Gold", Decimal("25000.00")),
    }
    write(tmp_path, "quarter,amount,partner,tier,note\n2026-Q2,12000.00,P-1,,\n2026-Q2,25000.00,,Gold,pool\n")
    again = import_program(folder)
    assert again.files["mdf_budgets.csv"].counts() == {"rows": 2, "created": 0, "updated": 1, "unchanged": 1}
    assert MdfBudget.objects.get(partner__key="P-1").amount == Decimal("12000.00")


def test_bad_rows_are_listed_and_nothing_is_written(tmp_path):
    partner = PartnerFactory(key="P-1")
    from mdf import services

    services.budget_set(quarter="2026-Q2", amount=Decimal("1000.00"), partner=partner)
    submit(partner, amount="800.00")
    folder = write(
        tmp_path,
        "quarter,amount,partner,tier\n"
        "2026-Q5,100,P-1,\n"
        "2026-Q3,100,P-404,\n"
        "2026-Q3,100,P-1,Gold\n"
        "2026-Q3,-5,,Gold\n"
        "2026-Q2,799.99,P-1,\n"
        "2026-Q4,100,,Silver\n",
    )
    with pytest.raises(ImportFailed) as failed:
        import_program(folder)
    assert failed.value.errors == [
        "mdf_budgets.csv:2: quarter: '2026-Q5' is not a quarter (e.g. 2026-Q1)",
        "mdf_budgets.csv:3: partner: unknown partner 'P-404'",
        "mdf_budgets.csv:4: tier: a budget is for one partner or for one tier's pool, not both",
        "mdf_budgets.csv:5: amount: must be greater than 0",
        "mdf_budgets.csv:6: amount: 799.99 is below the 800.00 its requests and claims already hold",
    ]
    assert list(MdfBudget.objects.values_list("quarter", "amount")) == [("2026-Q2", Decimal("1000.00"))]
