"""The public application at /apply/: where the join source comes from, and what keeps bots out."""

import logging

import pytest
from django.urls import reverse

from notifications.models import OutboundEmail
from partners.models import Application, JoinSource, Partner
from program.models import program_today
from tests.factories import JoinSourceFactory, PartnerFactory, StaffUserFactory
from tests.support import kpis as kt

pytestmark = pytest.mark.django_db

APPLY = "/apply/"


def form(**overrides) -> dict:
    data = {
        "company": "Northwind Traders",
        "partner_type": "reseller",
        "contact_name": "Nora North",
        "contact_email": "nora@northwind.example",
        "website": "northwind.example",
        "pitch": "We resell to 300 mid-market retailers in the Nordics.",
        "fax_number": "",
    }
    return {**data, **overrides}


def the_application() -> Application:
    return Application.objects.select_related("partner__join_source", "partner__referred_by").get()


def test_a_tracked_link_gives_its_join_source_and_the_application_lands_as_an_applied_partner(client):
    summit = JoinSourceFactory(key="summit-2026", name="Summit 2026", kind=JoinSource.Kind.EVENT)
    JoinSourceFactory(key="website", kind=JoinSource.Kind.WEBSITE)
    page = client.get(APPLY, {"source": "summit-2026"})
    assert page.status_code == 200
    # The link says where the applicant came from: no "how did you hear about us" question.
    assert 'name="join_source"' not in page.content.decode()

    response = client.post(f"{APPLY}?source=summit-2026", form())
    assert response.status_code == 302 and response["Location"] == reverse("apply_done")
    application = the_application()
    partner = application.partner
    assert (partner.name, partner.type, partner.status) == ("Northwind Traders", "reseller", "applied")
    assert partner.applied_at == program_today() and partner.joined_at is None
    assert partner.join_source == summit and partner.referred_by is None
    assert (application.source_origin, application.requested_source, application.requested_ref) == (
        "link",
        "summit-2026",
        "",
    )
    assert application.website == "https://northwind.example"
    assert application.client_address == "127.0.0.1"
    assert (
        "received the application of Northwind Traders" in client.get(reverse("apply_done")).content.decode()
    )


def test_the_applicant_and_the_partner_managers_hear_of_the_application(client, settings):
    settings.NOTIFICATIONS_PROGRAM_INBOX = "partners@vendor.example"
    StaffUserFactory(username="maria", email="maria@vendor.example")
    client.post(APPLY, form())
    mails = {m.to: m for m in OutboundEmail.objects.filter(kind="application_received")}
    assert sorted(mails) == ["maria@vendor.example", "nora@northwind.example", "partners@vendor.example"]
    assert mails["nora@northwind.example"].subject == "We received your partner application"
    # The address is not verified yet: nothing the applicant typed is mailed back to it.
    applicant_mail = mails["nora@northwind.example"]
    assert "Northwind" not in applicant_mail.subject + applicant_mail.text + applicant_mail.html
    assert "Nora" not in applicant_mail.text and "Thank you for applying" in applicant_mail.text
    # The applicant does not read the staff's review link; managers do, with the pitch.
    assert "/dashboard/" not in mails["nora@northwind.example"].text
    assert mails["maria@vendor.example"].subject == "Partner application from Northwind Traders"
    assert "300 mid-market retailers" in mails["maria@vendor.example"].text
    assert "/dashboard/applications/?status=applied" in mails["maria@vendor.example"].text


def test_a_referral_link_records_the_referring_partner_in_the_referral_source(client):
    acme = PartnerFactory(key="acme", name="Acme")
    client.post(f"{APPLY}?ref=acme", form())
    partner = the_application().partner
    assert partner.referred_by == acme
    # No referral source existed: the one with APPLY_REFERRAL_SOURCE_KEY is created on first need.
    assert (partner.join_source.key, partner.join_source.kind) == ("referral", "referral")
    assert the_application().source_origin == "referral"


def test_a_referral_link_of_a_partner_without_a_key_names_it_by_id_and_uses_the_oldest_referral_source(
    client,
):
    JoinSourceFactory(name="Website", kind="website")
    first = JoinSourceFactory(name="Partner referrals", kind="referral")
    JoinSourceFactory(name="Referral program 2", kind="referral")
    referrer = PartnerFactory(key=None)
    client.post(f"{APPLY}?ref={referrer.pk}", form())
    partner = the_application().partner
    assert (partner.join_source, partner.referred_by) == (first, referrer)


def test_a_referral_link_with_a_referral_tracked_source_uses_that_source(client):
    PartnerFactory(key="acme")
    campaign = JoinSourceFactory(key="acme-q4", kind="referral")
    client.post(f"{APPLY}?ref=acme&source=acme-q4", form())
    assert the_application().partner.join_source == campaign


def test_an_unknown_source_key_falls_back_to_the_applicants_choice_and_is_logged(client, caplog):
    events = JoinSourceFactory(name="Events", kind="event", offered_on_application=True)
    JoinSourceFactory(name="Internal list", kind="outreach")  # not offered
    page = client.get(APPLY, {"source": "no-such-key"}).content.decode()
    assert 'name="join_source"' in page
    assert "Events" in page and "Internal list" not in page

    with caplog.at_level(logging.WARNING, logger="partners.applications"):
        client.post(f"{APPLY}?source=no-such-key", form(join_source=events.pk))
    application = the_application()
    assert application.partner.join_source == events
    assert (application.source_origin, application.requested_source) == ("chosen", "no-such-key")
    assert [r.getMessage() for r in caplog.records if r.name == "partners.applications"] == [
        "Application with an unknown join source key source='no-such-key'; falling back"
    ]


def test_without_a_link_or_a_choice_the_default_website_source_is_used(client, caplog):
    website = JoinSourceFactory(key="website", name="Website", kind="website")
    with caplog.at_level(logging.WARNING, logger="partners.applications"):
        client.post(f"{APPLY}?ref=nobody", form())
    application = the_application()
    assert (application.partner.join_source, application.partner.referred_by) == (website, None)
    assert application.source_origin == "default"
    assert "unknown or not joined referring partner ref='nobody'" in caplog.text


def test_a_referral_by_an_organisation_that_never_joined_is_not_trusted(client, caplog):
    pending = PartnerFactory(key="pending", applied=True)
    with caplog.at_level(logging.WARNING, logger="partners.applications"):
        client.post(f"{APPLY}?ref=pending", form())
    partner = the_application().partner
    # No source has the key "website": the default is the oldest website-kind source.
    assert partner.referred_by is None and partner.join_source == pending.join_source
    assert the_application().source_origin == "default"
    assert "ref='pending'" in caplog.text


def test_a_source_the_form_does_not_offer_is_refused_with_a_message(client):
    hidden = JoinSourceFactory(name="Internal list", kind="outreach")
    JoinSourceFactory(name="Events", kind="event", offered_on_application=True)
    response = client.post(APPLY, form(join_source=hidden.pk))
    assert response.status_code == 400
    assert "Select a valid choice" in response.content.decode()
    assert not Partner.objects.exists()


def test_a_filled_honeypot_is_refused_clearly_and_nothing_is_recorded(client, caplog):
    with caplog.at_level(logging.WARNING, logger="portal.onboarding"):
        response = client.post(APPLY, form(fax_number="+1 555 0100"))
    assert response.status_code == 400
    assert "a field meant to stay empty was filled in" in response.content.decode()
    assert not Partner.objects.exists() and not OutboundEmail.objects.exists()
    assert "honeypot filled, from 127.0.0.1" in caplog.text


def test_the_honeypot_is_hidden_from_people_and_kept_out_of_the_tab_order(client):
    html = client.get(APPLY).content.decode()
    assert '<div class="hp-field" aria-hidden="true">' in html
    assert 'name="fax_number"' in html and 'tabindex="-1"' in html


def test_the_rate_limit_refuses_the_next_application_from_the_same_address_only(client, settings):
    settings.APPLY_RATE_LIMIT = "2/h"
    for n in (1, 2):
        response = client.post(APPLY, form(company=f"Company {n}", contact_email=f"c{n}@example.com"))
        assert response.status_code == 302
    refused = client.post(APPLY, form(company="Company 3", contact_email="c3@example.com"))
    assert refused.status_code == 429
    assert 0 < int(refused["Retry-After"]) <= 3600
    assert "Too many applications from your network" in refused.content.decode()
    assert sorted(Partner.objects.values_list("name", flat=True)) == ["Company 1", "Company 2"]
    # Another address has its own allowance.
    other = client.post(
        APPLY, form(company="Company 4", contact_email="c4@example.com"), REMOTE_ADDR="192.0.2.7"
    )
    assert other.status_code == 302
    assert Application.objects.get(partner__name="Company 4").client_address == "192.0.2.7"


def test_behind_a_trusted_proxy_the_limit_counts_the_forwarded_client_address(client, settings):
    settings.APPLY_RATE_LIMIT = "1/h"
    settings.TRUSTED_PROXY_COUNT = 1
    first = client.post(APPLY, form(), HTTP_X_FORWARDED_FOR="198.51.100.1")
    assert first.status_code == 302
    same = client.post(APPLY, form(contact_email="b@example.com"), HTTP_X_FORWARDED_FOR="198.51.100.1")
    assert same.status_code == 429
    other = client.post(APPLY, form(contact_email="c@example.com"), HTTP_X_FORWARDED_FOR="198.51.100.2")
    assert other.status_code == 302


def test_invalid_input_comes_back_with_messages_never_a_server_error(client):
    response = client.post(
        APPLY,
        form(
            company="", partner_type="spaceship", contact_email="not-an-address", pitch="", website="ht!tp://"
        ),
    )
    assert response.status_code == 400
    errors = response.context["form"].errors
    assert set(errors) == {"company", "partner_type", "contact_email", "pitch", "website"}
    assert response.context["form"]["contact_name"].value() == "Nora North"
    assert client.post(APPLY, {"company": "x" * 5000}).status_code == 400
    assert client.post(f"{APPLY}?source={'k' * 5000}&ref={'r' * 5000}", form()).status_code == 302
    assert Application.objects.get().requested_source == "k" * 100
    assert not Partner.objects.exclude(status="applied").exists()


def test_a_second_application_from_an_address_still_waiting_is_not_recorded_nor_revealed(client):
    first = client.post(APPLY, form())
    again = client.post(APPLY, form(company="Northwind Again", contact_email="NORA@northwind.example"))
    # The same answer as a new application, so nobody learns that the address applied before.
    assert again.status_code == first.status_code == 302 and again.url == first.url
    assert Partner.objects.count() == 1 and Application.objects.count() == 1
    # With another error, that one is shown and the pending application still is not.
    response = client.post(APPLY, form(contact_email="nora@northwind.example", pitch=""))
    assert response.status_code == 400
    assert set(response.context["form"].errors) == {"pitch"}


def test_the_kpis_count_the_application_in_the_join_source_of_its_link(client):
    summit = JoinSourceFactory(key="summit-2026", name="Summit 2026", kind="event")
    website = JoinSourceFactory(key="website", kind="website")
    client.post(f"{APPLY}?source=summit-2026", form())
    client.post(APPLY, form(company="Other Co", contact_email="o@example.com"))
    today = program_today()
    kt.recompute(as_of=today.isoformat())
    month = today.strftime("%Y-%m")
    assert kt.value("applications", month, scope="join_source", key=summit.export_key) == 1
    assert kt.value("applications", month, scope="join_source", key=website.export_key) == 1
    assert kt.value("applications", month) == 2
