"""Central's persistent store: SQLAlchemy 2 async models, engine, migrations and queries."""
