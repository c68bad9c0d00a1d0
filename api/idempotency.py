"""Idempotency-Key on every POST of the API (docs/integrations.md, "Idempotent writes").

A client that may send a POST twice (a timeout, a retry after a crash) sends a key of its choice:
the first request runs and its answer (any status below 500) is kept for IDEMPOTENCY_KEY_HOURS;
the same key with the same request (method, path, query and body) gets that answer again, marked
`Idempotent-Replayed: true`, and nothing runs twice. The same key with another request is refused
with 422; while the first request still runs, a retry gets 409. Keys are scoped per API token (or
per user for a session): two tokens never see each other's keys. A 5xx answer is not kept, so the
client may retry with the same key.
"""

import hashlib
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.http import HttpResponse
from django.utils import timezone
from rest_framework import exceptions, status

from api.models import IdempotencyKey

HEADER = "Idempotency-Key"
# A first request that has not answered in this long died with its process: a retry runs again.
ABANDONED_AFTER = timedelta(minutes=5)
REPLAYED_HEADER = "Idempotent-Replayed"


class KeyReused(exceptions.APIException):
    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    default_detail = "This Idempotency-Key was used with another request; use a new key for a new request."
    default_code = "idempotency_key_reused"


class KeyInFlight(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "A request with this Idempotency-Key is still running; retry once it has answered."
    default_code = "conflict"


class _Replay(Exception):
    def __init__(self, response: HttpResponse) -> None:
        self.response = response


def _key_of(request) -> str | None:
    key = request.headers.get(HEADER)
    if key is None:
        return None
    if not 1 <= len(key) <= 255 or any(not 0x20 < ord(c) < 0x7F for c in key):
        raise exceptions.ValidationError({HEADER: ["must be 1 to 255 printable ASCII characters, no spaces"]})
    return key


def _scope(request) -> str:
    token = getattr(request, "auth", None)
    if token is not None and getattr(token, "pk", None) is not None:
        return f"token:{token.pk}"
    return f"user:{request.user.pk}"


def _fingerprint(request) -> str:
    digest = hashlib.sha256()
    raw = request._request
    for part in (raw.method, raw.path, raw.META.get("QUERY_STRING", "")):
        digest.update(part.encode("utf-8", "surrogateescape") + b"\0")
    if (request.content_type or "").startswith("multipart/"):
        # Uploads are streamed to files, never held whole: hash the fields and each file's bytes.
        for name, value in sorted((k, v) for k in request.POST for v in request.POST.getlist(k)):
            digest.update(f"{name}={value}\0".encode("utf-8", "surrogateescape"))
        for name in sorted(request.FILES):
            for upload in request.FILES.getlist(name):
                digest.update(f"{name}:{upload.name}:{upload.size}\0".encode("utf-8", "surrogateescape"))
                for chunk in upload.chunks():
                    digest.update(chunk)
                upload.seek(0)
    else:
        digest.update(raw.body)
    return digest.hexdigest()


def _replay(record: IdempotencyKey) -> HttpResponse:
    response = HttpResponse(bytes(record.body), status=record.status_code, content_type=record.content_type)
    response[REPLAYED_HEADER] = "true"
    return response


def begin(request) -> IdempotencyKey | None:
    """Claim the request's key, or raise _Replay / KeyReused / KeyInFlight (POST only)."""
    key = _key_of(request)
    if key is None:
        return None
    scope, fingerprint, now = _scope(request), _fingerprint(request), timezone.now()
    expired_before = now - timedelta(hours=settings.IDEMPOTENCY_KEY_HOURS)
    try:
        with transaction.atomic():
            IdempotencyKey.objects.filter(scope=scope, key=key, created_at__lt=expired_before).delete()
            record, created = IdempotencyKey.objects.get_or_create(
                scope=scope,
                key=key,
                defaults={"fingerprint": fingerprint, "path": request.path[:500], "created_at": now},
            )
    except IntegrityError:  # the same key sent twice at once: the other request holds it
        raise KeyInFlight() from None
    if created:
        return record
    if record.fingerprint != fingerprint:
        raise KeyReused()
    if record.status_code is not None:
        raise _Replay(_replay(record))
    if record.created_at > now - ABANDONED_AFTER:
        raise KeyInFlight()
    # The first request died without answering: this one runs in its place.
    taken = IdempotencyKey.objects.filter(pk=record.pk, created_at=record.created_at).update(created_at=now)
    if not taken:
        raise KeyInFlight()
    record.created_at = now
    return record


def finish(record: IdempotencyKey, response, *, leave_out: frozenset[str] = frozenset()) -> None:
    """Keep the answer for replays (below 500); forget the key after a server error. `leave_out`:
    top-level JSON fields never stored (a new API token's secret: a replay answers without it)."""
    if response.status_code >= 500:
        IdempotencyKey.objects.filter(pk=record.pk).delete()
        return
    if hasattr(response, "render") and not getattr(response, "is_rendered", True):
        response.render()
    IdempotencyKey.objects.filter(pk=record.pk).update(
        status_code=response.status_code,
        content_type=response.get("Content-Type", ""),
        body=_stored_body(response, leave_out),
    )


def _stored_body(response, leave_out: frozenset[str]) -> bytes:
    if getattr(response, "streaming", False):
        return b""
    if leave_out and isinstance(getattr(response, "data", None), dict):
        kept = {k: v for k, v in response.data.items() if k not in leave_out}
        return response.accepted_renderer.render(
            kept, response.accepted_media_type, response.renderer_context
        )
    return response.content


def forget(record: IdempotencyKey) -> None:
    IdempotencyKey.objects.filter(pk=record.pk).delete()


class IdempotentPostMixin:
    """For every API view that takes POST: honours Idempotency-Key (after authentication,
    permissions and throttling, so a refused request never holds a key)."""

    # Fields of the first answer a replay leaves out (never stored): credentials shown once.
    idempotency_leave_out: frozenset[str] = frozenset()

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        if request.method == "POST":
            request._idempotency_record = begin(request)

    def handle_exception(self, exc):
        if isinstance(exc, _Replay):
            return exc.response
        record = getattr(self.request, "_idempotency_record", None)
        try:
            return super().handle_exception(exc)
        except Exception:
            if record is not None:
                forget(record)
                self.request._idempotency_record = None
            raise

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        record = getattr(request, "_idempotency_record", None)
        if record is not None and not response.has_header(REPLAYED_HEADER):
            request._idempotency_record = None
            finish(record, response, leave_out=self.idempotency_leave_out)
        return response


def expire(*, now=None) -> int:
    """Delete the keys older than IDEMPOTENCY_KEY_HOURS; returns how many."""
    now = now or timezone.now()
    deleted, _ = IdempotencyKey.objects.filter(
        created_at__lt=now - timedelta(hours=settings.IDEMPOTENCY_KEY_HOURS)
    ).delete()
    return deleted
