"""The partner-economics metrics (commission_paid, commission_rate, mdf_spent, mdf_return) in the
metric choices, and writes of cost entry links logged in the change log (see 0008) as writes of
their cost entry: MDF return reads the links, and an incremental run must see one added, moved or
deleted. PostgreSQL: statement-level triggers with transition tables (and TRUNCATE); SQLite: row
triggers.

On SQLite, 0016 rebuilt kpis_costentry (Django remakes a table to add a column with a database
default), which dropped its change-log triggers of 0008: they are created again here when missing.
"""

from importlib import import_module

from django.db import migrations, models

fact_change_log = import_module("kpis.migrations.0008_fact_change_log")

TABLE = "kpis_costentrylink"

PG_FUNCTION = """
CREATE OR REPLACE FUNCTION kpis_log_cost_link_change() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
DECLARE
    writer BIGINT := pg_current_xact_id()::text::bigint;
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        INSERT INTO kpis_factchange (source, row_id, xid) VALUES ('truncate', 0, writer);
        RETURN NULL;
    END IF;
    IF TG_OP <> 'DELETE' THEN
        INSERT INTO kpis_factchange (source, row_id, xid)
        SELECT DISTINCT 'cost', cost_entry_id, writer FROM new_rows;
    END IF;
    IF TG_OP <> 'INSERT' THEN
        INSERT INTO kpis_factchange (source, row_id, xid)
        SELECT DISTINCT 'cost', cost_entry_id, writer FROM old_rows;
    END IF;
    RETURN NULL;
END
$$
"""


def _pg_triggers() -> list[str]:
    run = "FOR EACH STATEMENT EXECUTE FUNCTION kpis_log_cost_link_change()"
    return [
        f"CREATE TRIGGER {TABLE}_fact_ins AFTER INSERT ON {TABLE} REFERENCING NEW TABLE AS new_rows {run}",
        f"CREATE TRIGGER {TABLE}_fact_upd AFTER UPDATE ON {TABLE} "
        f"REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows {run}",
        f"CREATE TRIGGER {TABLE}_fact_del AFTER DELETE ON {TABLE} REFERENCING OLD TABLE AS old_rows {run}",
        f"CREATE TRIGGER {TABLE}_fact_trunc AFTER TRUNCATE ON {TABLE} {run}",
    ]


def _sqlite_triggers() -> list[str]:
    def log(row: str) -> str:
        return (
            "INSERT INTO kpis_factchange (source, row_id, related_id, xid) "
            f"SELECT 'cost', {row}.cost_entry_id, NULL, NULL;"
        )

    return [
        f"CREATE TRIGGER {TABLE}_fact_ins AFTER INSERT ON {TABLE} BEGIN {log('NEW')} END",
        f"CREATE TRIGGER {TABLE}_fact_upd AFTER UPDATE ON {TABLE} BEGIN {log('NEW')} {log('OLD')} END",
        f"CREATE TRIGGER {TABLE}_fact_del AFTER DELETE ON {TABLE} BEGIN {log('OLD')} END",
    ]


def forward(apps, schema_editor):
    pg = schema_editor.connection.vendor == "postgresql"
    if pg:
        schema_editor.execute(PG_FUNCTION)
    for statement in _pg_triggers() if pg else _sqlite_triggers():
        schema_editor.execute(statement)
    if not pg:
        for statement in fact_change_log._sqlite_triggers("kpis_costentry", "cost", None):
            schema_editor.execute(statement.replace("CREATE TRIGGER ", "CREATE TRIGGER IF NOT EXISTS ", 1))


def backward(apps, schema_editor):
    pg = schema_editor.connection.vendor == "postgresql"
    for event in ("ins", "upd", "del", "trunc"):
        if pg:
            schema_editor.execute(f"DROP TRIGGER IF EXISTS {TABLE}_fact_{event} ON {TABLE}")
        elif event != "trunc":
            schema_editor.execute(f"DROP TRIGGER IF EXISTS {TABLE}_fact_{event}")
    if pg:
        schema_editor.execute("DROP FUNCTION IF EXISTS kpis_log_cost_link_change()")


class Migration(migrations.Migration):

    dependencies = [
        ('kpis', '0016_program_booked_costs'),
    ]

    operations = [
        migrations.AlterField(
            model_name='kpivalue',
            name='metric',
            field=models.CharField(choices=[('won_revenue', 'won_revenue'), ('sourced_revenue', 'sourced_revenue'), ('influenced_revenue', 'influenced_revenue'), ('attributed_revenue', 'attributed_revenue'), ('sourced_share', 'sourced_share'), ('avg_deal_size_sourced', 'avg_deal_size_sourced'), ('avg_deal_size_influenced', 'avg_deal_size_influenced'), ('avg_deal_size_direct', 'avg_deal_size_direct'), ('revenue_per_active_partner', 'revenue_per_active_partner'), ('applications', 'applications'), ('partners_joined', 'partners_joined'), ('approval_rate_partners', 'approval_rate_partners'), ('activation_rate', 'activation_rate'), ('activated_partners', 'activated_partners'), ('activation_provisional', 'activation_provisional'), ('active_partners', 'active_partners'), ('first_sales', 'first_sales'), ('ttfs_median_days', 'ttfs_median_days'), ('ttfs_mean_days', 'ttfs_mean_days'), ('leads_generated', 'leads_generated'), ('opportunities_sourced', 'opportunities_sourced'), ('registration_approval_rate', 'registration_approval_rate'), ('opportunities_influenced', 'opportunities_influenced'), ('win_rate_sourced', 'win_rate_sourced'), ('win_rate_influenced', 'win_rate_influenced'), ('win_rate_direct', 'win_rate_direct'), ('sales_cycle_median_days_sourced', 'sales_cycle_median_days_sourced'), ('sales_cycle_median_days_influenced', 'sales_cycle_median_days_influenced'), ('sales_cycle_median_days_direct', 'sales_cycle_median_days_direct'), ('program_cost', 'program_cost'), ('new_customers_sourced', 'new_customers_sourced'), ('cac', 'cac'), ('roi', 'roi'), ('commission_paid', 'commission_paid'), ('commission_rate', 'commission_rate'), ('mdf_spent', 'mdf_spent'), ('mdf_return', 'mdf_return'), ('target', 'target'), ('target_progress', 'target_progress')], max_length=64),
        ),
        migrations.AlterField(
            model_name='target',
            name='metric',
            field=models.CharField(choices=[('won_revenue', 'won_revenue'), ('sourced_revenue', 'sourced_revenue'), ('influenced_revenue', 'influenced_revenue'), ('attributed_revenue', 'attributed_revenue'), ('sourced_share', 'sourced_share'), ('avg_deal_size_sourced', 'avg_deal_size_sourced'), ('avg_deal_size_influenced', 'avg_deal_size_influenced'), ('avg_deal_size_direct', 'avg_deal_size_direct'), ('revenue_per_active_partner', 'revenue_per_active_partner'), ('applications', 'applications'), ('partners_joined', 'partners_joined'), ('approval_rate_partners', 'approval_rate_partners'), ('activation_rate', 'activation_rate'), ('activated_partners', 'activated_partners'), ('activation_provisional', 'activation_provisional'), ('active_partners', 'active_partners'), ('first_sales', 'first_sales'), ('ttfs_median_days', 'ttfs_median_days'), ('ttfs_mean_days', 'ttfs_mean_days'), ('leads_generated', 'leads_generated'), ('opportunities_sourced', 'opportunities_sourced'), ('registration_approval_rate', 'registration_approval_rate'), ('opportunities_influenced', 'opportunities_influenced'), ('win_rate_sourced', 'win_rate_sourced'), ('win_rate_influenced', 'win_rate_influenced'), ('win_rate_direct', 'win_rate_direct'), ('sales_cycle_median_days_sourced', 'sales_cycle_median_days_sourced'), ('sales_cycle_median_days_influenced', 'sales_cycle_median_days_influenced'), ('sales_cycle_median_days_direct', 'sales_cycle_median_days_direct'), ('program_cost', 'program_cost'), ('new_customers_sourced', 'new_customers_sourced'), ('cac', 'cac'), ('roi', 'roi'), ('commission_paid', 'commission_paid'), ('commission_rate', 'commission_rate'), ('mdf_spent', 'mdf_spent'), ('mdf_return', 'mdf_return')], max_length=64),
        ),
        migrations.RunPython(forward, backward),
    ]
