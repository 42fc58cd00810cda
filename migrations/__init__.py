"""meterway's Alembic migrations (``env.py`` and ``versions/``), shipped in the wheel so that an installed server
can migrate its database: ``meterway.db.migrate`` points Alembic here."""
