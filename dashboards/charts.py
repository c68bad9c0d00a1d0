"""Chart specs for the dashboards' templates; the builder lives in prm.charts so that the portal
draws its charts the same way."""

from prm.charts import chart

__all__ = ["chart"]
