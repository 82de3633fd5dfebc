"""The benchmark as a Hugging Face dataset folder: Parquet files with the images embedded, and a card.

Layout of the folder (results/exports/hf/):

    README.md                                  the dataset card: YAML metadata (configs, features, licence
                                               notes) and the text (templates/exports/hf_card.md.j2)
    diagnosis/full-00000-of-00003.parquet      one config per task, one split per SPLITS entry, each split
    diagnosis/subset-00000-of-00001.parquet    cut into files of `rows_per_file` questions
    localization/...

Every file carries the `huggingface` schema metadata that `datasets` writes itself (the features as JSON), so
`datasets.load_dataset("parquet", data_files=...)` and `load_dataset(folder, name)` decode the `image`
column as an `Image` feature without guessing. The features are spelled here, not produced by the library:
the files are then the same bytes whatever `datasets` is installed, and the export needs no `datasets` at
all. Lists are spelled `Sequence`, which datasets 5 reads as its `List` and which releases before 4.0 (that
have no `List`) need.

Images are streamed one benchmark shard at a time (spinebench.exports.common.iter_question_images) and
written a row group at a time: at full scale the PNGs weigh gigabytes.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from itertools import islice
from pathlib import Path

import jinja2
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from spinebench.exports.common import (
    SPLITS,
    ExportInputs,
    benchmark_version,
    export_through_parts,
    iter_question_images,
    link_files,
    read_part_info,
    split_questions,
    write_folder_atomically,
    write_part_info,
)
from spinebench.prompts import question_options
from spinebench.vocab import LETTERS, SOURCES, TASKS

log = logging.getLogger(__name__)


class HFExportError(ValueError):
    """A benchmark, setting or licence-notes file that cannot give the Hugging Face export."""


# Arrow storage of `datasets`' Image feature: the encoded file's bytes and a file name.
IMAGE_STRUCT = pa.struct([("bytes", pa.binary()), ("path", pa.string())])

# Column kinds: Arrow type, `datasets` feature (as the `huggingface` schema metadata spells it) and the
# card's `dataset_info` spelling of the same feature.
ARROW_TYPES = {
    "string": pa.string(),
    "int32": pa.int32(),
    "image": IMAGE_STRUCT,
    "strings": pa.list_(pa.string()),
}
FEATURE_JSON = {
    "string": {"dtype": "string", "_type": "Value"},
    "int32": {"dtype": "int32", "_type": "Value"},
    "image": {"_type": "Image"},
    "strings": {"feature": {"dtype": "string", "_type": "Value"}, "_type": "Sequence"},
}
CARD_FEATURE = {
    "string": {"dtype": "string"},
    "int32": {"dtype": "int32"},
    "image": {"dtype": "image"},
    "strings": {"sequence": "string"},
}

# (column, kind, meaning): the columns of both configs, in file order. The meanings go into the card.
COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("question_id", "string", "Question id: `dx-{image_id}` (diagnosis) or `loc-{image_id}` (localization)."),
    ("image_id", "string", "Image id, `{source}-...`, stable across builds of the same sources."),
    ("image", "image", "The image, an RGB PNG rendered from the source file (`Image` feature)."),
    ("question", "string", "The question text (one of the task's paraphrases)."),
    ("options", "strings", "The five option texts; `options[0]` is option A, ..., `options[4]` is option E."),
    ("answer", "string", "The correct letters, sorted and joined by `,` (diagnosis: one letter)."),
    ("answer_texts", "strings", "The option texts of the correct letters, in letter order."),
    ("source", "string", "Source dataset: `rsna`, `vindr`, `buu` or `csxa`."),
    ("modality", "string", "`MRI` or `X-ray`."),
    ("region", "string", "`lumbar`, `cervical`, or `spine` where the source does not say."),
    ("disease", "string", "The image's standardized label (one of 11 diseases or `Healthy`)."),
    ("levels", "strings", "The image's affected lumbar levels, cranial to caudal (may be empty)."),
    ("width", "int32", "Image width in pixels."),
    ("height", "int32", "Image height in pixels."),
    ("png_sha256", "string", "SHA-256 of the PNG bytes (as in this project's prediction fingerprints)."),
)

# Questions per Parquet row group. A row group is what a reader fetches at once (the Hub's viewer,
# streaming): 100 images at 512 px are 10-20 MB, well under the 100 MB `datasets` aims at.
ROW_GROUP_ROWS = 100

# The `huggingface` schema metadata, as `datasets` writes it: {"info": {"features": {...}}}.
HF_METADATA = json.dumps({"info": {"features": {name: FEATURE_JSON[kind] for name, kind, _ in COLUMNS}}})
SCHEMA = pa.schema(
    [pa.field(name, ARROW_TYPES[kind]) for name, kind, _ in COLUMNS], metadata={"huggingface": HF_METADATA}
)


def leaf_columns(name: str, data_type: pa.DataType) -> list[str]:
    """Parquet's leaf column paths of an Arrow column (`image.bytes`, `levels.list.element`, ...)."""
    if pa.types.is_struct(data_type):
        return [leaf for field in data_type for leaf in leaf_columns(f"{name}.{field.name}", field.type)]
    if pa.types.is_list(data_type):
        return leaf_columns(f"{name}.list.element", data_type.value_type)
    return [name]


LEAF_COLUMNS = [leaf for field in SCHEMA for leaf in leaf_columns(field.name, field.type)]
# PNGs are compressed already, and unique: their bytes are stored as they are, without compression or a
# dictionary (as `datasets` stores images); the other columns are zstd-compressed with dictionaries.
COMPRESSION = {leaf: "none" if leaf == "image.bytes" else "zstd" for leaf in LEAF_COLUMNS}
DICTIONARY_COLUMNS = [leaf for leaf in LEAF_COLUMNS if leaf != "image.bytes"]

# Keys every source's entry in resources/exports/sources.yaml must have.
SOURCE_NOTE_KEYS: tuple[str, ...] = (
    "name",
    "modality",
    "distribution",
    "url",
    "reference",
    "terms",
    "verified",
)


@dataclass(frozen=True)
class SplitFiles:
    """What was written for one config's split: file names relative to the folder, rows, Arrow bytes."""

    config: str
    split: str
    files: tuple[str, ...]
    rows: int
    num_bytes: int
    download_bytes: int


# --- records ------------------------------------------------------------------------------------------


def hf_record(row: Mapping, png: bytes) -> dict:
    """One dataset row from a split question row (split_questions) and its image's PNG bytes."""
    options = question_options(row)
    letters = str(row["answer"]).split(",")
    unknown = [letter for letter in letters if letter not in options]
    if unknown:
        raise HFExportError(f"question {row['question_id']}: answer {row['answer']!r} names no option letter")
    return {
        "question_id": str(row["question_id"]),
        "image_id": str(row["image_id"]),
        "image": {"bytes": png, "path": f"{row['image_id']}.png"},
        "question": str(row["question"]),
        "options": [options[letter] for letter in LETTERS],
        "answer": str(row["answer"]),
        "answer_texts": [options[letter] for letter in letters],
        "source": str(row["source"]),
        "modality": str(row["modality"]),
        "region": str(row["region"]),
        "disease": str(row["disease"]),
        "levels": [str(level) for level in row["levels"]],
        "width": int(row["width"]),
        "height": int(row["height"]),
        "png_sha256": str(row["png_sha256"]),
    }


# --- Parquet files ------------------------------------------------------------------------------------


def split_file_names(config: str, split: str, files: int) -> list[str]:
    """`{config}/{split}-00000-of-00002.parquet`, ...: the Hub's shard naming, relative to the folder."""
    return [f"{config}/{split}-{index:05d}-of-{files:05d}.parquet" for index in range(files)]


def write_parquet(path: Path, records: Iterator[dict]) -> int:
    """Write the records to `path` a row group at a time; return their in-memory Arrow size (bytes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    num_bytes = 0
    with pq.ParquetWriter(
        path, SCHEMA, compression=COMPRESSION, use_dictionary=DICTIONARY_COLUMNS, write_statistics=False
    ) as writer:
        while batch := list(islice(records, ROW_GROUP_ROWS)):
            table = pa.Table.from_pylist(batch, schema=SCHEMA)
            num_bytes += table.nbytes
            writer.write_table(table)
    return num_bytes


def write_split(inputs: ExportInputs, task: str, split: str, folder: Path, rows_per_file: int) -> SplitFiles:
    """Write the questions of `task` in `split` (question_id order) with their images under `folder`.

    A split without questions gets no file: `datasets` cannot load an empty split, so the card leaves it
    out of its config.
    """
    questions = split_questions(inputs, task, split)
    if questions.empty:
        log.warning("%s/%s has no questions: the dataset leaves the split out", task, split)
        return SplitFiles(task, split, (), 0, 0, 0)
    names = split_file_names(task, split, math.ceil(len(questions) / rows_per_file))
    records = (hf_record(row, png) for row, png in iter_question_images(inputs, questions))
    num_bytes = sum(write_parquet(folder / name, islice(records, rows_per_file)) for name in names)
    download_bytes = sum(os.path.getsize(folder / name) for name in names)
    return SplitFiles(task, split, tuple(names), len(questions), num_bytes, download_bytes)


# --- the card -----------------------------------------------------------------------------------------


def load_source_notes(path: str | os.PathLike, sources: Sequence[str]) -> dict[str, dict]:
    """The licence and provenance notes of `sources` from resources/exports/sources.yaml, checked."""
    path = Path(path)
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise HFExportError(f"cannot read the source notes {path}: {error}") from error
    notes = document.get("sources") if isinstance(document, Mapping) else None
    if not isinstance(notes, Mapping):
        raise HFExportError(f"{path}: expected a mapping with a 'sources' mapping")
    checked = {}
    for source in sources:
        entry = notes.get(source)
        if not isinstance(entry, Mapping):
            raise HFExportError(f"{path}: no notes for source {source!r}, which the benchmark holds")
        missing = [key for key in SOURCE_NOTE_KEYS if key not in entry]
        if missing:
            raise HFExportError(f"{path}: source {source!r} lacks {', '.join(missing)}")
        if not isinstance(entry["verified"], bool):
            raise HFExportError(f"{path}: source {source!r}: 'verified' must be true or false")
        checked[source] = dict(entry)
    return checked


def size_category(rows: int) -> str:
    """The Hub's `size_categories` bucket of a dataset with `rows` examples."""
    for bound, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K")):
        if rows < bound:
            return label
    return "100K<n<1M"


def front_matter(splits: Sequence[SplitFiles]) -> dict:
    """The card's YAML metadata: configs with their files, features and split sizes, licence, tags."""
    full_rows = sum(files.rows for files in splits if files.split == "full")
    configs, infos = [], []
    for task in TASKS:
        task_splits = [files for files in splits if files.config == task and files.files]
        if not task_splits:
            continue
        configs.append(
            {
                "config_name": task,
                "data_files": [
                    {"split": files.split, "path": f"{task}/{files.split}-*.parquet"} for files in task_splits
                ],
                **({} if configs else {"default": True}),
            }
        )
        infos.append(
            {
                "config_name": task,
                "features": [{"name": name, **CARD_FEATURE[kind]} for name, kind, _ in COLUMNS],
                "splits": [
                    {"name": files.split, "num_bytes": files.num_bytes, "num_examples": files.rows}
                    for files in task_splits
                ],
                "download_size": sum(files.download_bytes for files in task_splits),
                "dataset_size": sum(files.num_bytes for files in task_splits),
            }
        )
    return {
        "pretty_name": "SpineBench",
        "license": "other",
        "license_name": "spinebench-source-terms",
        "language": ["en"],
        "task_categories": ["visual-question-answering", "multiple-choice"],
        "tags": ["medical", "radiology", "spine", "x-ray", "mri", "benchmark"],
        "size_categories": [size_category(full_rows)],
        "configs": configs,
        "dataset_info": infos,
    }


def params_yaml(manifest: Mapping) -> str | None:
    """The params that define the benchmark (the manifest's `params`) as YAML; None when it has none."""
    if "params" not in manifest:
        return None
    return yaml.safe_dump(manifest["params"], sort_keys=True, allow_unicode=True, width=1000)


def card_context(
    catalog: pd.DataFrame, manifest: Mapping, splits: Sequence[SplitFiles], notes: Mapping[str, dict]
) -> dict:
    """Everything the card template shows: metadata, sizes, build description, per-source notes."""
    images_per_source = catalog.groupby("source").size()
    return {
        "front_matter": yaml.safe_dump(front_matter(splits), sort_keys=False, allow_unicode=True, width=1000),
        "benchmark_version": benchmark_version(manifest),
        "seeds": manifest.get("seeds", {}),
        "encoder": manifest.get("encoder"),
        "question_pool_version": manifest.get("question_pool_version"),
        "params": params_yaml(manifest),
        "splits": [files for files in splits if files.files],
        "empty_splits": [f"{files.config}/{files.split}" for files in splits if not files.files],
        "columns": [{"name": name, "kind": kind, "meaning": meaning} for name, kind, meaning in COLUMNS],
        "sources": [
            {"id": source, "images": int(images_per_source.get(source, 0)), **notes[source]}
            for source in notes
        ],
    }


def render_card(template_path: str | os.PathLike, context: Mapping) -> str:
    """The dataset card's text from templates/exports/hf_card.md.j2 (missing fields fail loudly)."""
    template_path = Path(template_path)
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(template_path.parent)),
        undefined=jinja2.StrictUndefined,
        autoescape=False,  # Markdown, not HTML
        keep_trailing_newline=True,
    )
    return environment.get_template(template_path.name).render(**context)


# --- the whole export ---------------------------------------------------------------------------------


def benchmark_sources(catalog: pd.DataFrame) -> list[str]:
    """The sources the benchmark's catalog holds, in vocab.SOURCES order."""
    present = set(catalog["source"])
    unknown = sorted(present - set(SOURCES))
    if unknown:
        raise HFExportError(f"the catalog names unknown source(s) {', '.join(unknown)}")
    return [source for source in SOURCES if source in present]


def check_rows_per_file(rows_per_file: object) -> None:
    if isinstance(rows_per_file, bool) or not isinstance(rows_per_file, int) or rows_per_file < 1:
        raise HFExportError(f"export.hf.rows_per_file must be a positive integer, not {rows_per_file!r}")


def export_hf_part(inputs: ExportInputs, split: str, folder: str | os.PathLike, rows_per_file: int) -> None:
    """Write the Parquet files of one split of every task into `folder` (replaced atomically), with a
    part.json listing what each task's split got."""
    check_rows_per_file(rows_per_file)
    with write_folder_atomically(Path(folder)) as staging:
        splits = []
        for task in TASKS:
            splits.append(write_split(inputs, task, split, staging, rows_per_file))
            log.info("%s/%s: %d questions in %d files", task, split, splits[-1].rows, len(splits[-1].files))
        write_part_info(staging, {"splits": [asdict(files) for files in splits]})


def assemble_hf(
    catalog: pd.DataFrame,
    manifest: Mapping,
    parts: Sequence[str | os.PathLike],
    folder: str | os.PathLike,
    card_template: str | os.PathLike,
    source_notes: str | os.PathLike,
) -> list[SplitFiles]:
    """Write the dataset folder `folder` (replaced atomically): the parts' Parquet files, linked, and the
    README.md card; return what each task's split got, in TASKS then SPLITS order."""
    notes = load_source_notes(source_notes, benchmark_sources(catalog))
    described = [
        SplitFiles(**{**files, "files": tuple(files["files"])})
        for part in parts
        for files in read_part_info(part)["splits"]
    ]
    splits = sorted(described, key=lambda files: (TASKS.index(files.config), SPLITS.index(files.split)))
    with write_folder_atomically(Path(folder)) as staging:
        for part in parts:
            link_files(part, staging)
        card = render_card(card_template, card_context(catalog, manifest, splits, notes))
        (staging / "README.md").write_text(card, encoding="utf-8")
    return splits


def export_hf(
    inputs: ExportInputs,
    folder: str | os.PathLike,
    rows_per_file: int,
    card_template: str | os.PathLike,
    source_notes: str | os.PathLike,
) -> list[SplitFiles]:
    """Write the whole dataset folder (every task and split, the card) as `folder`, replaced atomically,
    through one part per split as the workflow does; return what each split got."""
    check_rows_per_file(rows_per_file)
    benchmark_sources(inputs.catalog)  # an unknown source fails before any image is written
    return export_through_parts(
        folder,
        lambda split, part: export_hf_part(inputs, split, part, rows_per_file),
        lambda parts, folder: assemble_hf(
            inputs.catalog, inputs.manifest, parts, folder, card_template, source_notes
        ),
    )
