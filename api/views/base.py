"""The shape every resource shares (after NetBox's declarative viewsets).

A resource declares, in one place: the rows a user may see (a `visible_*` selector, scoped by
`partners.access.row_scope`), the joins its serializer needs, its serializer, filterset and
ordering. The list and detail then cost a constant number of queries, whatever the page size.
"""

from collections.abc import Callable, Mapping
from typing import Any

from django.db.models import QuerySet
from rest_framework import mixins, viewsets
from rest_framework.decorators import api_view, permission_classes, schema
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.settings import api_settings

from api.idempotency import IdempotentPostMixin
from api.pagination import IdCursorPagination
from api.permissions import ReadScopedWriteManager
from api.throttling import WRITE_SCOPE, WriteThrottle


class ScopedViewSet(
    IdempotentPostMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    visible: Callable[..., QuerySet]
    select_related: tuple[str, ...] = ()
    permission_classes = [ReadScopedWriteManager]
    throttle_classes = [WriteThrottle]
    throttle_scope = WRITE_SCOPE
    # Any path segment reaches the view, so `/deals/0.5/` is the API's JSON 404, not Django's HTML one.
    lookup_value_regex = "[^/]+"

    def get_queryset(self) -> QuerySet:
        if getattr(self, "swagger_fake_view", False):  # drf-spectacular inspecting the view
            return super().get_queryset()
        qs = type(self).visible(self.request.user)
        return qs.select_related(*self.select_related) if self.select_related else qs

    def validated(self, serializer_class, **context) -> dict:
        """Parse the request body with an input serializer (400 with field errors when invalid);
        `context` adds to the serializer's."""
        self.body_object()
        serializer = serializer_class(
            data=self.request.data, context={**self.get_serializer_context(), **context}
        )
        serializer.is_valid(raise_exception=True)
        return dict(serializer.validated_data)

    def body_object(self) -> Mapping[str, Any]:
        """The request body, which every write takes as a JSON object (or form fields)."""
        if not isinstance(self.request.data, Mapping):
            raise ValidationError({api_settings.NON_FIELD_ERRORS_KEY: ["The body must be a JSON object."]})
        return self.request.data

    def output(self, instance, *, status: int = 200):
        """The response for a write: the object as the list and detail show it."""
        serializer = self.get_serializer(instance)
        return Response(serializer.data, status=status)


class BigTableViewSet(ScopedViewSet):
    """Million-row tables: cursor pagination (no COUNT, no OFFSET), ordering on indexed columns only."""

    pagination_class = IdCursorPagination


@api_view(["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"])
@permission_classes([AllowAny])
@schema(None)
def not_found(request, *args, **kwargs):
    """Unknown paths under /api/: the same 404 body as a missing object."""
    raise NotFound("No such API endpoint; see /api/v1/docs/.")
