"""Model and form fields that carry the plausible-value rules of `program.validation`.

The model fields add the validators (so `full_clean()`, the services and the admin's forms refuse
implausible values) and give the admin a form field that reads numbers in plain notation only.
They deconstruct as Django's own fields: the validators are not database state, so swapping them
in needs no migration (and no SQLite table rebuild, which would drop the KPI fact-log triggers).
"""

from decimal import Decimal
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.db import models

from program.validation import (
    decimal_from_input,
    validate_amount,
    validate_plausible_date,
    validate_plausible_datetime,
    validate_target_value,
)


class PlainDecimalFormField(forms.DecimalField):
    """forms.DecimalField reads `1E+5` and `٣`; this one only ASCII digits in plain notation."""

    # django-stubs gives DecimalField the to_python of IntegerField (int | None); Django's own
    # DecimalField.to_python returns a Decimal, as this one does.
    def to_python(self, value: Any) -> Decimal | None:  # type: ignore[override]
        if value in self.empty_values:
            return None
        try:
            return decimal_from_input(value)
        except ValueError as exc:
            raise ValidationError(str(exc), code="invalid") from exc


class _DjangoPath:
    """Deconstruct as the Django field this one extends, leaving out our validators."""

    django_path: str
    our_validators: tuple

    def deconstruct(self) -> tuple[str, str, list, dict]:
        name, _path, args, kwargs = super().deconstruct()  # type: ignore[misc]
        validators = [v for v in kwargs.pop("validators", []) if v not in self.our_validators]
        if validators:
            kwargs["validators"] = validators
        return name, self.django_path, args, kwargs


class MoneyField(_DjangoPath, models.DecimalField):
    """An amount of money: greater than 0, at most 12 digits of which 2 decimals."""

    django_path = "django.db.models.DecimalField"
    our_validators = (validate_amount,)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("max_digits", 14)
        kwargs.setdefault("decimal_places", 2)
        kwargs["validators"] = [*kwargs.get("validators", []), validate_amount]
        super().__init__(*args, **kwargs)

    def formfield(self, **kwargs: Any) -> forms.Field | None:
        return super().formfield(**{"form_class": PlainDecimalFormField, **kwargs})


class TargetValueField(_DjangoPath, models.DecimalField):
    django_path = "django.db.models.DecimalField"
    our_validators = (validate_target_value,)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["validators"] = [*kwargs.get("validators", []), validate_target_value]
        super().__init__(*args, **kwargs)

    def formfield(self, **kwargs: Any) -> forms.Field | None:
        return super().formfield(**{"form_class": PlainDecimalFormField, **kwargs})


class PlausibleDateField(_DjangoPath, models.DateField):
    django_path = "django.db.models.DateField"
    our_validators = (validate_plausible_date,)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["validators"] = [*kwargs.get("validators", []), validate_plausible_date]
        super().__init__(*args, **kwargs)


class PlausibleDateTimeField(_DjangoPath, models.DateTimeField):
    django_path = "django.db.models.DateTimeField"
    our_validators = (validate_plausible_datetime,)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["validators"] = [*kwargs.get("validators", []), validate_plausible_datetime]
        super().__init__(*args, **kwargs)
