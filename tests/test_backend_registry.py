"""The backend registry: what each backend reads is declared where the DAG can see it without importing it."""

from __future__ import annotations

import importlib

import pandas as pd
import pytest

from spinebench.backends import DATA_READ, REGISTRY, BackendContext, BackendError, data_read_by, make_backend


def test_every_backend_declares_what_it_reads():
    assert set(DATA_READ) == set(REGISTRY)
    assert all(kinds <= {"images", "embeddings"} for kinds in DATA_READ.values())


@pytest.mark.parametrize("backend", sorted(REGISTRY))
def test_declared_images_agree_with_the_class(backend):
    module_name, class_name, _ = REGISTRY[backend]
    backend_class = getattr(importlib.import_module(module_name), class_name)
    assert backend_class.needs_images == ("images" in DATA_READ[backend])


@pytest.mark.parametrize("backend", ["random", "always_healthy"])
def test_backends_declaring_no_embeddings_are_built_without_them(backend):
    context = BackendContext(model_name="m", seed=1, catalog=pd.DataFrame(), embeddings=None)
    with make_backend("m", {"backend": backend}, context) as built:
        assert built.model_name == "m"


def test_the_nearest_neighbour_baseline_needs_the_embeddings_it_declares():
    assert DATA_READ["nearest_neighbour"] == {"embeddings"}
    context = BackendContext(model_name="nn", seed=1, catalog=pd.DataFrame(), embeddings=None)
    with pytest.raises(BackendError, match="needs the image embeddings"):
        make_backend("nn", {"backend": "nearest_neighbour"}, context)


def test_an_unknown_backend_is_named():
    with pytest.raises(BackendError, match="model 'x': unknown backend 'gpt'"):
        data_read_by("x", {"backend": "gpt"})
    assert data_read_by("x", {"backend": "openai"}) == {"images"}
