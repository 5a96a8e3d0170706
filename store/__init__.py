"""PostgreSQL: tables, the queries app/ and tasks/ share, and Alembic migrations."""
