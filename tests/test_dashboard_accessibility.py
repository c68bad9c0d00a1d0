"""Every form control on the main pages has a label, and the pages offer a skip link to the content."""

from html.parser import HTMLParser

import pytest
from django.urls import reverse

from deals.services import registration_submit
from tests.factories import PartnerFactory, PartnerUserFactory, StaffUserFactory
from tests.support.dashboards import publish

pytestmark = pytest.mark.django_db


class Controls(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.controls: list[dict] = []
        self.label_for: set[str] = set()
        self.in_label = 0
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.add(attrs["id"])
        if tag == "label":
            self.in_label += 1
            if attrs.get("for"):
                self.label_for.add(attrs["for"])
        if tag in ("input", "select", "textarea") and attrs.get("type") not in ("hidden", "submit"):
            self.controls.append({**attrs, "wrapped": self.in_label > 0})

    def handle_endtag(self, tag):
        if tag == "label":
            self.in_label -= 1


def unlabelled(html: str) -> list[dict]:
    parser = Controls()
    parser.feed(html)
    missing = [
        c
        for c in parser.controls
        if not c["wrapped"] and c.get("id") not in parser.label_for and not c.get("aria-label")
    ]
    dangling = [
        ref
        for c in parser.controls
        for ref in (c.get("aria-describedby") or "").split()
        if ref not in parser.ids
    ]
    return missing + [{"dangling aria-describedby": d} for d in dangling]


def test_staff_pages_label_every_control_and_have_a_skip_link(client):
    client.force_login(StaffUserFactory())
    publish([(None, "2026-03", "won_revenue", "1.00")])
    registration_submit(partner=PartnerFactory(), account_name="Acme", domain="acme.com", amount=1)
    for name in (
        "dashboards:overview",
        "dashboards:partners",
        "dashboards:registrations",
        "dashboards:join_sources",
    ):
        html = client.get(reverse(name)).content.decode()
        assert unlabelled(html) == [], name
        assert '<a class="skip-link" href="#main">Skip to main content</a>' in html
        assert '<main id="main" tabindex="-1">' in html


def test_the_registration_form_labels_every_control_even_with_errors(client):
    client.force_login(PartnerUserFactory().user)
    assert unlabelled(client.get(reverse("portal:register")).content.decode()) == []
    response = client.post(reverse("portal:register"), {"action": "submit", "amount": "x"})
    assert response.status_code == 400
    assert unlabelled(response.content.decode()) == []


def test_the_login_form_labels_its_fields(client):
    assert unlabelled(client.get(reverse("login")).content.decode()) == []


def test_the_onboarding_pages_label_every_control_even_with_errors(client):
    from partners.invitations import invitation_create

    admin = PartnerUserFactory(role="admin")
    manager = StaffUserFactory()
    issued = invitation_create(
        partner=admin.partner, email="new@example.com", role="member", invited_by=manager
    )
    pages = [
        client.get(reverse("apply")),
        client.post(reverse("apply"), {"company": ""}),
        client.get(issued.path),
        client.post(issued.path, {"username": "", "password": "1"}),
    ]
    client.force_login(admin.user)
    pages += [
        client.get(reverse("portal:users")),
        client.post(reverse("portal:users"), {"email": "nope"}),
        client.get(reverse("portal:profile")),
        client.post(reverse("portal:profile"), {"contact_email": "nope"}),
    ]
    client.force_login(manager)
    pages += [
        client.get(reverse("dashboards:applications")),
        client.get(reverse("dashboards:partner_detail", args=[admin.partner_id])),
    ]
    for response in pages:
        html = response.content.decode()
        assert unlabelled(html) == [], response.wsgi_request.path
        assert '<main id="main" tabindex="-1">' in html
