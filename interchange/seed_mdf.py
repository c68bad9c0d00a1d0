"""Demo MDF data for `seed_demo` (docs/mdf.md): budgets for the demo partner and tier pools, and
requests and claims in every state, one of them reimbursed (so a booked MDF cost exists).

Written through mdf.services, so every rule and domain event applies. Needs the demo logins
(`manager`, and `partner` acting for the demo partner); without them it does nothing.
"""

from __future__ import annotations

import io
from datetime import date, timedelta
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import transaction
from PIL import Image, ImageDraw

from deals.models import Deal, DealRegistration
from mdf import services
from mdf.models import MdfRequest
from mdf.quarters import Quarter, quarter_of
from partners.models import Partner, PartnerUser
from program.models import program_today

D = Decimal


def _png(text: str) -> SimpleUploadedFile:
    image = Image.new("RGB", (480, 270), (236, 241, 250))
    ImageDraw.Draw(image).text((24, 120), text, fill=(20, 40, 90))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return SimpleUploadedFile("booth-photo.png", buffer.getvalue(), content_type="image/png")


def _pdf(title: str) -> SimpleUploadedFile:
    body = (
        f"%PDF-1.4\n% Demo invoice: {title}\n1 0 obj << /Type /Catalog >> endobj\n"
        "trailer << /Root 1 0 R >>\n%%EOF\n"
    )
    return SimpleUploadedFile("invoice.pdf", body.encode(), content_type="application/pdf")


def _previous(quarter: Quarter) -> Quarter:
    return quarter_of(quarter.starts_on - timedelta(days=1))


def seed_mdf(*, today: date | None = None) -> int:
    """Seed the demo MDF rows; returns how many requests it made (0 without the demo logins)."""
    user_model = get_user_model()
    manager = user_model.objects.filter(username="manager").first()
    membership = (
        PartnerUser.objects.select_related("partner", "user").filter(user__username="partner").first()
    )
    if manager is None or membership is None:
        return 0
    today = today or program_today()
    partner, admin = membership.partner, membership.user
    now, last = quarter_of(today), _previous(quarter_of(today))
    with transaction.atomic():
        for quarter, amount in ((last, "20000.00"), (now, "15000.00"), (now.next(), "15000.00")):
            services.budget_set(quarter=quarter.label, amount=D(amount), partner=partner, changed_by=manager)
        tiers = list(
            Partner.objects.exclude(tier="")
            .exclude(pk=partner.pk)
            .order_by("tier")
            .values_list("tier", flat=True)
            .distinct()
        )[:2]
        for tier in sorted(tiers):
            services.budget_set(quarter=now.label, amount=D("40000.00"), tier=tier, changed_by=manager)

        def ask(
            title: str, kind: str, start: date, days: int, amount: str, leads: int, who: Partner
        ) -> MdfRequest:
            return services.request_submit(
                partner=who,
                submitted_by=admin if who == partner else None,
                activity_type=kind,
                title=title,
                description=f"{title}: venue, materials and follow-up.",
                starts_on=start,
                ends_on=start + timedelta(days=days),
                amount_requested=D(amount),
                expected_leads=leads,
            )

        def decide(
            request: MdfRequest, amount: str | None = None, deadline: date | None = None
        ) -> MdfRequest:
            return services.request_decide(
                request=request,
                decided_by=manager,
                approve=True,
                comment="Approved: send the invoice and photos with the claim.",
                amount_approved=D(amount) if amount else None,
                claim_deadline=deadline or today + timedelta(days=45),
            )

        start = last.starts_on + timedelta(days=14)
        expo = decide(
            ask("Booth at the regional IT expo", "event", start, 1, "6000.00", 60, partner), "5500.00"
        )
        deals = list(
            Deal.objects.filter(sourcing_partner=partner)
            .order_by("-created_at")
            .values_list("pk", flat=True)[:2]
        )
        registrations = list(
            DealRegistration.objects.filter(partner=partner)
            .order_by("-submitted_at")
            .values_list("pk", flat=True)[:2]
        )
        claim = services.claim_submit(
            request=expo,
            submitted_by=admin,
            amount_claimed=D("5400.00"),
            leads=72,
            summary="72 badge scans, 9 meetings booked on the stand.",
            deal_ids=deals,
            registration_ids=registrations,
            files=[_pdf("expo stand"), _png("Our stand at the expo")],
            today=today,
        )
        claim = services.claim_decide(
            claim=claim,
            decided_by=manager,
            approve=True,
            amount_approved=D("5100.00"),
            comment="Catering is not covered; the rest is approved.",
        )
        services.claim_reimburse(claim=claim, reimbursed_by=manager, on=today)

        webinar = decide(
            ask("Joint webinar series", "webinar", start + timedelta(days=21), 14, "3000.00", 40, partner)
        )
        services.claim_submit(
            request=webinar,
            submitted_by=admin,
            amount_claimed=D("2800.00"),
            leads=35,
            summary="Three sessions, 212 registrants, 35 qualified leads.",
            files=[_pdf("webinar platform")],
            today=today,
        )
        rejected = ask("Branded merchandise", "other", start + timedelta(days=7), 0, "2500.00", 0, partner)
        services.request_decide(
            request=rejected,
            decided_by=manager,
            approve=False,
            comment="Merchandise is outside the MDF policy.",
        )
        lapsed = ask(
            "Telemarketing sprint", "telemarketing", start + timedelta(days=30), 5, "1500.00", 20, partner
        )
        decide(lapsed, deadline=lapsed.ends_on)
        services.requests_expire(today=today)

        decide(ask("Newsletter sponsorship", "email", start + timedelta(days=40), 0, "1200.00", 25, partner))

        upcoming = max(today + timedelta(days=10), now.starts_on)
        decide(
            ask("Customer roadshow, three cities", "event", upcoming, 3, "4500.00", 45, partner), "4000.00"
        )
        ask("Paid search campaign", "digital", upcoming + timedelta(days=5), 30, "3500.00", 50, partner)
        others = Partner.objects.filter(tier__in=tiers, status=Partner.Status.ACTIVE).exclude(pk=partner.pk)
        for index, other in enumerate(others.order_by("pk")[:2]):
            ask(
                "Partner enablement day",
                "training",
                upcoming + timedelta(days=index),
                0,
                "2000.00",
                15,
                other,
            )
    return MdfRequest.objects.count()
