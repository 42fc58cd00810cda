"""LoRA adapters on one loaded base model, decoded together in mixed batches (peft's ``adapter_names``).

The first adapter wraps the base in a ``PeftModel`` in place: peft swaps the target ``Linear`` modules for
LoRA layers that keep the original weights as their ``base_layer`` (nothing is copied or reloaded).
Later adapters are added to the same wrapper: straight into the LoRA layers that exist when they fit them
(``lora_inplace``), else by peft's ``load_adapter``. At most ``max_adapters`` stay attached; attaching past
that evicts the least recently used adapter that no sequence is using.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog
import torch

from meterway.errors import InvalidRequest, ModelOverloaded
from models.runtime.lora_inplace import attach_in_place

if TYPE_CHECKING:
    from collections.abc import Callable

log = structlog.get_logger(__name__)

BASE_ADAPTER = "__base__"


class AdapterSet:
    """The adapters attached to one base model, in least-recently-used order."""

    def __init__(self, base: torch.nn.Module, *, max_adapters: int = 8,
                 in_use: Callable[[], set[str]] = set) -> None:
        self._base = base
        self._peft: Any = None  # the PeftModel wrapper, created by the first attach
        self._routing: list[str] | None = None  # adapter per row, during a forward pass
        self._hooked: set[int] = set()  # ids of LoRA layers that carry the routing hook
        self._lru: OrderedDict[str, str] = OrderedDict()  # name -> path, least recently used first
        self._max = max_adapters
        self._in_use = in_use
        self.loads = 0
        self.hits = 0
        self.evictions = 0
        self.last_attach_seconds = 0.0

    def run(self, *, adapter_names: list[str], **inputs: Any) -> Any:
        """One forward pass in which row ``i`` uses adapter ``adapter_names[i]`` (``__base__``: none).

        peft's own route (``PeftModel(..., adapter_names=...)``) walks every module and registers a hook on
        each LoRA layer on every call; here each LoRA layer carries one permanent hook that reads the names
        set for the current pass, which keeps mixed batches cheap. The base is called directly: the LoRA
        layers live inside it.
        """
        if self._peft is None:
            return self._base(**inputs)
        self._routing = adapter_names
        try:
            return self._base(**inputs)
        finally:
            self._routing = None

    def _route(self, _module: torch.nn.Module, args: tuple[Any, ...],
               kwargs: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
        if self._routing is not None:
            kwargs["adapter_names"] = self._routing
        return args, kwargs

    def _hook_new_layers(self) -> None:
        """Give every LoRA layer that peft created (new target modules) the routing hook, once."""
        from peft.tuners.lora import LoraLayer

        for module in self._base.modules():
            if isinstance(module, LoraLayer) and id(module) not in self._hooked:
                module.register_forward_pre_hook(self._route, with_kwargs=True)
                self._hooked.add(id(module))

    def __contains__(self, name: object) -> bool:
        return name in self._lru

    def __len__(self) -> int:
        return len(self._lru)

    def touch(self, name: str) -> None:
        """Mark an adapter as just used (a request selected it)."""
        self._lru.move_to_end(name)

    def attach(self, name: str, path: str) -> float:
        """Load the adapter at ``path`` as ``name`` unless already attached; return seconds taken."""
        started = time.perf_counter()
        if name == BASE_ADAPTER:
            raise InvalidRequest(f"'{BASE_ADAPTER}' is reserved for the base model")
        if name in self._lru and self._lru[name] == path:
            self.hits += 1
            self.touch(name)
            return time.perf_counter() - started
        if name in self._lru:
            self.detach(name)  # same name, new weights: replace
        while len(self._lru) >= self._max:
            self._evict_one()
        self._load(name, path)
        self._lru[name] = path
        self.loads += 1
        self.last_attach_seconds = time.perf_counter() - started
        log.info("adapter_attached", adapter=name, seconds=round(self.last_attach_seconds, 4))
        return self.last_attach_seconds

    def _load(self, name: str, path: str) -> None:
        from peft import PeftModel

        # peft leaves the model in eval mode (is_trainable=False); casting is skipped when the adapter's
        # weights already have the base's dtype, because it walks every parameter of the model.
        cast = _needs_cast(path, next(self._base.parameters()).dtype)
        options: dict[str, Any] = {"adapter_name": name, "is_trainable": False, "low_cpu_mem_usage": True,
                                   "autocast_adapter_dtype": cast}
        if self._peft is None:
            self._peft = PeftModel.from_pretrained(self._base, path, **options)
        elif not cast and attach_in_place(self._peft, name, path):
            return  # no new LoRA layers: the existing ones already carry the routing hook
        else:
            self._peft.load_adapter(path, **options)
        self._hook_new_layers()

    def _evict_one(self) -> None:
        busy = self._in_use()
        idle = next((name for name in self._lru if name not in busy), None)
        if idle is None:
            raise ModelOverloaded(f"all {self._max} adapter slots are serving requests")
        log.info("adapter_evicted", adapter=idle)
        self.evictions += 1
        self.detach(idle)

    def detach(self, name: str) -> None:
        """Delete an adapter and its weights; unknown names are ignored."""
        if self._lru.pop(name, None) is None:
            return
        self._peft.delete_adapter(name)


def _needs_cast(path: str, base_dtype: torch.dtype) -> bool:
    """Whether the adapter's saved weights differ in dtype from the base (read from the file's header)."""
    from safetensors import safe_open

    weights = Path(path) / "adapter_model.safetensors"
    if not weights.exists():
        return True
    wanted = {torch.float32: "F32", torch.bfloat16: "BF16", torch.float16: "F16"}.get(base_dtype)
    with safe_open(str(weights), framework="pt") as handle:
        return any(handle.get_slice(key).get_dtype() != wanted for key in handle.keys())  # noqa: SIM118
