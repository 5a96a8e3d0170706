"""Alembic environment: online migrations only, URL handed over by store.migrate."""

from alembic import context
from sqlalchemy import create_engine, pool

from store.tables import metadata

url = context.config.attributes["database_url"]
engine = create_engine(url, poolclass=pool.NullPool)
with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=metadata, compare_type=True)
    with context.begin_transaction():
        # One migration at a time across every process that runs `make migrate`.
        connection.exec_driver_sql("SELECT pg_advisory_xact_lock(727274)")
        context.run_migrations()
engine.dispose()
