"""The original SpineBench release's JSON layout: the export, its questions read back, records in the
release's own style, and predictions made against either."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from spinebench.exports.common import split_questions
from spinebench.exports.spinebench_json import ORIGINAL_TASKS, SPLIT_FILES, export_spinebench_json
from spinebench.imports import ImportFormatError
from spinebench.imports.spinebench_json import read_benchmark_json, read_responses
from spinebench.questions import QUESTION_COLUMNS
from spinebench.vocab import TASKS
from tests.benchmark_fixture import export_inputs_of, run_export_scripts, write_tiny_benchmark

REPO = Path(__file__).resolve().parents[1]

# Records in the release's style (shared/SOURCES.md 0.4): mixed-case labels, answers as a list, an image in a
# subfolder, no ids; the localization record answers with lower-case levels and one letter.
ORIGINAL_RECORDS = [
    {
        "image": "images/case_12.jpg",
        "question": "What kind of spinal condition is affecting this patient?",
        "task": "spine_disease_classification",
        "answers": ["cervical Lordosis"],
        "option A": "Healthy",
        "option B": "cervical Lordosis",
        "option C": "cervical Kyphosis",
        "option D": "sigmoid cervical vertebrae",
        "option E": "Straight cervical vertebrae",
    },
    {
        "image": "images/case_40.png",
        "question": "What is the site of the disease in the spine?",
        "task": "spine_lesion_localization",
        "answers": ["l4/l5", "E"],
        "options": ["L1/L2", "L2/L3", "L3/L4", "L4/L5", "L5/S1"],
    },
    {
        "image": "images/case_40.png",
        "question": "Which spinal disorder is this patient suffering from?",
        "task": "spine_disease_classification",
        "answer": "Spinal Canal Stenosis",
        "A": "Osteophytes",
        "B": "Healthy",
        "C": "Spinal Canal Stenosis",
        "D": "Spondylolisthesis",
        "E": "Foraminal stenosis",
    },
]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The tiny benchmark and its export in the release's layout (written once for the module)."""
    root = tmp_path_factory.mktemp("spinebench_json")
    paths = write_tiny_benchmark(root)
    inputs = export_inputs_of(paths)
    folder = root / "results" / "exports" / "spinebench_json"
    counts = export_spinebench_json(inputs, folder)
    return {"paths": paths, "inputs": inputs, "folder": folder, "counts": counts}


def json_file(exported: dict, split: str) -> Path:
    folder, name = SPLIT_FILES[split]
    return exported["folder"] / folder / name


def write_records(path: Path, records: list, lines: bool = False) -> Path:
    """`records` as a JSON list, or JSON Lines when `lines`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if lines:
        path.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    else:
        path.write_text(json.dumps(records, indent=2), encoding="utf-8")
    return path


def test_export_reads_back_as_the_benchmark_questions(exported):
    inputs = exported["inputs"]
    for split in SPLIT_FILES:
        tables = read_benchmark_json(json_file(exported, split))
        for task in TASKS:
            ours = split_questions(inputs, task, split)[list(QUESTION_COLUMNS)].drop(columns="paraphrase")
            read = tables[task].drop(columns="paraphrase")
            pd.testing.assert_frame_equal(read, ours.astype(object), check_dtype=False)
            assert tables[task]["paraphrase"].isna().all()
            assert exported["counts"][split][task] == len(ours)


def test_release_record_layout_and_images(exported):
    records = json.loads(json_file(exported, "full").read_text(encoding="utf-8"))
    record = next(record for record in records if record["question_id"] == "loc-rsna-4-5-1")
    assert record["image"] == "rsna-4-5-1.png" and record["task"] == "spine_lesion_localization"
    assert record["answers"] == ["L1/L2", "L2/L3", "L3/L4"]  # cranial to caudal, whatever their letters
    assert sorted(key for key in record if key.startswith("option ")) == [f"option {x}" for x in "ABCDE"]
    diagnosis = next(record for record in records if record["question_id"] == "dx-rsna-4-5-1")
    assert (
        diagnosis["answers"] == "Spinal canal stenosis"
        and diagnosis["task"] == "spine_disease_classification"
    )
    pngs = exported["paths"]["pngs"]
    for split in SPLIT_FILES:
        folder = exported["folder"] / SPLIT_FILES[split][0]
        written = {path.stem: path.read_bytes() for path in folder.glob("*.png")}
        referenced = {record["image"] for record in json.loads(json_file(exported, split).read_text())}
        assert {f"{image_id}.png" for image_id in written} == referenced
        assert all(png == pngs[image_id] for image_id, png in written.items())


def test_export_is_byte_identical_when_run_again(exported, tmp_path):
    export_spinebench_json(exported["inputs"], tmp_path / "again")

    def contents(root: Path) -> dict[str, bytes]:
        return {str(path.relative_to(root)): path.read_bytes() for path in root.rglob("*") if path.is_file()}

    assert contents(exported["folder"]) == contents(tmp_path / "again")


def test_script_writes_the_export(exported, tmp_path):
    paths = exported["paths"]
    output = tmp_path / "exports" / "spinebench_json"
    run_export_scripts(paths, tmp_path, "spinebench_json", output)
    assert (output / "all" / "train.json").read_bytes() == json_file(exported, "full").read_bytes()
    assert (output / "evaluation" / "test.json").read_bytes() == json_file(exported, "subset").read_bytes()


def test_records_in_the_release_style_are_read(tmp_path):
    tables = read_benchmark_json(write_records(tmp_path / "all" / "train.json", ORIGINAL_RECORDS))
    diagnosis = tables["diagnosis"].set_index("question_id")
    assert list(diagnosis.index) == ["dx-images/case_12", "dx-images/case_40"]
    assert diagnosis.at["dx-images/case_12", "answer"] == "B"
    assert diagnosis.at["dx-images/case_12", "disease"] == "Cervical lordosis"  # the vocabulary's label
    assert diagnosis.at["dx-images/case_12", "option_b"] == "cervical Lordosis"  # what the model was shown
    assert diagnosis.at["dx-images/case_40", "answer"] == "C"
    localization = tables["localization"].iloc[0]
    assert (localization["question_id"], localization["image_id"]) == ("loc-images/case_40", "images/case_40")
    assert localization["answer"] == "D,E"
    assert localization["disease"] == "Spinal canal stenosis"  # from the same image's diagnosis record
    assert localization["source"] is None and pd.isna(localization["paraphrase"])


def broken(record_index: int, **changes) -> list[dict]:
    """ORIGINAL_RECORDS with one record changed (a key set to None is removed)."""
    records = [dict(record) for record in ORIGINAL_RECORDS]
    records[record_index].update(changes)
    records[record_index] = {key: value for key, value in records[record_index].items() if value is not None}
    return records


@pytest.mark.parametrize(
    ("records", "message"),
    [
        (broken(0, **{"option C": None}), r"record 1: five options A\.\.E expected"),
        (broken(1, answers=["L4/L5", "T12/L1"]), r"record 2: answer 'T12/L1' is none of the options"),
        (broken(2, answer=["Osteophytes", "Healthy"]), r"record 3: a diagnosis question has one answer"),
        (
            broken(0, task="spine_fracture_detection"),
            r"record 1: task 'spine_fracture_detection' is not one of",
        ),
        (
            broken(2, image="images/case_12.jpg"),
            r"record 3: question dx-images/case_12 appears again \(first at ",
        ),
        (broken(1, image="../case_40.png"), r"record 2: image '\.\./case_40\.png' is not a path inside"),
        (broken(0, question=""), r"record 1: 'question' or 'query' must be a non-empty string"),
        ([*ORIGINAL_RECORDS, "not a record"], r"record 4: a record must be a JSON object"),
    ],
)
def test_bad_records_are_named(tmp_path, records, message):
    path = write_records(tmp_path / "train.json", records)
    with pytest.raises(ImportFormatError, match=rf"train\.json: {message}"):
        read_benchmark_json(path)


def test_predictions_against_the_export_are_read(exported, tmp_path):
    frames = exported["paths"]["frames"]
    records = json.loads(json_file(exported, "subset").read_text(encoding="utf-8"))
    keys = ("response", "prediction", "output", "model_output")
    predictions = []
    for position, record in enumerate(records):
        response = None if position == 1 else f"{record['question_id']}: My final option: [A]"
        predictions.append({**record, keys[position % len(keys)]: response})
    path = write_records(tmp_path / "predictions.jsonl", predictions, lines=True)
    for task in TASKS:
        read = read_responses(path, task, frames[task])
        expected = {
            record["question_id"]: record[next(key for key in keys if key in record)]
            for record in predictions
            if record["task"] == ORIGINAL_TASKS[task]
        }
        assert dict(zip(read["question_id"], read["response"], strict=True)) == expected
        assert read["response"].isna().sum() == (1 if task == "diagnosis" else 0)


def test_predictions_against_the_release_match_by_image_and_task(tmp_path):
    questions = read_benchmark_json(write_records(tmp_path / "evaluation" / "test.json", ORIGINAL_RECORDS))
    predictions = [
        {
            "image": "images/case_40.png",
            "task": "spine_lesion_localization",
            "output": "My final options: [D, E]",
        },
        {**ORIGINAL_RECORDS[0], "response": "B"},
        {"image": "images/case_40.png", "task": "spine_disease_classification", "prediction": "C"},
    ]
    path = write_records(tmp_path / "predictions.json", predictions)
    read = read_responses(path, "diagnosis", questions["diagnosis"])
    assert dict(zip(read["question_id"], read["response"], strict=True)) == {
        "dx-images/case_12": "B",
        "dx-images/case_40": "C",
    }
    read = read_responses(path, "localization", questions["localization"])
    assert list(read["response"]) == ["My final options: [D, E]"]


@pytest.mark.parametrize(
    ("prediction", "message"),
    [
        (
            {"image": "images/case_99.png", "response": "A"},
            r"record 2: dx-images/case_99 is not a diagnosis question",
        ),
        ({"image": "images/case_12.jpg", "response": "A"}, r"record 2: dx-images/case_12 is answered again"),
        ({"image": "images/case_40.png", "answers": "C"}, r"record 2: no response; expected one of the keys"),
        ({"image": "images/case_40.png", "response": ["C"]}, r"record 2: response must be a string or null"),
        (
            {**ORIGINAL_RECORDS[2], "A": "Spinal Canal Stenosis", "C": "Osteophytes", "response": "A"},
            r"record 2: the options of dx-images/case_40 differ from the benchmark's",
        ),
    ],
)
def test_bad_predictions_are_named(tmp_path, prediction, message):
    questions = read_benchmark_json(write_records(tmp_path / "test.json", ORIGINAL_RECORDS))
    first = {"image": "images/case_12.jpg", "task": "spine_disease_classification", "response": "B"}
    path = write_records(
        tmp_path / "predictions.json", [first, {"task": "spine_disease_classification", **prediction}]
    )
    with pytest.raises(ImportFormatError, match=rf"predictions\.json: {message}"):
        read_responses(path, "diagnosis", questions["diagnosis"])
