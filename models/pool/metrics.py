"""The pool's Prometheus metrics, registered on a registry the application owns (never the global one)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0)


class PoolMetrics:
    """Counters, gauges and histograms for loading, eviction, queues, decoding and adapters."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r, m = self.registry, ["model"]
        self.loads = Counter("meterway_pool_loads", "Models loaded into a worker", m, registry=r)
        self.load_failures = Counter("meterway_pool_load_failures", "Model loads that failed", m, registry=r)
        self.evictions = Counter("meterway_pool_evictions", "Idle models evicted to make room (LRU)", m,
                                 registry=r)
        self.idle_unloads = Counter("meterway_pool_idle_unloads", "Models unloaded after idle_ttl_s", m,
                                    registry=r)
        self.worker_crashes = Counter("meterway_pool_worker_crashes", "Workers that exited unasked", m,
                                      registry=r)
        self.rejections = Counter("meterway_pool_rejections", "Requests refused (overloaded, loading)",
                                  ["model", "reason"], registry=r)
        self.cold_start = Histogram("meterway_pool_cold_start_seconds",
                                    "From starting a worker to its model being ready", m,
                                    buckets=LATENCY_BUCKETS, registry=r)
        self.queue_depth = Gauge("meterway_pool_queue_depth", "Requests running or waiting per model", m,
                                 registry=r)
        self.batch_size = Gauge("meterway_pool_batch_size", "Sequences the engine decodes together now", m,
                                registry=r)
        self.engine_stat = Gauge("meterway_pool_engine_stat", "The engine's own counters (stats())",
                                 ["model", "stat"], registry=r)
        self.tokens = Counter("meterway_pool_tokens_generated", "Completion tokens generated", m, registry=r)
        self.ttft = Histogram("meterway_pool_time_to_first_token_seconds",
                              "From submitting to the engine to the first generated token", m,
                              buckets=LATENCY_BUCKETS, registry=r)
        self.worker_rss = Gauge("meterway_pool_worker_rss_bytes", "Resident memory of the model's worker "
                                "(0 when unloaded)", m, registry=r)
        self.reserved = Gauge("meterway_pool_memory_reserved_bytes",
                              "Estimated memory of the models loaded or loading", registry=r)
        self.adapter_loads = Counter("meterway_pool_adapter_loads", "LoRA adapters attached to a base", m,
                                     registry=r)
        self.adapter_hits = Counter("meterway_pool_adapter_cache_hits",
                                    "Requests whose adapter was already attached", m, registry=r)
        self.adapter_seconds = Histogram("meterway_pool_adapter_attach_seconds", "Time to attach an adapter",
                                         m, buckets=LATENCY_BUCKETS, registry=r)

    def text(self) -> str:
        """Prometheus text exposition of this registry."""
        return generate_latest(self.registry).decode()

    def value(self, name: str, **labels: str) -> float:
        """One sample's current value (0 when absent): for tests and the admin console."""
        found = self.registry.get_sample_value(name, labels)
        return 0.0 if found is None else found
