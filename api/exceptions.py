"""One error body for every failure the API reports, whatever raised it.

    {"error": {"status": 400, "code": "invalid", "detail": "…", "fields": {"amount": ["…"]}}}

`fields` maps a request field to its messages (empty when the error is not about a field);
a 409 on a registration decision also carries the conflicting registration under `conflict`.
"""

from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import set_rollback

from api.parsers import too_large
from prm.database import is_query_timeout
from prm.middleware import QUERY_TIMEOUT

NON_FIELD_KEYS = {api_settings.NON_FIELD_ERRORS_KEY, "__all__"}


class QueryTimeout(exceptions.APIException):
    """A statement its timeout cancelled (prm/database.py): nothing is left running; try again."""

    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = QUERY_TIMEOUT
    default_code = "timeout"


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The request conflicts with the current state of the resource."
    default_code = "conflict"

    def __init__(self, detail: str | None = None, *, extra: dict[str, Any] | None = None):
        super().__init__(detail)
        self.extra = extra or {}


def _flatten_fields(detail: Any, prefix: str = "") -> tuple[dict[str, list[str]], list[str]]:
    """DRF's nested error detail -> ({"field" or "parent.child": [messages]}, non-field messages)."""
    fields: dict[str, list[str]] = {}
    general: list[str] = []
    if isinstance(detail, dict):
        for key, value in detail.items():
            if key in NON_FIELD_KEYS and not prefix:
                general.extend(_messages(value))
                continue
            name = f"{prefix}.{key}" if prefix else str(key)
            if isinstance(value, dict):
                nested, nested_general = _flatten_fields(value, name)
                fields.update(nested)
                if nested_general:
                    fields.setdefault(name, []).extend(nested_general)
            else:
                fields[name] = _messages(value)
    else:
        general.extend(_messages(detail))
    return fields, general


def _messages(value: Any) -> list[str]:
    if isinstance(value, list | tuple):
        out: list[str] = []
        for item in value:
            out.extend(_messages(item))
        return out
    if isinstance(value, dict):
        return [f"{k}: {m}" for k, v in value.items() for m in _messages(v)]
    return [str(value)]


def _code(exc: exceptions.APIException) -> str:
    if isinstance(exc, exceptions.ValidationError):
        return "invalid"
    return getattr(exc, "default_code", "error")


def error_body(
    *, status_code: int, code: str, detail: str, fields: dict[str, list[str]] | None = None, **extra: Any
) -> dict[str, Any]:
    return {"error": {"status": status_code, "code": code, "detail": detail, "fields": fields or {}, **extra}}


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(
            exc.message_dict
            if hasattr(exc, "error_dict")
            else {api_settings.NON_FIELD_ERRORS_KEY: exc.messages}
        )
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    elif isinstance(exc, RequestDataTooBig):
        exc = too_large(settings.DATA_UPLOAD_MAX_MEMORY_SIZE)
    elif isinstance(exc, TooManyFieldsSent):
        exc = exceptions.ParseError("The request has too many fields.")
    elif is_query_timeout(exc):
        exc = QueryTimeout()
    if not isinstance(exc, exceptions.APIException):
        return None  # a genuine server error: let Django report it

    headers: dict[str, str] = {}
    if auth_header := getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = auth_header
    if wait := getattr(exc, "wait", None):
        headers["Retry-After"] = str(int(wait))
    elif isinstance(exc, QueryTimeout):
        headers["Retry-After"] = "30"

    if isinstance(exc, exceptions.ValidationError):
        fields, general = _flatten_fields(exc.detail)
        detail = " ".join(general) if general else "The request has invalid fields."
    else:
        fields, general = {}, _messages(exc.detail)
        detail = " ".join(general)
    extra = exc.extra if isinstance(exc, Conflict) else {}
    set_rollback()
    body = error_body(status_code=exc.status_code, code=_code(exc), detail=detail, fields=fields, **extra)
    return Response(body, status=exc.status_code, headers=headers)
