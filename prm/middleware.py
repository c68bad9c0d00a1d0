"""Requests refused before any view reads them."""

import logging
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, JsonResponse, QueryDict
from django.template.loader import render_to_string

FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
logger = logging.getLogger(__name__)
NUL_REFUSED = "The request contains a NUL character (%00), which no field accepts."


def _has_nul(request: HttpRequest) -> bool:
    if "\x00" in request.path:
        return True
    if _any_nul(request.GET):
        return True
    if request.method == "POST" and request.content_type in FORM_TYPES:
        # request.content_type is lowercased, as Django's form parsing reads it; uploaded file names
        # are cleaned by Django, the fields are checked here.
        return _any_nul(request.POST)
    return False


def _any_nul(data: QueryDict) -> bool:
    return any("\x00" in key or any("\x00" in v for v in values) for key, values in data.lists())


class RejectNulMiddleware:
    """A NUL in a query string or form field reaches PostgreSQL as an error (a 500) wherever a view
    passes it on unchecked (admin list filters, lookups by key): refuse it once, here, with a 400."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if _has_nul(request):
            if request.path.startswith("/api/") or request.path.endswith(".json"):
                body = {"error": {"status": 400, "code": "invalid", "detail": NUL_REFUSED, "fields": {}}}
                return JsonResponse(body, status=400)
            html = render_to_string("400.html", {"reason": NUL_REFUSED}, request=None)
            return HttpResponse(html, status=400)
        return self.get_response(request)


QUERY_TIMEOUT = (
    "The database took too long to answer this request, so it was stopped. Try again in a moment, "
    "or ask for less (a shorter period, fewer rows)."
)


def query_timeout_response(request: HttpRequest) -> HttpResponse:
    """503 for a statement its timeout cancelled: the API's error shape, or a page."""
    headers = {"Retry-After": "30"}
    if request.path.startswith("/api/") or request.path.endswith(".json"):
        body = {"error": {"status": 503, "code": "timeout", "detail": QUERY_TIMEOUT, "fields": {}}}
        return JsonResponse(body, status=503, headers=headers)
    # No request context: context processors would query the database that just gave up.
    html = render_to_string("503.html", {"reason": QUERY_TIMEOUT}, request=None)
    return HttpResponse(html, status=503, headers=headers)


class QueryTimeoutMiddleware:
    """A view whose statement outlasted `DB_STATEMENT_TIMEOUT_SECONDS` (prm/database.py) answers 503,
    not a 500: PostgreSQL has already cancelled the statement, so nothing is left running."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        from prm.database import is_query_timeout

        if is_query_timeout(exception):
            logger.warning("query timeout on %s %s: %s", request.method, request.path, exception)
            return query_timeout_response(request)
        return None
