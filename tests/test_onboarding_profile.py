"""The partner profile: admins edit it; the logo is checked, stored privately and served to its people."""

from io import BytesIO

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from partners.models import PartnerProfile
from tests.factories import PartnerFactory, PartnerUserFactory, StaffUserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


@pytest.fixture
def admin():
    return PartnerUserFactory(partner=PartnerFactory(name="Northwind"), role="admin", user__username="ada")


def image(
    fmt: str = "PNG", size: tuple[int, int] = (40, 20), name: str | None = None, **save
) -> SimpleUploadedFile:
    buffer = BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(buffer, format=fmt, **save)
    extension = {"JPEG": "jpg"}.get(fmt, fmt.lower())
    return SimpleUploadedFile(
        name or f"logo.{extension}", buffer.getvalue(), content_type=f"image/{extension}"
    )


def details(**overrides) -> dict:
    return {
        "website": "northwind.example",
        "description": "Nordic retail reseller.",
        "address": "Storgatan 1\nStockholm",
        "phone": "+46 8 123 45",
        "contact_name": "Ada Admin",
        "contact_email": "ada@northwind.example",
        **overrides,
    }


def test_an_admin_edits_the_company_details_and_contact(client, admin):
    client.force_login(admin.user)
    response = client.post("/portal/profile/", details())
    assert response.status_code == 302
    profile = PartnerProfile.objects.get(partner=admin.partner)
    assert (profile.website, profile.address, profile.contact_email, profile.updated_by) == (
        "https://northwind.example",
        "Storgatan 1\nStockholm",
        "ada@northwind.example",
        admin.user,
    )
    bad = client.post("/portal/profile/", details(contact_email="nope", website="ht!tp"))
    assert bad.status_code == 400
    assert set(bad.context["form"].errors) == {"contact_email", "website"}


def test_a_logo_is_stored_under_media_root_and_served_to_the_partner_and_staff_only(
    client, admin, media_root
):
    client.force_login(admin.user)
    assert client.post("/portal/profile/", {**details(), "logo": image("PNG")}).status_code == 302
    profile = PartnerProfile.objects.get()
    assert profile.logo.name.startswith(f"partners/{admin.partner_id}/logo-") and profile.logo.name.endswith(
        ".png"
    )
    assert (media_root / profile.logo.name).is_file()

    url = f"/partners/{admin.partner_id}/logo/"
    served = client.get(url)
    assert served.status_code == 200 and served["Content-Type"] == "image/png"
    assert Image.open(BytesIO(b"".join(served.streaming_content))).size == (40, 20)
    assert served["Cache-Control"] == "private, max-age=300"

    colleague = PartnerUserFactory(partner=admin.partner, role="member")
    client.force_login(colleague.user)
    assert client.get(url).status_code == 200
    client.force_login(StaffUserFactory())
    assert client.get(url).status_code == 200
    client.force_login(PartnerUserFactory().user)  # another partner's user
    assert client.get(url).status_code == 404
    client.logout()
    assert client.get(url)["Location"].startswith("/login/")
    # No public URL serves the media folder.
    assert client.get(f"/media/{profile.logo.name}").status_code == 404


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP"])
def test_jpeg_and_webp_logos_are_accepted_with_their_own_type(client, admin, fmt):
    client.force_login(admin.user)
    assert client.post("/portal/profile/", {**details(), "logo": image(fmt)}).status_code == 302
    served = client.get(f"/partners/{admin.partner_id}/logo/")
    assert served["Content-Type"] == {"JPEG": "image/jpeg", "WEBP": "image/webp"}[fmt]


def test_a_logo_is_re_encoded_so_nothing_appended_to_it_is_kept(client, admin, media_root):
    upload = image("PNG")
    payload = upload.read() + b"<script>alert(1)</script>"
    client.force_login(admin.user)
    client.post("/portal/profile/", {**details(), "logo": SimpleUploadedFile("logo.png", payload)})
    stored = (media_root / PartnerProfile.objects.get().logo.name).read_bytes()
    assert b"<script>" not in stored and stored.startswith(b"\x89PNG")


def test_refused_logos_say_why_and_leave_the_profile_unchanged(client, admin, settings):
    settings.LOGO_MAX_BYTES = 2000
    settings.LOGO_MAX_DIMENSION = 100
    client.force_login(admin.user)
    cases = [
        (image("GIF"), "Upload a PNG, JPEG or WebP image. This file is GIF."),
        (SimpleUploadedFile("logo.png", b"not an image at all"), "Upload a PNG, JPEG or WebP image."),
        (image("PNG", size=(101, 10)), "The logo is 101×10 pixels; at most 100×100 is accepted."),
        (SimpleUploadedFile("logo.png", b"\x89PNG" + b"0" * 3000), "The logo is 3 KB; the limit is 2 KB."),
    ]
    for upload, message in cases:
        response = client.post("/portal/profile/", {**details(), "logo": upload})
        assert response.status_code == 400
        assert response.context["form"].errors["logo"] == [message]
    assert not PartnerProfile.objects.exists()


def test_replacing_or_removing_the_logo_deletes_the_old_file(
    client, admin, media_root, django_capture_on_commit_callbacks
):
    client.force_login(admin.user)
    client.post("/portal/profile/", {**details(), "logo": image("PNG")})
    first = media_root / PartnerProfile.objects.get().logo.name
    with django_capture_on_commit_callbacks(execute=True):
        client.post("/portal/profile/", {**details(), "logo": image("JPEG")})
    second = media_root / PartnerProfile.objects.get().logo.name
    assert second.is_file() and not first.exists() and second.suffix == ".jpg"
    with django_capture_on_commit_callbacks(execute=True):
        client.post("/portal/profile/", {**details(), "remove_logo": "on"})
    assert PartnerProfile.objects.get().logo.name == "" and not second.exists()
    assert client.get(f"/partners/{admin.partner_id}/logo/").status_code == 404


def test_managers_see_the_profile_and_logo_on_the_partner_page(client, admin):
    client.force_login(admin.user)
    client.post("/portal/profile/", {**details(), "logo": image("PNG")})
    client.force_login(StaffUserFactory())
    html = client.get(f"/dashboard/partners/{admin.partner_id}/").content.decode()
    assert f'src="/partners/{admin.partner_id}/logo/?v=' in html
    assert "Ada Admin · ada@northwind.example" in html and "+46 8 123 45" in html
