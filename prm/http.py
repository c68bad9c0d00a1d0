"""The request a view behind a login sees, for the type checker.

`login_required`, the dashboards' `staff_required` and the portal's `partner_required` run a view
only for a signed-in user; the view annotates `request: AuthenticatedRequest` (or the portal's
`PartnerRequest`), so `request.user` is a User rather than `User | AnonymousUser` (the pattern
django-stubs documents). Nothing changes at run time: Django's HttpRequest is what arrives.
"""

from django.contrib.auth.models import User
from django.http import HttpRequest


class AuthenticatedRequest(HttpRequest):
    user: User
