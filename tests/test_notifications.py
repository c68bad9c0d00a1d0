"""notify(): rendered at once inside the change's transaction, delivered through SMTP after commit."""

from decimal import Decimal

import pytest
from django.db import transaction

from deals.models import DealRegistration
from deals.services import registration_approve, registration_reject, registration_submit
from notifications.models import Notification, NotificationPreference, OutboundEmail
from notifications.services import email_deliver, notify
from tests.factories import PartnerFactory, PartnerUserFactory, StaffUserFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def partner():
    return PartnerFactory(name="Northwind & Co")


def _submit(partner, domain="acme.com") -> DealRegistration:
    return registration_submit(
        partner=partner, account_name="Acme <Corp>", domain=domain, amount=Decimal("5000.00")
    )


def test_an_approval_reaches_every_active_partner_user_through_smtp_after_commit(
    partner, smtp_server, eager_tasks, django_capture_on_commit_callbacks
):
    ana = PartnerUserFactory(partner=partner, user__username="ana", user__first_name="Ana").user
    ben = PartnerUserFactory(partner=partner, user__username="ben").user
    PartnerUserFactory(partner=partner, user__username="gone", user__is_active=False)
    PartnerUserFactory(user__username="other")  # another partner's user
    registration = _submit(partner)
    with django_capture_on_commit_callbacks(execute=True):
        registration_approve(registration=registration, decided_by=StaffUserFactory(), reason="Good fit")

    mails = smtp_server.wait_for(2)
    assert sorted(m.rcpt_tos[0] for m in mails) == ["ana@example.com", "ben@example.com"]
    to_ana = next(m for m in mails if m.rcpt_tos == ["ana@example.com"])
    assert to_ana.subject == "Deal registration approved: Acme <Corp>"
    assert "Hello Ana," in to_ana.text
    # Plain text is not escaped; HTML is.
    assert "deal sourced by Northwind & Co." in to_ana.text
    assert "Acme &lt;Corp&gt;" in to_ana.html and "Northwind &amp; Co" in to_ana.html
    link = f"http://127.0.0.1:8000/portal/registrations/{registration.pk}/"
    assert f"See it: {link}" in to_ana.text and f'href="{link}"' in to_ana.html
    assert "Note from the program: Good fit" in to_ana.text
    assert to_ana.message["X-PRM-Kind"] == "registration_approved"

    notes = Notification.objects.filter(kind="registration_approved").order_by("user__username")
    assert [(n.user, n.title, n.link, n.read_at) for n in notes] == [
        (ana, "Deal registration approved: Acme <Corp>", f"/portal/registrations/{registration.pk}/", None),
        (ben, "Deal registration approved: Acme <Corp>", f"/portal/registrations/{registration.pk}/", None),
    ]
    assert list(OutboundEmail.objects.values_list("to", "status", "attempts").order_by("to")) == [
        ("ana@example.com", "sent", 1),
        ("ben@example.com", "sent", 1),
    ]


def test_a_rolled_back_change_leaves_no_notification_no_email_and_sends_nothing(
    partner, smtp_server, eager_tasks, django_capture_on_commit_callbacks
):
    PartnerUserFactory(partner=partner, user__username="ana")
    registration = _submit(partner)
    with (
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        pytest.raises(RuntimeError),
        transaction.atomic(),
    ):
        registration_reject(registration=registration, decided_by=None, reason="Duplicate")
        assert Notification.objects.filter(kind="registration_rejected").count() == 1  # written...
        raise RuntimeError("the request failed after the decision")
    assert callbacks == []
    assert not Notification.objects.filter(kind="registration_rejected").exists()
    assert not OutboundEmail.objects.filter(kind="registration_rejected").exists()
    registration.refresh_from_db()
    assert registration.status == "submitted"
    assert smtp_server.received == []


def test_a_user_who_turned_the_email_off_keeps_the_in_app_notification(
    partner, smtp_server, eager_tasks, django_capture_on_commit_callbacks
):
    ana = PartnerUserFactory(partner=partner, user__username="ana").user
    ben = PartnerUserFactory(partner=partner, user__username="ben").user
    NotificationPreference.objects.create(user=ana, kind="registration_rejected", email_enabled=False)
    registration = _submit(partner)
    with django_capture_on_commit_callbacks(execute=True):
        registration_reject(registration=registration, decided_by=None, reason="Duplicate of #12")
    assert [m.rcpt_tos for m in smtp_server.wait_for(1)] == [["ben@example.com"]]
    assert set(Notification.objects.filter(kind="registration_rejected").values_list("user", flat=True)) == {
        ana.pk,
        ben.pk,
    }
    assert list(OutboundEmail.objects.values_list("to", flat=True)) == ["ben@example.com"]


def test_the_manager_hears_of_a_submission_else_the_program_inbox(
    settings, django_capture_on_commit_callbacks
):
    settings.NOTIFICATIONS_PROGRAM_INBOX = "channel@example.com"
    mia = StaffUserFactory(username="mia")
    managed = PartnerFactory(name="Managed", manager=mia)
    unmanaged = PartnerFactory(name="Unmanaged")
    with django_capture_on_commit_callbacks() as callbacks:
        first = _submit(managed, domain="one.example")
        _submit(unmanaged, domain="two.example")
    assert len(callbacks) == 2
    assert list(Notification.objects.values_list("user__username", "title")) == [
        ("mia", "Deal registration to decide: Managed for Acme <Corp>")
    ]
    assert Notification.objects.get().link == f"/dashboard/registrations/#reg-{first.pk}-title"
    assert sorted(OutboundEmail.objects.values_list("to", "user__username", "status")) == [
        ("channel@example.com", None, "pending"),
        ("mia@example.com", "mia", "pending"),
    ]


def test_each_address_gets_one_email_and_inactive_or_addressless_users_none(
    django_capture_on_commit_callbacks,
):
    ana = UserFactory(username="ana", email="Ana@Example.com")
    no_mail = UserFactory(username="nomail", email="")
    inactive = UserFactory(username="inactive", is_active=False)
    with django_capture_on_commit_callbacks():
        notify(
            kind="invitation",
            users=[ana, ana, no_mail, inactive],
            emails=["ana@example.com", "new@example.com", "not an address", ""],
            context={
                "partner": PartnerFactory(name="Contoso"),
                "invitation_url": "http://x/i/1",
                "inviter": None,
            },
        )
    assert sorted(OutboundEmail.objects.values_list("to", flat=True)) == [
        "Ana@Example.com",
        "new@example.com",
    ]
    assert sorted(Notification.objects.values_list("user__username", flat=True)) == ["ana", "nomail"]


def test_an_unknown_kind_is_a_programming_error():
    with pytest.raises(ValueError, match="unknown notification kind 'nope'"):
        notify(kind="nope", emails=["a@example.com"], context={})


def test_delivering_the_same_email_twice_sends_it_once(smtp_server, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks():
        notify(
            kind="password_reset",
            emails=["ana@example.com"],
            context={"user": UserFactory(username="ana"), "reset_url": "http://x/r", "valid_hours": 72},
        )
    email = OutboundEmail.objects.get()
    assert email_deliver(email_id=email.pk) == "sent"
    assert email_deliver(email_id=email.pk) == "skipped"
    assert len(smtp_server.received) == 1
    email.refresh_from_db()
    assert (email.status, email.attempts, email.sent_at is not None) == ("sent", 1, True)
