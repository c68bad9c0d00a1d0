"""Who may open a dashboard page: staff readers (the portal guards its own pages, portal.permissions).

It rests on partners/access.py, the scoping the API uses too.
"""

from collections.abc import Callable
from functools import wraps

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from django.http.response import HttpResponseBase

from partners import access

# A page or a streamed download (StreamingHttpResponse is not an HttpResponse).
View = Callable[..., HttpResponseBase]


def staff_required(view: View) -> View:
    """Partner managers, sales ops and superusers; anyone else logged in gets 403."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponseBase:
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        if not access.is_staff_reader(request.user):
            raise PermissionDenied("This page is for partner managers and sales ops.")
        return view(request, *args, **kwargs)

    return wrapped
