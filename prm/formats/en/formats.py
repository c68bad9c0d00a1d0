"""One date format on every page (docs/dashboards.md "Dates"): `3 Dec 2026`, `3 Dec 2026, 14:05`.

Templates write `|date` (DATE_FORMAT) or `|date:"DATETIME_FORMAT"`; Django reads these through
FORMAT_MODULE_PATH, which wins over the locale's own formats.
"""

DATE_FORMAT = "j M Y"
DATETIME_FORMAT = "j M Y, H:i"
SHORT_DATE_FORMAT = "j M Y"
SHORT_DATETIME_FORMAT = "j M Y, H:i"
