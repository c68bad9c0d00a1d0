"""Login with "remember me", password reset by email (through a real SMTP server), password change,
notification settings and the inbox."""

import logging
import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from notifications.models import Notification, NotificationPreference, OutboundEmail
from tests.factories import DEFAULT_PASSWORD, PartnerUserFactory, StaffUserFactory

pytestmark = pytest.mark.django_db

NEW_PASSWORD = "a-brand-new-passphrase-42"


@pytest.fixture
def client_factory():
    """Separate browsers (each its own cookies)."""
    return Client


@pytest.fixture
def ana():
    return PartnerUserFactory(user__username="ana", user__email="ana@example.com").user


def _login(client, username, password=DEFAULT_PASSWORD, **extra):
    return client.post("/login/", {"username": username, "password": password, **extra})


def test_the_login_page_offers_remember_me_unticked_and_a_password_reset_link(client):
    page = client.get("/login/").content.decode()
    assert re.search(r'<input type="checkbox" name="remember_me"[^>]*>', page)
    assert "checked" not in re.search(r'<input type="checkbox" name="remember_me"[^>]*>', page).group(0)
    assert '<a href="/password_reset/">Forgot your password?</a>' in page


def test_without_remember_me_the_session_ends_with_the_browser(client, ana):
    response = _login(client, "ana")
    assert response.status_code == 302
    cookie = response.cookies["sessionid"]
    assert cookie["max-age"] == "" and cookie["expires"] == ""
    assert client.session.get_expire_at_browser_close()


def test_with_remember_me_the_session_lasts_the_cookie_age(client, ana, settings):
    assert settings.SESSION_COOKIE_AGE == 14 * 24 * 3600
    response = _login(client, "ana", remember_me="on")
    assert response.status_code == 302
    assert response.cookies["sessionid"]["max-age"] == 14 * 24 * 3600
    assert not client.session.get_expire_at_browser_close()


def test_a_wrong_password_still_counts_for_the_lockout(client, ana, settings):
    settings.AXES_FAILURE_LIMIT = 2
    for _ in range(2):
        _login(client, "ana", "wrong", remember_me="on")
    response = _login(client, "ana", remember_me="on")
    assert response.status_code == 429


def test_password_reset_from_request_to_mail_to_new_password_ends_the_other_sessions(
    client_factory, ana, smtp_server, eager_tasks, django_capture_on_commit_callbacks
):
    elsewhere = client_factory()
    assert _login(elsewhere, "ana").status_code == 302
    assert elsewhere.get("/portal/").status_code == 200

    browser = client_factory()
    with django_capture_on_commit_callbacks(execute=True):
        response = browser.post("/password_reset/", {"email": "ANA@example.com"})
    assert response.status_code == 302 and response["Location"] == "/password_reset/done/"
    assert "expires after 72 hours" in browser.get("/password_reset/done/").content.decode()

    (mail,) = smtp_server.wait_for(1)
    assert mail.rcpt_tos == ["ana@example.com"] and mail.subject == "Reset your password"
    assert OutboundEmail.objects.get().kind == "password_reset"
    assert not Notification.objects.exists()  # account mail, not an in-app notification
    link = re.search(r"http://127\.0\.0\.1:8000(/reset/\S+/\S+/)", mail.text).group(1)
    assert link in mail.html

    form_page = browser.get(link, follow=True)
    assert "Choose a new password" in form_page.content.decode()
    set_url = form_page.redirect_chain[-1][0]
    weak = browser.post(set_url, {"new_password1": "password", "new_password2": "password"})
    assert "This password is too common." in weak.content.decode()
    done = browser.post(set_url, {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})
    assert done.status_code == 302 and done["Location"] == "/reset/done/"

    # The session that used the old password has ended; the old password no longer works.
    assert elsewhere.get("/portal/")["Location"].startswith("/login/")
    assert _login(client_factory(), "ana").status_code == 200
    assert _login(client_factory(), "ana", NEW_PASSWORD).status_code == 302
    # The link works once.
    assert "This link no longer works" in browser.get(link, follow=True).content.decode()


def test_a_reset_for_an_unknown_address_sends_nothing_and_says_the_same(
    client, smtp_server, eager_tasks, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/password_reset/", {"email": "nobody@example.com"})
    assert response["Location"] == "/password_reset/done/"
    assert not OutboundEmail.objects.exists() and smtp_server.received == []


def test_reset_requests_are_limited_per_entered_address_and_per_client_without_saying_so(
    client_factory, ana, settings, caplog
):
    assert settings.PASSWORD_RESET_RATE_LIMIT == "3/h"
    settings.PASSWORD_RESET_CLIENT_RATE_LIMIT = "5/h"
    PartnerUserFactory(user__username="bob", user__email="bob@example.com")
    here, elsewhere = client_factory(REMOTE_ADDR="203.0.113.7"), client_factory(REMOTE_ADDR="198.51.100.9")

    def reset_mails(to: str) -> int:
        return OutboundEmail.objects.filter(kind="password_reset", to=to).count()

    with caplog.at_level(logging.WARNING, logger="account.views"):
        answers = [
            here.post("/password_reset/", {"email": email})
            for email in ["ana@example.com", "ANA@example.com", "ana@example.com", "Ana@Example.COM"]
        ]
        # Over the limit the answer is the usual one: nothing tells whether the address has an account.
        assert [(r.status_code, r["Location"]) for r in answers] == [(302, "/password_reset/done/")] * 4
        assert reset_mails("ana@example.com") == 3

        # Bob's address is fresh, but this client has used 4 of its 5 requests: the 5th sends, the 6th not.
        assert (
            here.post("/password_reset/", {"email": "bob@example.com"})["Location"] == "/password_reset/done/"
        )
        assert reset_mails("bob@example.com") == 1
        assert (
            here.post("/password_reset/", {"email": "bob@example.com"})["Location"] == "/password_reset/done/"
        )
        assert reset_mails("bob@example.com") == 1

        # Another client: Bob's address has used 2 of its 3, Ana's is still used up.
        elsewhere.post("/password_reset/", {"email": "bob@example.com"})
        elsewhere.post("/password_reset/", {"email": "ana@example.com"})
        assert (reset_mails("bob@example.com"), reset_mails("ana@example.com")) == (2, 3)

    assert [r.getMessage() for r in caplog.records if r.name == "account.views"] == [
        "Password reset not sent: rate limit reached for 'Ana@Example.COM' from 203.0.113.7",
        "Password reset not sent: rate limit reached for 'bob@example.com' from 203.0.113.7",
        "Password reset not sent: rate limit reached for 'ana@example.com' from 198.51.100.9",
    ]


def test_an_invalid_reset_form_does_not_count_against_the_limit(client, ana, settings):
    settings.PASSWORD_RESET_RATE_LIMIT = "1/h"
    assert client.post("/password_reset/", {"email": "not an address"}).status_code == 200
    assert (
        client.post("/password_reset/", {"email": "ana@example.com"})["Location"] == "/password_reset/done/"
    )
    assert OutboundEmail.objects.filter(kind="password_reset").count() == 1


def test_a_password_change_keeps_this_session_and_ends_the_others(client_factory, ana):
    here, elsewhere = client_factory(), client_factory()
    _login(here, "ana")
    _login(elsewhere, "ana")
    response = here.post(
        "/password_change/",
        {"old_password": DEFAULT_PASSWORD, "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
    )
    assert response["Location"] == "/password_change/done/"
    assert here.get("/portal/").status_code == 200
    assert elsewhere.get("/portal/")["Location"].startswith("/login/")


def test_a_partner_user_turns_an_email_off_and_the_choice_is_kept(client, ana):
    client.force_login(ana)
    page = client.get("/account/notifications/").content.decode()
    offered = re.findall(r'<input type="checkbox" name="(\w+)"', page)
    assert offered == [
        "registration_approved",
        "registration_rejected",
        "registration_expiring",
        "registration_expired",
    ]
    assert "Password reset" in page  # listed as always sent
    response = client.post(
        "/account/notifications/",
        {"registration_approved": "on", "registration_expiring": "on", "registration_expired": "on"},
    )
    assert response.status_code == 302
    assert dict(NotificationPreference.objects.filter(user=ana).values_list("kind", "email_enabled")) == {
        "registration_approved": True,
        "registration_rejected": False,
        "registration_expiring": True,
        "registration_expired": True,
    }
    page = client.get("/account/notifications/").content.decode()
    assert not re.search(r'name="registration_rejected"[^>]*checked', page)
    assert re.search(r'name="registration_approved"[^>]*checked', page)


def test_staff_are_offered_the_staff_kinds(client):
    client.force_login(StaffUserFactory())
    page = client.get("/account/notifications/").content.decode()
    assert re.findall(r'<input type="checkbox" name="(\w+)"', page) == [
        "registration_submitted",
        "application_received",
    ]


def test_the_settings_page_needs_a_login(client):
    assert client.get("/account/notifications/")["Location"].startswith("/login/")
    assert client.get("/account/notifications/inbox/")["Location"].startswith("/login/")


def test_the_inbox_lists_unread_first_and_marks_all_read(client, ana):
    now = timezone.now()
    old_unread = Notification.objects.create(user=ana, kind="registration_expired", title="Old unread")
    read = Notification.objects.create(user=ana, kind="registration_approved", title="Read", read_at=now)
    Notification.objects.create(
        user=ana, kind="registration_rejected", title="New unread", link="/portal/registrations/7/"
    )
    Notification.objects.filter(pk=old_unread.pk).update(created_at=now - timedelta(days=2))
    Notification.objects.filter(pk=read.pk).update(created_at=now + timedelta(minutes=1))
    Notification.objects.create(user=StaffUserFactory(), kind="registration_submitted", title="Not ana's")
    client.force_login(ana)

    page = client.get("/account/notifications/inbox/").content.decode()
    titles = [t.strip() for t in re.findall(r"<h2>(?:<a [^>]*>)?([^<]+)", page)]
    assert titles == ["New unread", "Old unread", "Read"]
    assert '<a href="/portal/registrations/7/">New unread</a>' in page
    assert '<span class="count-badge">2<span class="visually-hidden"> unread</span></span>' in page

    response = client.post("/account/notifications/inbox/read/")
    assert response["Location"] == "/account/notifications/inbox/"
    assert not Notification.objects.filter(user=ana, read_at__isnull=True).exists()
    assert Notification.objects.get(pk=read.pk).read_at == read.read_at  # already read: unchanged
    page = client.get("/account/notifications/inbox/").content.decode()
    assert "count-badge" not in page and "Mark all as read" not in page


def test_the_inbox_pages_by_25(client, ana):
    Notification.objects.bulk_create(
        Notification(user=ana, kind="registration_expired", title=f"N{i}") for i in range(30)
    )
    client.force_login(ana)
    assert client.get("/account/notifications/inbox/").content.decode().count("<h2>") == 25
    second = client.get("/account/notifications/inbox/?page=2").content.decode()
    assert second.count("<h2>") == 5 and "Page 2 of 2" in second
    assert client.get("/account/notifications/inbox/?page=abc").status_code == 200


def test_the_unread_badge_costs_one_query(client, ana):
    Notification.objects.create(user=ana, kind="registration_expired", title="One")
    client.force_login(ana)
    with CaptureQueriesContext(connection) as queries:
        client.get("/account/notifications/")
    badge = [q["sql"] for q in queries.captured_queries if 'FROM "notifications_notification"' in q["sql"]]
    assert len(badge) == 1 and "COUNT(*)" in badge[0]
