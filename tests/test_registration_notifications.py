"""Registration events notify the right people: expiry, the once-only expiry warning, and EMAIL_URL."""

import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from deals.models import DealRegistration
from deals.services import registrations_expire, registrations_warn_expiring
from deals.tasks import warn_expiring_registrations
from notifications.models import Notification, OutboundEmail
from notifications.services import email_deliver, notify
from prm.email import email_settings
from tests.factories import AccountFactory, DealRegistrationFactory, PartnerFactory, PartnerUserFactory

DAY = timedelta(days=1)
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def partner(db):
    partner = PartnerFactory(name="Northwind")
    PartnerUserFactory(partner=partner, user__username="ana")
    return partner


def _registration(partner, *, ends_in: timedelta, status="submitted", domain="acme.com") -> DealRegistration:
    now = timezone.now()
    return DealRegistrationFactory(
        partner=partner,
        account=AccountFactory(name=domain.split(".")[0].title(), domain=domain),
        status=status,
        submitted_at=now - 10 * DAY,
        decided_at=now - 9 * DAY if status != "submitted" else None,
        protection_expires_at=now + ends_in,
    )


def test_expiry_tells_the_partner_users_of_each_expired_registration(
    partner, django_capture_on_commit_callbacks
):
    lapsed = _registration(partner, ends_in=-DAY, domain="acme.com")
    _registration(partner, ends_in=DAY, domain="live.com")
    _registration(partner, ends_in=-DAY, status="approved", domain="kept.com")
    with django_capture_on_commit_callbacks() as callbacks:
        assert registrations_expire() == 1
    assert len(callbacks) == 1
    lapsed.refresh_from_db()
    assert lapsed.status == "expired"
    note = Notification.objects.get()
    assert (note.user.username, note.kind, note.title) == (
        "ana",
        "registration_expired",
        "Deal registration expired: Acme",
    )
    assert note.link == f"/portal/registrations/{lapsed.pk}/"
    assert "so it has expired" in note.body
    assert list(OutboundEmail.objects.values_list("to", "kind")) == [
        ("ana@example.com", "registration_expired")
    ]
    assert registrations_expire() == 0
    assert Notification.objects.count() == 1


def test_a_registration_ending_within_seven_days_is_warned_once(partner, settings):
    assert settings.REGISTRATION_EXPIRY_WARNING_DAYS == 7
    soon = _registration(partner, ends_in=3 * DAY, domain="soon.com")
    approved = _registration(
        partner, ends_in=7 * DAY - timedelta(minutes=1), status="approved", domain="ok.com"
    )
    _registration(partner, ends_in=8 * DAY, domain="later.com")
    _registration(partner, ends_in=-DAY, domain="over.com")
    _registration(partner, ends_in=2 * DAY, status="rejected", domain="no.com")

    assert warn_expiring_registrations() == 2
    warned = DealRegistration.objects.filter(expiry_warning_sent_at__isnull=False)
    assert set(warned.values_list("pk", flat=True)) == {soon.pk, approved.pk}
    titles = sorted(Notification.objects.filter(kind="registration_expiring").values_list("title", flat=True))
    soon.refresh_from_db()
    approved.refresh_from_db()
    assert titles == sorted(
        [
            f"Protection ends {soon.protection_expires_at:%-d %b %Y}: Soon",
            f"Protection ends {approved.protection_expires_at:%-d %b %Y}: Ok",
        ]
    )
    body = Notification.objects.get(title__endswith=": Soon").body
    assert "It has not been decided yet; if it is still undecided then, it expires." in body
    assert "no longer blocks other partners" in Notification.objects.get(title__endswith=": Ok").body
    assert OutboundEmail.objects.filter(kind="registration_expiring").count() == 2

    assert registrations_warn_expiring() == 0  # once only
    assert registrations_warn_expiring(now=timezone.now() + 2 * DAY) == 1  # later.com's turn
    assert Notification.objects.filter(kind="registration_expiring").count() == 3


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "smtp://mailer:p%40ss@mail.example.com:2525",
            {
                "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
                "EMAIL_HOST": "mail.example.com",
                "EMAIL_PORT": 2525,
                "EMAIL_HOST_USER": "mailer",
                "EMAIL_HOST_PASSWORD": "p@ss",
                "EMAIL_USE_TLS": False,
                "EMAIL_USE_SSL": False,
                "EMAIL_TIMEOUT": 10,
            },
        ),
        (
            "smtp+tls://u:p@mail.example.com:587",
            {
                "EMAIL_HOST": "mail.example.com",
                "EMAIL_PORT": 587,
                "EMAIL_USE_TLS": True,
                "EMAIL_USE_SSL": False,
            },
        ),
        ("smtp+ssl://mail.example.com:465?timeout=5", {"EMAIL_USE_SSL": True, "EMAIL_TIMEOUT": 5}),
        ("console://", {"EMAIL_BACKEND": "django.core.mail.backends.console.EmailBackend"}),
        (
            "file:///srv/prm/mail",
            {
                "EMAIL_BACKEND": "django.core.mail.backends.filebased.EmailBackend",
                "EMAIL_FILE_PATH": "/srv/prm/mail",
            },
        ),
        (
            "",
            {
                "EMAIL_BACKEND": "django.core.mail.backends.filebased.EmailBackend",
                "EMAIL_FILE_PATH": "/var/x/mail",
            },
        ),
    ],
)
def test_email_url_becomes_django_settings(url, expected):
    parsed = email_settings(url, default_file_path=Path("/var/x/mail"))
    assert {name: parsed.get(name) for name in expected} == expected


def test_an_unknown_email_url_scheme_is_refused():
    with pytest.raises(ValueError, match="unknown scheme 'smtpx'"):
        email_settings("smtpx://host", default_file_path=Path("/x"))


def _settings_in_a_fresh_process(tmp_path, **env: str) -> list[str]:
    code = (
        "import django; django.setup(); from django.conf import settings as s; "
        "print(s.EMAIL_BACKEND, s.EMAIL_FILE_PATH, s.EMAIL_HOST, s.EMAIL_USE_TLS, "
        "s.DEFAULT_FROM_EMAIL, sep='|')"
    )
    base = {"PATH": "/usr/bin:/bin", "DJANGO_SETTINGS_MODULE": "prm.settings", "PRM_VAR_DIR": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.strip().split("|")


def test_without_email_url_mail_is_written_under_var_mail_and_email_url_sets_smtp(tmp_path):
    assert _settings_in_a_fresh_process(tmp_path) == [
        "django.core.mail.backends.filebased.EmailBackend",
        str(tmp_path / "mail"),
        "localhost",
        "False",
        "PRM <prm@localhost>",
    ]
    assert _settings_in_a_fresh_process(
        tmp_path,
        EMAIL_URL="smtp+tls://u:p@mail.example.com:587",
        EMAIL_FROM="Partners <partners@example.com>",
    ) == [
        "django.core.mail.backends.smtp.EmailBackend",
        "",
        "mail.example.com",
        "True",
        "Partners <partners@example.com>",
    ]


@pytest.mark.django_db
def test_the_file_backend_delivers_into_its_folder(settings, tmp_path):
    settings.EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
    settings.EMAIL_FILE_PATH = str(tmp_path / "mail")
    notify(
        kind="invitation",
        emails=["new@example.com"],
        context={"partner": PartnerFactory(name="Contoso"), "invitation_url": "http://127.0.0.1:8000/i/abc/"},
    )
    assert email_deliver(email_id=OutboundEmail.objects.get().pk) == "sent"
    (written,) = (tmp_path / "mail").iterdir()
    content = written.read_text()
    assert (
        "To: new@example.com" in content
        and "Subject: You are invited to the Contoso partner portal" in content
    )
    assert "http://127.0.0.1:8000/i/abc/" in content


def test_make_run_says_where_mail_goes(settings):
    from prm.email import describe_mail_delivery

    for name, value in email_settings("", default_file_path=Path("/srv/prm/var/mail")).items():
        setattr(settings, name, value)
    assert describe_mail_delivery() == (
        "Mail is written as files to /srv/prm/var/mail (set EMAIL_URL=smtp://... to send it)"
    )
    for name, value in email_settings(
        "smtp+tls://u:p@mail.example.com:587", default_file_path=Path("/x")
    ).items():
        setattr(settings, name, value)
    assert describe_mail_delivery() == "Mail is sent through SMTP at mail.example.com:587 (TLS)"
    assert (
        "make run" in (ROOT / "scripts" / "run_local.sh").read_text()
        and "describe_mail_delivery" in (ROOT / "scripts" / "run_local.sh").read_text()
    )
