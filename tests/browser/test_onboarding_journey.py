"""A partner's whole onboarding in Chromium, with every mail read from a real SMTP server.

Apply through a tracked link -> a manager approves -> the invitation mail -> the partner admin
chooses a password and invites a member -> the member accepts and registers a deal -> the manager
approves it -> the member receives the approval mail.
"""

import re

import pytest

from deals.models import DealRegistration
from partners.models import Partner, PartnerUser
from program.models import program_today
from tests.browser.conftest import log_in
from tests.factories import DEFAULT_PASSWORD, JoinSourceFactory, StaffUserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

NORA_PASSWORD = "amber-falcon-orchard-17"
BEN_PASSWORD = "quiet-meadow-compass-93"


def mail_to(smtp, address: str, kind: str, count_before: int):
    """The first mail of `kind` to `address` among those received after the first `count_before`."""
    for _ in range(3):
        received = smtp.wait_for(count_before + 1)
        for mail in received[count_before:]:
            if mail.rcpt_tos == [address] and mail.message["X-PRM-Kind"] == kind:
                return mail
        count_before = len(received)
    raise AssertionError(f"no {kind} mail to {address}; got {[(m.rcpt_tos, m.subject) for m in received]}")


def invitation_link(mail, site: str) -> str:
    match = re.search(rf"{re.escape(site)}/invitations/[^\s/]+/", mail.text)
    assert match, mail.text
    return match.group(0)


def log_out(page) -> None:
    page.get_by_role("button", name="Log out").click()
    page.wait_for_load_state()


def test_apply_approve_invite_accept_register_and_hear_of_the_approval(
    browser_page, live_server, smtp_server, eager_tasks, settings
):
    settings.SITE_URL = live_server.url
    page = browser_page
    summit = JoinSourceFactory(key="summit-2026", name="Summit 2026", kind="event")
    StaffUserFactory(username="maria", email="maria@vendor.example")

    # 1. The applicant arrives through the summit's tracked link and applies.
    page.goto(f"{live_server.url}/apply/?source=summit-2026")
    page.get_by_label("Company name").fill("Northwind Traders")
    page.get_by_label("Partner type").select_option("reseller")
    page.get_by_label("Company website").fill("northwind.example")
    page.get_by_label("Your name").fill("Nora North")
    page.get_by_label("Your work email").fill("nora@northwind.example")
    page.get_by_label("How will you sell us?").fill("We resell to 300 retailers in the Nordics.")
    page.get_by_role("button", name="Send application").click()
    page.wait_for_load_state()
    assert page.url.endswith("/apply/thanks/")
    assert "received the application of Northwind Traders" in page.locator(".messages").inner_text()
    received = mail_to(smtp_server, "nora@northwind.example", "application_received", 0)
    assert received.subject == "We received your partner application"

    # 2. The manager approves it in the queue.
    log_in(page, live_server, "maria", DEFAULT_PASSWORD)
    page.get_by_role("link", name="Applications").click()
    item = page.locator("[data-application]").filter(has_text="Northwind Traders")
    assert "Summit 2026" in item.inner_text()
    item.get_by_label("Approve and invite the contact").check()
    before = len(smtp_server.received)
    item.get_by_role("button", name="Record decision").click()
    page.wait_for_load_state()
    assert "Northwind Traders approved" in page.locator(".messages").inner_text()
    partner = Partner.objects.get(name="Northwind Traders")
    assert (partner.status, partner.joined_at, partner.join_source) == ("active", program_today(), summit)

    # 3. The invitation mail reaches the contact; she chooses her password.
    invitation = mail_to(smtp_server, "nora@northwind.example", "invitation", before)
    link = invitation_link(invitation, live_server.url)
    log_out(page)
    page.goto(link)
    page.get_by_label("Username").fill("nora")
    page.locator("#id_password").fill(NORA_PASSWORD)
    page.get_by_label("Password again").fill(NORA_PASSWORD)
    page.get_by_role("button", name="Create my login").click()
    page.wait_for_load_state()
    assert page.url.endswith("/portal/")
    assert "as partner admin" in page.locator(".messages").inner_text()

    # 4. As the partner's admin she invites a member.
    page.get_by_role("link", name="Users").click()
    page.get_by_label("Email address").fill("ben@northwind.example")
    page.get_by_label("Partner member").check()
    before = len(smtp_server.received)
    page.get_by_role("button", name="Send invitation").click()
    page.wait_for_load_state()
    assert "Invitation sent to ben@northwind.example." in page.locator(".messages").inner_text()
    member_invitation = mail_to(smtp_server, "ben@northwind.example", "invitation", before)
    assert member_invitation.subject == "nora invites you to the Northwind Traders partner portal"
    log_out(page)

    # 5. The member accepts and registers a deal.
    page.goto(invitation_link(member_invitation, live_server.url))
    page.get_by_label("Username").fill("ben")
    page.locator("#id_password").fill(BEN_PASSWORD)
    page.get_by_label("Password again").fill(BEN_PASSWORD)
    page.get_by_role("button", name="Create my login").click()
    page.wait_for_load_state()
    assert page.url.endswith("/portal/")
    ben = PartnerUser.objects.get(user__username="ben")
    assert (ben.partner, ben.role) == (partner, "member")
    assert page.get_by_role("link", name="Users").count() == 0  # members do not manage users
    page.get_by_role("link", name="Register a deal").first.click()
    page.get_by_label("Customer name").fill("Initech")
    page.get_by_label("Customer web domain").fill("initech.example")
    page.get_by_label("Expected amount").fill("18000")
    page.get_by_role("button", name="Submit registration").click()
    page.wait_for_load_state()
    assert page.url.endswith("/portal/registrations/")
    registration = DealRegistration.objects.get()
    assert (registration.partner, registration.submitted_by.username) == (partner, "ben")
    log_out(page)

    # 6. The manager approves the registration; the member hears of it by mail.
    log_in(page, live_server, "maria", DEFAULT_PASSWORD)
    page.get_by_role("link", name="Registrations").click()
    item = page.locator(f'[data-registration="{registration.pk}"]')
    item.get_by_label("Approve", exact=True).check()
    before = len(smtp_server.received)
    item.get_by_role("button", name="Record decision").click()
    page.wait_for_load_state()
    assert "approved" in page.locator(".messages").inner_text()
    approval = mail_to(smtp_server, "ben@northwind.example", "registration_approved", before)
    assert approval.subject == "Deal registration approved: Initech"
    assert f"{live_server.url}/portal/registrations/{registration.pk}/" in approval.text
