"""Personal API tokens: list your own, create (the secret is shown once), revoke."""

from drf_spectacular.utils import OpenApiExample, extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.authentication import SessionAuthentication
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response

from api.authentication import ApiTokenAuthentication, LockoutAwareBasicAuthentication
from api.idempotency import IdempotentPostMixin
from api.models import ApiToken
from api.pagination import StandardPagination
from api.schema import errors
from api.serializers import ApiTokenCreatedSerializer, ApiTokenInputSerializer, ApiTokenSerializer
from api.services import api_token_create, api_token_revoke
from api.throttling import AUTH_SCOPE, CredentialAttemptThrottle, ScopedThrottle

TOKEN_EXAMPLE = {
    "id": 7,
    "name": "CRM sync",
    "prefix": "prm_Xq3v9Jk2",
    "created_at": "2026-03-02T09:15:00Z",
    "last_used_at": None,
    "revoked_at": None,
}


@extend_schema_view(
    list=extend_schema(
        summary="List your API tokens",
        description="Your own tokens, active and revoked, newest first. Secrets are never shown again.",
        responses={200: ApiTokenSerializer(many=True), **errors(429)},
        examples=[OpenApiExample("A token", value=[TOKEN_EXAMPLE], response_only=True)],
    ),
    create=extend_schema(
        summary="Create an API token",
        description=(
            "Returns the secret once; only its hash is stored. Send it as `Authorization: Bearer <secret>`. "
            "This endpoint also accepts HTTP Basic (username and password), so a script can get its first "
            "token without a browser session."
        ),
        request=ApiTokenInputSerializer,
        responses={201: ApiTokenCreatedSerializer, **errors(400, 429)},
        examples=[
            OpenApiExample("Request", value={"name": "CRM sync"}, request_only=True),
            OpenApiExample(
                "Created",
                value={**TOKEN_EXAMPLE, "secret": "prm_Xq3v9Jk2…(43 characters)"},
                response_only=True,
                status_codes=["201"],
            ),
        ],
    ),
    destroy=extend_schema(
        summary="Revoke an API token",
        description="The token stops working at once; it stays in your list as revoked.",
        responses={204: None, **errors(404, 429)},
    ),
)
class ApiTokenViewSet(
    IdempotentPostMixin,
    mixins.ListModelMixin,
    mixins.CreateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    authentication_classes = [ApiTokenAuthentication, SessionAuthentication, LockoutAwareBasicAuthentication]
    permission_classes = [IsAuthenticated]
    throttle_classes = [ScopedThrottle]
    throttle_scope = AUTH_SCOPE
    serializer_class = ApiTokenSerializer
    pagination_class = StandardPagination
    queryset = ApiToken.objects.none()
    filter_backends: list = []
    # The secret is shown once: a replay of the creation answers without it (docs/integrations.md).
    idempotency_leave_out = frozenset({"secret"})

    def initial(self, request, *args, **kwargs):
        # Throttle by client address before authenticating, so passwords cannot be guessed at speed.
        attempts = CredentialAttemptThrottle()
        if not attempts.allow_request(request, self):
            self.throttled(request, attempts.wait())
        super().initial(request, *args, **kwargs)

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return ApiToken.objects.none()
        return ApiToken.objects.filter(user=self.request.user)

    def create(self, request, *args, **kwargs):
        serializer = ApiTokenInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        token, secret = api_token_create(user=request.user, name=serializer.validated_data["name"])
        token.secret = secret
        return Response(ApiTokenCreatedSerializer(token).data, status=status.HTTP_201_CREATED)

    def perform_destroy(self, instance):
        api_token_revoke(token=instance)
