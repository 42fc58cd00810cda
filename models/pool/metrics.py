"""The pool's Prometheus metrics, registered on a registry the application owns (never the global one).

Two sets: the pool's own ``meterway_pool_*`` series (loads, evictions, queues, adapters; label ``model``),
and the serving set vLLM's users already chart, under the same names with meterway's prefix (label
``model_name``): ``meterway:prompt_tokens_total``, ``meterway:generation_tokens_total``,
``meterway:time_to_first_token_seconds``, ``meterway:inter_token_latency_seconds``,
``meterway:e2e_request_latency_seconds``, ``meterway:num_requests_running`` / ``_waiting`` and
``meterway:prefix_cache_queries_total`` / ``_hits_total`` (tokens, so hits / queries is the hit rate).
The engine's own cumulative counters (``stats()``) are exported as counters (``meterway_engine_*_total``),
so that ``rate()`` works. A tenant's fine-tune is labelled by an opaque digest (``model_label``): its id
names the tenant, and ``/metrics`` may be open.
"""

from __future__ import annotations

import hashlib
import time
from typing import TYPE_CHECKING

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from meterway.errors import MeterwayError

if TYPE_CHECKING:
    from collections.abc import Iterator

    from prometheus_client import Metric

    from models.pool.hosts import ModelHost
    from models.runtime.api import EmitDelta, TokenDelta

log = structlog.get_logger("meterway.pool")
BATCH_STAT_KEYS = ("batch_size", "running", "active")  # whichever the engine's stats() names it

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0)
TOKEN_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.5)
FINE_TUNE_PREFIX = "ft:"


def model_label(model_id: str) -> str:
    """A model as metrics name it: catalog ids as they are, a fine-tune as ``ft-<digest>``."""
    if model_id.startswith(FINE_TUNE_PREFIX):
        return "ft-" + hashlib.sha256(model_id.encode()).hexdigest()[:16]
    return model_id


class EngineStats(Collector):
    """The latest ``stats()`` of each loaded engine: ``*_total`` keys as counters, the rest as gauges."""

    def __init__(self) -> None:
        self._latest: dict[str, dict[str, float]] = {}

    def update(self, model_id: str, values: dict[str, float]) -> None:
        self._latest[model_label(model_id)] = dict(values)

    def collect(self) -> Iterator[Metric]:
        families: dict[str, CounterMetricFamily | GaugeMetricFamily] = {}
        for model, values in sorted(self._latest.items()):
            for stat, value in sorted(values.items()):
                counter = stat.endswith("_total")
                name = f"meterway_engine_{stat.removesuffix('_total')}"
                if name not in families:
                    kind = CounterMetricFamily if counter else GaugeMetricFamily
                    families[name] = kind(name, f"the engine's {stat} (its stats())", labels=["model"])
                families[name].add_metric([model], value)
        yield from families.values()


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
        self.engine = EngineStats()
        r.register(self.engine)
        self._serving_set(r)

    def _serving_set(self, r: CollectorRegistry) -> None:
        """The series vLLM's users chart, labelled ``model_name``."""
        mn = ["model_name"]
        self.prompt_tokens = Counter("meterway:prompt_tokens", "Prompt tokens of finished requests", mn,
                                     registry=r)
        self.generation_tokens = Counter("meterway:generation_tokens", "Generated tokens of finished requests",
                                         mn, registry=r)
        self.request_ttft = Histogram("meterway:time_to_first_token_seconds", "Time to the first token", mn,
                                      buckets=LATENCY_BUCKETS, registry=r)
        self.inter_token = Histogram("meterway:inter_token_latency_seconds", "Time between generated tokens",
                                     mn, buckets=TOKEN_LATENCY_BUCKETS, registry=r)
        self.e2e = Histogram("meterway:e2e_request_latency_seconds", "From submit to the last token", mn,
                             buckets=LATENCY_BUCKETS, registry=r)
        self.running = Gauge("meterway:num_requests_running", "Requests the engine decodes now", mn, registry=r)
        self.waiting = Gauge("meterway:num_requests_waiting", "Requests admitted and not yet decoding", mn,
                             registry=r)
        self.cache_queries = Counter("meterway:prefix_cache_queries", "Prompt tokens looked up in the prefix "
                                     "cache", mn, registry=r)
        self.cache_hits = Counter("meterway:prefix_cache_hits", "Prompt tokens served from the prefix cache",
                                  mn, registry=r)

    def finished(self, host_label: str, requested: str, final: TokenDelta) -> None:
        """Count a finished request's tokens (``requested``: the model the caller named)."""
        name = model_label(requested)
        self.tokens.labels(host_label).inc(final.completion_tokens)
        self.prompt_tokens.labels(name).inc(final.prompt_tokens)
        self.generation_tokens.labels(name).inc(final.completion_tokens)
        self.cache_queries.labels(name).inc(final.prompt_tokens)
        self.cache_hits.labels(name).inc(final.cached_tokens)

    def timed_sink(self, push: EmitDelta, model_id: str, submitted: float, requested: str) -> EmitDelta:
        """``push`` observing time to first token, between tokens and to the end on the way (``model_id``:
        the model that runs the request; ``requested``: the model the caller named)."""
        host_label, name = model_label(model_id), model_label(requested)
        last = {"at": submitted, "tokens": 0}

        def sink(delta: TokenDelta) -> None:
            now = time.monotonic()
            if not last["tokens"] and delta.completion_tokens > 0:
                self.ttft.labels(host_label).observe(now - submitted)
                self.request_ttft.labels(name).observe(now - submitted)
            elif delta.completion_tokens > last["tokens"]:
                gap = (now - last["at"]) / (delta.completion_tokens - last["tokens"])
                self.inter_token.labels(name).observe(gap)
            if delta.completion_tokens > last["tokens"]:
                last["at"], last["tokens"] = now, delta.completion_tokens
            if delta.finish_reason:
                self.e2e.labels(name).observe(now - submitted)
            push(delta)

        return sink

    async def sample(self, label: str, model_id: str, admitted: int, host: ModelHost) -> None:
        """Read one worker's memory and engine counters (``admitted``: its requests running or waiting)."""
        self.worker_rss.labels(label).set(host.rss_bytes())
        try:
            stats = await host.stats()
        except MeterwayError:
            return
        except Exception:
            log.exception("sampling a worker failed", model=model_id)
            return
        self.engine.update(model_id, stats.values)
        batch = next((stats.values[k] for k in BATCH_STAT_KEYS if k in stats.values), None)
        if batch is not None:
            self.batch_size.labels(label).set(batch)
            self.running.labels(label).set(batch)
            self.waiting.labels(label).set(max(0.0, admitted - batch))

    def text(self) -> str:
        """Prometheus text exposition of this registry."""
        return generate_latest(self.registry).decode()

    def value(self, name: str, **labels: str) -> float:
        """One sample's current value (0 when absent): for tests and the admin console."""
        named = {key: model_label(value) if key in ("model", "model_name") else value
                 for key, value in labels.items()}
        found = self.registry.get_sample_value(name, named)
        return 0.0 if found is None else found
