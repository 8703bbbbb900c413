"""Alembic migrations of the service database; run by state.upgrade at start and by `spasm-cds db upgrade`."""
