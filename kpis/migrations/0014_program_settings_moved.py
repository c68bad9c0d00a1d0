"""ProgramSettings now belongs to program/ (program/0001): kpis forgets the model, the table stays."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("kpis", "0013_run_recovery"),
        ("program", "0001_program_settings"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.DeleteModel(name="ProgramSettings")],
            database_operations=[],
        ),
    ]
