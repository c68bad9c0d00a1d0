"""The staff deal list's newest-closed-first sort (`closed_at DESC NULLS LAST, id DESC`) gets an
index of its own on PostgreSQL: the ascending `deal_closed_at` read backwards gives NULLS FIRST, so
with the join source's EXISTS filter PostgreSQL tested all 1M deals and sorted (8 s) instead of
walking an index and stopping after the page. SQLite cannot index NULLS LAST and its lists are
small: nothing there. Not in the model's Meta for that reason."""

from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.state import StateApps


def create(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            'CREATE INDEX IF NOT EXISTS "deal_closed_at_desc" ON "deals_deal" ("closed_at" DESC NULLS LAST, "id" DESC)'
        )


def drop(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute('DROP INDEX IF EXISTS "deal_closed_at_desc"')


class Migration(migrations.Migration):
    dependencies = [("deals", "0006_touch_partner_deal_index")]

    operations = [migrations.RunPython(create, drop)]
