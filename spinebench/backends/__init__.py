"""Model backends and their registry.

`make_backend(name, settings, context)` turns one `models:` entry of params.yaml into a Backend. Modules
with heavy imports (torch, transformers, aiohttp) are imported only when a model uses them.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping

from spinebench.backends.base import Backend, BackendContext, BackendError, Item, ItemResult, RunStopped

# What a backend reads besides the questions: `images` (the PNG shards) and `embeddings` (the embedding
# shards). A predict job declares only these as inputs (`predict_data` in rules/common.smk), so a baseline's
# job neither waits for nor is re-dated by the gigabytes of image shards it never opens. Kept here, apart
# from the classes, so that planning the DAG imports no backend module (torch, aiohttp). Each class's
# `needs_images` must agree (tests/test_backend_registry.py).
DATA_READ: dict[str, frozenset[str]] = {
    "random": frozenset(),
    "always_healthy": frozenset(),
    "nearest_neighbour": frozenset({"embeddings"}),
    "openai": frozenset({"images"}),
    "transformers": frozenset({"images"}),
    "imported": frozenset(),
}

# backend name -> (module, class, whether the constructor takes the context)
REGISTRY: dict[str, tuple[str, str, bool]] = {
    "random": ("spinebench.backends.baselines", "RandomBackend", True),
    "always_healthy": ("spinebench.backends.baselines", "AlwaysHealthyBackend", True),
    "nearest_neighbour": ("spinebench.backends.baselines", "NearestNeighbourBackend", True),
    "openai": ("spinebench.backends.openai_compat", "OpenAIBackend", False),
    "transformers": ("spinebench.backends.transformers_local", "TransformersBackend", False),
    "imported": ("spinebench.backends.imported", "ImportedBackend", True),
}


def backend_of(name: str, settings: Mapping) -> str:
    """The registered `backend:` of model `name`'s settings; an error naming the model otherwise."""
    if not isinstance(settings, Mapping):
        raise BackendError(f"model {name!r}: settings must be a mapping, got {type(settings).__name__}")
    backend = settings.get("backend")
    if backend not in REGISTRY:
        raise BackendError(
            f"model {name!r}: unknown backend {backend!r}; expected one of {', '.join(REGISTRY)}"
        )
    return backend


def make_backend(name: str, settings: Mapping, context: BackendContext | None = None) -> Backend:
    """The backend for model `name` configured by `settings` (its params.yaml entry, `backend` included)."""
    module_name, class_name, takes_context = REGISTRY[backend_of(name, settings)]
    backend_class = getattr(importlib.import_module(module_name), class_name)
    if takes_context:
        return backend_class(name, settings, context or BackendContext(model_name=name))
    return backend_class(name, settings)


def data_read_by(name: str, settings: Mapping) -> frozenset[str]:
    """Benchmark data (`images`, `embeddings`) that model `name`'s backend reads."""
    return DATA_READ[backend_of(name, settings)]


__all__ = [
    "DATA_READ",
    "Backend",
    "BackendContext",
    "BackendError",
    "Item",
    "ItemResult",
    "REGISTRY",
    "RunStopped",
    "data_read_by",
    "make_backend",
]
