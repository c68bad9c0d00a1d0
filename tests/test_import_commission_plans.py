"""commission_plans.csv through the program import (docs/interchange.md)."""

from datetime import date
from decimal import Decimal

import pytest

from economics.models import CommissionPlan
from events.models import Event
from interchange.importer import ImportFailed, import_program
from tests.factories import JoinSourceFactory, PartnerFactory

pytestmark = pytest.mark.django_db
HEADER = (
    "plan,name,effective_from,effective_to,priority,tiers,partner_types,join_sources,partners,"
    "rule,kind,rate,amount,cap\n"
)


def write(tmp_path, body: str):
    (tmp_path / "commission_plans.csv").write_text(HEADER + body)
    return tmp_path


def test_plans_and_rules_are_upserted_by_key(tmp_path):
    JoinSourceFactory(key="web")
    PartnerFactory(key="p1")
    body = (
        "gold,Gold 2026,2026-01-01,,5,gold;platinum,reseller,web,p1,gold-rev,percent_sourced,10,,5000.00\n"
        "gold,Gold 2026,2026-01-01,,5,gold;platinum,reseller,web,p1,gold-reg,fixed_registration,,25,\n"
        "all,Everyone,2026-01-01,2026-12-31,0,,,,,all-att,percent_attributed,2.5,,\n"
    )
    result = import_program(write(tmp_path, body))
    assert result.files["commission_plans.csv"].created == 3
    gold = CommissionPlan.objects.get(key="gold")
    assert (gold.name, gold.priority, gold.tiers, gold.partner_types) == (
        "Gold 2026",
        5,
        ["gold", "platinum"],
        ["reseller"],
    )
    assert [js.key for js in gold.join_sources.all()] == ["web"]
    assert [p.key for p in gold.partners.all()] == ["p1"]
    assert sorted(gold.rules.values_list("key", "kind", "rate", "amount", "cap")) == [
        ("gold-reg", "fixed_registration", None, Decimal("25.00"), None),
        ("gold-rev", "percent_sourced", Decimal("10.0000"), None, Decimal("5000.00")),
    ]
    assert CommissionPlan.objects.get(key="all").effective_to == date(2026, 12, 31)
    # Again with one rate changed: same plans and rules, one updated.
    again = import_program(write(tmp_path, body.replace("percent_sourced,10,", "percent_sourced,12,")))
    assert again.files["commission_plans.csv"].updated == 3
    assert CommissionPlan.objects.count() == 2
    assert gold.rules.get(key="gold-rev").rate == Decimal("12")
    assert Event.objects.filter(type="commission_plan.saved").count() == 4


def test_bad_rows_are_listed_and_nothing_is_written(tmp_path):
    body = (
        "a,A,2026-01-01,,0,,,,nobody,r1,percent_sourced,,,\n"
        "a,B,2026-01-01,,0,,,,nobody,r2,fixed_first_sale,,10,\n"
        "b,B,2026-02-30,,x,,,,,r3,bonus,150,,\n"
    )
    with pytest.raises(ImportFailed) as failed:
        import_program(write(tmp_path, body))
    errors = failed.value.errors
    assert "commission_plans.csv:3: name: differs from plan 'a' on line 2" in errors
    assert any(e.startswith("commission_plans.csv:4: kind:") for e in errors)
    assert any(e.startswith("commission_plans.csv:4: rate:") for e in errors)
    assert "commission_plans.csv:2: partners: unknown partner 'nobody'" in errors
    assert any(e.startswith("commission_plans.csv:2: rate: a percentage rule needs its rate") for e in errors)
    assert any(e.startswith("commission_plans.csv:4: effective_from:") for e in errors)
    assert any(e.startswith("commission_plans.csv:4: priority:") for e in errors)
    assert CommissionPlan.objects.count() == 0
