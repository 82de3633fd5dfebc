"""The benchmark as VLMEvalKit custom multiple-choice datasets: one TSV per task and split.

VLMEvalKit (github.com/open-compass/VLMEvalKit) runs a dataset it does not know from `$LMUData/{name}.tsv`
(`vlmeval/dataset/__init__.py` build_dataset: a TSV with `question`, `A`, `B` and `image` is a
CustomMCQDataset). The layout it reads (`vlmeval/dataset/image_base.py`, `image_mcq.py`):

- `index`: the row's key. Ours is INDEX_BASE[task] + the question's position in the task's full question
  list in question_id order; a subset row keeps its full-set index. The bases keep the two tasks' indexes
  apart, so a prediction file of one task read as the other fails instead of mapping onto wrong questions.
- `image`: the PNG bytes, base64. VLMEvalKit decodes it and saves `$LMUData/images/{name}/{index}.png`.
- `question`, `A`..`E`: the question text and options; `hint` goes before the question in VLMEvalKit's
  prompt and in the models' own multiple-choice prompts (HINTS: the paper's instruction for the task).
- `answer`: the correct letters, sorted, joined by "," (our questions' `answer`). For localization that is
  often several letters ("A,C"): VLMEvalKit's own MCQ scorer (`vlmeval/dataset/utils/multiple_choice.py`,
  mcq_vanilla_eval) compares ONE inferred letter with this string, so it counts every multi-level question
  wrong, and any response naming two letters unanswered. Run VLMEvalKit with `--mode infer` and score the
  prediction file here (spinebench.imports.vlmevalkit), with the benchmark's own metrics.
- `category`: the image's disease (VLMEvalKit's report_acc gives accuracy per category).
- extra columns `question_id`, `image_id`, `source`, `modality`, `region`: VLMEvalKit's inference copies
  every TSV column but `image` into its prediction file (`vlmeval/inference.py` infer_data_job), so the
  import maps rows back by question_id rather than by position.

Dataset names carry the benchmark version (dataset_name, e.g. `SpineBench_DX_SUB_3f2a9c0d1e2b`): VLMEvalKit
caches decoded images as `images/{name}/{index}.png` and, for a TSV over 1 GiB, a `{name}_local.tsv`, and
reuses both without comparing them with the TSV; a new benchmark under an old name would be run on the old
images. `datasets.json` lists the datasets of an export.

Size: a TSV weighs about 4/3 of its images' PNG bytes. At 100-200 kB per 512-px image, the paper's full
diagnosis set (40,263 images) makes a 5-11 GB TSV, localization (24,615) 3-7 GB, each subset a few hundred
MB. VLMEvalKit reads a TSV whole with pandas (in every process it runs) and replaces one over 1 GiB by
`{name}_local.tsv` with the images written out as JPEG files, which re-encodes them lossily
(`vlmeval/smp/file.py` localize_df); the subsets stay below that size and keep the PNG pixels.
"""

from __future__ import annotations

import base64
import csv
import io
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path

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
from spinebench.io import CONSOLE, json_text
from spinebench.prompts import question_options
from spinebench.vocab import LETTERS, TASKS

log = logging.getLogger(__name__)

# Short task and split names inside dataset names: VLMEvalKit names its prediction file
# `{model}_{dataset}.xlsx`. None of the names' parts is one VLMEvalKit keys special handling on (MMBench,
# circular, video, openended, ...).
TASK_NAMES = {"diagnosis": "DX", "localization": "LOC"}
SPLIT_SUFFIXES = {"full": "", "subset": "_SUB"}

# index = INDEX_BASE[task] + position in the task's full question_id order (see the module docstring).
INDEX_BASE = {"diagnosis": 1_000_000, "localization": 2_000_000}
INDEX_SPAN = 1_000_000

# The instruction of the paper's prompt for each task (Figures 9 and 10), as VLMEvalKit's `hint`, with the
# letter format the localization prompt asks for spelled out. Without it VLMEvalKit's prompts say
# "Please select the correct answer" or "Answer with the option's letter", which would make a model give one
# letter where several levels may be right.
HINTS = {
    "diagnosis": "Identify the single most accurate answer among the options.",
    "localization": (
        "Identify all appropriate answers among the options, as there may be more than one correct choice. "
        "Give the letters of every option you choose, separated by commas (for example: A, C)."
    ),
}

# Question columns copied as they are: VLMEvalKit carries them through to its prediction file.
EXTRA_COLUMNS: tuple[str, ...] = ("question_id", "image_id", "source", "modality", "region")

# TSV columns in order: VLMEvalKit's layout, then the extra columns.
COLUMNS: tuple[str, ...] = (
    "index",
    "image",
    "question",
    "hint",
    *LETTERS,
    "answer",
    "category",
    *EXTRA_COLUMNS,
)

# VLMEvalKit replaces a TSV larger than this by a copy with the images decoded to files (its LOCALIZE).
LOCALIZE_BYTES = 1 << 30

DATASETS_FILE = "datasets.json"


class VlmevalkitExportError(ValueError):
    """A benchmark that cannot be written as VLMEvalKit TSVs."""


def dataset_name(task: str, split: str, version: str) -> str:
    """VLMEvalKit's name of the dataset of `task` and `split` (also the TSV's file stem)."""
    return f"SpineBench_{TASK_NAMES[task]}{SPLIT_SUFFIXES[split]}_{version}"


def question_indexes(task: str, question_ids: Iterable[str]) -> dict[str, int]:
    """question_id -> VLMEvalKit index for all questions of `task` (the full question list)."""
    ordered = sorted(question_ids)
    if len(ordered) > INDEX_SPAN:
        raise VlmevalkitExportError(f"{len(ordered)} {task} questions: indexes allow at most {INDEX_SPAN}")
    return {question_id: INDEX_BASE[task] + position for position, question_id in enumerate(ordered)}


def tsv_record(task: str, row: dict, png: bytes, index: int) -> list[str]:
    """One TSV row (COLUMNS order) for a question row and its image's PNG bytes."""
    options = question_options(row)
    values = {
        "index": str(index),
        "image": base64.b64encode(png).decode("ascii"),
        "question": str(row["question"]),
        "hint": HINTS[task],
        **options,
        "answer": str(row["answer"]),
        "category": str(row["disease"]),
        **{column: str(row[column]) for column in EXTRA_COLUMNS},
    }
    return [values[column] for column in COLUMNS]


def write_tsv(inputs: ExportInputs, task: str, split: str, indexes: dict[str, int], path: Path) -> int:
    """Write the TSV of `task` and `split` to `path`, images streamed a shard at a time; return its rows.

    Quoting is the csv module's minimal quoting, which pandas' read_csv (VLMEvalKit's reader) undoes.
    """
    questions = split_questions(inputs, task, split)
    with open(path, "w", encoding="utf-8", newline="") as handle:
        csv.writer(handle, **TSV_DIALECT).writerow(COLUMNS)
        for row, png in iter_question_images(inputs, questions):
            handle.write(tsv_line(tsv_record(task, row, png, indexes[row["question_id"]])))
    return len(questions)


TSV_DIALECT = {"delimiter": "\t", "lineterminator": "\n", "quoting": csv.QUOTE_MINIMAL}
IMAGE_COLUMN = COLUMNS.index("image")


def tsv_line(record: list[str]) -> str:
    """One TSV line of a record (COLUMNS order), as csv.writer writes it.

    The base64 image is spliced in rather than handed to the csv module, whose scan of a field for
    characters to quote made it about eight times slower on 100-kB fields than the rest of the line:
    base64 has no tab, newline or quote, so the image field is never quoted anyway.
    """
    buffer = io.StringIO()
    csv.writer(buffer, **TSV_DIALECT).writerow(record[:IMAGE_COLUMN] + record[IMAGE_COLUMN + 1 :])
    fields = buffer.getvalue().split("\t", IMAGE_COLUMN)
    return "\t".join([*fields[:IMAGE_COLUMN], record[IMAGE_COLUMN], *fields[IMAGE_COLUMN:]])


def export_vlmevalkit_part(inputs: ExportInputs, split: str, folder: str | Path) -> None:
    """Write the TSV of each task in `split` as `{task}.tsv` into `folder` (replaced atomically), with a
    part.json giving each one's rows and bytes."""
    tables = []
    with write_folder_atomically(Path(folder)) as staging:
        for task in TASKS:
            indexes = question_indexes(task, inputs.questions[task]["question_id"])
            path = staging / f"{task}.tsv"
            rows = write_tsv(inputs, task, split, indexes, path)
            tables.append({"task": task, "split": split, "questions": rows, "bytes": path.stat().st_size})
        write_part_info(staging, {"tables": tables})


def assemble_vlmevalkit(manifest: dict, parts: Sequence[str | Path], folder: str | Path) -> list[dict]:
    """Write `folder` (replaced atomically): each part's TSVs, linked under their dataset names, and
    `datasets.json`; return the datasets' descriptions (name, file, task, split, questions, bytes)."""
    version = benchmark_version(manifest)
    datasets = []
    with write_folder_atomically(Path(folder)) as staging:
        for part in parts:
            tables = read_part_info(part)["tables"]
            names = {
                f"{table['task']}.tsv": dataset_name(table["task"], table["split"], version)
                for table in tables
            }
            link_files(part, staging, {file: f"{name}.tsv" for file, name in names.items()})
            datasets += [
                describe_dataset(
                    names[f"{table['task']}.tsv"],
                    table["task"],
                    table["split"],
                    table["questions"],
                    table["bytes"],
                )
                for table in tables
            ]
        datasets.sort(key=lambda dataset: (TASKS.index(dataset["task"]), SPLITS.index(dataset["split"])))
        (staging / DATASETS_FILE).write_text(
            json_text({"benchmark_version": version, "datasets": datasets}), encoding="utf-8"
        )
    return datasets


def export_vlmevalkit(inputs: ExportInputs, folder: str | Path) -> list[dict]:
    """Write one TSV per task and split plus `datasets.json` into `folder` (replaced atomically), through one
    part per split as the workflow does; return the datasets' descriptions."""
    return export_through_parts(
        folder,
        lambda split, part: export_vlmevalkit_part(inputs, split, part),
        lambda parts, folder: assemble_vlmevalkit(inputs.manifest, parts, folder),
    )


def describe_dataset(name: str, task: str, split: str, rows: int, size: int) -> dict:
    """The datasets.json entry of one TSV; logs its size, and warns when VLMEvalKit will localize it."""
    log.info("%s: %d %s questions (%s), %.1f MB", name, rows, task, split, size / 1e6)
    if size > LOCALIZE_BYTES:
        log.warning(
            "%s.tsv is %.1f GiB: VLMEvalKit reads it whole with pandas, then writes every image to "
            "$LMUData/images/%s/ as JPEG (lossy) and reads %s_local.tsv instead",
            name,
            size / LOCALIZE_BYTES,
            name,
            name,
            extra=CONSOLE,
        )
    return {
        "name": name,
        "file": f"{name}.tsv",
        "task": task,
        "split": split,
        "questions": rows,
        "bytes": size,
    }
