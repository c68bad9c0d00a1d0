"""Who may open a portal page: the users of one partner, who see that partner only.

It rests on partners/access.py, the scoping the API and the dashboards use too.
"""

from collections.abc import Callable
from functools import wraps
from typing import cast

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse

from partners import access
from partners.models import Partner, PartnerUser
from prm.http import AuthenticatedRequest

View = Callable[..., HttpResponse]


class PartnerRequest(AuthenticatedRequest):
    """What a portal view behind `partner_required` gets: the partner the user acts for, and the
    membership (its role)."""

    partner: Partner
    partner_membership: PartnerUser


def partner_required(view: View) -> View:
    """Portal users; the view gets `request.partner`, the one partner they act for, and
    `request.partner_membership` (its role)."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        membership = access.membership_of(request.user)
        if membership is None:
            raise PermissionDenied("This page is for partner users.")
        partner_request = cast(PartnerRequest, request)  # the attributes the class declares, set now
        partner_request.partner = membership.partner
        partner_request.partner_membership = membership
        return view(partner_request, *args, **kwargs)

    return wrapped
