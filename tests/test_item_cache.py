"""Per-item store use: code versions, rendered images, embeddings (without torch) and synthetic archives."""

from __future__ import annotations

import json
import runpy
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from spinebench.codeversion import code_version, module_version, source_version
from spinebench.embeddings import (
    STORE_KIND as EMBEDDING_KIND,
)
from spinebench.embeddings import (
    EncoderSettings,
    embed_with_store,
    encoder_fingerprint,
    expected_device_kind,
)
from spinebench.io import write_table
from spinebench.render import render_rows, render_shard
from spinebench.render_cache import STORE_KIND as RENDER_KIND
from spinebench.render_cache import RenderCache
from spinebench.store import Store, Tally
from spinebench.synth.stored import FILE_KIND, TREE_KIND, archive_key, write_source_stored
from tests.test_embed import PNGS
from tests.test_embed import SETTINGS as EMBED_SETTINGS
from tests.test_render import SETTINGS as RENDER_SETTINGS
from tests.test_render import rsna_folder, rsna_rows

REPO = Path(__file__).resolve().parents[1]

CODE = '''"""Module docstring."""

def area(width, height):
    """Docstring."""
    return width * height  # a comment
'''


# ------------------------------------------------------------------------------------------ versions


def test_comments_docstrings_and_layout_do_not_change_a_version():
    edited = CODE.replace("Docstring.", "Another docstring.").replace("# a comment", "# changed")
    reflowed = edited.replace("return width * height", "return (\n        width * height\n    )")
    assert source_version(CODE) == source_version(edited) == source_version(reflowed)
    no_docstrings = CODE.replace('"""Module docstring."""\n', "").replace('    """Docstring."""\n', "")
    assert source_version(CODE) == source_version(no_docstrings)


def test_behaviour_changes_a_version():
    assert source_version(CODE) != source_version(CODE.replace("width * height", "width + height"))
    assert source_version(CODE) != source_version(CODE.replace('"""Docstring."""', "x = 1"))


def test_module_versions_are_found_without_importing(monkeypatch):
    monkeypatch.delitem(sys.modules, "spinebench.quality", raising=False)
    assert len(module_version("spinebench.quality")) == 64
    assert code_version(["spinebench.render"], ["pillow"]) != code_version(["spinebench.render"], ["numpy"])
    with pytest.raises(ValueError, match="no Python source"):
        module_version("math")


# ------------------------------------------------------------------------------------------- render


def test_stored_images_are_byte_identical_to_computed_ones(tmp_path):
    archive = rsna_folder(tmp_path)
    plain_images, plain_rejected = render_shard(rsna_rows(), archive, "rsna", RENDER_SETTINGS)
    first = RenderCache(Store(tmp_path / "store"))
    render_shard(rsna_rows(), archive, "rsna", RENDER_SETTINGS, first)
    assert (first.tally.hits, first.tally.misses) == (0, 3)  # two images and one corrupt file
    second = RenderCache(Store(tmp_path / "store"))
    images, rejected = render_shard(rsna_rows(), archive, "rsna", RENDER_SETTINGS, second)
    assert (second.tally.hits, second.tally.misses) == (3, 0)
    pd.testing.assert_frame_equal(images, plain_images)
    pd.testing.assert_frame_equal(rejected, plain_rejected)


def test_render_key_follows_content_and_settings_not_names(tmp_path):
    cache = RenderCache(Store(tmp_path))
    settings = render_rows.__globals__["RenderSettings"].from_params(RENDER_SETTINGS)
    key = cache.key(b"raw bytes", "a/1.dcm", "MRI", settings)
    assert cache.key(b"raw bytes", "moved/elsewhere/9.DCM", "MRI", settings) == key
    assert cache.key(b"other bytes", "a/1.dcm", "MRI", settings) != key
    assert cache.key(b"raw bytes", "a/1.png", "MRI", settings) != key
    assert cache.key(b"raw bytes", "a/1.dcm", "X-ray", settings) != key
    wider = render_rows.__globals__["RenderSettings"].from_params({**RENDER_SETTINGS, "max_side": 32})
    assert cache.key(b"raw bytes", "a/1.dcm", "MRI", wider) != key


def test_a_damaged_render_entry_is_recomputed_and_replaced(tmp_path):
    archive = rsna_folder(tmp_path)
    store = Store(tmp_path / "store")
    images, _ = render_shard(rsna_rows(), archive, "rsna", RENDER_SETTINGS, RenderCache(store))
    for kind, key, _ in store.entries():
        path = store.entry_path(kind, key)
        path.write_bytes(path.read_bytes()[:-3])
    cache = RenderCache(store)
    again, _ = render_shard(rsna_rows(), archive, "rsna", RENDER_SETTINGS, cache)
    assert (cache.tally.damaged, cache.tally.misses) == (3, 3)
    pd.testing.assert_frame_equal(again, images)
    cache = RenderCache(store)
    render_shard(rsna_rows(), archive, "rsna", RENDER_SETTINGS, cache)
    assert (cache.tally.hits, cache.tally.damaged) == (3, 0)


# ---------------------------------------------------------------------------------------- embeddings


def test_fingerprint_names_everything_that_changes_an_embedding(tmp_path):
    settings = EncoderSettings.from_params(EMBED_SETTINGS)
    base = encoder_fingerprint(settings, seed=7)
    assert base["init_seed"] == 7 and base["checkpoint_sha256"] is None and base["device"] == "cpu"
    assert encoder_fingerprint(settings, seed=8) != base
    resized = EncoderSettings.from_params({**EMBED_SETTINGS, "interpolation": "bilinear"})
    assert encoder_fingerprint(resized, seed=7) != base
    # The batch size changes no embedding (each image runs alone): it is not in the fingerprint.
    batched = EncoderSettings.from_params({**EMBED_SETTINGS, "batch_size": 17})
    assert encoder_fingerprint(batched, seed=7) == base
    checkpoint = tmp_path / "weights.pt"
    checkpoint.write_bytes(b"weights")
    with_checkpoint = EncoderSettings.from_params({**EMBED_SETTINGS, "checkpoint": str(checkpoint)})
    first = encoder_fingerprint(with_checkpoint, seed=7)
    assert first["init_seed"] is None and encoder_fingerprint(with_checkpoint, seed=8) == first
    checkpoint.write_bytes(b"other weights")
    assert encoder_fingerprint(with_checkpoint, seed=7) != first


def test_device_kind_is_known_without_torch(monkeypatch):
    assert expected_device_kind("cpu") == "cpu" and expected_device_kind("cuda:1") == "cuda"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert expected_device_kind("auto") == "cpu"


def test_embeddings_come_from_the_store_without_building_the_encoder(tmp_path):
    from spinebench.embed import make_embedder

    settings = EncoderSettings.from_params(EMBED_SETTINGS)
    fingerprint = encoder_fingerprint(settings, seed=7)
    store = Store(tmp_path)
    images = pd.DataFrame({"image_id": ["c", "a", "b"], "png": PNGS[:3]})
    built = []

    def factory():
        built.append(1)
        return make_embedder(settings, 7)

    computed = embed_with_store(images, fingerprint, store, factory)
    assert built == [1]
    tally = Tally()
    more = pd.DataFrame({"image_id": ["a", "c", "b", "d"], "png": [PNGS[1], PNGS[0], PNGS[2], PNGS[3]]})
    mixed = embed_with_store(more, fingerprint, store, factory, tally)
    assert built == [1, 1] and (tally.hits, tally.misses) == (3, 1)
    pd.testing.assert_frame_equal(mixed.iloc[:3], computed)
    served = embed_with_store(more, fingerprint, store, lambda: pytest.fail("encoder built"))
    pd.testing.assert_frame_equal(served, mixed)
    assert embed_with_store(more.iloc[:0], fingerprint, store, lambda: pytest.fail("built")).empty


def _script_namespace(tmp_path: Path, images: Path, output: Path) -> dict:
    return {
        "input": {"images": str(images)},
        "output": [str(output)],
        "params": {"settings": EMBED_SETTINGS, "seed": 7},
        "config": {"cache": {"dir": str(tmp_path / "store")}},
        "threads": 1,
        "log": [str(tmp_path / "embed.log")],
    }


RUN_SCRIPT_WITHOUT_TORCH = """
import json, runpy, sys
from types import SimpleNamespace
spec = json.loads(sys.argv[1])
snakemake = SimpleNamespace(
    input=SimpleNamespace(**spec["input"]), output=spec["output"], params=SimpleNamespace(**spec["params"]),
    config=spec["config"], threads=spec["threads"], log=spec["log"],
)
runpy.run_path(sys.argv[2], init_globals={"snakemake": snakemake})
heavy = sorted(name for name in ("torch", "open_clip", "torchvision", "timm") if name in sys.modules)
assert not heavy, f"imported {heavy}"
"""


def test_embed_job_with_every_image_stored_never_imports_torch(tmp_path):
    images = tmp_path / "images.parquet"
    write_table(pd.DataFrame({"image_id": ["b", "a"], "png": PNGS[:2]}), images)
    first, second = tmp_path / "first.parquet", tmp_path / "second.parquet"
    spec = _script_namespace(tmp_path, images, first)
    snakemake = SimpleNamespace(
        **{**spec, "input": SimpleNamespace(**spec["input"]), "params": SimpleNamespace(**spec["params"])}
    )
    runpy.run_path(str(REPO / "scripts/embed_shard.py"), init_globals={"snakemake": snakemake})
    script = str(REPO / "scripts/embed_shard.py")
    spec = _script_namespace(tmp_path, images, second)
    subprocess.run(
        [sys.executable, "-c", RUN_SCRIPT_WITHOUT_TORCH, json.dumps(spec), script], check=True, cwd=REPO
    )
    assert second.read_bytes() == first.read_bytes()
    assert "store kind=embedding hits=2 misses=0" in (tmp_path / "embed.log").read_text()


def test_readers_of_embeddings_never_import_the_encoder():
    code = "import sys, spinebench.embeddings, spinebench.distractors; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# ------------------------------------------------------------------------------------------ synthetic


def test_a_synthetic_archive_is_generated_once_then_copied(tmp_path):
    store = Store(tmp_path / "store")
    counts = {"buu_cases": 2}
    first, second = tmp_path / "one" / "buu", tmp_path / "two" / "buu"
    assert not write_source_stored(store, "buu", first, counts, seed=3, decoys=False, workers=1)
    assert write_source_stored(store, "buu", second, counts, seed=3, decoys=False, workers=1)
    files = sorted(path.relative_to(first) for path in first.rglob("*") if path.is_file())
    assert files == sorted(path.relative_to(second) for path in second.rglob("*") if path.is_file())
    assert all((first / name).read_bytes() == (second / name).read_bytes() for name in files)
    assert archive_key("buu", counts, 3, False) != archive_key("buu", counts, 4, False)
    assert archive_key("buu", counts, 3, False) == archive_key("buu", {**counts, "rsna_images": 9}, 3, False)
    # A damaged file entry: the archive is generated again and the store repaired.
    for kind, key, _ in store.entries():
        if kind == FILE_KIND:
            path = store.entry_path(kind, key)
            path.write_bytes(path.read_bytes()[:-1])
    third = tmp_path / "three" / "buu"
    assert not write_source_stored(store, "buu", third, counts, seed=3, decoys=False, workers=1)
    assert (third / files[0]).read_bytes() == (first / files[0]).read_bytes()
    assert write_source_stored(store, "buu", tmp_path / "four" / "buu", counts, 3, False, workers=1)
    assert {kind for kind, _, _ in store.entries()} == {FILE_KIND, TREE_KIND}


def test_entry_kinds_are_distinct():
    assert len({RENDER_KIND, EMBEDDING_KIND, FILE_KIND, TREE_KIND}) == 4
    assert np.dtype("<f4").itemsize == 4
