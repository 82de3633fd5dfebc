"""The table printed when `snakemake` finishes: per model and task, questions, requests, failures, wall time.

Read from what the run left: the prediction tables (`attempts` per question: one request each, plus the
retries) and the predict jobs' benchmark files (`s`: wall seconds of the job's last run).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable
from pathlib import Path

HEADER = ("model", "task", "questions", "requests", "failed", "wall_s")


def prediction_row(model: str, task: str, root: Path) -> dict | None:
    """The summary row of one prediction table, or None when the table does not exist."""
    table_path = root / "results" / "predictions" / model / f"{task}.parquet"
    if not table_path.exists():
        return None
    import pyarrow.parquet as pq  # here: the workflow imports this module at every start

    table = pq.read_table(table_path, columns=["error", "attempts"])
    errors = table.column("error").to_pylist()
    attempts = table.column("attempts").to_pylist()
    return {
        "model": model,
        "task": task,
        "questions": table.num_rows,
        "requests": sum(int(count or 0) for count in attempts),
        "failed": sum(error is not None for error in errors),
        "wall_s": job_seconds(root / "benchmarks" / "predict" / model / f"{task}.tsv"),
    }


def job_seconds(benchmark_path: Path) -> float | None:
    """Wall seconds recorded by a job's `benchmark:` file (None when absent or unreadable)."""
    try:
        with open(benchmark_path, newline="") as handle:
            return float(next(csv.DictReader(handle, delimiter="\t"))["s"])
    except (OSError, StopIteration, KeyError, ValueError):
        return None


def summary_rows(models: Iterable[str], tasks: Iterable[str], root: str | os.PathLike = ".") -> list[dict]:
    """One row per (model, task) whose prediction table exists, in the given order."""
    rows = (prediction_row(model, task, Path(root)) for model in models for task in tasks)
    return [row for row in rows if row is not None]


def format_summary(rows: list[dict]) -> str:
    """A plain-text table of `rows` (empty string for none)."""
    if not rows:
        return ""
    cells = [HEADER] + [
        tuple(
            "-" if row[key] is None else f"{row[key]:.1f}" if key == "wall_s" else str(row[key])
            for key in HEADER
        )
        for row in rows
    ]
    widths = [max(len(line[column]) for line in cells) for column in range(len(HEADER))]
    lines = [
        "  ".join(value.ljust(width) for value, width in zip(line, widths, strict=True)) for line in cells
    ]
    return "predictions:\n" + "\n".join(lines)
