"""Predictions made elsewhere: the jsonl reader, the reader registry, the `imported` backend and its params
checks, the `spinebench-score` command, and one workflow run that imports the random baseline's responses.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import jsonschema
import pandas as pd
import pytest
import yaml

from spinebench.backends import BackendContext, BackendError, make_backend
from spinebench.backends.base import final_phrase
from spinebench.config_checks import ConfigError, check_config
from spinebench.finalize import finalize
from spinebench.imports import FORMATS, ImportFormatError, check_responses, read_responses
from spinebench.imports.locations import workflow_inputs
from spinebench.journal import PredictionError
from spinebench.predict import model_fingerprint, run_predictions
from spinebench.score_cli import main as score_main
from tests.benchmark_fixture import write_tiny_benchmark

REPO = Path(__file__).resolve().parents[1]
SCHEMA = json.loads((REPO / "schemas" / "params.schema.json").read_text())
PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict:
    """The tiny on-disk benchmark (tests/benchmark_fixture.py); read-only."""
    return write_tiny_benchmark(tmp_path_factory.mktemp("tiny"))


def questions_of(tiny: dict, task: str) -> pd.DataFrame:
    return tiny["frames"][task]


def right_answer(task: str, answer: str) -> str:
    """A response ending with the paper's phrase naming the true letters."""
    return f"The image shows it.\n{final_phrase(task, answer.split(','))}"


def write_lines(path: Path, records: list) -> Path:
    """One JSON text a line (str records are written as they are: a deliberately broken line)."""
    lines = [record if isinstance(record, str) else json.dumps(record) for record in records]
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def right_records(tiny: dict, task: str, with_task: bool = False) -> list[dict]:
    """A right response to every question of `task`, question_id order."""
    records = []
    for row in questions_of(tiny, task).sort_values("question_id").to_dict("records"):
        record = {"question_id": row["question_id"], "response": right_answer(task, row["answer"])}
        records.append({**record, "task": task} if with_task else record)
    return records


# --- the jsonl reader and the registry ----------------------------------------------------------------------


def test_jsonl_reads_both_tasks_from_one_file_a_json_list_or_a_folder(tiny, tmp_path):
    diagnosis, localization = right_records(tiny, "diagnosis"), right_records(tiny, "localization", True)
    shared = write_lines(tmp_path / "shared.jsonl", diagnosis + localization)
    as_list = tmp_path / "shared.json"
    as_list.write_text(json.dumps(localization + diagnosis), encoding="utf-8")
    folder = tmp_path / "folder"
    folder.mkdir()
    write_lines(folder / "diagnosis.jsonl", diagnosis)
    write_lines(folder / "localization.jsonl", localization)
    for path in (shared, as_list, folder):
        for task, records in (("diagnosis", diagnosis), ("localization", localization)):
            responses = read_responses("jsonl", path, task, questions_of(tiny, task))
            assert list(responses.columns) == ["question_id", "response"]
            assert responses.to_dict("records") == [
                {"question_id": record["question_id"], "response": record["response"]} for record in records
            ], (path, task)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", r"pred\.jsonl:2: not a JSON object"),
        ('["dx-csxa-0001", "B"]', r"pred\.jsonl:2: a record must be a JSON object"),
        ({"question_id": "dx-csxa-0001"}, r"pred\.jsonl:2: the record lacks response"),
        ({"question_id": "dx-csxa-0001", "response": 3}, r"pred\.jsonl:2: response of dx-csxa-0001 must be"),
        ({"question_id": "dx-csxa-0001", "response": "A", "task": "grading"}, r"pred\.jsonl:2: task of"),
        (
            {"question_id": "dx-nowhere", "response": "A", "task": "diagnosis"},
            r"pred\.jsonl:2: question dx-nowhere",
        ),
        (
            {"question_id": "dx-buu-0001-AP", "response": "B"},
            r"pred\.jsonl:2: .* again \(first at .*pred\.jsonl:1\)",
        ),
    ],
)
def test_jsonl_errors_name_the_file_and_line(tiny, tmp_path, line, message):
    path = write_lines(tmp_path / "pred.jsonl", [{"question_id": "dx-buu-0001-AP", "response": "A"}, line])
    with pytest.raises(ImportFormatError, match=message):
        read_responses("jsonl", path, "diagnosis", questions_of(tiny, "diagnosis"))


def test_jsonl_folder_errors_name_the_missing_or_foreign_file(tiny, tmp_path):
    write_lines(
        tmp_path / "diagnosis.jsonl",
        [{"question_id": "loc-buu-0001-AP", "response": "A", "task": "localization"}],
    )
    with pytest.raises(ImportFormatError, match=r"must hold localization\.jsonl, which is missing"):
        read_responses("jsonl", tmp_path, "localization", questions_of(tiny, "localization"))
    with pytest.raises(ImportFormatError, match=r"diagnosis\.jsonl:1: a record of task 'localization'"):
        read_responses("jsonl", tmp_path, "diagnosis", questions_of(tiny, "diagnosis"))


def test_registry_rejects_an_unknown_format_and_checks_every_reader_table(tiny, tmp_path):
    questions = questions_of(tiny, "diagnosis")
    with pytest.raises(ImportFormatError, match="unknown predictions format 'csv'; expected one of jsonl"):
        read_responses("csv", tmp_path, "diagnosis", questions)
    where = tmp_path / "file.tsv"
    bad_tables = [
        (pd.DataFrame({"question_id": ["dx-csxa-0001"]}), "no column.s. response"),
        (pd.DataFrame({"question_id": ["dx-csxa-0001"] * 2, "response": ["A", "B"]}), "more than once"),
        (pd.DataFrame({"question_id": ["dx-elsewhere"], "response": ["A"]}), "not among the benchmark's"),
        (pd.DataFrame({"question_id": [7], "response": ["A"]}), "question ids must be text"),
        (pd.DataFrame({"question_id": ["dx-csxa-0001"], "response": [1.5]}), "must be text or missing"),
    ]
    for table, message in bad_tables:
        with pytest.raises(ImportFormatError, match=f"{where}: .*{message}"):
            check_responses(table, where, "diagnosis", questions)
    # A missing response held as NaN (pandas' reading of an empty cell) is None; rows come back sorted.
    table = pd.DataFrame({"question_id": ["dx-csxa-0002", "dx-csxa-0001"], "response": [float("nan"), "A"]})
    checked = check_responses(table, where, "diagnosis", questions)
    assert checked.to_dict("records") == [
        {"question_id": "dx-csxa-0001", "response": "A"},
        {"question_id": "dx-csxa-0002", "response": None},
    ]


# --- the imported backend -----------------------------------------------------------------------------------


def imported_backend(tiny: dict, task: str, settings: dict, name: str = "elsewhere"):
    context = BackendContext(name, task=task, questions=questions_of(tiny, task))
    return make_backend(name, {"backend": "imported", "format": "jsonl", **settings}, context)


def run_and_finalize(tiny: dict, backend, jsonl: Path, max_failed: int) -> pd.DataFrame:
    """Predict then finalize `backend`'s task on every question, as the predict job does."""
    task, questions = backend.task, questions_of(tiny, backend.task)
    fingerprint = model_fingerprint(backend)
    common = {"task": task, "definitions": False}
    run_predictions(questions, None, backend, jsonl, fingerprint, max_failed=max_failed, **common)
    return finalize(questions, jsonl, fingerprint, **common)


def test_backend_answers_from_the_file_and_fails_the_questions_it_lacks(tiny, tmp_path):
    records = right_records(tiny, "diagnosis")
    dropped, empty = records.pop(0)["question_id"], records[0]["question_id"]
    records[0]["response"] = None
    predictions = write_lines(tmp_path / "predictions.jsonl", records)
    backend = imported_backend(tiny, "diagnosis", {"path": str(predictions)})
    assert backend.needs_images is False
    with pytest.raises(PredictionError, match=f"first error: .*{dropped}: {predictions}: no prediction for"):
        run_and_finalize(tiny, backend, tmp_path / "strict.jsonl", max_failed=0)
    table = run_and_finalize(tiny, backend, tmp_path / "lenient.jsonl", max_failed=2).set_index("question_id")
    assert table.at[dropped, "error"] == f"{predictions}: no prediction for question {dropped}"
    assert table.at[empty, "error"] == f"{predictions}: the prediction for question {empty} has no response"
    answered = table.drop(index=[dropped, empty])
    assert (answered["extraction"] == "final_phrase").all() and answered["error"].isna().all()
    truth = questions_of(tiny, "diagnosis").set_index("question_id")["answer"]
    assert (answered["answer"] == truth[answered.index]).all()
    assert (table["latency_s"] == 0.0).all() and (table["attempts"] == 1).all()


def test_fingerprint_follows_the_content_not_the_location(tiny, tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    write_lines(first / "diagnosis.jsonl", right_records(tiny, "diagnosis"))
    write_lines(first / "localization.jsonl", right_records(tiny, "localization"))
    shutil.copytree(first, second)

    def fingerprint(settings: dict, task: str = "diagnosis") -> str:
        return model_fingerprint(imported_backend(tiny, task, settings))

    assert fingerprint({"path": str(first)}) == fingerprint({"path": str(second)})
    single = {"path": str(first / "diagnosis.jsonl")}
    moved = {"path": str(second / "diagnosis.jsonl")}
    assert fingerprint(single) == fingerprint(moved)
    edited = right_records(tiny, "diagnosis")
    edited[0]["response"] += " Certain."
    write_lines(second / "diagnosis.jsonl", edited)
    assert fingerprint(single) != fingerprint(moved)
    assert fingerprint({"path": str(first)}) != fingerprint({"path": str(second)})
    # A per-task mapping: the localization job fingerprints only the localization file.
    tasks = {"diagnosis": str(second / "diagnosis.jsonl"), "localization": str(first / "localization.jsonl")}
    assert fingerprint({"tasks": tasks}, "localization") == fingerprint(
        {"path": str(first / "localization.jsonl")}, "localization"
    )


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"path": "p.jsonl", "tasks": {"diagnosis": "d", "localization": "l"}}, "exactly one of"),
        ({}, "exactly one of"),
        ({"tasks": {"diagnosis": "d"}}, "must map each of diagnosis, localization"),
        ({"path": "p.jsonl", "model": "x"}, "unknown setting.s. model"),
        ({"path": "p.jsonl", "format": "csv"}, "unknown predictions format 'csv'"),
        ({"path": "absent.jsonl"}, "absent.jsonl does not exist"),
    ],
)
def test_backend_settings_errors_name_the_model(tiny, tmp_path, settings, message):
    write_lines(tmp_path / "p.jsonl", [])
    settings = {key: str(tmp_path / value) if key == "path" else value for key, value in settings.items()}
    with pytest.raises(BackendError, match=f"model 'elsewhere': .*{message}"):
        imported_backend(tiny, "diagnosis", settings)


def test_an_imported_model_cannot_be_a_judge(tmp_path):
    predictions = write_lines(tmp_path / "p.jsonl", [])
    settings = {"backend": "imported", "format": "jsonl", "path": str(predictions)}
    with pytest.raises(BackendError, match="answers only a predict job's questions"):
        make_backend("elsewhere", settings, BackendContext("elsewhere"))


def test_workflow_inputs_list_an_imported_models_files_and_nothing_for_others(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)  # the readers' code is listed relative to the project folder, as in a job
    folder = tmp_path / "predictions"
    (folder / "nested").mkdir(parents=True)
    for name in ("diagnosis.jsonl", "nested/extra.jsonl", ".hidden"):
        (folder / name).write_text("", encoding="utf-8")
    readers = sorted(str(path) for path in Path("spinebench/imports").glob("*.py"))
    assert "spinebench/imports/jsonl.py" in readers
    settings = {"backend": "imported", "format": "jsonl", "path": str(folder)}
    expected = [str(folder / "diagnosis.jsonl"), str(folder / "nested/extra.jsonl")]
    assert workflow_inputs("m", settings, "diagnosis") == expected + readers
    per_task = {**settings, "path": None, "tasks": {"diagnosis": "d.jsonl", "localization": "l.jsonl"}}
    assert workflow_inputs("m", per_task, "localization") == ["l.jsonl", *readers]
    assert workflow_inputs("m", {"backend": "random"}, "diagnosis") == []


# --- params -------------------------------------------------------------------------------------------------


def imported_schema() -> dict:
    rules = SCHEMA["properties"]["models"]["additionalProperties"]["allOf"]
    return next(rule["then"] for rule in rules if rule["if"]["properties"]["backend"]["const"] == "imported")


def test_schema_lists_the_readers_and_wants_a_path_or_a_mapping():
    assert tuple(imported_schema()["properties"]["format"]["enum"]) == FORMATS
    base = {"backend": "imported", "format": "vlmevalkit"}
    tasks = {"diagnosis": "d.xlsx", "localization": "l.xlsx"}
    for settings in ({**base, "path": "p.xlsx"}, {**base, "tasks": tasks}):
        jsonschema.validate({**PARAMS, "models": {"m": settings}}, SCHEMA)
    for settings in (base, {**base, "path": "p", "tasks": tasks}, {**base, "path": "p", "k": 3}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate({**PARAMS, "models": {"m": settings}}, SCHEMA)


def test_config_check_names_a_missing_predictions_file_and_an_imported_judge(tmp_path):
    present = write_lines(tmp_path / "present.jsonl", [])
    models = {
        "here": {"backend": "imported", "format": "jsonl", "path": str(present)},
        "gone": {"backend": "imported", "format": "jsonl", "path": str(tmp_path / "gone.jsonl")},
        "half": {
            "backend": "imported",
            "format": "jsonl",
            "tasks": {"diagnosis": str(present), "localization": str(tmp_path / "loc.jsonl")},
        },
    }
    config = {**PARAMS, "models": models, "evaluate": {**PARAMS["evaluate"], "judge": "here"}}
    with pytest.raises(ConfigError) as error:
        check_config(config, needs_predictions=lambda model: True, environ={})
    message = str(error.value)
    assert f"models.gone.path is {tmp_path / 'gone.jsonl'}, which does not exist" in message
    assert f"models.half.tasks.localization is {tmp_path / 'loc.jsonl'}" in message
    assert "models.half.tasks.diagnosis" not in message and "models.here.path" not in message
    assert "evaluate.judge names here, an imported model" in message


# --- spinebench-score ---------------------------------------------------------------------------------------


def test_score_command_scores_a_benchmark_folder(tiny, tmp_path, capsys):
    """Right answers but one wrong diagnosis and one missing localization question: the scores on the
    subset (every other question) follow by hand."""
    diagnosis, localization = right_records(tiny, "diagnosis"), right_records(tiny, "localization")
    subset = tiny["frames"]["subset"]
    in_subset = set(subset["question_id"])
    wrong = next(record for record in diagnosis if record["question_id"] in in_subset)
    wrong["response"] = "No idea."
    missing = next(record for record in localization if record["question_id"] in in_subset)
    localization.remove(missing)
    predictions = write_lines(tmp_path / "my-vlm.jsonl", diagnosis + localization)
    benchmark = Path(tiny["catalog"]).parent
    assert (
        score_main([str(benchmark), str(predictions), "--format", "jsonl", "--out", str(tmp_path / "s")]) == 0
    )
    summary = json.loads((tmp_path / "s" / "my-vlm.json").read_text())
    counted = subset.groupby("task").size().to_dict()
    assert summary["model"] == "my-vlm" and summary["split"] == "subset"
    assert summary["questions"] == counted
    dx_accuracy = (counted["diagnosis"] - 1) / counted["diagnosis"]
    loc_accuracy = (counted["localization"] - 1) / counted["localization"]
    assert summary["metrics"]["diagnosis_accuracy"] == round(dx_accuracy, 4)
    assert summary["metrics"]["localization_accuracy"] == round(loc_accuracy, 4)
    assert summary["metrics"]["localization_recall"] == round(loc_accuracy, 4)
    assert summary["extraction"]["diagnosis"]["none"] == 1
    assert summary["errors"] == {"diagnosis": 0, "localization": 1}
    breakdown = pd.read_csv(tmp_path / "s" / "my-vlm.breakdown.csv")
    assert set(breakdown["model"]) == {"my-vlm"} and set(breakdown["task"]) == {"diagnosis", "localization"}
    scored = pd.read_parquet(tmp_path / "s" / "my-vlm.questions.parquet").set_index("question_id")
    assert scored.at[missing["question_id"], "extraction"] == "error"
    assert scored["correct"].sum() == len(subset) - 2
    assert str(tmp_path / "s" / "my-vlm.json") in capsys.readouterr().out


def test_score_command_reports_a_bad_predictions_file(tiny, tmp_path, capsys):
    predictions = write_lines(
        tmp_path / "p.jsonl", [{"question_id": "dx-nowhere", "response": "A", "task": "diagnosis"}]
    )
    benchmark = str(Path(tiny["catalog"]).parent)
    assert score_main([benchmark, str(predictions), "--format", "jsonl", "--out", str(tmp_path / "s")]) == 1
    assert f"{predictions}:1: question dx-nowhere is not among" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


def original_release_records() -> list[dict]:
    """Records in the original release's layout (shared/SOURCES.md 0.4): no ids, no source or modality,
    option keys `option A`.., answers as option texts in the release's casing."""
    diseases = ["Healthy", "Spondylolisthesis", "cervical Lordosis", "Osteophytes", "Vertebral collapse"]
    levels = ["L1/L2", "L2/L3", "L3/L4", "L4/L5", "L5/S1"]

    def record(image: str, task: str, options: list[str], answers) -> dict:
        options_by_key = {f"option {letter}": text for letter, text in zip("ABCDE", options, strict=True)}
        question = "Which disorder is shown?" if task.endswith("classification") else "Which level?"
        return {"image": image, "question": question, "task": task, **options_by_key, "answers": answers}

    dx, loc = "spine_disease_classification", "spine_lesion_localization"
    return [
        record("images/a.png", dx, diseases, "Spondylolisthesis"),
        record("images/b.png", dx, diseases, "cervical Lordosis"),
        record("images/c.png", dx, diseases[::-1], "Healthy"),
        record("images/a.png", loc, levels, ["L4/L5", "L5/S1"]),
        record("images/c.png", loc, levels, ["L1/L2"]),
    ]


def test_score_command_scores_predictions_made_against_the_original_release(tmp_path):
    benchmark = tmp_path / "evaluation" / "test.json"
    benchmark.parent.mkdir()
    records = original_release_records()
    benchmark.write_text(json.dumps(records), encoding="utf-8")
    responses = [
        "My final option: [B]",  # a: right
        "My final option: [A]",  # b: wrong (Healthy)
        "I cannot tell.",  # c: nothing to extract
        "My final options: [D]",  # a: one of two levels
        "My final options: [A]",  # c: right
    ]
    predictions = tmp_path / "original-vlm.json"
    answered = [{**record, "response": response} for record, response in zip(records, responses, strict=True)]
    predictions.write_text(json.dumps(answered), encoding="utf-8")
    out = tmp_path / "scores"
    assert (
        score_main([str(benchmark), str(predictions), "--format", "spinebench_json", "--out", str(out)]) == 0
    )
    summary = json.loads((out / "original-vlm.json").read_text())
    assert summary["split"] == "full" and summary["questions"] == {"diagnosis": 3, "localization": 2}
    assert summary["metrics"]["diagnosis_accuracy"] == round(1 / 3, 4)
    assert summary["metrics"]["localization_accuracy"] == 0.5
    assert summary["metrics"]["localization_precision"] == 1.0
    assert summary["metrics"]["localization_recall"] == 0.75
    assert summary["extraction"]["diagnosis"]["final_phrase"] == 2
    breakdown = pd.read_csv(out / "original-vlm.breakdown.csv")
    assert set(breakdown.loc[breakdown["dimension"] == "source", "value"]) == {"unknown"}
    diseases = breakdown.loc[(breakdown["task"] == "diagnosis") & (breakdown["dimension"] == "disease")]
    assert set(diseases["value"]) == {"Spondylolisthesis", "Cervical lordosis", "Healthy"}
    # The original layout does not mark SpineBench-Sub.
    arguments = [str(benchmark), str(predictions), "--format", "spinebench_json", "--out", str(out)]
    assert score_main([*arguments, "--split", "subset"]) == 1
