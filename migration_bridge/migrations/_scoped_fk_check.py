"""Let the bridge's migrations run on an SQLite database that already holds orphan rows.

Django's SQLite schema editor ends every migration with ``PRAGMA foreign_key_check``
on the *whole* database (``DatabaseSchemaEditor.__exit__`` calls
``connection.check_constraints()`` with no table names) and fails on any orphan row
anywhere, although the migration touched none of those tables. Real legacy databases
have orphans, so ``migrate migration_bridge`` and even ``sqlmigrate`` failed there.

``Migration`` below narrows that one check to the tables the migration itself creates:
while it is applied (or unapplied, or its SQL collected) it sets a one-shot
``check_constraints`` on the connection object, which the schema editor's ``__exit__``
calls in place of the class's method and which removes itself on that call. Other
databases and other apps' migrations are untouched. (The loader skips this module:
its name starts with an underscore.)
"""
from django.db import migrations


def _scope_fk_check(schema_editor, table_names):
    connection = schema_editor.connection
    if connection.vendor != "sqlite" or "check_constraints" in vars(connection):
        return
    unscoped = type(connection).check_constraints

    def check_constraints(table_names_arg=None):
        del connection.check_constraints  # one shot: back to the class's method
        if table_names_arg is None:  # only tables that exist (sqlmigrate creates none)
            existing = set(connection.introspection.table_names())
            table_names_arg = [name for name in table_names if name in existing]
        return unscoped(connection, table_names_arg)

    connection.check_constraints = check_constraints


class Migration(migrations.Migration):
    """A migration whose closing SQLite foreign-key check covers only its own tables."""

    checked_tables: tuple[str, ...] = ()

    def apply(self, project_state, schema_editor, collect_sql=False):
        _scope_fk_check(schema_editor, list(self.checked_tables))
        return super().apply(project_state, schema_editor, collect_sql)

    def unapply(self, project_state, schema_editor, collect_sql=False):
        _scope_fk_check(schema_editor, list(self.checked_tables))
        return super().unapply(project_state, schema_editor, collect_sql)
