"""Content-addressed caching end to end: whatever makes jobs rerun, only new content is computed.

Each scenario of bench/incremental.py on a small demo build (work counted from the jobs' logs), plus two
builds writing one store at once and a damaged store.
"""

from __future__ import annotations

import shutil
import subprocess

import pandas as pd
import pytest

from spinebench.incremental import (
    benchmark_digests,
    change_vindr_films,
    clear_logs,
    edit_comments,
    keep_reference,
    kept_members,
    run_work,
    same_benchmark,
    set_param,
    touch_everything,
)
from spinebench.store import STORE_ENV, Store
from spinebench.workflow import (
    copy_workflow,
    edit_params,
    run_snakemake,
    snakemake_command,
    snakemake_environment,
)

pytestmark = pytest.mark.workflow

NOTHING = {"synthesized": 0, "rendered": 0, "embedded": 0, "requests": 0, "damaged": 0}


def small_demo(params: dict) -> None:
    """Half the demo: every scenario reruns the workflow, so the build is kept small."""
    params["synthetic"]["demo"].update(rsna_images=60, vindr_images=46, buu_cases=10, csxa_images=36)
    params["subset"].update(diagnosis_size=50, localization_size=25)
    # No export: each benchmark change here would rewrite them (exports are tested in tests/test_workflow.py).
    params["export"]["formats"] = []


def tiny_sources(params: dict) -> None:
    """A third of the demo's images: enough shards and files to interleave two builds' writes."""
    params["synthetic"]["demo"].update(rsna_images=40, vindr_images=30, buu_cases=6, csxa_images=24)


@pytest.fixture(scope="module")
def store_env(tmp_path_factory):
    return {STORE_ENV: str(tmp_path_factory.mktemp("store"))}


@pytest.fixture(scope="module")
def built(tmp_path_factory, store_env):
    """Clone A, built once with an empty store; its tables are kept as the reference."""
    workdir = copy_workflow(tmp_path_factory.mktemp("clone-a"))
    edit_params(workdir, small_demo)
    run_snakemake(workdir, env=store_env)
    work = run_work(workdir)
    reference = keep_reference(workdir, tmp_path_factory.mktemp("reference"))
    return workdir, reference, work


def rebuild(workdir, env) -> dict:
    clear_logs(workdir)
    run_snakemake(workdir, env=env)
    return run_work(workdir)


def test_clean_build_computes_every_item(built):
    workdir, _, work = built
    catalog = pd.read_parquet(workdir / "results/benchmark/images.parquet")
    assert work["synthesized"] == 4 and work["damaged"] == 0
    # Every kept image was rendered and embedded once; rendering also tried the corrupt decoys.
    assert work["embedded"] == len(catalog) and work["rendered"] > len(catalog)
    assert work["requests"] > 0


def test_touching_every_file_computes_nothing(built, store_env):
    workdir, reference, _ = built
    assert touch_everything(workdir) > 100
    assert rebuild(workdir, store_env) == NOTHING
    assert same_benchmark(workdir, reference)


def test_comment_and_docstring_edits_compute_nothing(built, store_env):
    workdir, reference, _ = built
    edit_comments(workdir)
    assert rebuild(workdir, store_env) == NOTHING
    assert same_benchmark(workdir, reference)


def test_new_shard_counts_compute_nothing(built, store_env):
    workdir, reference, _ = built

    def more_shards(params):
        for settings in params["sources"].values():
            settings["shards"] += 1

    edit_params(workdir, more_shards)
    assert rebuild(workdir, store_env) == NOTHING
    assert not same_benchmark(workdir, reference)  # the catalog records each image's new shard...
    assert same_benchmark(workdir, reference, ignore_shard=True)  # ...and nothing else changed


def test_flipping_params_back_computes_nothing(built, store_env):
    workdir, _, _ = built
    before = keep_reference(workdir, workdir.parent / (workdir.name + "-before-flips"))
    for section, key, other in (("subset", "diagnosis_size", 40), ("render", "max_side", 128)):
        original = set_param(workdir, section, key, other)
        changed = rebuild(workdir, store_env)
        set_param(workdir, section, key, original)
        assert rebuild(workdir, store_env) == NOTHING, (section, changed)
        assert same_benchmark(workdir, before)
    # max_side B re-rendered and re-embedded everything (128 px is below every demo image's size).
    assert changed["rendered"] > 0 and changed["embedded"] > 0


def vindr_catalog_rows(workdir) -> int:
    catalog = pd.read_parquet(workdir / "results/benchmark/images.parquet", columns=["source"])
    return int(catalog["source"].eq("vindr").sum())


def test_changed_and_added_films_are_the_only_new_work(built, store_env):
    workdir, _, _ = built
    archive = workdir.parent / (workdir.name + "-raw") / "vindr"
    shutil.copytree(workdir / "resources/synthetic/vindr", archive)
    edit_params(workdir, lambda p: p["sources"]["vindr"].update(path=str(archive)))
    # The same archive at a new path: its jobs rerun, nothing is computed.
    assert rebuild(workdir, store_env) == NOTHING
    before = benchmark_digests(workdir)
    vindr_images = vindr_catalog_rows(workdir)
    changed, added = change_vindr_films(archive, 0.01, kept_members(workdir, "vindr"))
    assert (changed, added) == (1, 1)
    work = rebuild(workdir, store_env)
    assert work["rendered"] == work["embedded"] == 2 and work["synthesized"] == 0
    assert vindr_catalog_rows(workdir) == vindr_images + 1
    assert benchmark_digests(workdir) != before


def test_a_second_clone_on_the_same_store_computes_nothing(built, store_env, tmp_path):
    _, reference, _ = built
    second = copy_workflow(tmp_path)
    edit_params(second, small_demo)
    run_snakemake(second, env=store_env)
    work = run_work(second)
    assert {key: work[key] for key in ("synthesized", "rendered", "embedded", "damaged")} == {
        "synthesized": 0,
        "rendered": 0,
        "embedded": 0,
        "damaged": 0,
    }
    assert same_benchmark(second, reference)


def test_damaged_entries_are_detected_recomputed_and_replaced(built, store_env, tmp_path):
    _, reference, _ = built
    clone = copy_workflow(tmp_path)
    edit_params(clone, small_demo)
    store = Store(store_env[STORE_ENV])
    damaged = []
    for kind, key, _ in store.entries():
        if kind in ("render", "embedding") and key.startswith(("0", "8")):
            path = store.entry_path(kind, key)
            data = bytearray(path.read_bytes())
            data[-1] ^= 0xFF
            path.write_bytes(bytes(data))
            damaged.append((kind, key))
    assert damaged
    run_snakemake(clone, env=store_env)
    work = run_work(clone)
    assert work["damaged"] >= 1 and work["rendered"] + work["embedded"] >= work["damaged"]
    assert same_benchmark(clone, reference)
    # Every damaged entry this clone needed was recomputed and replaced by a whole one.
    needed = set()
    for _, document in store.refs():
        if document["output"].startswith(str(clone.resolve())):
            needed.update((document["kind"], key) for key in document["keys"])
    repaired = [entry for entry in damaged if entry in needed]
    assert repaired and all(store.get(kind, key) is not None for kind, key in repaired)


def test_two_builds_writing_one_store_at_once(tmp_path):
    """Two clones build the images and embeddings at the same time into one empty store."""
    env = {STORE_ENV: str(tmp_path / "shared-store")}
    clones = []
    for name in ("one", "two"):
        (tmp_path / name).mkdir()
        clone = copy_workflow(tmp_path / name)
        edit_params(clone, tiny_sources)
        clones.append(clone)
    processes = [
        subprocess.Popen(
            snakemake_command(clone, "--until", "embed_shard", cores=1),
            cwd=clone,
            env=snakemake_environment(clone, env),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for clone in clones
    ]
    for process in processes:
        output, _ = process.communicate(timeout=1800)
        assert process.returncode == 0, output
    one, two = clones
    for folder in ("results/images", "results/embeddings"):
        files = sorted(path.relative_to(one) for path in (one / folder).rglob("*.parquet"))
        assert files and files == sorted(path.relative_to(two) for path in (two / folder).rglob("*.parquet"))
        assert all((one / name).read_bytes() == (two / name).read_bytes() for name in files)
    store = Store(env[STORE_ENV])
    entries = list(store.entries())
    assert entries and all(store.get(kind, key) is not None for kind, key, _ in entries)
    assert not list(store.temporaries())
