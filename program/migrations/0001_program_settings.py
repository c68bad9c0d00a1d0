"""ProgramSettings moves here from kpis/ (issue 16): Django's state only, the table stays.

The table keeps its name (`kpis_programsettings`, Meta.db_table) and its rows, constraints and the
KPI publication triggers kpis/0005 and kpis/0006 put on it: nothing is created, copied or rebuilt
(an SQLite table rebuild would drop the triggers). kpis/0015 removes the model from kpis' state.
The content type is renamed with it, so the audit trail's entries about the settings and the
permissions on them stay attached to the model.
"""

from decimal import Decimal

import django.core.validators
from django.db import migrations, models

import program.attribution


def rename_content_type(apps, schema_editor, old="kpis", new="program"):
    content_types = apps.get_model("contenttypes", "ContentType").objects.using(schema_editor.connection.alias)
    if content_types.filter(app_label=new, model="programsettings").exists():
        return
    content_types.filter(app_label=old, model="programsettings").update(app_label=new)


def restore_content_type(apps, schema_editor):
    rename_content_type(apps, schema_editor, old="program", new="kpis")


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("contenttypes", "0002_remove_content_type_name"),
        ("kpis", "0013_run_recovery"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="ProgramSettings",
                    fields=[
                        ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                        ("currency", models.CharField(default="USD", max_length=3)),
                        ("time_zone", models.CharField(default="UTC", help_text="IANA name, e.g. Europe/Berlin.", max_length=64)),
                        ("attribution_model", models.CharField(choices=[("first_touch", "First touch"), ("last_touch", "Last touch"), ("linear", "Linear"), ("time_decay", "Time decay"), ("position_based", "Position based")], default=program.attribution.AttributionModel["LINEAR"], max_length=20)),
                        ("activation_window_days", models.PositiveIntegerField(default=90, validators=[django.core.validators.MinValueValidator(1)])),
                        ("time_decay_half_life_days", models.DecimalField(decimal_places=3, default=Decimal("7"), max_digits=8, validators=[django.core.validators.MinValueValidator(Decimal("0.001"))])),
                        ("registration_protection_days", models.PositiveIntegerField(default=90, validators=[django.core.validators.MinValueValidator(1)])),
                        ("activity_registrations", models.BooleanField(default=True)),
                        ("activity_sourced_deals", models.BooleanField(default=True)),
                        ("activity_touches", models.BooleanField(default=True)),
                        ("updated_at", models.DateTimeField(auto_now=True)),
                    ],
                    options={
                        "verbose_name": "program settings",
                        "verbose_name_plural": "program settings",
                        "db_table": "kpis_programsettings",
                        "constraints": [models.CheckConstraint(condition=models.Q(("pk", 1)), name="program_settings_singleton"), models.CheckConstraint(condition=models.Q(("activation_window_days__gte", 1)), name="activation_window_positive"), models.CheckConstraint(condition=models.Q(("time_decay_half_life_days__gt", 0)), name="time_decay_half_life_positive")],
                    },
                ),
            ],
            database_operations=[],
        ),
        migrations.RunPython(rename_content_type, restore_content_type),
    ]
