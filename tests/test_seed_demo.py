"""seed_demo: a deterministic, realistic program that obeys every rule, the demo logins, and --out."""

import io
from pathlib import Path

import pytest
from django.contrib.auth import authenticate
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import transaction
from django.db.models import F
from django.test import RequestFactory

from deals.models import Account, Deal, DealRegistration, Touch
from interchange.demo import DemoSize
from interchange.importer import import_program
from interchange.seeding import seed_to_folder
from kpis.models import CostEntry, Target
from partners.models import JoinSource, Partner, PartnerUser
from partners.roles import StaffRole

pytestmark = pytest.mark.django_db

SMALL = {"partners": 20, "deals": 200}


def _program() -> dict[str, list[tuple]]:
    """The program as INTERCHANGE sees it: every file's columns, references by key."""
    return {
        "join_sources": sorted(JoinSource.objects.values_list("key", "name", "kind")),
        "partners": sorted(
            Partner.objects.values_list(
                "key",
                "name",
                "type",
                "join_source__key",
                "applied_at",
                "joined_at",
                "status",
                "tier",
                "referred_by__key",
            )
        ),
        "accounts": sorted(Account.objects.values_list("key", "name", "domain")),
        "deals": sorted(
            Deal.objects.values_list(
                "key",
                "account__key",
                "name",
                "amount",
                "created_at",
                "closed_at",
                "status",
                "sourcing_partner__key",
            )
        ),
        "registrations": sorted(
            DealRegistration.objects.values_list(
                "key",
                "partner__key",
                "account__key",
                "amount",
                "submitted_at",
                "status",
                "decided_at",
                "deal__key",
                "protection_expires_at",
            )
        ),
        # Creation order matters for attribution ties, so touches are compared in id order.
        "touches": list(
            Touch.objects.order_by("id").values_list("deal__key", "partner__key", "kind", "touched_at")
        ),
        # Recorded costs only: the folder carries no payouts or MDF claims, so no costs booked by paying them.
        "costs": sorted(
            CostEntry.objects.filter(source=CostEntry.Source.RECORDED).values_list(
                "date", "amount", "category", "partner__key", "join_source__key", "note"
            ),
            key=repr,
        ),
        "targets": sorted(
            Target.objects.values_list(
                "metric", "grain", "period", "period_start", "value", "partner__key", "join_source__key"
            ),
            key=repr,
        ),
    }


def _delete_program() -> None:
    from economics.models import CommissionEntry, CommissionPlan, Payout, PayoutBatch, PayoutLine
    from mdf.models import MdfBudget, MdfClaim, MdfProofFile, MdfRequest

    # The demo's payouts, ledger and MDF rows first: they protect their partners and deals.
    for model in (
        PayoutLine,
        Payout,
        PayoutBatch,
        CommissionEntry,
        CommissionPlan,
        MdfProofFile,
        MdfClaim,
        MdfRequest,
        MdfBudget,
        Touch,
        DealRegistration,
        Deal,
        Account,
        CostEntry,
        Target,
        Partner,
        JoinSource,
    ):
        model.objects.all().delete()


@pytest.fixture(scope="class")
def demo_db(django_db_setup, django_db_blocker):
    """The default demo program, seeded once for the read-only checks below."""
    # Seeded inside a transaction that is rolled back afterwards: deleting the program row by row
    # (every delete an audit entry) took over a minute on PostgreSQL. Each test's own transaction
    # nests in this one as a savepoint.
    with django_db_blocker.unblock(), transaction.atomic():
        call_command("seed_demo", stdout=io.StringIO())
        yield
        transaction.set_rollback(True)


@pytest.mark.usefixtures("demo_db")
class TestDefaultDemoProgram:
    def test_partners_cover_every_join_source_kind_type_tier_and_status(self):
        assert set(Partner.objects.values_list("join_source__kind", flat=True)) == set(JoinSource.Kind.values)
        assert set(Partner.objects.values_list("type", flat=True)) == set(Partner.Type.values)
        assert set(Partner.objects.values_list("status", flat=True)) == set(Partner.Status.values)
        joined_tiers = set(Partner.objects.filter(joined_at__isnull=False).values_list("tier", flat=True))
        assert joined_tiers == {"registered", "silver", "gold", "platinum"}
        assert 250 <= Partner.objects.count() <= 350

    def test_referral_partners_name_a_referrer_that_joined_before_they_applied(self):
        referred = Partner.objects.filter(referred_by__isnull=False)
        assert referred.count() >= 10
        assert not referred.filter(referred_by__joined_at__gt=F("applied_at")).exists()
        assert not Partner.objects.filter(joined_at__isnull=False, manager__isnull=True).exists()

    def test_the_newest_pending_applicants_have_what_they_told_us_at_apply(self):
        from partners.models import Application

        applications = Application.objects.select_related("partner")
        assert applications.count() == 6
        assert {a.partner.status for a in applications} == {"applied"}
        newest_pending = Partner.objects.filter(status="applied").order_by("-applied_at", "-pk")[:6]
        assert {a.partner_id for a in applications} == {p.pk for p in newest_pending}
        assert all(a.contact_email.startswith("partners@") and a.pitch for a in applications)

    def test_activity_comes_only_from_approved_partners(self):
        assert not Touch.objects.filter(partner__joined_at__isnull=True).exists()
        assert not DealRegistration.objects.filter(partner__joined_at__isnull=True).exists()
        assert not Deal.objects.filter(
            sourcing_partner__isnull=False, sourcing_partner__joined_at__isnull=True
        ).exists()

    def test_deals_registrations_and_touches_tell_a_story(self):
        assert Deal.objects.count() == 4000
        assert {"open", "won", "lost"} <= set(Deal.objects.values_list("status", flat=True))
        assert set(DealRegistration.objects.values_list("status", flat=True)) == set(
            DealRegistration.Status.values
        )
        assert DealRegistration.objects.filter(conflict_with__isnull=False).count() >= 5
        # Every sourced deal came from its partner's approved registration.
        sourced = Deal.objects.filter(sourcing_partner__isnull=False)
        assert sourced.count() == sourced.filter(registration__partner=F("sourcing_partner")).count() > 500
        late = Touch.objects.filter(deal__closed_at__isnull=False, touched_at__gt=F("deal__closed_at"))
        assert 1 <= late.count() <= 100
        sourced_before_joining = sourced.filter(created_at__date__lt=F("sourcing_partner__joined_at"))
        assert 1 <= sourced_before_joining.count() <= 10
        assert Touch.objects.count() > Deal.objects.count()
        assert not Account.objects.exclude(domain="").filter(domain__contains="www.").exists()

    def test_costs_span_every_category_some_tagged_by_partner_or_join_source(self):
        assert set(CostEntry.objects.values_list("category", flat=True)) == set(CostEntry.Category.values)
        assert CostEntry.objects.filter(partner__isnull=False).exists()
        assert CostEntry.objects.filter(join_source__isnull=False).exists()
        assert Target.objects.filter(partner__isnull=True, join_source__isnull=True).count() >= 10

    def test_the_demo_logins_work_with_their_roles(self):
        # The login lockout (django-axes) needs the request a login comes with.
        request = RequestFactory().post("/login/")
        manager = authenticate(request, username="manager", password="demo-manager-pass")
        salesops = authenticate(request, username="salesops", password="demo-salesops-pass")
        partner = authenticate(request, username="partner", password="demo-partner-pass")
        admin = authenticate(request, username="admin", password="demo-admin-pass")
        assert manager.groups.filter(name=StaffRole.PARTNER_MANAGER.value).exists()
        assert salesops.groups.filter(name=StaffRole.SALES_OPS.value).exists()
        assert admin.is_superuser
        membership = PartnerUser.objects.get(user=partner)
        assert membership.role == PartnerUser.Role.ADMIN and membership.partner.status == "active"
        assert membership.partner.sourced_deals.exists()

    def test_demo_logins_prints_the_url_and_the_logins(self):
        stdout = io.StringIO()
        call_command("demo_logins", stdout=stdout)
        text = stdout.getvalue()
        assert "http://127.0.0.1:8000" in text
        for login in (
            "manager / demo-manager-pass",
            "salesops / demo-salesops-pass",
            "partner / demo-partner-pass",
        ):
            assert login in text

    def test_if_empty_does_nothing_when_partners_exist(self):
        before = Deal.objects.count()
        stdout = io.StringIO()
        call_command("seed_demo", "--if-empty", stdout=stdout)
        assert "did nothing" in stdout.getvalue()
        assert Deal.objects.count() == before
        with pytest.raises(CommandError, match="already has"):
            call_command("seed_demo", stdout=io.StringIO())


def test_demo_logins_without_a_seed_says_how_to_get_them():
    stdout = io.StringIO()
    call_command("demo_logins", stdout=stdout)
    assert "seed_demo" in stdout.getvalue()


def test_the_same_seed_writes_the_same_program_and_another_seed_does_not(tmp_path):
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        seed_to_folder(DemoSize(seed=seed, **SMALL), tmp_path / name)

    def read(name: str) -> dict[str, str]:
        return {p.name: p.read_text(encoding="utf-8") for p in sorted((tmp_path / name).iterdir())}

    assert read("a") == read("b")
    assert read("a")["deals.csv"] != read("c")["deals.csv"]
    assert set(read("a")) == {
        "join_sources.csv",
        "partners.csv",
        "accounts.csv",
        "deals.csv",
        "registrations.csv",
        "touches.csv",
        "costs.csv",
        "targets.csv",
    }


def test_importing_the_out_folder_into_an_empty_database_reproduces_the_seeded_program(tmp_path: Path):
    call_command("seed_demo", "--partners", "20", "--deals", "200", "--seed", "11", stdout=io.StringIO())
    seeded = _program()
    assert len(seeded["deals"]) == 200 and len(seeded["partners"]) == 20 and seeded["touches"]
    _delete_program()
    call_command(
        "seed_demo",
        "--partners",
        "20",
        "--deals",
        "200",
        "--seed",
        "11",
        "--out",
        str(tmp_path),
        stdout=io.StringIO(),
    )
    import_program(tmp_path)
    assert _program() == seeded


def test_out_needs_no_migrated_database(tmp_path: Path):
    """A fresh checkout: `seed_demo --out` on a database file that does not exist yet (issue 22)."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'empty.sqlite3'}"}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    done = subprocess.run(
        [
            sys.executable,
            "manage.py",
            "seed_demo",
            "--partners",
            "5",
            "--deals",
            "20",
            "--out",
            str(tmp_path / "out"),
        ],
        cwd=Path(__file__).resolve().parent.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "Wrote the demo program" in done.stdout
    assert (tmp_path / "out" / "deals.csv").read_text(encoding="utf-8").count("\n") == 21
