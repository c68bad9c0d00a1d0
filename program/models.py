"""Program-wide settings: the one row every app may read (KPIS.md "Program settings").

The table keeps its first name, `kpis_programsettings`: the model moved here from kpis/ without
moving data (program/migrations/0001 and kpis/migrations/0014 change only Django's state), and the
KPI publication triggers on the table stay as they are.
"""

from datetime import date
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from program.attribution import AttributionModel


class ProgramSettings(models.Model):
    """One row (pk=1): the program-wide settings KPIS.md refers to."""

    currency = models.CharField(max_length=3, default="USD")
    time_zone = models.CharField(max_length=64, default="UTC", help_text="IANA name, e.g. Europe/Berlin.")
    attribution_model = models.CharField(
        max_length=20,
        choices=[(m.value, m.value.replace("_", " ").capitalize()) for m in AttributionModel],
        default=AttributionModel.LINEAR,
    )
    activation_window_days = models.PositiveIntegerField(default=90, validators=[MinValueValidator(1)])
    time_decay_half_life_days = models.DecimalField(
        max_digits=8, decimal_places=3, default=Decimal("7"), validators=[MinValueValidator(Decimal("0.001"))]
    )
    # How long an approved or pending registration protects the account from other partners' claims.
    registration_protection_days = models.PositiveIntegerField(default=90, validators=[MinValueValidator(1)])
    # Which facts count as a qualifying activity (KPIS.md "Partner lifecycle").
    activity_registrations = models.BooleanField(default=True)
    activity_sourced_deals = models.BooleanField(default=True)
    activity_touches = models.BooleanField(default=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "kpis_programsettings"
        verbose_name = "program settings"
        verbose_name_plural = "program settings"
        constraints = [
            models.CheckConstraint(condition=Q(pk=1), name="program_settings_singleton"),
            models.CheckConstraint(
                condition=Q(activation_window_days__gte=1), name="activation_window_positive"
            ),
            models.CheckConstraint(
                condition=Q(time_decay_half_life_days__gt=0), name="time_decay_half_life_positive"
            ),
        ]

    def __str__(self) -> str:
        return f"Program settings ({self.currency}, {self.time_zone}, {self.attribution_model})"

    @classmethod
    def load(cls) -> "ProgramSettings":
        obj, _ = cls.objects.get_or_create(pk=1)
        return obj


def program_today(program: ProgramSettings | None = None) -> date:
    """Today's date in the program's time zone (KPI periods and default dates use it); pass the
    settings when already loaded, to spare the query."""
    return timezone.localdate(timezone=ZoneInfo((program or ProgramSettings.load()).time_zone))
