"""The manager's application queue: approving (joined today, first admin invited) and rejecting."""

import re
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from notifications.models import OutboundEmail
from partners.applications import application_approve, application_reject, application_submit
from partners.models import Application, Invitation, Partner, PartnerProfile
from partners.roles import StaffRole
from program.models import program_today
from tests.factories import JoinSourceFactory, PartnerUserFactory, StaffUserFactory

pytestmark = pytest.mark.django_db

QUEUE = "/dashboard/applications/"


def apply(company: str = "Northwind Traders", email: str = "nora@northwind.example", **kwargs) -> Application:
    return application_submit(
        company=company,
        partner_type=kwargs.pop("partner_type", "reseller"),
        contact_name=kwargs.pop("contact_name", "Nora North"),
        contact_email=email,
        website=kwargs.pop("website", "https://northwind.example"),
        pitch=kwargs.pop("pitch", "Nordic retail."),
        **kwargs,
    )


@pytest.fixture
def maria():
    return StaffUserFactory(username="maria", email="maria@vendor.example")


@pytest.fixture
def manager_client(client, maria):
    client.force_login(maria)
    return client


def decide(client, application: Application, decision: str, reason: str = "", query: str = ""):
    prefix = f"a{application.pk}"
    return client.post(
        QUEUE + query,
        {"application": application.pk, f"{prefix}-decision": decision, f"{prefix}-reason": reason},
    )


def test_approval_makes_the_partner_active_joined_today_and_invites_the_contact_as_admin(
    manager_client, maria
):
    application = apply()
    before = timezone.now()
    response = decide(manager_client, application, "approve")
    assert response.status_code == 302

    partner = Partner.objects.get()
    assert (partner.status, partner.joined_at) == ("active", program_today())
    application.refresh_from_db()
    assert application.decided_by == maria and application.decided_at >= before
    invitation = Invitation.objects.get()
    assert (invitation.partner, invitation.email, invitation.role, invitation.invited_by) == (
        partner,
        "nora@northwind.example",
        "admin",
        maria,
    )
    assert invitation.expires_at - invitation.created_at == timedelta(days=7)
    profile = PartnerProfile.objects.get(partner=partner)
    assert (profile.contact_name, profile.contact_email, profile.website) == (
        "Nora North",
        "nora@northwind.example",
        "https://northwind.example",
    )

    decided = OutboundEmail.objects.get(kind="application_decided")
    assert (decided.to, decided.subject) == (
        "nora@northwind.example",
        "Welcome to the partner program, Northwind Traders",
    )
    invited = OutboundEmail.objects.get(kind="invitation")
    assert invited.to == "nora@northwind.example"
    assert invited.subject == "maria invites you to the Northwind Traders partner portal"
    link = re.search(r"http://127\.0\.0\.1:8000(/invitations/[^/\s]+/)", invited.text).group(1)
    # The mailed link works: it opens the form to choose a username and password.
    manager_client.logout()
    page = manager_client.get(link)
    assert page.status_code == 200 and "Join Northwind Traders on the partner portal" in page.content.decode()


def test_rejection_needs_a_reason_and_the_applicant_reads_it(manager_client, maria):
    application = apply()
    refused = decide(manager_client, application, "reject", reason="  ")
    assert refused.status_code == 400
    assert "Say why the application is rejected" in refused.content.decode()
    assert Partner.objects.get().status == "applied"

    assert (
        decide(
            manager_client, application, "reject", reason="We only work with MSPs\nin the Nordics."
        ).status_code
        == 302
    )
    partner = Partner.objects.get()
    assert (partner.status, partner.joined_at) == ("rejected", None)
    application.refresh_from_db()
    assert (application.rejection_reason, application.decided_by) == (
        "We only work with MSPs\nin the Nordics.",
        maria,
    )
    mail = OutboundEmail.objects.get(kind="application_decided")
    assert mail.subject == "Your partner application: Northwind Traders"
    assert "Reason: We only work with MSPs\nin the Nordics." in mail.text
    assert "MSPs<br>in the Nordics." in mail.html
    assert not Invitation.objects.exists()


def test_a_decided_application_cannot_be_decided_again(maria):
    application = apply()
    application_reject(application=application, decided_by=maria, reason="No fit")
    with pytest.raises(ValidationError) as error:
        application_approve(application=application, decided_by=maria)
    assert error.value.message_dict == {
        "status": ["only an application can be approved; Northwind Traders is rejected"]
    }
    assert not Invitation.objects.exists()


def test_deciding_an_application_decided_meanwhile_says_so_on_the_page(manager_client, maria):
    application = apply()
    application_approve(application=application, decided_by=maria)
    response = decide(manager_client, application, "reject", reason="late")
    assert response.status_code == 400
    assert "only an application can be rejected; Northwind Traders is active" in response.content.decode()


def test_the_queue_lists_pending_applications_and_filters_them(manager_client, maria):
    events = JoinSourceFactory(key="summit", name="Summit", kind="event")
    waiting = apply("Northwind Traders", source="summit")
    other = apply("Contoso", "c@contoso.example", partner_type="msp")
    decided = apply("Fabrikam", "f@fabrikam.example")
    application_reject(application=decided, decided_by=maria, reason="No fit")

    def shown(query: dict) -> list[str]:
        response = manager_client.get(QUEUE, query)
        assert response.status_code == 200
        return [row["application"].partner.name for row in response.context["rows"]]

    assert shown({}) == ["Northwind Traders", "Contoso"]
    assert shown({"status": "rejected"}) == ["Fabrikam"]
    assert shown({"status": "all"}) == ["Northwind Traders", "Contoso", "Fabrikam"]
    assert shown({"join_source": events.pk}) == ["Northwind Traders"]
    assert shown({"type": "msp"}) == ["Contoso"]
    assert shown({"q": "contoso.example"}) == ["Contoso"]
    assert shown({"origin": "link"}) == ["Northwind Traders"]
    # A status it does not know shows the queue; an unknown source is a form error, not a 500.
    assert shown({"status": "nonsense", "page": "x"}) == ["Northwind Traders", "Contoso"]
    assert shown({"join_source": "abc"}) == ["Northwind Traders", "Contoso"]
    html = manager_client.get(QUEUE).content.decode()
    assert f'id="application-{waiting.pk}"' in html and "link source “summit”" in html
    assert f'name="a{other.pk}-decision"' in html


def test_sales_ops_read_the_queue_but_cannot_decide(client):
    application = apply()
    client.force_login(StaffUserFactory(role=StaffRole.SALES_OPS))
    page = client.get(QUEUE).content.decode()
    assert "Northwind Traders" in page and "-decision" not in page
    assert decide(client, application, "approve").status_code == 403
    assert Partner.objects.get().status == "applied"


def test_partner_users_and_anonymous_visitors_never_reach_the_queue(client):
    apply()
    assert client.get(QUEUE)["Location"].startswith("/login/")
    client.force_login(PartnerUserFactory().user)
    assert client.get(QUEUE).status_code == 403


def test_a_decision_naming_no_application_is_refused_without_an_error(manager_client):
    response = manager_client.post(QUEUE, {"application": "abc"}, follow=True)
    assert "did not name an application" in response.content.decode()
    assert manager_client.post(QUEUE, {"application": "999999"}).status_code == 404


def test_the_partner_page_shows_the_history_from_the_audit_trail(manager_client, maria):
    Client().post(
        "/apply/",
        {
            "company": "Northwind Traders",
            "partner_type": "reseller",
            "contact_name": "Nora",
            "contact_email": "nora@northwind.example",
            "pitch": "Retail.",
        },
    )
    application = Application.objects.get()
    decide(manager_client, application, "approve")
    partner = Partner.objects.get()
    html = manager_client.get(reverse("dashboards:partner_detail", args=[partner.pk])).content.decode()
    history = html[html.index('id="history"') : html.index("</ol>", html.index('id="history"'))]
    # Newest first: the approval by maria (page), the invitation, then the application (anonymous).
    assert re.search(
        r"Partner changed by maria:\s*<span class=\"change\">status Applied → Active</span>", history
    )
    assert "Invitation created by maria" in history
    assert "Application created by anonymous" in history
    assert history.index("Partner changed by maria") < history.index("Partner created by anonymous")
    assert "nora@northwind.example · partner admin" in html  # the pending invitation
