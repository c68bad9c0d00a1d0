"""ProgramSettings now belongs to program/ (program/0001): kpis forgets the model, the table stays."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("kpis", "0014_activated_partners_metric"),
        ("program", "0001_program_settings"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.DeleteModel(name="ProgramSettings")],
            database_operations=[],
        ),
    ]
