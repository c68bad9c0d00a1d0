"""The API's JSON parser: bounded in size and nesting, so no body can exhaust a worker or crash it.

Python's json module raises RecursionError (not ValueError) on a body of thousands of nested `[`,
which DRF's parser lets through as a 500; a body larger than `API_MAX_JSON_BYTES` is refused
before it is read, in the API's error shape.
"""

import io
from typing import Any

from django.conf import settings
from rest_framework import exceptions, status
from rest_framework.parsers import JSONParser


class RequestTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request body is too large."
    default_code = "too_large"


def too_large(limit: int) -> RequestTooLarge:
    return RequestTooLarge(f"The request body is larger than {limit:,} bytes.")


def json_depth(value: Any) -> int:
    """How deeply arrays and objects nest in a parsed body (a scalar is 0)."""
    depth, level = 0, [value]
    while level:
        containers = [v for v in level if isinstance(v, dict | list)]
        if not containers:
            break
        depth += 1
        level = [child for v in containers for child in (v.values() if isinstance(v, dict) else v)]
    return depth


class BoundedJSONParser(JSONParser):
    def parse(self, stream, media_type=None, parser_context=None) -> Any:
        limit = settings.API_MAX_JSON_BYTES
        request = (parser_context or {}).get("request")
        declared = request.META.get("CONTENT_LENGTH") if request is not None else None
        if declared and declared.isdigit() and int(declared) > limit:
            raise too_large(limit)
        body = stream.read(limit + 1) if stream is not None else b""
        if len(body) > limit:
            raise too_large(limit)
        try:
            data = super().parse(io.BytesIO(body), media_type, parser_context)
        except RecursionError as exc:
            raise exceptions.ParseError("JSON parse error - the body nests too deeply.") from exc
        if json_depth(data) > settings.API_MAX_JSON_DEPTH:
            raise exceptions.ParseError(
                f"JSON parse error - the body nests deeper than {settings.API_MAX_JSON_DEPTH} levels."
            )
        return data
