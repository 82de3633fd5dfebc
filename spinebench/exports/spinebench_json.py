"""The benchmark in the original SpineBench release's JSON layout (shared/SOURCES.md section 0.4):

    all/train.json          every question of both tasks    all/{image_id}.png          their images
    evaluation/test.json    SpineBench-Sub's questions      evaluation/{image_id}.png   their images

Each JSON file is a list of records, diagnosis questions first, each task in question_id order:

    {"image": "rsna-1-2-3.png", "question": "...", "task": "spine_lesion_localization",
     "answers": ["L3/L4", "L4/L5"], "option A": "L1/L2", ..., "option E": "L5/S1",
     "question_id": "loc-rsna-1-2-3", "image_id": "rsna-1-2-3", "source": "rsna", "modality": "MRI",
     "region": "lumbar", "disease": "Foraminal stenosis"}

`image` is the PNG's path relative to the split folder, `task` the release's task name (ORIGINAL_TASKS),
`answers` the correct option's text (diagnosis) or the list of correct levels in cranial-to-caudal order
(localization), as the release has them. The options' key names are not known from the release; `option A`
.. `option E` follow its pipeline figure. The keys after the options are this project's additions, which a
reader of the release ignores; an image's file stem is its image_id, so spinebench.imports.spinebench_json
derives the same question ids from `image` and `task` alone.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from spinebench.exports.common import (
    SPLITS,
    ExportInputs,
    export_through_parts,
    link_files,
    read_part_info,
    split_questions,
    write_folder_atomically,
    write_part_info,
)
from spinebench.prompts import question_options
from spinebench.vocab import LETTERS, LEVELS, TASKS

# The release's task names.
ORIGINAL_TASKS = {"diagnosis": "spine_disease_classification", "localization": "spine_lesion_localization"}

# split -> (folder, JSON file name) of the release.
SPLIT_FILES = {"full": ("all", "train.json"), "subset": ("evaluation", "test.json")}

OPTION_KEYS = {letter: f"option {letter}" for letter in LETTERS}

# Question columns added to every record after the release's keys.
EXTRA_KEYS: tuple[str, ...] = ("question_id", "image_id", "source", "modality", "region", "disease")


class SpinebenchJsonExportError(ValueError):
    """A benchmark question or image that cannot be written in the release's layout."""


def image_file_name(image_id: str) -> str:
    """The PNG's file name in a split folder; an image_id that is not a plain file name is refused."""
    if not image_id or "/" in image_id or "\\" in image_id or image_id.startswith("."):
        raise SpinebenchJsonExportError(f"image_id {image_id!r} cannot name a file in the export")
    return f"{image_id}.png"


def correct_texts(task: str, question: dict) -> str | list[str]:
    """`answers` of a question: the correct option's text, or the correct levels in LEVELS order."""
    options = question_options(question)
    texts = [options[letter] for letter in str(question["answer"]).split(",")]
    if task == "diagnosis":
        if len(texts) != 1:
            raise SpinebenchJsonExportError(
                f"diagnosis question {question['question_id']} has several answers"
            )
        return texts[0]
    unknown = sorted(set(texts) - set(LEVELS))
    if unknown:
        raise SpinebenchJsonExportError(
            f"localization question {question['question_id']}: {unknown[0]!r} is no level"
        )
    return sorted(texts, key=LEVELS.index)


def question_record(task: str, question: dict) -> dict:
    """The release-layout record of one question row."""
    options = question_options(question)
    return {
        "image": image_file_name(str(question["image_id"])),
        "question": str(question["question"]),
        "task": ORIGINAL_TASKS[task],
        "answers": correct_texts(task, question),
        **{OPTION_KEYS[letter]: options[letter] for letter in LETTERS},
        **{key: str(question[key]) for key in EXTRA_KEYS},
    }


def write_split(inputs: ExportInputs, split: str, root: Path) -> dict[str, int]:
    """Write one split's folder (JSON file and images) under `root`; return its questions per task."""
    folder_name, file_name = SPLIT_FILES[split]
    folder = root / folder_name
    folder.mkdir()
    records: list[dict] = []
    counts = {}
    image_ids: set[str] = set()
    for task in TASKS:
        questions = split_questions(inputs, task, split)
        records += [question_record(task, question) for question in questions.to_dict("records")]
        counts[task] = len(questions)
        image_ids.update(questions["image_id"])
    (folder / file_name).write_text(
        json.dumps(records, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    write_images(inputs, sorted(image_ids), folder)
    return counts


def write_images(inputs: ExportInputs, image_ids: list[str], folder: Path) -> None:
    """Each image once, as its PNG bytes, read one shard at a time."""
    for _, pngs in inputs.images.iter_shards(image_ids):
        for image_id, png in pngs.items():
            (folder / image_file_name(image_id)).write_bytes(png)


def export_spinebench_json_part(inputs: ExportInputs, split: str, folder: str | Path) -> dict[str, int]:
    """Write one split's folder of the release layout into `folder` (replaced atomically), with a part.json
    giving its questions per task; return those counts."""
    with write_folder_atomically(Path(folder)) as staging:
        counts = write_split(inputs, split, staging)
        write_part_info(staging, {"split": split, "questions": counts})
    return counts


def assemble_spinebench_json(parts: Sequence[str | Path], folder: str | Path) -> dict[str, dict[str, int]]:
    """Write `folder` (replaced atomically) from the parts' split folders, linked; return the number of
    questions per split and task."""
    counts = {}
    with write_folder_atomically(Path(folder)) as staging:
        for part in parts:
            info = read_part_info(part)
            counts[info["split"]] = info["questions"]
            link_files(part, staging)
    return {split: counts[split] for split in SPLITS if split in counts}


def export_spinebench_json(inputs: ExportInputs, folder: str | Path) -> dict[str, dict[str, int]]:
    """Write the release layout of both splits into `folder` (replaced atomically), through one part per
    split as the workflow does; return the number of questions per split and task."""
    return export_through_parts(
        folder,
        lambda split, part: export_spinebench_json_part(inputs, split, part),
        assemble_spinebench_json,
    )
