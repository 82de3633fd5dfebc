"""The open_clip encoder: offline tiny model, shapes and norms, seeded determinism, checkpoints, tables."""

from __future__ import annotations

import io
import runpy
import socket
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import open_clip
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from spinebench.embed import (
    build_preprocess,
    load_encoder,
    make_embedder,
    native_image_size,
    register_architecture,
)
from spinebench.embeddings import (
    EMBEDDINGS_SCHEMA,
    EncoderSettings,
    embed_with_store,
    encoder_fingerprint,
    load_embeddings,
)
from spinebench.io import read_table, write_table
from spinebench.store import Store

REPO = Path(__file__).resolve().parents[1]
SETTINGS = {
    "architecture": "tiny-siglip",
    "checkpoint": None,
    "image_size": 64,
    "resize_mode": "squash",
    "interpolation": "bicubic",
    "mean": [0.5, 0.5, 0.5],
    "std": [0.5, 0.5, 0.5],
    "batch_size": 2,
    "device": "cpu",
}


def png(seed: int, size=(48, 80)) -> bytes:
    """A deterministic RGB (grey replicated) PNG like the render stage writes."""
    grey = np.random.default_rng(seed).integers(0, 256, size=size, dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(grey, mode="L").convert("RGB").save(buffer, format="PNG")
    return buffer.getvalue()


PNGS = [png(seed) for seed in range(5)]


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a network connection fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args[1:]}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_tiny_encoder_loads_offline_and_embeds_unit_vectors(no_network):
    encoder = load_encoder(SETTINGS, seed=7, threads=1)
    embeddings = encoder.embed_pngs(PNGS)
    assert embeddings.shape == (5, 64) and embeddings.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, rtol=1e-5)
    assert encoder.embed_pngs([]).shape == (0, 64)


def test_same_seed_gives_identical_embeddings_and_another_seed_does_not():
    first = load_encoder(SETTINGS, seed=7).embed_pngs(PNGS)
    second = load_encoder(SETTINGS, seed=7).embed_pngs(PNGS)
    other = load_encoder(SETTINGS, seed=8).embed_pngs(PNGS)
    np.testing.assert_array_equal(first, second)
    assert not np.array_equal(first, other)


def test_checkpoint_round_trip(tmp_path):
    """Weights saved from a seeded model and loaded through `checkpoint` reproduce that model exactly."""
    register_architecture("tiny-siglip")
    torch.manual_seed(123)
    model = open_clip.create_model("tiny-siglip", pretrained=None, pretrained_text=False)
    checkpoint = tmp_path / "tiny-siglip.pt"
    torch.save(model.state_dict(), checkpoint)
    from_checkpoint = load_encoder({**SETTINGS, "checkpoint": str(checkpoint)}, seed=999)
    from_seed = load_encoder(SETTINGS, seed=123)
    np.testing.assert_array_equal(from_checkpoint.embed_pngs(PNGS), from_seed.embed_pngs(PNGS))


def test_missing_checkpoint_is_an_error_not_a_download(tmp_path, no_network):
    with pytest.raises(FileNotFoundError, match="not a file"):
        load_encoder({**SETTINGS, "checkpoint": str(tmp_path / "absent.pt")}, seed=0)
    with pytest.raises(FileNotFoundError):
        real = {**SETTINGS, "architecture": "ViT-B-16-SigLIP2", "image_size": 224, "checkpoint": "webli"}
        load_encoder(real, seed=0)  # "webli" is an open_clip tag: it must not be downloaded


def test_image_size_must_match_the_architecture():
    with pytest.raises(ValueError, match="takes 64 px"):
        load_encoder({**SETTINGS, "image_size": 224}, seed=0)
    assert native_image_size("tiny-siglip") == 64
    assert native_image_size("ViT-B-16-SigLIP2") == 224


def test_unknown_architecture_is_an_error():
    with pytest.raises(ValueError, match="neither"):
        register_architecture("no-such-encoder")


def test_preprocessing_squashes_and_normalises():
    preprocess = build_preprocess(EncoderSettings.from_params(SETTINGS))
    white = preprocess(Image.new("RGB", (100, 30), (255, 255, 255)))
    black = preprocess(Image.new("RGB", (30, 100), (0, 0, 0)))
    assert tuple(white.shape) == (3, 64, 64)  # squash: no crop, no padding
    # (1 - 0.5) / 0.5 and (0 - 0.5) / 0.5
    assert torch.allclose(white, torch.ones_like(white)) and torch.allclose(black, -torch.ones_like(black))


def embed_table(images: pd.DataFrame, store_dir: Path) -> pd.DataFrame:
    """The embeddings table of an images table, as the embed job makes it (through a fresh store)."""
    settings = EncoderSettings.from_params({**SETTINGS, "batch_size": 3})
    fingerprint = encoder_fingerprint(settings, seed=7)
    return embed_with_store(images, fingerprint, Store(store_dir), lambda: make_embedder(settings, seed=7))


def test_embed_table_writes_list_float32_in_image_id_order(tmp_path):
    encoder = load_encoder(SETTINGS, seed=7)
    images = pd.DataFrame({"image_id": ["e", "b", "d", "a", "c"], "png": PNGS})
    table = embed_table(images, tmp_path / "store")
    assert table["image_id"].tolist() == ["a", "b", "c", "d", "e"]
    path = tmp_path / "embeddings.parquet"
    write_table(table, path, schema=EMBEDDINGS_SCHEMA)
    assert pq.read_schema(path).field("embedding").type == pa.list_(pa.float32())
    image_ids, matrix = load_embeddings([path])
    expected = encoder.embed_pngs([PNGS[3], PNGS[1], PNGS[4], PNGS[2], PNGS[0]])
    assert image_ids == ["a", "b", "c", "d", "e"]
    np.testing.assert_array_equal(matrix, expected)


def test_an_embedding_does_not_depend_on_the_images_beside_it():
    """Batched kernels change the last bits with the batch; the store needs embeddings of the image alone."""
    encoder = load_encoder(SETTINGS, seed=7)
    alone = np.concatenate([encoder.embed_pngs([png_bytes]) for png_bytes in PNGS])
    for batch_size in (1, 2, 5):
        encoder.batch_size = batch_size
        np.testing.assert_array_equal(encoder.embed_pngs(PNGS), alone)
        np.testing.assert_array_equal(encoder.embed_pngs(PNGS[::-1]), alone[::-1])


def test_undecodable_png_names_the_image(tmp_path):
    images = pd.DataFrame({"image_id": ["good", "bad"], "png": [PNGS[0], b"\x89PNG broken"]})
    with pytest.raises(ValueError, match="image bad"):
        embed_table(images, tmp_path / "store")


def shard(path: Path, image_ids: list[str], matrix: np.ndarray) -> Path:
    embeddings = pa.FixedSizeListArray.from_arrays(pa.array(matrix.ravel(), pa.float32()), matrix.shape[1])
    table = pa.table({"image_id": image_ids, "embedding": embeddings.cast(pa.list_(pa.float32()))})
    write_table(table, path, schema=EMBEDDINGS_SCHEMA)
    return path


def test_load_embeddings_is_independent_of_shard_order(tmp_path):
    first = shard(
        tmp_path / "000.parquet", ["rsna-1", "rsna-2"], np.array([[1, 0], [0, 1]], dtype=np.float32)
    )
    second = shard(tmp_path / "001.parquet", ["buu-9"], np.array([[0.6, 0.8]], dtype=np.float32))
    for paths in ([first, second], [second, first]):
        image_ids, matrix = load_embeddings(paths)
        assert image_ids == ["buu-9", "rsna-1", "rsna-2"]
        np.testing.assert_array_equal(matrix, np.array([[0.6, 0.8], [1, 0], [0, 1]], dtype=np.float32))
        assert matrix.dtype == np.float32
    assert load_embeddings([])[1].shape == (0, 0)


def test_load_embeddings_rejects_duplicates_and_mixed_dimensions(tmp_path):
    first = shard(tmp_path / "a.parquet", ["x"], np.ones((1, 2), dtype=np.float32))
    again = shard(tmp_path / "b.parquet", ["x"], np.ones((1, 2), dtype=np.float32))
    wider = shard(tmp_path / "c.parquet", ["y"], np.ones((1, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="image_id x is in both"):
        load_embeddings([first, again])
    with pytest.raises(ValueError, match="3-d embeddings"):
        load_embeddings([first, wider])


def test_embed_script_writes_the_shard(tmp_path):
    images = tmp_path / "images.parquet"
    write_table(pd.DataFrame({"image_id": ["b", "a"], "png": PNGS[:2]}), images)
    output = tmp_path / "embeddings/tiny-siglip/rsna/000.parquet"
    snakemake = SimpleNamespace(
        input=SimpleNamespace(images=str(images)),
        output=[str(output)],
        params=SimpleNamespace(settings=SETTINGS, seed=7),
        config={"cache": {"dir": str(tmp_path / "store")}},
        threads=1,
        log=[str(tmp_path / "embed.log")],
    )
    runpy.run_path(str(REPO / "scripts/embed_shard.py"), init_globals={"snakemake": snakemake})
    table = read_table(output)
    assert table["image_id"].tolist() == ["a", "b"]
    expected = load_encoder(SETTINGS, seed=7).embed_pngs([PNGS[1], PNGS[0]])
    np.testing.assert_array_equal(np.stack(table["embedding"].tolist()), expected)
