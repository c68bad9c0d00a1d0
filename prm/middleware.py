"""Requests refused before any view reads them."""

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, JsonResponse, QueryDict
from django.template.loader import render_to_string

FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
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
