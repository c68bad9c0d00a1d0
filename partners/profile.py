"""A partner's profile (company details, contact, logo): edits by its admins and partner managers.

A logo must be a PNG, JPEG or WebP image of at most LOGO_MAX_BYTES bytes and LOGO_MAX_DIMENSION
pixels a side. It is decoded and encoded again by Pillow before it is stored, so what is stored is
an image of the format it claims, without metadata or anything appended to it.
"""

from dataclasses import dataclass
from io import BytesIO

from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from PIL import Image, UnidentifiedImageError

from partners.access import can_manage_partner_users
from partners.models import Partner, PartnerProfile

PROFILE_FIELDS = ("website", "description", "address", "phone", "contact_name", "contact_email")


@dataclass(frozen=True)
class LogoFormat:
    extension: str
    content_type: str


LOGO_FORMATS = {
    "PNG": LogoFormat("png", "image/png"),
    "JPEG": LogoFormat("jpg", "image/jpeg"),
    "WEBP": LogoFormat("webp", "image/webp"),
}
CONTENT_TYPES = {fmt.extension: fmt.content_type for fmt in LOGO_FORMATS.values()}
NOT_AN_IMAGE = "Upload a PNG, JPEG or WebP image."


def _size_label(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MB" if size >= 1024 * 1024 else f"{max(1, round(size / 1024))} KB"


def clean_logo(upload: UploadedFile) -> tuple[str, bytes]:
    """(extension, bytes to store) for an acceptable logo; ValidationError({"logo": ...}) otherwise."""
    limit, side = settings.LOGO_MAX_BYTES, settings.LOGO_MAX_DIMENSION
    if upload.size is None or upload.size > limit:
        raise ValidationError(
            {"logo": [f"The logo is {_size_label(upload.size or 0)}; the limit is {_size_label(limit)}."]}
        )
    try:
        upload.seek(0)
        with Image.open(upload) as image:
            logo_format = LOGO_FORMATS.get(image.format or "")
            if logo_format is None:
                raise ValidationError({"logo": [f"{NOT_AN_IMAGE} This file is {image.format or 'unknown'}."]})
            width, height = image.size
            if width > side or height > side:
                raise ValidationError(
                    {"logo": [f"The logo is {width}×{height} pixels; at most {side}×{side} is accepted."]}
                )
            image.load()
            encoded = BytesIO()
            options = {"icc_profile": image.info["icc_profile"]} if image.info.get("icc_profile") else {}
            if image.format == "JPEG":
                options["quality"] = 92
            image.save(encoded, format=image.format, **options)
    except ValidationError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError):
        raise ValidationError({"logo": [NOT_AN_IMAGE]}) from None
    return logo_format.extension, encoded.getvalue()


def logo_content_type(name: str) -> str:
    return CONTENT_TYPES.get(name.rsplit(".", 1)[-1].lower(), "application/octet-stream")


def partner_profile(partner: Partner) -> PartnerProfile:
    """The partner's profile, empty when nobody filled it in yet (not saved then)."""
    return PartnerProfile.objects.filter(partner=partner).first() or PartnerProfile(partner=partner)


def partner_profile_update(
    *,
    partner: Partner,
    changed_by: User,
    details: dict[str, str],
    logo: UploadedFile | None = None,
    remove_logo: bool = False,
) -> PartnerProfile:
    """Save the profile's `details` (PROFILE_FIELDS) and replace or remove its logo.

    The replaced logo file is deleted once the change has committed.
    """
    if not can_manage_partner_users(changed_by, partner):
        raise PermissionDenied("Only partner managers and the partner's own admins edit its profile.")
    errors: dict[str, list[str]] = {}
    unknown = set(details) - set(PROFILE_FIELDS)
    if unknown:
        raise ValueError(f"not profile fields: {', '.join(sorted(unknown))}")
    new_logo = None
    if logo is not None:
        try:
            new_logo = clean_logo(logo)
        except ValidationError as exc:
            errors.update(exc.message_dict)
    with transaction.atomic():
        profile = PartnerProfile.objects.select_for_update().filter(
            partner=partner
        ).first() or PartnerProfile(partner=partner)
        for field, value in details.items():
            setattr(profile, field, (value or "").strip())
        profile.updated_by = changed_by
        try:
            profile.full_clean(exclude={"logo", *errors}, validate_unique=False, validate_constraints=False)
        except ValidationError as exc:
            errors = {**exc.message_dict, **errors}
        if errors:
            raise ValidationError(errors)
        old_name = profile.logo.name if profile.logo else ""
        if new_logo is not None:
            extension, content = new_logo
            profile.logo.save(f"logo.{extension}", ContentFile(content), save=False)
        elif remove_logo:
            profile.logo = ""
        profile.save()
        if old_name and old_name != (profile.logo.name or ""):
            storage = profile.logo.storage
            transaction.on_commit(lambda: storage.delete(old_name))
    return profile
