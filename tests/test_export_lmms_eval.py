"""The lmms-eval task folder, run through lmms-eval itself (offline, over the Hugging Face export):
its prompts are this project's, its scores on fixed responses equal this project's metric tables, and the
samples files it logs read back (spinebench.imports.lmms_eval) into the same responses."""

from __future__ import annotations

import io
import json
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from spinebench.exports.common import split_questions
from spinebench.exports.hf import export_hf
from spinebench.exports.lmms_eval import LmmsEvalExportError, export_lmms_eval, task_name
from spinebench.finalize import finalize, write_predictions
from spinebench.imports import ImportFormatError, read_responses
from spinebench.journal import RecordWriter
from spinebench.metrics import rounded, score_model
from spinebench.predict import plan_items
from spinebench.vocab import TASKS
from tests.benchmark_fixture import export_inputs_of, write_tiny_benchmark

REPO = Path(__file__).resolve().parents[1]
TEMPLATES = [REPO / "templates" / "prompts" / f"{task}.j2" for task in TASKS]
MODEL = "replay"

# Responses cycled over the questions (by position): every extraction outcome the metrics distinguish.
DIAGNOSIS_RESPONSES = (
    "The disc spaces look narrowed.\nMy final option: [{truth}]",  # right
    "My final option: [{wrong}]",  # wrong
    "I cannot tell from this image.",  # unreadable: wrong
)
LOCALIZATION_RESPONSES = (
    "My final options: [{truth}]",  # exact
    "My final options: [{first}]",  # the first true letter only
    "My final options: [{truth}, {wrong}]",  # a wrong letter more
    "No level is clearly affected.",  # nothing extracted: precision 0
)


def fixed_responses(questions: pd.DataFrame, task: str) -> dict[str, str]:
    """question_id -> a fixed response (DIAGNOSIS_RESPONSES / LOCALIZATION_RESPONSES, cycled)."""
    responses = {}
    patterns = DIAGNOSIS_RESPONSES if task == "diagnosis" else LOCALIZATION_RESPONSES
    for index, row in enumerate(questions.sort_values("question_id").to_dict("records")):
        truth = row["answer"].split(",")
        wrong = next(letter for letter in "EDCBA" if letter not in truth)
        responses[row["question_id"]] = patterns[index % len(patterns)].format(
            truth=", ".join(truth), first=truth[0], wrong=wrong
        )
    return responses


def replay_model(lmms):
    """An lmms-eval model class (a subclass of lmms-eval's `lmms`) that answers each document with the fixed
    response to its question, looking the document up the way lmms-eval's models do (its split in
    `task_dict`, its image through doc_to_visual)."""

    class Replay(lmms):
        def __init__(self, responses: dict[str, str]) -> None:
            super().__init__()
            self.responses = responses

        def generate_until(self, requests):
            answers = []
            for request in requests:
                _, _, doc_to_visual, doc_id, task, split = request.args
                document = self.task_dict[task][split][doc_id]
                assert doc_to_visual(document)[0].mode == "RGB"
                answers.append(self.responses[document["question_id"]])
            return answers

        def loglikelihood(self, requests):
            raise NotImplementedError("SpineBench tasks only generate")

        def generate_until_multi_round(self, requests):
            raise NotImplementedError("SpineBench tasks only generate")

    return Replay


@pytest.fixture(scope="module")
def lmms_eval():
    """lmms-eval's task manager, evaluator, tracker and a Replay model class, imported offline (lmms-eval and
    `datasets` read these settings when imported): nothing comes from the Hub. Imported here rather than at
    the top so that collecting the suite does not pay lmms-eval's import (~10-20 s)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        patch.setenv("HF_DATASETS_OFFLINE", "1")
        tasks = pytest.importorskip("lmms_eval.tasks")
        from lmms_eval import evaluator
        from lmms_eval.api.model import lmms
        from lmms_eval.loggers import EvaluationTracker

        yield SimpleNamespace(
            tasks=tasks, evaluator=evaluator, tracker=EvaluationTracker, replay=replay_model(lmms)
        )


def evaluate(lmms_eval, task_manager, tasks, responses, output, predict_only=False) -> dict:
    """lmms-eval's own evaluation (what its CLI runs) with the Replay model; samples files saved as the CLI
    saves them, under `output`/replay/. Seeds left alone (None): no global random state is touched."""
    tracker = lmms_eval.tracker(output_path=str(output))
    results = lmms_eval.evaluator.simple_evaluate(
        model=lmms_eval.replay(responses),
        model_args=f"model_name={MODEL}",
        tasks=tasks,
        task_manager=task_manager,
        log_samples=True,
        predict_only=predict_only,
        evaluation_tracker=tracker,
        bootstrap_iters=0,
        random_seed=None,
        numpy_random_seed=None,
        torch_random_seed=None,
        fewshot_random_seed=None,
        datetime_str="2026-01-01T00:00:00",
        process_docs_parallel=1,
    )
    samples = results.pop("samples")
    tracker.save_results_aggregated(results=results, samples=samples, datetime_str="2026-01-01T00:00:00")
    for name in results["configs"]:
        tracker.save_results_samples(task_name=name, samples=samples[name])
    return results


def project_scores(paths: dict, responses: dict[str, str], root: Path) -> dict:
    """This project's metric tables on the same responses: prediction tables made as the predict job makes
    them (working records, finalize), then score_model, for both splits."""
    predictions = {}
    for task, questions_path in zip(TASKS, paths["questions"], strict=True):
        questions = pd.read_parquet(questions_path)
        jsonl = root / "predictions" / f"{task}.jsonl"
        with RecordWriter(jsonl) as writer:
            for item in plan_items(questions, task, False, "replay-fingerprint"):
                writer.append(
                    {
                        "question_id": item.question_id,
                        "fingerprint": item.fingerprint,
                        "response": responses[item.question_id],
                        "error": None,
                        "latency_s": 0.0,
                        "attempts": 1,
                    }
                )
        predictions[task] = root / "predictions" / f"{task}.parquet"
        frame = finalize(questions, jsonl, "replay-fingerprint", task=task, definitions=False)
        write_predictions(frame, predictions[task])
    questions = dict(zip(TASKS, paths["questions"], strict=True))
    return {
        split: score_model(predictions, questions, paths["catalog"], paths["subset"], split, 0, 0.95, 1)
        for split in ("full", "subset")
    }


@pytest.fixture(scope="module")
def run(lmms_eval, tmp_path_factory):
    """The tiny benchmark, its two exports, lmms-eval's run of both groups and this project's scores."""
    root = tmp_path_factory.mktemp("lmms")
    paths = write_tiny_benchmark(root)
    inputs = export_inputs_of(paths)
    card, notes = REPO / "templates/exports/hf_card.md.j2", REPO / "resources/exports/sources.yaml"
    export_hf(inputs, root / "results/exports/hf", 3, card, notes)
    tasks = export_lmms_eval(
        inputs,
        root / "results/exports/lmms_eval",
        root / "results/exports/hf",
        "results/exports/hf",
        TEMPLATES,
        64,
    )
    responses = {}
    for task in TASKS:
        responses.update(fixed_responses(inputs.questions[task], task))
    with pytest.MonkeyPatch.context() as patch:
        # lmms-eval is run from the project folder: the task YAMLs name the Parquet files relative to it.
        patch.chdir(root)
        patch.setenv("LMMS_EVAL_DATASETS_CACHE", str(root / "datasets-cache"))
        task_manager = lmms_eval.tasks.TaskManager(
            include_path="results/exports/lmms_eval", include_defaults=False
        )
        results = evaluate(
            lmms_eval, task_manager, ["spinebench", "spinebench_subset"], responses, root / "logs"
        )
        yield {
            "root": root,
            "paths": paths,
            "inputs": inputs,
            "tasks": tasks,
            "task_manager": task_manager,
            "responses": responses,
            "results": results["results"],
            "samples": root / "logs" / MODEL,
            "project": project_scores(paths, responses, root),
        }


def test_the_folder_holds_one_task_per_task_and_split_and_two_groups(run):
    assert run["tasks"] == [task_name(task, split) for split in ("full", "subset") for task in TASKS]
    assert sorted(run["task_manager"].all_groups) == ["spinebench", "spinebench_subset"]
    assert sorted(run["task_manager"].all_subtasks) == sorted(run["tasks"])


@pytest.mark.parametrize("task", TASKS)
def test_prompts_and_images_are_the_projects(lmms_eval, run, task):
    loaded = lmms_eval.tasks.get_task_dict([task_name(task, "subset")], run["task_manager"])
    lmms_task = loaded[task_name(task, "subset")]
    questions = split_questions(run["inputs"], task, "subset")
    planned = {item.question_id: item.prompt for item in plan_items(questions, task, False, "any")}
    documents = lmms_task.test_docs()
    assert documents["question_id"] == list(questions["question_id"])
    for document in list(documents)[:3]:
        assert lmms_task.doc_to_text(document) == planned[document["question_id"]]
        (image,) = lmms_task.doc_to_visual(document)
        png = run["paths"]["pngs"][document["image_id"]]
        assert np.array_equal(np.asarray(image), np.asarray(Image.open(io.BytesIO(png)).convert("RGB")))
        assert lmms_task.doc_to_target(document) == document["answer"]


@pytest.mark.parametrize("split", ["full", "subset"])
def test_scores_equal_the_projects_metric_tables(run, split):
    summary = run["project"][split].summary["metrics"]
    results = run["results"]
    for task, metrics in (("diagnosis", ["accuracy"]), ("localization", ["accuracy", "precision", "recall"])):
        for metric in metrics:
            assert rounded(results[task_name(task, split)][f"{metric},none"]) == summary[f"{task}_{metric}"]
    group = "spinebench" if split == "full" else "spinebench_subset"
    assert rounded(results[group]["accuracy,none"]) == summary["overall_accuracy"]
    # The fixed responses reach every outcome: neither all right nor all wrong.
    assert 0 < summary["diagnosis_accuracy"] < 1 and 0 < summary["localization_precision"] < 1


def test_per_question_scores_equal_the_projects(run):
    # The per-question table as Arrow gives it (pandas would turn null answers into NaN).
    questions = {row["question_id"]: row for row in run["project"]["full"].questions.to_pylist()}
    for task in TASKS:
        file = run["samples"] / f"2026-01-01T00-00-00_samples_{task_name(task, 'full')}.jsonl"
        for line in file.read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            expected = questions[record["accuracy"]["question_id"]]
            assert record["accuracy"]["score"] == expected["correct"]
            assert record["accuracy"]["predicted"] == expected["predicted"]
            if task == "localization":
                assert record["precision"]["score"] == expected["precision"]
                assert record["recall"]["score"] == expected["recall"]


@pytest.mark.parametrize("split", ["full", "subset"])
@pytest.mark.parametrize("task", TASKS)
def test_samples_files_read_back_into_the_same_responses(run, task, split):
    file = run["samples"] / f"2026-01-01T00-00-00_samples_{task_name(task, split)}.jsonl"
    questions = run["inputs"].questions[task]
    read = read_responses("lmms_eval", file, task, questions)
    wanted = list(split_questions(run["inputs"], task, split)["question_id"])
    assert list(read["question_id"]) == wanted
    assert list(read["response"]) == [run["responses"][question_id] for question_id in wanted]


def test_a_folder_with_both_splits_is_ambiguous_and_one_split_is_found(run, tmp_path):
    questions = run["inputs"].questions["diagnosis"]
    with pytest.raises(ImportFormatError, match="2 samples files of the diagnosis task"):
        read_responses("lmms_eval", run["samples"], "diagnosis", questions)
    name = "2026-01-01T00-00-00_samples_spinebench_diagnosis_subset.jsonl"
    (tmp_path / MODEL).mkdir()
    (tmp_path / MODEL / name).write_bytes((run["samples"] / name).read_bytes())
    assert len(read_responses("lmms_eval", tmp_path, "diagnosis", questions)) == len(
        split_questions(run["inputs"], "diagnosis", "subset")
    )


def test_predict_only_samples_are_mapped_by_doc_id_on_the_full_split(lmms_eval, run, tmp_path):
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(run["root"])
        evaluate(
            lmms_eval,
            run["task_manager"],
            ["spinebench_localization", "spinebench_localization_subset"],
            run["responses"],
            tmp_path,
            predict_only=True,
        )
    questions = run["inputs"].questions["localization"]
    full = tmp_path / MODEL / "2026-01-01T00-00-00_samples_spinebench_localization.jsonl"
    assert "question_id" not in full.read_text(encoding="utf-8")  # --predict_only skips process_results
    read = read_responses("lmms_eval", full, "localization", questions)
    assert list(read["response"]) == [run["responses"][question_id] for question_id in read["question_id"]]
    assert list(read["question_id"]) == sorted(questions["question_id"])
    subset = tmp_path / MODEL / "2026-01-01T00-00-00_samples_spinebench_localization_subset.jsonl"
    with pytest.raises(ImportFormatError, match=r":1: the record names no question_id .*--predict_only"):
        read_responses("lmms_eval", subset, "localization", questions)
    records = [json.loads(line) for line in full.read_text(encoding="utf-8").splitlines()]
    records[2]["target"] = "A,B"
    full.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    with pytest.raises(
        ImportFormatError, match=r":3: target 'A,B' of doc_id 2 is not the answer 'E' of loc-rsna-1-2-7"
    ):
        read_responses("lmms_eval", full, "localization", questions)


def test_bad_samples_files_are_named(run, tmp_path):
    questions = run["inputs"].questions["diagnosis"]
    source = run["samples"] / "2026-01-01T00-00-00_samples_spinebench_diagnosis.jsonl"
    lines = source.read_text(encoding="utf-8").splitlines()
    broken = tmp_path / "run_samples_spinebench_diagnosis.jsonl"
    broken.write_text("\n".join([lines[0], lines[0]]) + "\n", encoding="utf-8")
    with pytest.raises(
        ImportFormatError, match=r":2: question dx-buu-0001-AP was already answered on line 1"
    ):
        read_responses("lmms_eval", broken, "diagnosis", questions)
    broken.write_text(lines[0] + "\n{not json\n", encoding="utf-8")
    with pytest.raises(ImportFormatError, match=r":2: not a JSON record"):
        read_responses("lmms_eval", broken, "diagnosis", questions)
    other = run["samples"] / "2026-01-01T00-00-00_samples_spinebench_localization.jsonl"
    with pytest.raises(
        ImportFormatError, match="the samples of spinebench_localization, not of the diagnosis"
    ):
        read_responses("lmms_eval", other, "diagnosis", questions)


def test_the_task_folder_is_byte_identical_when_rebuilt(run, tmp_path):
    export_lmms_eval(
        run["inputs"],
        tmp_path / "lmms",
        run["root"] / "results/exports/hf",
        "results/exports/hf",
        TEMPLATES,
        64,
    )
    first = run["root"] / "results/exports/lmms_eval"
    files = sorted(path.relative_to(first) for path in first.rglob("*") if path.is_file())
    assert files == sorted(
        path.relative_to(tmp_path / "lmms") for path in (tmp_path / "lmms").rglob("*") if path.is_file()
    )
    assert all((tmp_path / "lmms" / name).read_bytes() == (first / name).read_bytes() for name in files)


def test_an_export_of_another_benchmark_is_refused(run, tmp_path):
    inputs = run["inputs"]
    fewer = inputs.questions["diagnosis"].iloc[1:]
    other = replace(inputs, questions={**inputs.questions, "diagnosis": fewer})
    with pytest.raises(
        LmmsEvalExportError, match="diagnosis/full holds 10 questions in 4 files, the benchmark 9"
    ):
        export_lmms_eval(other, tmp_path / "lmms", run["root"] / "results/exports/hf", "x", TEMPLATES, 64)
