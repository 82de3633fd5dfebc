"""Incremental-build scenarios on a workflow copy, and the work each rerun did (bench/incremental.py, tests).

Work is counted from the jobs' logs, not from timings: every render, embed and synthesize job logs one
`store kind=K hits=H misses=M damaged=D` line (a miss is an item computed), and every predict job logs how
many questions it sent to the model. `clear_logs` before a run makes the logs hold that run's jobs only
(Snakemake does not rerun a job whose log is missing).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
import warnings
from pathlib import Path

import pandas as pd
import pydicom

from spinebench.io import read_table
from spinebench.workflow import edit_params

STORE_LINE = re.compile(r"store kind=(\w+) hits=(\d+) misses=(\d+) damaged=(\d+)")
PREDICT_LINE = re.compile(r"\d+ questions, \d+ already predicted, (\d+) to run")
# Work counters of a run, in report order.
WORK_COLUMNS = ("synthesized", "rendered", "embedded", "requests", "damaged")
_KIND_COLUMN = {"synthetic_tree": "synthesized", "render": "rendered", "embedding": "embedded"}


def clear_logs(workdir: Path) -> None:
    """Remove the job logs, so that the next run's logs are all there is."""
    shutil.rmtree(workdir / "logs", ignore_errors=True)


def run_work(workdir: Path) -> dict[str, int]:
    """Items computed by the jobs whose logs are in `workdir/logs` (see the module docstring)."""
    work = dict.fromkeys(WORK_COLUMNS, 0)
    for path in sorted((workdir / "logs").rglob("*.log")):
        text = path.read_text(encoding="utf-8", errors="replace")
        for kind, _hits, misses, damaged in STORE_LINE.findall(text):
            if kind in _KIND_COLUMN:
                work[_KIND_COLUMN[kind]] += int(misses)
            work["damaged"] += int(damaged)
        work["requests"] += sum(int(count) for count in PREDICT_LINE.findall(text))
    return work


def benchmark_digests(workdir: Path) -> dict[str, str]:
    """SHA-256 of every benchmark table (results/benchmark/*.parquet) by file name."""
    folder = workdir / "results" / "benchmark"
    return {
        path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in sorted(folder.glob("*.parquet"))
    }


def same_benchmark(workdir: Path, reference: Path, ignore_shard: bool = False) -> bool:
    """Whether `workdir`'s benchmark tables are byte-identical to those of `reference` (a folder holding a
    results/benchmark copy). With `ignore_shard`, the catalog may differ in its `shard` column only (the
    shard an image sits in is what a shard-count change changes)."""
    ours, theirs = benchmark_digests(workdir), benchmark_digests(reference)
    if ours == theirs:
        return True
    if not ignore_shard or set(ours) != set(theirs):
        return False
    differing = {name for name in ours if ours[name] != theirs[name]}
    if differing != {"images.parquet"}:
        return False
    catalog = "results/benchmark/images.parquet"
    mine = read_table(workdir / catalog).drop(columns="shard")
    reference_catalog = read_table(reference / catalog).drop(columns="shard")
    return mine.equals(reference_catalog)


def keep_reference(workdir: Path, destination: Path) -> Path:
    """Copy `workdir`'s benchmark tables to `destination`/results/benchmark (for `same_benchmark`)."""
    target = destination / "results" / "benchmark"
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(workdir / "results" / "benchmark", target)
    return destination


# ------------------------------------------------------------------------------------------ scenarios


def touch_everything(workdir: Path) -> int:
    """Set the mtime of every file of the copy (inputs, archives, intermediates, code) to now; content stays.

    Returns the number of files touched. Snakemake's own metadata folder is left alone.
    """
    now = time.time()
    touched = 0
    for path in sorted(workdir.rglob("*")):
        if path.is_file() and ".snakemake" not in path.relative_to(workdir).parts:
            os.utime(path, (now, now))
            touched += 1
    return touched


def edit_comments(workdir: Path) -> int:
    """Add a comment to every module of the copy's spinebench/ and reword the docstrings of the render and
    encoder modules; behaviour is unchanged. Returns the number of modules edited."""
    modules = sorted((workdir / "spinebench").rglob("*.py"))
    for path in modules:
        text = path.read_text(encoding="utf-8")
        if path.name in ("render.py", "decode.py", "embed.py", "embeddings.py"):
            text = text.replace('"""', '"""(Reworded.) ', 1)
        path.write_text(text + "\n# A comment added by an incremental-build scenario.\n", encoding="utf-8")
    return len(modules)


def vindr_root(archive: Path) -> Path:
    """The VinDr dataset folder (the one holding annotations/) inside an archive folder."""
    return next(path.parent for path in sorted(archive.rglob("annotations")) if path.is_dir())


def _brighten_corner(source: Path, destination: Path) -> bool:
    """Write `source`'s DICOM with a bright square in one corner to `destination` (new pixel content)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # synthetic UIDs are hex strings, which pydicom warns about
        try:
            dataset = pydicom.dcmread(source)
            pixels = dataset.pixel_array.copy()
        except Exception:  # a decoy (truncated, corrupt) film: not one to change
            return False
        corner = max(4, min(pixels.shape) // 8)
        pixels[:corner, :corner] = (1 << int(dataset.BitsStored)) - 1
        if dataset.file_meta.TransferSyntaxUID.is_compressed:
            dataset.compress(dataset.file_meta.TransferSyntaxUID, pixels)
        else:
            dataset.PixelData = pixels.tobytes()
        dataset.save_as(destination)
    return True


def change_vindr_films(archive: Path, fraction: float, kept_members: set[str]) -> tuple[int, int]:
    """Change the pixels of `fraction` of the kept train films of an extracted VinDr folder, and add as many
    new films (copies of other kept films with new pixels and new ids, their annotation rows duplicated).

    `kept_members` are the `member` values of the standardized VinDr table: only films the build keeps are
    picked (a decoy film would be rejected before rendering). Films are picked by sorted image_id, so the
    same archive gives the same change. Returns (changed, added).
    """
    root = vindr_root(archive)
    annotations = root / "annotations" / "train.csv"
    rows = pd.read_csv(annotations, dtype=str, keep_default_na=False)
    films = sorted(
        image_id for image_id in rows["image_id"].unique() if f"train_images/{image_id}.dicom" in kept_members
    )
    count = max(1, round(len(films) * fraction))
    changed = sum(
        _brighten_corner(root / "train_images" / f"{film}.dicom", root / "train_images" / f"{film}.dicom")
        for film in films[:count]
    )
    added_rows = []
    for index, film in enumerate(films[count : 2 * count]):
        new_id = hashlib.md5(f"added film {index}".encode()).hexdigest()
        if _brighten_corner(
            root / "train_images" / f"{film}.dicom", root / "train_images" / f"{new_id}.dicom"
        ):
            added_rows.append(rows[rows["image_id"] == film].assign(image_id=new_id))
    if added_rows:
        pd.concat([rows, *added_rows], ignore_index=True).to_csv(annotations, index=False)
    return changed, len(added_rows)


def kept_members(workdir: Path, source: str) -> set[str]:
    """Archive members of the images a build kept from `source` (its standardized table)."""
    table = read_table(workdir / "results" / "standardized" / f"{source}.parquet", columns=["member"])
    return set(table["member"])


def set_param(workdir: Path, section: str, key: str, value):
    """Set params[section][key] of the copy to `value`; returns the value it had."""
    previous = []

    def edit(params: dict) -> None:
        previous.append(params[section][key])
        params[section][key] = value

    edit_params(workdir, edit)
    return previous[0]


def params_snapshot(workdir: Path) -> str:
    """The copy's params.yaml text (to give a second clone the first clone's original params)."""
    return (workdir / "params.yaml").read_text(encoding="utf-8")


def describe(work: dict[str, int]) -> str:
    """One-line summary of a run's work."""
    return json.dumps({column: work[column] for column in WORK_COLUMNS})
