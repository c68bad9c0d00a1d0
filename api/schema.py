"""OpenAPI pieces shared by every endpoint: the error body, its examples, and token auth."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import SAFE_METHODS, AllowAny, IsAuthenticated

from api.examples import REGISTRATION


class ErrorDetailSerializer(serializers.Serializer):
    status = serializers.IntegerField(help_text="The HTTP status, repeated for clients that lose it.")
    code = serializers.CharField(help_text="Machine-readable: invalid, not_authenticated, not_found, …")
    detail = serializers.CharField(help_text="A sentence for people.")
    # The error body's key is `fields`, so this documentation-only serializer names a field after
    # Serializer.fields; drf-spectacular reads the declared fields, never the property.
    fields = serializers.DictField(  # type: ignore[assignment]
        child=serializers.ListField(child=serializers.CharField()),
        help_text="Request field -> messages; empty when the error is not about a field.",
    )


class ErrorSerializer(serializers.Serializer):
    error = ErrorDetailSerializer()


def _example(status: int, code: str, detail: str, fields: dict | None = None, **extra) -> OpenApiExample:
    return OpenApiExample(
        f"{status} {code}",
        value={"error": {"status": status, "code": code, "detail": detail, "fields": fields or {}, **extra}},
        response_only=True,
        status_codes=[str(status)],
    )


ERROR_EXAMPLES = {
    400: _example(400, "invalid", "The request has invalid fields.", {"amount": ["must be greater than 0"]}),
    401: _example(401, "not_authenticated", "Authentication credentials were not provided."),
    403: _example(403, "permission_denied", "Only partner managers can change this resource."),
    404: _example(404, "not_found", "No DealRegistration matches the given query."),
    409: _example(409, "conflict", "Another partner holds a protected registration for this account."),
    415: _example(415, "unsupported_media_type", 'Unsupported media type "text/plain" in request.'),
    422: _example(
        422,
        "idempotency_key_reused",
        "This Idempotency-Key was used with another request; use a new key for a new request.",
    ),
    429: _example(429, "throttled", "Request was throttled. Expected available in 42 seconds."),
    503: _example(
        503,
        "not_computed",
        "The forecast has not been computed yet: it is computed after each KPI publication, and has "
        "been requested now.",
    ),
}
ERROR_DESCRIPTIONS = {
    400: "Invalid input: `fields` says which field and why; nothing was written.",
    401: "No valid session or API token.",
    403: "Signed in, but this role may not do this.",
    404: "No such object, or not one this user may see.",
    409: "Conflict with the current state (e.g. a channel conflict on approval).",
    415: "The body's Content-Type is not one this operation reads (JSON, form or multipart).",
    422: "The Idempotency-Key was already used with a different request (docs/integrations.md).",
    429: "Too many requests; `Retry-After` says when to retry.",
    503: "Not available yet (the forecast before its first computation); `Retry-After` says when.",
}


def errors(*statuses: int) -> dict[int, OpenApiResponse]:
    """Error responses for an operation; 401 is always possible."""
    codes = sorted({401, *statuses})
    return {
        code: OpenApiResponse(
            ErrorSerializer, description=ERROR_DESCRIPTIONS[code], examples=[ERROR_EXAMPLES[code]]
        )
        for code in codes
    }


READ_ERRORS = (400, 401, 404)  # 400: bad filter; 404: a stale cursor or page
DETAIL_ERRORS = (401, 404)
WRITE_ERRORS = (400, 401, 403, 429)


IDEMPOTENCY_KEY = OpenApiParameter(
    "Idempotency-Key",
    OpenApiTypes.STR,
    location=OpenApiParameter.HEADER,
    required=False,
    pattern=r"^[!-~]{1,255}$",
    description=(
        "A key of your choice (e.g. a UUID). The same key with the same request replays the first answer "
        "(header `Idempotent-Replayed: true`) instead of running again; with another request: 422. "
        "Kept 24 hours, per API token."
    ),
)


class ApiAutoSchema(AutoSchema):
    """Documents, for every operation, each error status it can answer, all in the one error shape.

    What an operation can answer follows from the view itself: 401 always; 400 for a request body
    or query filters; 415 for a body in a Content-Type it does not read; 403 when a role check may
    refuse the method; 404 for object paths and for a stale cursor or page; 429 when a throttle
    applies to the method.
    """

    def get_override_parameters(self):
        parameters = list(super().get_override_parameters())
        if self.method == "POST":
            parameters.append(IDEMPOTENCY_KEY)
        return parameters

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        for code in self._error_statuses():
            if str(code) not in responses:
                responses[str(code)] = self._get_response_for_code(
                    OpenApiResponse(
                        ErrorSerializer, description=ERROR_DESCRIPTIONS[code], examples=[ERROR_EXAMPLES[code]]
                    ),
                    str(code),
                    direction=direction,
                )
        return dict(sorted(responses.items()))

    def _error_statuses(self) -> set[int]:
        safe = self.method in SAFE_METHODS
        codes = {401, 404} if safe or "{" in self.path else {401}
        if not safe or "{" not in self.path:
            codes.add(400)
        if not safe:
            codes.add(415)  # a body in a Content-Type no parser reads
        if self.method == "POST":
            codes |= {409, 422}  # Idempotency-Key still in flight / reused with another request
        for permission in self.view.get_permissions():
            if isinstance(permission, (AllowAny, IsAuthenticated)):  # noqa: UP038
                continue
            if not safe or getattr(permission, "reads_may_be_refused", True):
                codes.add(403)
        for throttle in self.view.get_throttles():
            if not safe or not getattr(throttle, "reads_are_free", False):
                codes.add(429)
        return codes


class ApiTokenScheme(OpenApiAuthenticationExtension):
    target_class = "api.authentication.ApiTokenAuthentication"
    name = "apiToken"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A personal API token (POST /api/v1/auth/tokens/): `Authorization: Bearer prm_…`.",
        }


class LockoutAwareBasicScheme(OpenApiAuthenticationExtension):
    target_class = "api.authentication.LockoutAwareBasicAuthentication"
    name = "basicAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "basic",
            "description": (
                "Username and password, on the token endpoint only. Repeated wrong passwords for one "
                "username from one address lock that pair out: 429 with Retry-After."
            ),
        }


def conflict_response(registration_serializer) -> OpenApiResponse:
    return OpenApiResponse(
        inline_serializer(
            "RegistrationConflictError",
            fields={
                "error": inline_serializer(
                    "RegistrationConflictErrorDetail",
                    fields={
                        "status": serializers.IntegerField(),
                        "code": serializers.CharField(),
                        "detail": serializers.CharField(),
                        "fields": serializers.DictField(
                            child=serializers.ListField(child=serializers.CharField())
                        ),
                        "conflict": registration_serializer(),
                    },
                )
            },
        ),
        description=ERROR_DESCRIPTIONS[409] + " `conflict` is the registration it conflicts with.",
        examples=[
            _example(
                409,
                "conflict",
                "channel conflict with registration #298 by Contoso Partners (submitted, submitted "
                "2026-02-20, protected until 2026-05-21). Give an override reason to approve it anyway.",
                conflict={**REGISTRATION, "id": 298, "partner": 15, "partner_name": "Contoso Partners"},
            )
        ],
    )


# Reads of the published KPI set answer 304 to a current If-None-Match (api/caching.py).
IF_NONE_MATCH = OpenApiParameter(
    "If-None-Match",
    OpenApiTypes.STR,
    location=OpenApiParameter.HEADER,
    required=False,
    description="An ETag this endpoint sent before: 304 with no body while the published set is unchanged.",
)
NOT_MODIFIED = {304: OpenApiResponse(description="Not modified: the ETag sent is still current.")}
