"""ML models: the catalog, the model store, the runtime (in worker processes) and the pool."""
