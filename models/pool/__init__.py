"""The shared model pool: worker processes that load models on demand, batch, evict and scale to zero."""
