"""Model scores: per-question correctness in DuckDB SQL (sql/metrics/), bootstrap intervals, leaderboard.

Metrics (DESIGN 1.7): diagnosis accuracy; localization exact-match accuracy, precision and recall (means
over questions); `overall_accuracy`, the mean of the diagnosis and localization accuracies, which is how
the paper's Table 2 overall column is computed (e.g. Gemini-2.5-pro: (32.37 + 9.35) / 2 = 20.86); and
`pooled_accuracy`, the mean correctness over all questions of both tasks.

Intervals resample images with replacement (each drawn image brings all its counted questions), seeded, the
same draws for every model, so that models are compared on the same resamples.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from spinebench.io import create_temporary, write_json, write_table
from spinebench.vocab import TASKS

log = logging.getLogger(__name__)

SQL_DIR = Path(__file__).resolve().parents[1] / "sql" / "metrics"

SPLITS: tuple[str, ...] = ("subset", "full")

# How a counted answer was obtained: the predictions' `extraction` values plus `missing` (no prediction row).
EXTRACTION_PATHS: tuple[str, ...] = (
    "final_phrase",
    "fallback",
    "option_text",
    "low_confidence",
    "judge",
    "none",
    "error",
    "missing",
)

METRICS: tuple[str, ...] = (
    "overall_accuracy",
    "pooled_accuracy",
    "diagnosis_accuracy",
    "localization_accuracy",
    "localization_precision",
    "localization_recall",
)

# Every float written to a metrics file is rounded to this many decimals, so the files are byte-stable.
DECIMALS = 4

# Upper bound on resample-by-image weights held in memory at once (rows x images).
BOOTSTRAP_CHUNK_CELLS = 4_000_000

# Per-image totals (columns of per_image.sql) in the order the bootstrap sums them.
IMAGE_TOTALS: tuple[str, ...] = (
    "diagnosis_questions",
    "diagnosis_correct",
    "localization_questions",
    "localization_correct",
    "localization_precision_sum",
    "localization_recall_sum",
)


class ModelScores(NamedTuple):
    """One model's scores: the JSON summary, the breakdown table and the per-question table.

    The per-question table stays in Arrow so that its integer columns keep their nulls (diagnosis rows have
    no matched/predicted/truth counts).
    """

    summary: dict
    breakdown: pd.DataFrame
    questions: pa.Table


def read_sql(name: str, sql_dir: Path = SQL_DIR) -> str:
    """The text of sql/metrics/{name}.sql."""
    return (Path(sql_dir) / f"{name}.sql").read_text(encoding="utf-8")


def score_questions(
    connection: duckdb.DuckDBPyConnection,
    predictions_paths: Mapping[str, str | os.PathLike],
    questions_paths: Mapping[str, str | os.PathLike],
    catalog_path: str | os.PathLike,
    subset_path: str | os.PathLike,
    split: str,
    sql_dir: Path = SQL_DIR,
) -> pa.Table:
    """Per-question scores of both tasks (score_diagnosis.sql, score_localization.sql), task then id order.

    Raises ValueError on an unknown split, a predictions file that holds a question twice, or a counted
    question whose image is not in the catalog.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, not {split!r}")
    tables = []
    for task in TASKS:
        check_unique_predictions(connection, predictions_paths[task], sql_dir)
        parameters = {
            "questions": str(questions_paths[task]),
            "predictions": str(predictions_paths[task]),
            "catalog": str(catalog_path),
            "subset": str(subset_path),
            "split": split,
        }
        tables.append(connection.sql(read_sql(f"score_{task}", sql_dir), params=parameters).to_arrow_table())
    scored = pa.concat_tables(tables)
    check_images_in_catalog(scored)
    return scored


def check_unique_predictions(
    connection: duckdb.DuckDBPyConnection, predictions_path: str | os.PathLike, sql_dir: Path = SQL_DIR
) -> None:
    """Raise naming the file and some question ids when a predictions file holds a question twice."""
    duplicates = connection.execute(
        read_sql("duplicate_predictions", sql_dir), {"predictions": str(predictions_path)}
    ).fetchall()
    if duplicates:
        listed = ", ".join(f"{question_id} ({rows} rows)" for question_id, rows in duplicates)
        raise ValueError(f"{predictions_path}: questions predicted more than once: {listed}")


def check_images_in_catalog(scored: pa.Table) -> None:
    """Raise naming some questions when a counted question's image is missing from the catalog."""
    frame = scored.select(["question_id", "source"]).to_pandas()
    orphans = frame.loc[frame["source"].isna(), "question_id"].tolist()
    if orphans:
        raise ValueError(f"{len(orphans)} questions have images missing from the catalog, e.g. {orphans[:5]}")


def query(connection: duckdb.DuckDBPyConnection, name: str, sql_dir: Path = SQL_DIR) -> pd.DataFrame:
    """Run sql/metrics/{name}.sql (over the registered `scored` table) into a DataFrame."""
    return connection.execute(read_sql(name, sql_dir)).fetch_df()


def rounded(value) -> float | None:
    """A metric value rounded to DECIMALS; None for a missing value (null, NaN)."""
    if value is None or pd.isna(value):
        return None
    return round(float(value), DECIMALS)


def point_metrics(summary: pd.DataFrame) -> dict[str, float | None]:
    """The model's metrics from the per-task summary (summary.sql), unrounded."""
    by_task = summary.set_index("task")

    def value(task: str, column: str) -> float | None:
        return None if task not in by_task.index else float(by_task.at[task, column])

    correct = int(summary["correct"].sum())
    questions = int(summary["questions"].sum())
    task_accuracies = [value(task, "accuracy") for task in TASKS if task in by_task.index]
    return {
        "overall_accuracy": float(np.mean(task_accuracies)) if task_accuracies else None,
        "pooled_accuracy": correct / questions if questions else None,
        "diagnosis_accuracy": value("diagnosis", "accuracy"),
        "localization_accuracy": value("localization", "accuracy"),
        "localization_precision": value("localization", "precision"),
        "localization_recall": value("localization", "recall"),
    }


def metrics_from_totals(totals: np.ndarray, tasks_present: Sequence[str]) -> dict[str, np.ndarray]:
    """Every metric from summed per-image totals, vectorised over resamples.

    `totals` is (resamples, len(IMAGE_TOTALS)); a resample without questions of a task gives NaN for that
    task's metrics. `overall_accuracy` averages the accuracies of the tasks present in the data.
    """
    column = {name: totals[:, index] for index, name in enumerate(IMAGE_TOTALS)}
    with np.errstate(divide="ignore", invalid="ignore"):
        diagnosis = column["diagnosis_correct"] / column["diagnosis_questions"]
        localization_questions = column["localization_questions"]
        localization = column["localization_correct"] / localization_questions
        metrics = {
            "diagnosis_accuracy": diagnosis,
            "localization_accuracy": localization,
            "localization_precision": column["localization_precision_sum"] / localization_questions,
            "localization_recall": column["localization_recall_sum"] / localization_questions,
            "pooled_accuracy": (column["diagnosis_correct"] + column["localization_correct"])
            / (column["diagnosis_questions"] + localization_questions),
        }
    accuracies = [metrics[f"{task}_accuracy"] for task in TASKS if task in tasks_present]
    metrics["overall_accuracy"] = np.mean(accuracies, axis=0) if accuracies else np.full(len(totals), np.nan)
    return metrics


def resample_weights(rng: np.random.Generator, images: int, resamples: int) -> np.ndarray:
    """How often each image is drawn in each of `resamples` resamples with replacement: (resamples, images).

    Counts of `images` draws with replacement are multinomial with equal probabilities, so this is the
    classic bootstrap without materialising the drawn indices.
    """
    return rng.multinomial(images, np.full(images, 1.0 / images), size=resamples)


def bootstrap_intervals(
    per_image: pd.DataFrame, samples: int, confidence: float, seed: int
) -> dict[str, list[float] | None]:
    """Percentile intervals of every metric over `samples` resamples of images (seeded, vectorised).

    `per_image` holds the IMAGE_TOTALS columns (per_image.sql). Returns metric -> [low, high], or None when
    there are no samples, no images, or the metric is undefined in every resample.
    """
    if samples <= 0 or len(per_image) == 0:
        return dict.fromkeys(METRICS)
    totals = per_image[list(IMAGE_TOTALS)].to_numpy(dtype=np.float64)
    tasks_present = [task for task in TASKS if per_image[f"{task}_questions"].sum() > 0]
    rng = np.random.default_rng(seed)
    chunk = max(1, BOOTSTRAP_CHUNK_CELLS // len(totals))
    resampled = []
    for start in range(0, samples, chunk):
        weights = resample_weights(rng, len(totals), min(chunk, samples - start))
        resampled.append(weights.astype(np.float64) @ totals)
    statistics = metrics_from_totals(np.concatenate(resampled), tasks_present)
    tail = (1.0 - confidence) / 2.0
    intervals: dict[str, list[float] | None] = {}
    for name in METRICS:
        values = statistics[name][~np.isnan(statistics[name])]
        if len(values) == 0:
            intervals[name] = None
            continue
        low, high = np.quantile(values, [tail, 1.0 - tail])
        intervals[name] = [rounded(low), rounded(high)]
    return intervals


def extraction_counts(counts: pd.DataFrame) -> dict[str, dict[str, int]]:
    """task -> extraction path -> questions (extraction_counts.sql); every known path listed, zeros too."""
    result = {task: dict.fromkeys(EXTRACTION_PATHS, 0) for task in TASKS}
    for row in counts.itertuples():
        result[row.task][row.extraction] = int(row.questions)
    return result


def breakdown_table(breakdown: pd.DataFrame) -> pd.DataFrame:
    """The breakdown (breakdown.sql) with metrics rounded and integer counts, ready to write."""
    table = breakdown.copy()
    table["questions"] = table["questions"].astype("int64")
    for column in ("accuracy", "precision", "recall"):
        table[column] = table[column].astype("float64").round(DECIMALS)
    return table.reset_index(drop=True)


def score_model(
    predictions_paths: Mapping[str, str | os.PathLike],
    questions_paths: Mapping[str, str | os.PathLike],
    catalog_path: str | os.PathLike,
    subset_path: str | os.PathLike,
    split: str,
    bootstrap_samples: int,
    confidence: float,
    seed: int,
    sql_dir: Path = SQL_DIR,
) -> ModelScores:
    """Score one model's predictions (task -> Parquet path) on the questions of `split`.

    Returns the summary (metrics, intervals, question counts, extraction path counts, errors; floats rounded
    to DECIMALS), the breakdown by disease/source/modality per task, and the per-question table.
    """
    with duckdb.connect() as connection:
        scored = score_questions(
            connection, predictions_paths, questions_paths, catalog_path, subset_path, split, sql_dir
        )
        connection.register("scored", scored)
        summary = query(connection, "summary", sql_dir)
        per_image = query(connection, "per_image", sql_dir)
        breakdown = query(connection, "breakdown", sql_dir)
        counts = query(connection, "extraction_counts", sql_dir)
    by_task = summary.set_index("task")
    questions = {task: int(by_task.at[task, "questions"]) if task in by_task.index else 0 for task in TASKS}
    errors = {task: int(by_task.at[task, "errors"]) if task in by_task.index else 0 for task in TASKS}
    for task in TASKS:
        if not questions[task]:
            log.warning("no %s question counts under split %r: its metrics are null", task, split)
    result = {
        "split": split,
        "questions": questions,
        "images": len(per_image),
        "metrics": {name: rounded(value) for name, value in point_metrics(summary).items()},
        "intervals": bootstrap_intervals(per_image, bootstrap_samples, confidence, seed),
        "bootstrap": {"samples": bootstrap_samples, "confidence": confidence, "seed": seed, "unit": "image"},
        "extraction": extraction_counts(counts),
        "errors": errors,
    }
    return ModelScores(result, breakdown_table(breakdown), scored)


def leaderboard_table(summaries: Sequence[Mapping]) -> pd.DataFrame:
    """One row per model (`model` key of each summary): metrics with interval bounds, question counts.

    Sorted by overall accuracy (highest first, models without one last), then model name; `rank` is 1-based.
    """
    rows = []
    for summary in summaries:
        row = {"model": summary["model"], "split": summary["split"]}
        for name in METRICS:
            interval = summary["intervals"].get(name) or [None, None]
            row[name] = summary["metrics"][name]
            row[f"{name}_low"], row[f"{name}_high"] = interval
        for task in TASKS:
            row[f"{task}_questions"] = summary["questions"][task]
        rows.append(row)
    table = pd.DataFrame(rows, columns=leaderboard_columns())
    names = table["model"].tolist()
    if len(set(names)) != len(names):
        raise ValueError(f"models listed more than once: {sorted({n for n in names if names.count(n) > 1})}")
    table = table.sort_values(
        ["overall_accuracy", "model"], ascending=[False, True], na_position="last", kind="mergesort"
    )
    table.insert(0, "rank", range(1, len(table) + 1))
    return table.reset_index(drop=True)


def leaderboard_columns() -> list[str]:
    """Columns of the leaderboard (without `rank`)."""
    metric_columns = [f"{name}{suffix}" for name in METRICS for suffix in ("", "_low", "_high")]
    return ["model", "split", *metric_columns, *(f"{task}_questions" for task in TASKS)]


def leaderboard_metrics(table: pd.DataFrame) -> dict[str, dict]:
    """The `dvc metrics` view of the leaderboard: model -> rank, point metrics and question counts."""
    result = {}
    for row in table.to_dict("records"):
        entry = {"rank": int(row["rank"])}
        entry.update({name: rounded(row[name]) for name in METRICS})
        entry.update({f"{task}_questions": int(row[f"{task}_questions"]) for task in TASKS})
        result[row["model"]] = entry
    return result


def write_csv(frame: pd.DataFrame, path: str | os.PathLike) -> None:
    """Write a CSV deterministically ('\\n' line ends, no index, empty for missing) and atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = create_temporary(path)
    os.close(fd)
    try:
        frame.to_csv(temporary, index=False, lineterminator="\n")
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def write_model_scores(
    scores: ModelScores,
    model: str,
    summary_path: str | os.PathLike,
    breakdown_path: str | os.PathLike,
    questions_path: str | os.PathLike,
) -> None:
    """Write one model's three score tables: the summary JSON, the breakdown CSV and the per-question
    Parquet (what the workflow's score rule and `spinebench-score` write)."""
    write_json({"model": model, **scores.summary}, summary_path)
    write_csv(scores.breakdown.assign(model=model)[["model", *scores.breakdown.columns]], breakdown_path)
    write_table(scores.questions, questions_path)
