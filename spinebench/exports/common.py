"""What every export reads: the benchmark's question tables, subset, catalog, manifest and images.

Exports stream images one shard at a time (`iter_question_images`): at full scale the rendered images weigh
gigabytes, and an export job must stay within a few hundred megabytes whatever the benchmark's size.

Each export is written in two steps: one *part* per split (the files of that split alone, reading the subset
table only for the subset split and never the manifest), then the export folder, which hard-links the parts'
files into place and writes what names the benchmark version (cards, dataset lists). A subset edit then
rewrites the subset's files and relinks, instead of rewriting every image of the full split.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pandas as pd

from spinebench.benchmark_images import ShardImages
from spinebench.io import json_text, read_table, staged_directory
from spinebench.splits import SPLITS, select_questions
from spinebench.vocab import TASKS

ExportResult = TypeVar("ExportResult")

__all__ = [
    "SPLITS",
    "ExportInputs",
    "benchmark_version",
    "export_through_parts",
    "iter_question_images",
    "link_files",
    "load_export_inputs",
    "load_job_inputs",
    "read_part_info",
    "split_questions",
    "write_folder_atomically",
    "write_part_info",
]

# Catalog columns every export may show beside a question (the question tables carry source, modality,
# region and disease already).
CATALOG_COLUMNS: tuple[str, ...] = ("image_id", "levels", "png_sha256", "width", "height")


@dataclass(frozen=True)
class ExportInputs:
    """The benchmark as an export job reads it."""

    catalog: pd.DataFrame
    questions: dict[str, pd.DataFrame]
    subset: pd.DataFrame | None  # None for a part of the full split, which must not depend on it
    manifest: dict | None  # None for a part: only the export folder names the benchmark version
    images: ShardImages


def load_export_inputs(
    catalog: str | os.PathLike,
    questions: Sequence[str | os.PathLike],
    subset: str | os.PathLike | None,
    manifest: str | os.PathLike | None,
    images: Sequence[str | os.PathLike],
) -> ExportInputs:
    """Read the benchmark tables (question tables given in vocab.TASKS order) and index the image shards;
    a subset or manifest given as None is left out."""
    if len(questions) != len(TASKS):
        raise ValueError(f"expected one question table per task ({', '.join(TASKS)}), got {len(questions)}")
    catalog_frame = read_table(catalog)
    return ExportInputs(
        catalog=catalog_frame,
        questions={task: read_table(path) for task, path in zip(TASKS, questions, strict=True)},
        subset=read_table(subset) if subset is not None else None,
        manifest=json.loads(Path(manifest).read_text(encoding="utf-8")) if manifest is not None else None,
        images=ShardImages(catalog_frame, list(images)),
    )


def load_job_inputs(job_input) -> ExportInputs:
    """`load_export_inputs` from an export job's Snakemake inputs (named as rules/export.smk names them; a
    part job has no manifest, and the full split's no subset)."""
    return load_export_inputs(
        job_input.catalog,
        job_input.questions,
        getattr(job_input, "subset", None),
        getattr(job_input, "manifest", None),
        job_input.images,
    )


def split_questions(inputs: ExportInputs, task: str, split: str) -> pd.DataFrame:
    """The questions of `task` in `split` (question_id order) with their image's catalog columns
    (levels, png_sha256, width, height). A question whose image is not in the catalog raises ValueError."""
    chosen = select_questions(inputs.questions[task], inputs.subset, task, split)
    joined = chosen.merge(
        inputs.catalog[list(CATALOG_COLUMNS)], on="image_id", how="left", validate="m:1", indicator=True
    )
    orphans = joined.loc[joined["_merge"] != "both", "question_id"]
    if len(orphans):
        raise ValueError(f"{task} question {orphans.iloc[0]}: its image is not in the catalog")
    return joined.drop(columns="_merge")


def iter_question_images(inputs: ExportInputs, questions: pd.DataFrame) -> Iterator[tuple[dict, bytes]]:
    """(question row as a dict, its image's PNG bytes) in the frame's order.

    Rows are read in order and their images one shard at a time: runs of rows whose images share a shard
    (question_id order follows image_id order, and shards hold contiguous image_id ranges) cost one read.
    """
    rows = questions.to_dict("records")
    start = 0
    while start < len(rows):
        shard = inputs.images.shard_of(str(rows[start]["image_id"]))
        end = start
        while end < len(rows) and inputs.images.shard_of(str(rows[end]["image_id"])) == shard:
            end += 1
        pngs = inputs.images.load([str(row["image_id"]) for row in rows[start:end]])
        for row in rows[start:end]:
            yield row, pngs[str(row["image_id"])]
        start = end


def benchmark_version(manifest: dict) -> str:
    """Short content id of a benchmark: the first 12 hex digits of the SHA-256 of its manifest as
    results/benchmark/manifest.json holds it (the manifest names every table's hash and the params)."""
    return hashlib.sha256(json_text(manifest).encode("utf-8")).hexdigest()[:12]


def link_files(part: str | os.PathLike, destination: Path, names: Mapping[str, str] | None = None) -> None:
    """Hard-link every file under the folder `part` into `destination` at the same relative path, or at
    `names[path]` where given; copy where the filesystem refuses links. The linked files are the part's:
    rebuilding a part replaces its files, so the export keeps the old ones until it is relinked."""
    part = Path(part)
    for source in sorted(path for path in part.rglob("*") if path.is_file()):
        relative = source.relative_to(part).as_posix()
        if relative == PART_INFO:
            continue
        target = destination / (names or {}).get(relative, relative)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(source, target)
        except OSError:  # another filesystem, or one without hard links
            shutil.copyfile(source, target)


def read_part_info(part: str | os.PathLike) -> dict:
    """What a part wrote about itself (PART_INFO in the part folder)."""
    return json.loads((Path(part) / PART_INFO).read_text(encoding="utf-8"))


def write_part_info(staging: Path, info: Mapping) -> None:
    (staging / PART_INFO).write_text(json_text(dict(info)), encoding="utf-8")


def export_through_parts(
    folder: str | os.PathLike,
    write_part: Callable[[str, Path], object],
    assemble: Callable[[list[Path], Path], ExportResult],
) -> ExportResult:
    """Write an export in one call the way the workflow writes it: `write_part(split, part_folder)` for each
    split into a scratch folder beside `folder`, then `assemble(part_folders, folder)`."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder.parent, prefix=f".{folder.name}.", suffix=".tmp") as scratch:
        parts = [Path(scratch) / split for split in SPLITS]
        for split, part in zip(SPLITS, parts, strict=True):
            write_part(split, part)
        return assemble(parts, folder)


# The file in a part folder that describes it (rows, sizes); never linked into the export.
PART_INFO = "part.json"

# An export folder is written whole into a staging folder beside it and renamed into place: a killed job
# never leaves a half-written export (and the next run removes the staging folder, spinebench.cleanup).
write_folder_atomically = staged_directory
