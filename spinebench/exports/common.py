"""What every export reads: the benchmark's question tables, subset, catalog, manifest and images.

Exports stream images one shard at a time (`iter_question_images`): at full scale the rendered images weigh
gigabytes, and an export job must stay within a few hundred megabytes whatever the benchmark's size.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from spinebench.benchmark_images import ShardImages
from spinebench.io import json_text, read_table, staged_directory
from spinebench.splits import SPLITS, select_questions
from spinebench.vocab import TASKS

__all__ = [
    "SPLITS",
    "ExportInputs",
    "benchmark_version",
    "iter_question_images",
    "load_export_inputs",
    "load_job_inputs",
    "split_questions",
    "write_folder_atomically",
]

# Catalog columns every export may show beside a question (the question tables carry source, modality,
# region and disease already).
CATALOG_COLUMNS: tuple[str, ...] = ("image_id", "levels", "png_sha256", "width", "height")


@dataclass(frozen=True)
class ExportInputs:
    """The benchmark as an export job reads it."""

    catalog: pd.DataFrame
    questions: dict[str, pd.DataFrame]
    subset: pd.DataFrame
    manifest: dict
    images: ShardImages


def load_export_inputs(
    catalog: str | os.PathLike,
    questions: Sequence[str | os.PathLike],
    subset: str | os.PathLike,
    manifest: str | os.PathLike,
    images: Sequence[str | os.PathLike],
) -> ExportInputs:
    """Read the benchmark tables (question tables given in vocab.TASKS order) and index the image shards."""
    if len(questions) != len(TASKS):
        raise ValueError(f"expected one question table per task ({', '.join(TASKS)}), got {len(questions)}")
    catalog_frame = read_table(catalog)
    return ExportInputs(
        catalog=catalog_frame,
        questions={task: read_table(path) for task, path in zip(TASKS, questions, strict=True)},
        subset=read_table(subset),
        manifest=json.loads(Path(manifest).read_text(encoding="utf-8")),
        images=ShardImages(catalog_frame, list(images)),
    )


def load_job_inputs(job_input) -> ExportInputs:
    """`load_export_inputs` from an export job's Snakemake inputs (named as rules/export.smk names them)."""
    return load_export_inputs(
        job_input.catalog, job_input.questions, job_input.subset, job_input.manifest, job_input.images
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


# An export folder is written whole into a staging folder beside it and renamed into place: a killed job
# never leaves a half-written export (and the next run removes the staging folder, spinebench.cleanup).
write_folder_atomically = staged_directory
