"""Field data sources. Each source is an async context manager that yields `Batch`es."""
