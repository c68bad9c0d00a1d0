"""Template tags of the insight partials: the partner page's peer standing (kpis.peers)."""

from django import template

from kpis.peers import Standing, peer_standing
from kpis.periods import Period
from partners.models import Partner

register = template.Library()


@register.simple_tag
def partner_peer_standing(partner: Partner, period: Period, model: str | None = None) -> list[Standing]:
    """Where the partner stands among its tier, type and join source in the period (one query)."""
    return peer_standing(partner, period, attribution_model=model)
