"""INTERCHANGE.md import: all or nothing, every bad row listed, idempotent, same rules as the services."""

import io
import shutil
import zipfile
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from deals.models import Account, Deal, DealRegistration, Touch
from interchange.importer import ImportFailed, import_program
from kpis.models import CostEntry, Target
from partners.models import JoinSource, Partner

pytestmark = pytest.mark.django_db

DATA = Path(__file__).parent / "data"
VALID = DATA / "program_valid"
BAD = DATA / "program_bad"
MODELS = (JoinSource, Partner, Account, Deal, DealRegistration, Touch, CostEntry, Target)

# One bad row was appended to each file of program_valid to make program_bad.
BAD_FOLDER_ERRORS = [
    "join_sources.csv:5: kind: 'pigeon' is not one of: website, email, paid_ads, outreach, referral, "
    "partner_network, marketplace, event, other",
    "partners.csv:8: joined_at: a partner with status active needs joined_at (its approval date)",
    "accounts.csv:5: key: is required",
    "deals.csv:6: amount: must be greater than 0",
    "registrations.csv:5: partner: unknown partner 'p-nobody'",
    "touches.csv:7: touched_at: 'yesterday' is not an ISO 8601 datetime (e.g. 2026-03-31T17:05:00+00:00)",
    "costs.csv:5: category: 'snacks' is not one of: commission, mdf, recruitment, incentive, enablement, "
    "tooling",
    "targets.csv:6: period: '2025-13' is not a period (2026-03, 2026-Q1 or 2026)",
]


def _dump() -> dict[str, list[dict]]:
    """Every row of every imported table, ids and timestamps included."""
    return {model.__name__: list(model.objects.order_by("id").values()) for model in MODELS}


def _folder(tmp_path: Path, *, append: dict[str, str] | None = None, only: tuple[str, ...] = ()) -> Path:
    """A copy of the valid folder (or some of its files) with extra lines appended to some files."""
    folder = tmp_path / "program"
    folder.mkdir()
    for source in VALID.iterdir():
        if not only or source.name in only:
            shutil.copy(source, folder / source.name)
    for name, text in (append or {}).items():
        with (folder / name).open("a", encoding="utf-8") as stream:
            stream.write(text if text.endswith("\n") else text + "\n")
    return folder


def _errors(folder: Path | zipfile.ZipFile) -> list[str]:
    with pytest.raises(ImportFailed) as failed:
        import_program(folder)
    return failed.value.errors


def test_a_folder_with_one_bad_row_in_each_file_is_refused_with_every_error_listed():
    assert _errors(BAD) == BAD_FOLDER_ERRORS
    assert all(rows == [] for rows in _dump().values())


def test_the_command_prints_every_error_exits_non_zero_and_writes_nothing():
    stderr = io.StringIO()
    with pytest.raises(CommandError, match="8 error"):
        call_command("import_program", str(BAD), stderr=stderr, stdout=io.StringIO())
    assert stderr.getvalue().splitlines() == BAD_FOLDER_ERRORS
    assert Partner.objects.count() == 0 and Deal.objects.count() == 0


def test_a_refused_import_leaves_an_earlier_import_untouched():
    import_program(VALID)
    before = _dump()
    _errors(BAD)
    assert _dump() == before


def test_importing_a_valid_folder_twice_leaves_identical_rows():
    first = import_program(VALID)
    assert first.files["deals.csv"].created == 4
    dump = _dump()
    second = import_program(VALID)
    assert _dump() == dump
    assert {name: (s.created, s.updated) for name, s in second.files.items()} == {
        name: (0, 0) for name in first.files
    }
    assert second.files["touches.csv"].unchanged == 5


def test_a_file_with_a_changed_key_and_a_new_key_updates_one_and_creates_the_other(tmp_path):
    import_program(VALID)
    deals = (
        (VALID / "deals.csv")
        .read_text(encoding="utf-8")
        .replace("Globex expansion,4800.5", "Globex expansion,4900")
    )
    folder = _folder(tmp_path, only=("deals.csv",))
    (folder / "deals.csv").write_text(
        deals + "d-9,a-acme,Acme renewal,700.00,2025-04-01T09:00:00+00:00,,open,\n", encoding="utf-8"
    )
    result = import_program(folder)
    summary = result.files["deals.csv"]
    assert (summary.created, summary.updated, summary.unchanged) == (1, 1, 3)
    assert Deal.objects.get(key="d-2").amount == Decimal("4900.00")
    assert Deal.objects.get(key="d-9").amount == Decimal("700.00")
    assert Deal.objects.count() == 5


def test_imported_values_are_parsed_and_linked_by_key():
    import_program(VALID)
    zeta = Partner.objects.get(key="p-zeta")
    # 2025-01-03T23:30-05:00 is 2025-01-04 in the program time zone (UTC).
    assert zeta.joined_at == date(2025, 1, 4)
    assert zeta.status == "churned" and zeta.tier == "platinum"
    # p-blue names a referrer that comes later in the file.
    assert Partner.objects.get(key="p-blue").referred_by.key == "p-gamma"
    assert Partner.objects.get(key="p-gamma").referred_by.key == "p-north"
    assert Account.objects.get(key="a-acme").domain == "acme.com"
    expansion = Deal.objects.get(key="d-2")
    assert expansion.amount == Decimal("4800.50")
    assert expansion.created_at == datetime(2025, 2, 20, 9, tzinfo=UTC)
    assert expansion.sourcing_partner is None and expansion.closed_at is None
    # A bare date in a datetime column is the start of that day in the program time zone.
    assert Deal.objects.get(key="d-4").created_at == datetime(2025, 4, 1, tzinfo=UTC)
    assert Deal.objects.get(key="d-1").sourcing_partner.key == "p-north"
    claim = DealRegistration.objects.get(key="r-1")
    assert claim.deal.key == "d-1"
    assert claim.protection_expires_at == claim.submitted_at + timedelta(days=90)
    quarter = Target.objects.get(metric="sourced_revenue", period="2025-Q1")
    assert (quarter.grain, quarter.period_start, quarter.value) == (
        "quarter",
        date(2025, 1, 1),
        Decimal("20000"),
    )
    assert Target.objects.get(period="2025-03").partner.key == "p-north"
    assert Target.objects.get(metric="applications").join_source.key == "js-web"
    assert CostEntry.objects.get(category="mdf").join_source.key == "js-event"


def test_touches_are_created_in_row_order():
    import_program(VALID)
    rows = list(Touch.objects.order_by("id").values_list("deal__key", "partner__key", "kind"))
    assert rows == [
        ("d-4", "p-blue", "introduction"),
        ("d-4", "p-gamma", "co_sell"),
        ("d-4", "p-blue", "technical"),
        ("d-3", "p-gamma", "technical"),
        ("d-4", "p-gamma", "other"),
    ]


@pytest.mark.parametrize(
    ("row", "error"),
    [
        (
            "d-9,a-acme,,0.00,2025-02-01T09:00:00+00:00,,open,",
            "deals.csv:6: amount: must be greater than 0",
        ),
        (
            "d-9,a-acme,,-12.50,2025-02-01T09:00:00+00:00,,open,",
            "deals.csv:6: amount: must be greater than 0",
        ),
        (
            "d-9,a-acme,,100.00,2025-02-01T09:00:00+00:00,2025-01-31T09:00:00+00:00,lost,",
            "deals.csv:6: closed_at: closed_at is before created_at",
        ),
        (
            "d-9,a-acme,,100.00,2025-02-01T09:00:00+00:00,,won,",
            "deals.csv:6: closed_at: a won deal needs closed_at",
        ),
    ],
    ids=["zero amount", "negative amount", "closed before created", "won without closed_at"],
)
def test_deals_breaking_a_data_quality_rule_are_refused_with_a_clear_message(tmp_path, row, error):
    assert _errors(_folder(tmp_path, append={"deals.csv": row})) == [error]
    assert Deal.objects.count() == 0


def test_every_problem_of_a_row_is_reported_and_later_rows_are_still_checked(tmp_path):
    folder = _folder(
        tmp_path,
        append={
            "deals.csv": "d-9,a-nowhere,,12.345,31/01/2025,,maybe,p-delta\n"
            "d-10,a-acme,,5,2025-01-01,,open,p-eps"
        },
    )
    assert _errors(folder) == [
        "deals.csv:6: amount: '12.345' has more than 2 decimal places",
        "deals.csv:6: created_at: '31/01/2025' is not an ISO 8601 datetime (e.g. 2026-03-31T17:05:00+00:00)",
        "deals.csv:6: status: 'maybe' is not one of: open, won, lost",
        "deals.csv:6: account: unknown account 'a-nowhere'",
        "deals.csv:6: sourcing_partner: Delta Apps is not an approved partner (status: applied)",
        "deals.csv:7: sourcing_partner: Epsilon Digital is not an approved partner (status: rejected)",
    ]


def test_a_touch_or_registration_by_an_unapproved_or_unknown_partner_is_refused(tmp_path):
    folder = _folder(
        tmp_path,
        append={
            "touches.csv": "d-1,p-delta,co_sell,2025-02-10T10:00:00+00:00\n"
            "d-1,p-ghost,co_sell,2025-02-10T10:00:00Z",
            "registrations.csv": "r-9,p-eps,a-acme,10.00,2025-02-01T09:00:00+00:00,submitted,,",
        },
    )
    assert _errors(folder) == [
        "registrations.csv:5: partner: Epsilon Digital is not an approved partner (status: rejected)",
        "touches.csv:7: partner: Delta Apps is not an approved partner (status: applied)",
        "touches.csv:8: partner: unknown partner 'p-ghost'",
    ]


def test_partner_rows_must_match_the_lifecycle_constraints(tmp_path):
    folder = _folder(
        tmp_path,
        append={
            "partners.csv": "p-x,X,reseller,js-web,2025-03-01,2025-02-01,active,,\n"
            "p-y,Y,reseller,js-web,2025-03-01,2025-03-05,rejected,,\n"
            "p-z,Z,reseller,js-web,2025-03-01,,applied,,p-z"
        },
    )
    assert _errors(folder) == [
        "partners.csv:8: joined_at: joined_at (2025-02-01) is before applied_at (2025-03-01)",
        "partners.csv:9: joined_at: a partner with status rejected has no joined_at (it was never approved)",
        "partners.csv:10: referred_by: a partner cannot refer itself",
    ]


def test_registration_rules_are_reported_as_row_errors_not_database_errors(tmp_path):
    folder = _folder(
        tmp_path,
        append={
            "registrations.csv": "r-7,p-north,a-acme,10.00,2025-02-01T09:00:00+00:00,approved,,\n"
            "r-8,p-north,a-acme,10.00,2025-02-01T09:00:00+00:00,rejected,2025-01-01T09:00:00+00:00,\n"
            "r-9,p-north,a-acme,10.00,2025-02-01T09:00:00+00:00,approved,2025-02-02T09:00:00+00:00,d-1\n"
            "r-10,p-blue,a-globex,10.00,2025-02-01T09:00:00+00:00,submitted,,d-2"
        },
    )
    assert _errors(folder) == [
        "registrations.csv:5: decided_at: an approved registration needs decided_at",
        "registrations.csv:6: decided_at: decided_at is before submitted_at",
        "registrations.csv:7: deal: deal 'd-1' already belongs to registration 'r-1'",
        "registrations.csv:8: deal: only an approved registration has a deal (status is submitted)",
    ]


def test_a_reference_to_a_refused_row_says_where_that_row_was_refused(tmp_path):
    folder = _folder(
        tmp_path,
        append={
            "accounts.csv": "a-bad,,bad.example",
            "deals.csv": "d-9,a-bad,,10.00,2025-02-01T09:00:00+00:00,,open,",
        },
    )
    assert _errors(folder) == [
        "accounts.csv:5: name: is required",
        "deals.csv:6: account: account 'a-bad' was refused (accounts.csv:5)",
    ]


def test_a_key_that_appears_twice_in_an_import_is_refused(tmp_path):
    folder = _folder(tmp_path, append={"accounts.csv": "a-acme,Acme again,acme.org"})
    assert _errors(folder) == ["accounts.csv:5: key: 'a-acme' appears twice (first on line 2)"]


def test_targets_are_checked_against_the_metric_catalogue_and_their_scope(tmp_path):
    folder = _folder(
        tmp_path,
        append={
            "targets.csv": "happiness,2025,1,,\n"
            "won_revenue,2025-Q2,1,p-north,\n"
            "sourced_revenue,2025-Q2,1,p-north,js-web\n"
            "won_revenue,2025,7,,"
        },
    )
    errors = _errors(folder)
    assert errors[0].startswith(
        "targets.csv:6: metric: 'happiness' is not one of: won_revenue, sourced_revenue"
    )
    assert errors[1:] == [
        "targets.csv:7: partner: won_revenue has no per-partner value",
        "targets.csv:8: join_source: a target names a partner or a join source, not both",
        "targets.csv:9: period: a target for this metric, period and scope appears twice (first on line 3)",
    ]


def test_a_missing_required_column_is_reported_on_the_header_line(tmp_path):
    folder = _folder(tmp_path, only=("join_sources.csv",))
    (folder / "join_sources.csv").write_text("key,name\njs-web,Website\n", encoding="utf-8")
    assert _errors(folder) == ["join_sources.csv:1: kind: required column is missing from the header"]


def test_line_numbers_are_physical_lines_even_after_a_quoted_line_break(tmp_path):
    folder = _folder(tmp_path, only=("join_sources.csv",))
    (folder / "join_sources.csv").write_text(
        'key,name,kind\njs-a,"Two\nlines",website\n\njs-b,Bad,nope\n', encoding="utf-8"
    )
    assert _errors(folder) == [
        "join_sources.csv:5: kind: 'nope' is not one of: website, email, paid_ads, outreach, referral, "
        "partner_network, marketplace, event, other"
    ]


def test_a_later_import_may_reference_rows_of_an_earlier_one(tmp_path):
    import_program(_folder(tmp_path, only=("join_sources.csv", "partners.csv", "accounts.csv")))
    later = tmp_path / "later"
    later.mkdir()
    (later / "deals.csv").write_text(
        "key,account,amount,created_at,status,sourcing_partner\n"
        "d-77,a-globex,99.99,2025-05-01T10:00:00+02:00,open,p-gamma\n",
        encoding="utf-8",
    )
    import_program(later)
    deal = Deal.objects.get(key="d-77")
    assert (deal.account.key, deal.sourcing_partner.key, deal.amount) == (
        "a-globex",
        "p-gamma",
        Decimal("99.99"),
    )


def test_a_changed_row_is_updated_in_place_and_only_it_gets_a_new_updated_at(tmp_path):
    import_program(VALID)
    before = {d["key"]: d for d in Deal.objects.values()}
    folder = _folder(tmp_path, only=("deals.csv",))
    text = (folder / "deals.csv").read_text(encoding="utf-8").replace("4800.5,", "5100.00,")
    (folder / "deals.csv").write_text(text, encoding="utf-8")
    result = import_program(folder)
    assert (result.files["deals.csv"].updated, result.files["deals.csv"].unchanged) == (1, 3)
    after = {d["key"]: d for d in Deal.objects.values()}
    assert after["d-2"]["amount"] == Decimal("5100.00") and after["d-2"]["id"] == before["d-2"]["id"]
    assert after["d-2"]["updated_at"] > before["d-2"]["updated_at"]
    assert {k: after[k] for k in ("d-1", "d-3", "d-4")} == {k: before[k] for k in ("d-1", "d-3", "d-4")}


def test_a_zip_archive_imports_like_the_folder(tmp_path):
    archive_path = tmp_path / "program.zip"
    with zipfile.ZipFile(archive_path, "w") as archive:
        for source in VALID.iterdir():
            archive.write(source, f"export/{source.name}")
    with zipfile.ZipFile(archive_path) as archive:
        result = import_program(archive)
    assert result.files["partners.csv"].created == 6
    assert Touch.objects.count() == 5 and Target.objects.count() == 4


def test_the_command_reports_what_it_imported():
    stdout = io.StringIO()
    call_command("import_program", str(VALID), stdout=stdout)
    assert "deals.csv: 4 rows, 4 created, 0 updated, 0 unchanged" in stdout.getvalue().splitlines()


def test_identical_cost_rows_are_one_cost_and_a_different_note_makes_another(tmp_path):
    folder = _folder(
        tmp_path,
        only=("join_sources.csv", "partners.csv", "costs.csv"),
        append={
            "costs.csv": "2025-03-31,1250.00,commission,p-north,,Q1 payout\n"
            "2025-03-31,1250,commission,p-north,,"
        },
    )
    result = import_program(folder)
    assert (result.files["costs.csv"].created, result.files["costs.csv"].unchanged) == (4, 1)
    assert CostEntry.objects.filter(partner__key="p-north", amount=Decimal("1250")).count() == 2


def test_a_folder_that_does_not_exist_is_a_clear_command_error(tmp_path):
    with pytest.raises(CommandError, match="no such folder"):
        call_command("import_program", str(tmp_path / "nowhere"), stdout=io.StringIO(), stderr=io.StringIO())


def test_bad_rows_near_the_end_of_a_large_file_are_reported_at_their_lines_and_nothing_is_written(tmp_path):
    """Beyond any batch or COPY buffer: the rows are staged in bulk, and both a row's own problem and
    one found by a set-based check (an unknown account) name their physical line."""
    rows = 12_000
    folder = tmp_path / "large"
    folder.mkdir()
    with (folder / "accounts.csv").open("w", encoding="utf-8") as accounts:
        accounts.write("key,name,domain\n")
        accounts.writelines(f"a-{n},Account {n},a{n}.example\n" for n in range(rows))
    with (folder / "deals.csv").open("w", encoding="utf-8") as deals:
        deals.write("key,account,amount,created_at,status\n")
        for n in range(rows):
            amount = "0.00" if n == rows - 3 else "125.50"
            account = "a-missing" if n == rows - 1 else f"a-{n}"
            deals.write(f"d-{n},{account},{amount},2025-03-01T10:00:00+00:00,open\n")
    assert _errors(folder) == [
        f"deals.csv:{rows - 1}: amount: must be greater than 0",
        f"deals.csv:{rows + 1}: account: unknown account 'a-missing'",
    ]
    assert Account.objects.count() == 0 and Deal.objects.count() == 0
