"""Postgres: embedded server, schema and migrations, COPY loader, IO manager, resource."""
