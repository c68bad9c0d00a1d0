"""Input fields that apply the program's plausible-value rules (program.validation) to API input.

DRF's own fields accept what the domain refuses: DecimalField reads `1E+5` and `٣`, DateField any
year from 1 to 9999, DateTimeField makes a naive datetime aware in the server's zone. These read
the same text, then call the one validation layer the forms, the admin and the importer share.
"""

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from django.utils.dateparse import parse_datetime
from rest_framework import serializers

from program.validation import (
    NAIVE_DATETIME,
    amount_errors,
    date_errors,
    decimal_from_input,
    target_value_errors,
)


class _PlainDecimalField(serializers.DecimalField):
    def _errors(self, value: Decimal) -> list[str]:
        raise NotImplementedError

    def to_internal_value(self, data: Any) -> Decimal:
        try:
            value = decimal_from_input(data)
        except ValueError as exc:
            raise serializers.ValidationError(str(exc), code="invalid") from exc
        if errors := self._errors(value):
            raise serializers.ValidationError(errors, code="invalid")
        return super().to_internal_value(value)


class MoneyField(_PlainDecimalField):
    """An amount: greater than 0, at most 12 digits of which 2 decimals, plain notation."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("max_digits", 14)
        kwargs.setdefault("decimal_places", 2)
        super().__init__(**kwargs)

    def _errors(self, value: Decimal) -> list[str]:
        return amount_errors(value)


class TargetValueField(_PlainDecimalField):
    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("max_digits", 20)
        kwargs.setdefault("decimal_places", 4)
        super().__init__(**kwargs)

    def _errors(self, value: Decimal) -> list[str]:
        return target_value_errors(value)


NOT_ASCII_MOMENT = "must be written with ASCII digits (e.g. 2026-03-31)"


def _refuse_other_digits(value: Any) -> None:
    # Django's date parsers match any script's digits, and int() reads them ("٢٠٢٦" is 2026).
    if isinstance(value, str) and not value.isascii():
        raise serializers.ValidationError(NOT_ASCII_MOMENT, code="invalid")


class PlausibleDateField(serializers.DateField):
    def to_internal_value(self, value: Any) -> date:
        _refuse_other_digits(value)
        parsed = super().to_internal_value(value)
        if errors := date_errors(parsed):
            raise serializers.ValidationError(errors, code="invalid")
        return parsed


class AwareDateTimeField(serializers.DateTimeField):
    """ISO 8601 with a UTC offset, within the plausible range; a naive value is refused."""

    def to_internal_value(self, value: Any) -> datetime:
        _refuse_other_digits(value)
        if isinstance(value, str) and (parsed := _parse(value)) is not None and parsed.tzinfo is None:
            raise serializers.ValidationError(NAIVE_DATETIME, code="naive")
        moment = super().to_internal_value(value)
        if errors := date_errors(moment):
            raise serializers.ValidationError(errors, code="invalid")
        return moment


def _parse(text: str) -> datetime | None:
    try:
        return parse_datetime(text.strip())
    except ValueError:
        return None
