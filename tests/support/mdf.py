"""MDF test helpers: small real proof files, and a budget with requests in a known state."""

import io
from datetime import date
from decimal import Decimal

from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from mdf import services

Q2_START = date(2026, 4, 10)
Q2_END = date(2026, 4, 12)
LATE_DEADLINE = date(2027, 1, 31)
AFTER = date(2026, 12, 1)  # a day after every activity of these tests, before their claim deadline


def png_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), (200, 30, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def pdf_bytes() -> bytes:
    return b"%PDF-1.4\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"


def png_upload(name: str = "booth.png") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, png_bytes(), content_type="image/png")


def pdf_upload(name: str = "invoice.pdf") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, pdf_bytes(), content_type="application/pdf")


def submit(partner, user=None, amount="1000.00", *, starts_on=Q2_START, ends_on=Q2_END, title="Trade show"):
    return services.request_submit(
        partner=partner,
        submitted_by=user,
        activity_type="event",
        title=title,
        starts_on=starts_on,
        ends_on=ends_on,
        amount_requested=Decimal(amount),
        expected_leads=10,
    )


def approve(request, manager, amount=None, deadline=LATE_DEADLINE):
    return services.request_decide(
        request=request,
        decided_by=manager,
        approve=True,
        amount_approved=Decimal(amount) if amount else None,
        claim_deadline=deadline,
    )


def claim(request, user=None, amount="1000.00", files=None, **links):
    return services.claim_submit(
        request=request,
        submitted_by=user,
        amount_claimed=Decimal(amount),
        leads=12,
        summary="Booth at the fair",
        files=[pdf_upload()] if files is None else files,
        today=AFTER,
        **links,
    )
