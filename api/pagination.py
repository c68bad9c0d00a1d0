"""Pagination that stays fast on million-row tables.

Big tables (deals, touches, registrations, accounts, KPI values) use cursor pagination: an indexed
`WHERE … < cursor ORDER BY … LIMIT n`, no COUNT and no OFFSET scan. Small tables use page numbers
with a count.
"""

from rest_framework.pagination import CursorPagination, PageNumberPagination


class StandardPagination(PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500


class IdCursorPagination(CursorPagination):
    """Newest first by id; ordering=? may pick another indexed field (ties broken by position)."""

    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500
    ordering = "-id"


class KpiValueCursorPagination(IdCursorPagination):
    ordering = "id"
