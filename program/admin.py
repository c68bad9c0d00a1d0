"""Admin pieces every app may use."""

from django.http import HttpRequest


class ReadOnlyAdminMixin:
    """Rows the admin shows but never adds, changes or deletes (engine output, the audit trail)."""

    def has_add_permission(self, request: HttpRequest, *args: object) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
