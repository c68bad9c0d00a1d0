"""List responses built only from the published KPI set: cached and tagged per publication.

What those reads return changes only when `kpis.models.KpiPublication.version` does (database
triggers keep that true for every writer, in the writer's transaction), so a body rendered under
one version stays right until the next. It is cached under (version, the reader's visibility, the
negotiated media type, host, path and query) in the `kpi_responses` cache for
`API_PUBLISHED_CACHE_SECONDS`, and carries an ETag of that key; a client that sends the tag back
in If-None-Match gets 304 Not Modified. A repeated request then costs its authentication, one
query for the version and one cache read, instead of the filters, the page query and the
serializer. Requests with a parameter the view does not know are answered but not cached, so
made-up parameters cannot fill the cache.

The version is read before the rows: a publication committing in between leaves a newer body under
an older key nobody asks for again, never an older body under the newer key.
"""

import hashlib
from typing import Any

from django.conf import settings
from django.core.cache import caches
from django.http import HttpResponse, HttpResponseBase, HttpResponseNotModified
from django.utils.cache import patch_vary_headers
from django.utils.http import parse_etags
from django_filters import FilterSet
from rest_framework import mixins, viewsets
from rest_framework.request import Request

from api.filters import non_filter_parameters
from api.permissions import acting_partner, is_staff_reader
from kpis.selectors import publication_version

# The responses differ per user (visibility) and are only worth keeping for the client itself.
CACHE_CONTROL = "private, no-cache"
VARY = ("Accept", "Authorization", "Cookie")


def reader_visibility(request: Request) -> str:
    """Which slice of the published set this reader may see (part of the cache key)."""
    if is_staff_reader(request):
        return "staff"
    partner = acting_partner(request)
    return f"partner:{partner.pk}" if partner is not None else "none"


def published_cache_key(request: Request, *, version: str) -> str:
    # Sorted by name only: a repeated parameter keeps its order (the last value of a single-valued
    # filter wins, so `grain=year&grain=month` and `grain=month&grain=year` differ).
    query = sorted(request.query_params.lists(), key=lambda item: item[0])
    parts = [
        version,
        reader_visibility(request),
        request.accepted_media_type,  # with its parameters: `application/json; indent=4` differs
        request.scheme or "",
        request.get_host(),
        request.path,
        repr(query),
    ]
    return "api:published:" + hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _matches(etag: str, if_none_match: str) -> bool:
    """If-None-Match's weak comparison (RFC 9110 13.1.2): `W/"x"` matches `"x"`."""
    sent = {tag.removeprefix("W/") for tag in parse_etags(if_none_match)}
    return etag in sent or "*" in sent


def tag_response(response: HttpResponseBase, etag: str) -> HttpResponseBase:
    response["ETag"] = etag
    response["Cache-Control"] = CACHE_CONTROL
    patch_vary_headers(response, VARY)
    return response


def published_etag(request: Request) -> tuple[str, str]:
    """(cache key, ETag) of a response built only from the published set, as of now."""
    key = published_cache_key(request, version=publication_version())
    return key, f'"{key[-32:]}"'


def not_modified(request: Request, etag: str) -> HttpResponseBase | None:
    """304 when the client already holds this tag, else None."""
    if _matches(etag, request.headers.get("If-None-Match", "")):
        return tag_response(HttpResponseNotModified(), etag)
    return None


class PublishedSetCacheMixin(mixins.ListModelMixin, viewsets.GenericViewSet):
    """For a list view whose rows come only from the published KPI set (KpiValue)."""

    filterset_class: type[FilterSet]

    def cacheable_parameters(self) -> set[str]:
        return set(self.filterset_class.base_filters) | non_filter_parameters(self)

    # A cached body comes back as a plain HttpResponse (already rendered), not a DRF Response: DRF
    # takes any HttpResponseBase from a handler, the stubs' ListModelMixin.list promises a Response.
    def list(self, request: Request, *args: Any, **kwargs: Any) -> HttpResponseBase:  # type: ignore[override]
        # The browsable API renders per user; made-up parameters must not fill the cache.
        if request.accepted_renderer.format != "json" or not set(request.query_params) <= (
            self.cacheable_parameters()
        ):
            return super().list(request, *args, **kwargs)
        key, etag = published_etag(request)
        if (unchanged := not_modified(request, etag)) is not None:
            return unchanged
        cache = caches["kpi_responses"]
        cached = cache.get(key)
        if cached is None:
            response = super().list(request, *args, **kwargs)
            if response.status_code != 200:
                return response
            self.finalize_response(request, response, *args, **kwargs).render()
            cached = (bytes(response.content), response["Content-Type"])
            cache.set(key, cached, settings.API_PUBLISHED_CACHE_SECONDS)
        content, content_type = cached
        return tag_response(HttpResponse(content, content_type=content_type), etag)
