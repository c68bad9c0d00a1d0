"""Proof-of-performance files: which are accepted, checked by their content, not their name.

Accepted: PDF (starts with `%PDF-` and has an `%%EOF` marker near its end), and PNG, JPEG and WebP
images that Pillow identifies and verifies as that format. At most MDF_PROOF_MAX_BYTES bytes each.
The stored name is random (`mdf.models.proof_upload_path`), with the extension of the detected
format; the uploaded name is kept for display only.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import UploadedFile
from PIL import Image, UnidentifiedImageError


@dataclass(frozen=True)
class ProofFormat:
    extension: str
    content_type: str


PDF = ProofFormat("pdf", "application/pdf")
IMAGE_FORMATS = {
    "PNG": ProofFormat("png", "image/png"),
    "JPEG": ProofFormat("jpg", "image/jpeg"),
    "WEBP": ProofFormat("webp", "image/webp"),
}
CONTENT_TYPES = {fmt.extension: fmt.content_type for fmt in (PDF, *IMAGE_FORMATS.values())}
NOT_ACCEPTED = "Upload a PDF, PNG, JPEG or WebP file (checked by its content, not its name)."


def size_label(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MB" if size >= 1024 * 1024 else f"{max(1, round(size / 1024))} KB"


def _is_pdf(upload: UploadedFile[bytes]) -> bool:
    upload.seek(0)
    if upload.read(5) != b"%PDF-":
        return False
    size = upload.size or 0
    upload.seek(max(0, size - 2048))
    return b"%%EOF" in upload.read(2048)


def _image_format(upload: UploadedFile[bytes]) -> ProofFormat | None:
    try:
        upload.seek(0)
        with Image.open(upload) as image:
            found = IMAGE_FORMATS.get(image.format or "")
            if found is None:
                return None
            image.verify()
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError):
        return None
    return found


def check_proof(upload: UploadedFile[bytes], *, field: str = "files") -> ProofFormat:
    """The detected format of an acceptable proof file; ValidationError({field: [...]}) otherwise."""
    limit = settings.MDF_PROOF_MAX_BYTES
    name = (upload.name or "file")[:100]
    if upload.size is None or upload.size == 0:
        raise ValidationError({field: [f"{name} is empty."]})
    if upload.size > limit:
        raise ValidationError(
            {field: [f"{name} is {size_label(upload.size)}; the limit is {size_label(limit)} a file."]}
        )
    found = PDF if _is_pdf(upload) else _image_format(upload)
    upload.seek(0)
    if found is None:
        raise ValidationError({field: [f"{name}: {NOT_ACCEPTED}"]})
    return found


def content_type_of(stored_name: str) -> str:
    return CONTENT_TYPES.get(stored_name.rsplit(".", 1)[-1].lower(), "application/octet-stream")
