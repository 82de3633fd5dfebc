"""Metric formulas (DuckDB SQL) against hand-computed cases, bootstrap by image, leaderboard, scripts."""

from __future__ import annotations

import csv
import json
import runpy
from pathlib import Path
from types import SimpleNamespace

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from spinebench import metrics
from spinebench.finalize import PREDICTIONS_SCHEMA
from spinebench.io import write_table
from spinebench.metrics import (
    METRICS,
    SQL_DIR,
    bootstrap_intervals,
    leaderboard_metrics,
    leaderboard_table,
    score_model,
    write_csv,
)

REPO = Path(__file__).resolve().parents[1]


# Six images, each with one diagnosis and one localization question.
IMAGES = [f"img{number}" for number in range(1, 7)]
CATALOG = pd.DataFrame(
    {
        "image_id": IMAGES,
        "source": ["rsna", "rsna", "rsna", "vindr", "buu", "buu"],
        "modality": ["MRI", "MRI", "MRI", "X-ray", "X-ray", "X-ray"],
        "disease": [
            "Foraminal stenosis",
            "Foraminal stenosis",
            "Spinal canal stenosis",
            "Osteophytes",
            "Spondylolisthesis",
            "Healthy",
        ],
    }
)
DIAGNOSIS_TRUTH = {"img1": "A", "img2": "B", "img3": "C", "img4": "D", "img5": "E", "img6": "D"}
LOCALIZATION_TRUTH = {"img1": "A,C", "img2": "B", "img3": "A,C,E", "img4": "D", "img5": "B,E", "img6": "A"}

# (answer, extraction, error) per image; absent images have no prediction row.
DIAGNOSIS_PREDICTIONS = {
    "img1": ("A", "final_phrase", None),  # right
    "img2": ("C", "fallback", None),  # wrong letter
    "img3": (None, "error", "timeout after 3 attempts"),  # failed request: wrong
    "img5": ("E", "option_text", None),  # right
    "img6": (None, "none", None),  # unextractable: wrong
}
LOCALIZATION_PREDICTIONS = {
    "img1": ("A,C", "final_phrase", None),  # exact: m=2 p=2 g=2
    "img2": ("B,D", "final_phrase", None),  # over-prediction: m=1 p=2 g=1
    "img3": ("C", "fallback", None),  # partial: m=1 p=1 g=3
    "img4": (None, "none", None),  # empty prediction: m=0 p=0 g=1
    "img6": ("B", "judge", None),  # wrong: m=0 p=1 g=1
}
# Hand-computed per-question (correct, precision, recall) of the localization predictions; img5 has no row.
LOCALIZATION_EXPECTED = {
    "img1": (1, 1.0, 1.0),
    "img2": (0, 0.5, 1.0),
    "img3": (0, 1.0, 1 / 3),
    "img4": (0, 0.0, 0.0),
    "img5": (0, 0.0, 0.0),
    "img6": (0, 0.0, 0.0),
}
SUBSET = {"diagnosis": ["img1", "img2", "img3", "img4"], "localization": ["img1", "img2", "img3"]}


def question_id(task: str, image_id: str) -> str:
    return f"{'dx' if task == 'diagnosis' else 'loc'}-{image_id}"


def questions_frame(task: str, truth: dict[str, str]) -> pd.DataFrame:
    rows = CATALOG.assign(question_id=[question_id(task, image) for image in CATALOG["image_id"]])
    rows["answer"] = rows["image_id"].map(truth)
    return rows[["question_id", "image_id", "source", "modality", "disease", "answer"]]


def predictions_table(task: str, predictions: dict[str, tuple]) -> pa.Table:
    rows = [
        {
            "question_id": question_id(task, image),
            "image_id": image,
            "response": None if error else f"My final option: [{answer}]",
            "answer": answer,
            "extraction": extraction,
            "latency_s": 0.5,
            "error": error,
            "attempts": 3 if error else 1,
        }
        for image, (answer, extraction, error) in sorted(predictions.items())
    ]
    return pa.Table.from_pylist(rows, schema=PREDICTIONS_SCHEMA)


def write_benchmark(directory: Path, diagnosis_predictions=None, localization_predictions=None) -> dict:
    """Benchmark tables and one model's predictions under `directory`; returns score_model's paths."""
    diagnosis_predictions = DIAGNOSIS_PREDICTIONS if diagnosis_predictions is None else diagnosis_predictions
    localization_predictions = (
        LOCALIZATION_PREDICTIONS if localization_predictions is None else localization_predictions
    )
    paths = {
        "catalog_path": directory / "images.parquet",
        "subset_path": directory / "subset.parquet",
        "questions_paths": {task: directory / f"{task}.parquet" for task in ("diagnosis", "localization")},
        "predictions_paths": {
            task: directory / "model" / f"{task}.parquet" for task in ("diagnosis", "localization")
        },
    }
    write_table(CATALOG, paths["catalog_path"])
    write_table(questions_frame("diagnosis", DIAGNOSIS_TRUTH), paths["questions_paths"]["diagnosis"])
    write_table(questions_frame("localization", LOCALIZATION_TRUTH), paths["questions_paths"]["localization"])
    subset = pd.DataFrame(
        [
            {"question_id": question_id(task, image), "task": task, "rank": rank}
            for task, images in SUBSET.items()
            for rank, image in enumerate(images)
        ]
    )
    write_table(subset, paths["subset_path"])
    write_table(
        predictions_table("diagnosis", diagnosis_predictions), paths["predictions_paths"]["diagnosis"]
    )
    write_table(
        predictions_table("localization", localization_predictions),
        paths["predictions_paths"]["localization"],
    )
    return paths


def score(paths: dict, split: str = "full", samples: int = 200, seed: int = 7):
    return score_model(**paths, split=split, bootstrap_samples=samples, confidence=0.95, seed=seed)


@pytest.fixture
def benchmark(tmp_path):
    return write_benchmark(tmp_path)


def test_localization_per_question_formulas(benchmark):
    questions = score(benchmark).questions.to_pandas()
    localization = questions[questions["task"] == "localization"].set_index("image_id")
    for image, (correct, precision, recall) in LOCALIZATION_EXPECTED.items():
        row = localization.loc[image]
        assert (row["correct"], row["precision"]) == (correct, precision), image
        assert row["recall"] == pytest.approx(recall), image
    assert localization.loc["img2", ["matched", "predicted_count", "truth_count"]].tolist() == [1, 2, 1]
    assert localization.loc["img4", ["matched", "predicted_count", "truth_count"]].tolist() == [0, 0, 1]
    assert localization.loc["img5", "extraction"] == "missing"


def test_summary_metrics_are_hand_computed_means(benchmark):
    result = score(benchmark).summary
    expected_localization = np.array(list(LOCALIZATION_EXPECTED.values()))
    localization_accuracy, precision, recall = expected_localization.mean(axis=0)
    diagnosis_accuracy = 2 / 6  # img1, img5 right; wrong letter, error, missing row and none are wrong
    assert result["questions"] == {"diagnosis": 6, "localization": 6}
    assert result["images"] == 6
    assert result["metrics"] == {
        "diagnosis_accuracy": round(diagnosis_accuracy, 4),
        "localization_accuracy": round(localization_accuracy, 4),
        "localization_precision": round(precision, 4),
        "localization_recall": round(recall, 4),
        "overall_accuracy": round((diagnosis_accuracy + localization_accuracy) / 2, 4),
        "pooled_accuracy": round(3 / 12, 4),
    }
    assert result["errors"] == {"diagnosis": 1, "localization": 0}
    assert result["extraction"]["diagnosis"] == {
        "final_phrase": 1,
        "fallback": 1,
        "option_text": 1,
        "low_confidence": 0,
        "judge": 0,
        "none": 1,
        "error": 1,
        "missing": 1,
    }
    assert result["extraction"]["localization"]["judge"] == 1
    assert sum(result["extraction"]["localization"].values()) == 6


def test_subset_split_counts_only_subset_questions(benchmark):
    result = score(benchmark, split="subset")
    assert result.summary["questions"] == {"diagnosis": 4, "localization": 3}
    assert set(result.questions.column("image_id").to_pylist()) == {"img1", "img2", "img3", "img4"}
    # Subset diagnosis: img1 right, img2 wrong, img3 error, img4 missing.
    assert result.summary["metrics"]["diagnosis_accuracy"] == 0.25
    assert result.summary["metrics"]["localization_accuracy"] == round(1 / 3, 4)
    assert result.summary["extraction"]["diagnosis"]["missing"] == 1


def test_empty_predictions_score_zero(tmp_path):
    result = score(write_benchmark(tmp_path, diagnosis_predictions={}, localization_predictions={}))
    assert all(result.summary["metrics"][name] == 0.0 for name in METRICS)
    assert result.summary["extraction"]["diagnosis"]["missing"] == 6
    assert result.summary["extraction"]["localization"]["missing"] == 6
    assert set(result.questions.column("predicted_count").drop_null().to_pylist()) == {0}


def test_perfect_predictions_score_one(tmp_path):
    perfect = {
        task: {image: (answer, "final_phrase", None) for image, answer in truth.items()}
        for task, truth in (("diagnosis", DIAGNOSIS_TRUTH), ("localization", LOCALIZATION_TRUTH))
    }
    result = score(write_benchmark(tmp_path, perfect["diagnosis"], perfect["localization"]))
    assert all(result.summary["metrics"][name] == 1.0 for name in METRICS)
    assert all(result.summary["intervals"][name] == [1.0, 1.0] for name in METRICS)


def test_breakdown_by_disease_source_modality(benchmark):
    breakdown = score(benchmark).breakdown
    assert set(breakdown["dimension"]) == {"disease", "source", "modality"}
    assert list(breakdown.columns) == [
        "task",
        "dimension",
        "value",
        "questions",
        "accuracy",
        "precision",
        "recall",
    ]
    # Every dimension partitions the questions of each task.
    assert (breakdown.groupby(["task", "dimension"])["questions"].sum() == 6).all()
    rsna = breakdown.query("task == 'localization' and dimension == 'source' and value == 'rsna'").iloc[0]
    assert (rsna["questions"], rsna["accuracy"], rsna["precision"]) == (3, round(1 / 3, 4), round(2.5 / 3, 4))
    foraminal = breakdown.query("task == 'diagnosis' and value == 'Foraminal stenosis'").iloc[0]
    assert (foraminal["questions"], foraminal["accuracy"]) == (2, 0.5)
    assert breakdown.query("task == 'diagnosis'")["precision"].isna().all()


def test_every_sql_file_is_run(benchmark, monkeypatch):
    used = []
    original = metrics.read_sql

    def recording_read_sql(name, sql_dir=SQL_DIR):
        used.append(name)
        return original(name, sql_dir)

    monkeypatch.setattr(metrics, "read_sql", recording_read_sql)
    score(benchmark)
    assert set(used) == {path.stem for path in SQL_DIR.glob("*.sql")}


def test_duplicate_prediction_rows_are_refused(benchmark):
    path = benchmark["predictions_paths"]["diagnosis"]
    doubled = pa.concat_tables([predictions_table("diagnosis", DIAGNOSIS_PREDICTIONS)] * 2)
    write_table(doubled, path)
    with pytest.raises(ValueError, match="predicted more than once: dx-img1"):
        score(benchmark)


def test_question_without_catalog_image_is_refused(benchmark):
    write_table(CATALOG[CATALOG["image_id"] != "img6"], benchmark["catalog_path"])
    with pytest.raises(ValueError, match="missing from the catalog"):
        score(benchmark)


def test_unknown_split_is_refused(benchmark):
    with pytest.raises(ValueError, match="split must be one of"):
        score(benchmark, split="test")


def per_image_frame(diagnosis_outcomes, localization_outcomes) -> pd.DataFrame:
    """Per-image totals for images with one question of each task (outcome 1 = right)."""
    frame = pd.DataFrame({"image_id": [f"img{index}" for index in range(len(diagnosis_outcomes))]})
    frame["diagnosis_questions"] = 1
    frame["diagnosis_correct"] = diagnosis_outcomes
    frame["localization_questions"] = 1
    frame["localization_correct"] = localization_outcomes
    frame["localization_precision_sum"] = np.asarray(localization_outcomes, dtype=float)
    frame["localization_recall_sum"] = np.asarray(localization_outcomes, dtype=float)
    return frame


def test_bootstrap_is_seeded_and_deterministic():
    rng = np.random.default_rng(0)
    frame = per_image_frame(rng.integers(0, 2, 50), rng.integers(0, 2, 50))
    first = bootstrap_intervals(frame, 300, 0.95, seed=11)
    assert first == bootstrap_intervals(frame, 300, 0.95, seed=11)
    assert first != bootstrap_intervals(frame, 300, 0.95, seed=12)
    assert bootstrap_intervals(frame, 0, 0.95, seed=11) == dict.fromkeys(METRICS)


def test_bootstrap_resamples_whole_images():
    # Each image's two questions share one outcome. Resampling images keeps the pairs together, so in every
    # resample both task accuracies and the pooled accuracy are equal; resampling questions would not.
    outcomes = [1, 0, 0, 1, 0, 1, 1, 0, 0, 0, 1, 0]
    intervals = bootstrap_intervals(per_image_frame(outcomes, outcomes), 500, 0.9, seed=3)
    assert (
        intervals["diagnosis_accuracy"] == intervals["localization_accuracy"] == intervals["pooled_accuracy"]
    )


def test_bootstrap_chunks_do_not_change_results(monkeypatch):
    rng = np.random.default_rng(1)
    frame = per_image_frame(rng.integers(0, 2, 40), rng.integers(0, 2, 40))
    whole = bootstrap_intervals(frame, 100, 0.95, seed=5)
    monkeypatch.setattr(metrics, "BOOTSTRAP_CHUNK_CELLS", 40 * 7)  # 7 resamples per chunk
    assert bootstrap_intervals(frame, 100, 0.95, seed=5) == whole
    assert all(isinstance(whole[name], list) for name in METRICS)


def test_intervals_contain_point_estimates(benchmark):
    result = score(benchmark, samples=1000).summary
    for name in METRICS:
        low, high = result["intervals"][name]
        assert low <= result["metrics"][name] <= high, name
        assert low < high, name


def test_scores_are_deterministic(benchmark):
    first, second = score(benchmark), score(benchmark)
    assert first.summary == second.summary
    pd.testing.assert_frame_equal(first.breakdown, second.breakdown)
    assert first.questions.equals(second.questions)


def test_paper_overall_column_is_the_mean_of_task_accuracies():
    """Why overall_accuracy averages the two task accuracies: the paper's Table 2 rows do exactly that."""
    with open(REPO / "resources" / "paper_table2.csv", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 5
    for row in rows:
        mean = (float(row["diagnosis_accuracy"]) + float(row["localization_accuracy"])) / 2
        assert abs(mean - float(row["overall_accuracy"])) <= 0.006, row["model"]


def summary_for(model: str, overall: float | None) -> dict:
    return {
        "model": model,
        "split": "subset",
        "questions": {"diagnosis": 10, "localization": 5},
        "metrics": dict.fromkeys(METRICS, 0.5) | {"overall_accuracy": overall},
        "intervals": dict.fromkeys(METRICS, [0.4, 0.6]) | {"overall_accuracy": None},
    }


def test_leaderboard_orders_by_overall_accuracy_then_name():
    summaries = [summary_for(name, value) for name, value in [("zeta", 0.3), ("alpha", 0.3), ("mid", 0.5)]]
    summaries.append(summary_for("unscored", None))
    table = leaderboard_table(summaries)
    assert table["model"].tolist() == ["mid", "alpha", "zeta", "unscored"]
    assert table["rank"].tolist() == [1, 2, 3, 4]
    assert table.loc[0, "diagnosis_accuracy_low"] == 0.4
    view = leaderboard_metrics(table)
    assert view["mid"]["rank"] == 1 and view["mid"]["overall_accuracy"] == 0.5
    assert view["unscored"]["overall_accuracy"] is None
    assert view["alpha"]["localization_questions"] == 5


def test_leaderboard_refuses_duplicate_models():
    with pytest.raises(ValueError, match="more than once"):
        leaderboard_table([summary_for("same", 0.1), summary_for("same", 0.2)])


def fake_snakemake(tmp_path: Path, **sections) -> SimpleNamespace:
    log = tmp_path / "logs" / "job.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    defaults = {"input": {}, "output": {}, "params": {}, "wildcards": {}}
    namespaces = {key: SimpleNamespace(**(defaults[key] | sections.get(key, {}))) for key in defaults}
    return SimpleNamespace(log=[str(log)], **namespaces)


def run_score_script(tmp_path: Path, benchmark: dict, model: str) -> dict[str, Path]:
    outputs = {
        "summary": tmp_path / "metrics" / f"{model}.json",
        "breakdown": tmp_path / "metrics" / f"{model}.breakdown.csv",
        "questions": tmp_path / "metrics" / f"{model}.questions.parquet",
    }
    snakemake = fake_snakemake(
        tmp_path,
        input={
            "predictions": [
                str(benchmark["predictions_paths"][task]) for task in ("diagnosis", "localization")
            ],
            "questions": [str(benchmark["questions_paths"][task]) for task in ("diagnosis", "localization")],
            "catalog": str(benchmark["catalog_path"]),
            "subset": str(benchmark["subset_path"]),
        },
        output={name: str(path) for name, path in outputs.items()},
        params={"split": "subset", "bootstrap_samples": 100, "confidence": 0.95, "seed": 1},
        wildcards={"model": model},
    )
    runpy.run_path(str(REPO / "scripts" / "score.py"), init_globals={"snakemake": snakemake})
    return outputs


def test_score_and_leaderboard_scripts_write_byte_stable_files(tmp_path, benchmark):
    first = run_score_script(tmp_path / "first", benchmark, "model-a")
    second = run_score_script(tmp_path / "second", benchmark, "model-a")
    for name in first:
        assert first[name].read_bytes() == second[name].read_bytes(), name
    summary = json.loads(first["summary"].read_text())
    assert summary["model"] == "model-a" and summary["split"] == "subset"
    breakdown = pd.read_csv(first["breakdown"])
    assert breakdown.columns[0] == "model" and set(breakdown["model"]) == {"model-a"}

    other = run_score_script(tmp_path / "first", benchmark, "model-b")
    leaderboard = {
        "csv": tmp_path / "leaderboard.csv",
        "json": tmp_path / "leaderboard.json",
        "scores": tmp_path / "scores",
    }
    snakemake = fake_snakemake(
        tmp_path,
        input={"summaries": [str(first["summary"]), str(other["summary"])]},
        output={name: str(path) for name, path in leaderboard.items()},
    )
    runpy.run_path(str(REPO / "scripts" / "leaderboard.py"), init_globals={"snakemake": snakemake})
    view = json.loads(leaderboard["json"].read_text())
    assert list(view) == ["model-a", "model-b"]
    assert view["model-a"]["overall_accuracy"] == summary["metrics"]["overall_accuracy"]
    assert pd.read_csv(leaderboard["csv"])["model"].tolist() == ["model-a", "model-b"]
    # The `dvc metrics` view: a flat file per model, the leaderboard.json entry.
    for model in ("model-a", "model-b"):
        assert json.loads((leaderboard["scores"] / f"{model}.json").read_text()) == view[model]


def test_write_csv_is_deterministic(tmp_path):
    frame = pd.DataFrame({"value": ["b", "a"], "accuracy": [0.25, None]})
    write_csv(frame, tmp_path / "one.csv")
    write_csv(frame, tmp_path / "two.csv")
    assert (
        (tmp_path / "one.csv").read_bytes()
        == (tmp_path / "two.csv").read_bytes()
        == b"value,accuracy\nb,0.25\na,\n"
    )


def test_per_image_totals_reproduce_the_sql_point_estimates(benchmark):
    """The bootstrap's per-image path (per_image.sql + numpy) and summary.sql agree on the full sample."""
    with duckdb.connect() as connection:
        scored = metrics.score_questions(
            connection,
            benchmark["predictions_paths"],
            benchmark["questions_paths"],
            benchmark["catalog_path"],
            benchmark["subset_path"],
            "full",
        )
        connection.register("scored", scored)
        summary = metrics.query(connection, "summary")
        per_image = metrics.query(connection, "per_image")
    totals = per_image[list(metrics.IMAGE_TOTALS)].to_numpy(dtype=float).sum(axis=0, keepdims=True)
    from_totals = metrics.metrics_from_totals(totals, ["diagnosis", "localization"])
    for name, value in metrics.point_metrics(summary).items():
        assert from_totals[name][0] == pytest.approx(value), name
