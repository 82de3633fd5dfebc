"""The benchmark report: dataset and benchmark overview, leaderboard with intervals, extraction paths,
breakdowns and the paper's reference rows, rendered to self-contained HTML and Markdown with Jinja.

All numbers are formatted here (percentages with two decimals) so that both templates show the same text
and stay free of logic; nothing time-dependent enters the context, so the same inputs render the same bytes.
"""

from __future__ import annotations

import html
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import jinja2
import pandas as pd

from spinebench.metrics import EXTRACTION_PATHS
from spinebench.vocab import LABELS, LETTERS, LEVELS, TASKS

DEFAULT_TITLE = "SpineBench evaluation report"

# Chance level of a diagnosis question: one right option out of five.
RANDOM_DIAGNOSIS_ACCURACY = 1 / len(LETTERS)

# Leaderboard columns in display order: metric key -> heading.
LEADERBOARD_COLUMNS: dict[str, str] = {
    "overall_accuracy": "Overall acc.",
    "diagnosis_accuracy": "Diagnosis acc.",
    "localization_accuracy": "Localization acc.",
    "localization_precision": "Localization pre.",
    "localization_recall": "Localization rec.",
    "pooled_accuracy": "Pooled acc.",
}

# Columns of resources/paper_table2.csv (percentages as printed in the paper), in display order.
PAPER_COLUMNS: tuple[str, ...] = (
    "overall_accuracy",
    "diagnosis_accuracy",
    "localization_accuracy",
    "localization_precision",
    "localization_recall",
)

BREAKDOWN_DIMENSIONS: tuple[str, ...] = ("disease", "source", "modality")


def percent(value: float | None) -> str:
    """A fraction in [0, 1] as a percentage with two decimals; an en dash when missing."""
    if value is None or pd.isna(value):
        return "–"
    return f"{100 * float(value):.2f}"


def percent_interval(interval: Sequence[float] | None) -> str:
    """A bootstrap interval as "[low, high]" in percent; empty when there is none."""
    if not interval:
        return ""
    return f"[{percent(interval[0])}, {percent(interval[1])}]"


def count_rows(series: pd.Series, key: str, order: Sequence[str] = ()) -> list[dict]:
    """Counts of the values of `series` as rows {key: value, "count": n}, in `order` first, then by name."""
    counts = series.value_counts()
    return [{key: value, "count": int(counts[value])} for value in ordered_values(series, order)]


def load_rejected(paths: Sequence[str | os.PathLike]) -> pd.DataFrame:
    """Every rejected-items table, with the stage that rejected the item (render tables are under render/)."""
    frames = []
    for path in paths:
        frame = pd.read_parquet(path, columns=["source", "item", "file", "reason"])
        frames.append(frame.assign(stage="render" if "render" in Path(path).parts else "standardize"))
    if not frames:
        return pd.DataFrame(columns=["source", "item", "file", "reason", "stage"])
    return pd.concat(frames, ignore_index=True)


def dataset_overview(catalog: pd.DataFrame, rejected: pd.DataFrame) -> dict:
    """Images per source, modality, disease and lumbar level; rejected items per stage, source and reason."""
    levels = catalog["levels"].map(lambda value: list(value) if value is not None else [])
    rejected_counts = (
        rejected.groupby(["stage", "source", "reason"], dropna=False).size().reset_index(name="items")
        if len(rejected)
        else pd.DataFrame(columns=["stage", "source", "reason", "items"])
    )
    rejected_counts = rejected_counts.sort_values(
        ["stage", "source", "items", "reason"], ascending=[False, True, False, True], kind="mergesort"
    )
    return {
        "images": len(catalog),
        "by_source": count_rows(catalog["source"], "source"),
        "by_modality": count_rows(catalog["modality"], "modality"),
        "by_disease": count_rows(catalog["disease"], "disease", LABELS),
        "with_levels": int((levels.map(len) > 0).sum()),
        "by_level": count_rows(levels.explode().dropna(), "level", LEVELS),
        "rejected": [
            {"stage": row.stage, "source": row.source, "reason": row.reason, "items": int(row.items)}
            for row in rejected_counts.itertuples()
        ],
        "rejected_total": len(rejected),
    }


def benchmark_overview(questions: Mapping[str, pd.DataFrame], subset: pd.DataFrame) -> dict:
    """Question counts per task (full benchmark and SpineBench-Sub) and per disease."""
    tasks = []
    diseases: dict[str, dict[str, int]] = {}
    for task in TASKS:
        table = questions[task]
        in_subset = table["question_id"].isin(subset.loc[subset["task"] == task, "question_id"])
        tasks.append({"task": task, "full": len(table), "subset": int(in_subset.sum())})
        for disease, full in table["disease"].value_counts().items():
            diseases.setdefault(disease, {})[f"{task}_full"] = int(full)
        for disease, chosen in table.loc[in_subset, "disease"].value_counts().items():
            diseases[disease][f"{task}_subset"] = int(chosen)
    columns = [f"{task}_{split}" for task in TASKS for split in ("full", "subset")]
    by_disease = [
        {"disease": name} | {column: diseases[name].get(column, 0) for column in columns}
        for name in ordered_values(pd.Series(list(diseases)), LABELS)
    ]
    return {"tasks": tasks, "by_disease": by_disease}


def leaderboard_rows(leaderboard: Mapping[str, Mapping], summaries: Sequence[Mapping]) -> list[dict]:
    """Leaderboard rows in rank order: formatted metrics with their intervals and question counts."""
    by_model = {summary["model"]: summary for summary in summaries}
    missing = sorted(set(leaderboard) - set(by_model))
    if missing:
        raise ValueError(f"leaderboard models without a summary: {missing}")
    rows = []
    for model in sorted(leaderboard, key=lambda name: (leaderboard[name]["rank"], name)):
        summary = by_model[model]
        row = {"rank": leaderboard[model]["rank"], "model": model, "split": summary["split"]}
        row["metrics"] = [
            {
                "name": name,
                "value": percent(summary["metrics"][name]),
                "interval": percent_interval(summary["intervals"].get(name)),
            }
            for name in LEADERBOARD_COLUMNS
        ]
        row["questions"] = {task: summary["questions"][task] for task in TASKS}
        rows.append(row)
    return rows


def extraction_rows(leaderboard_order: Sequence[str], summaries: Sequence[Mapping]) -> list[dict]:
    """Per model and task: how many counted answers came from each extraction path, and errors."""
    by_model = {summary["model"]: summary for summary in summaries}
    rows = []
    for model in leaderboard_order:
        for task in TASKS:
            counts = by_model[model]["extraction"][task]
            rows.append(
                {
                    "model": model,
                    "task": task,
                    "counts": [counts.get(path, 0) for path in EXTRACTION_PATHS],
                    "total": sum(counts.values()),
                    "errors": by_model[model]["errors"][task],
                }
            )
    return rows


def breakdown_sections(breakdowns: pd.DataFrame, models: Sequence[str]) -> list[dict]:
    """One table per task and dimension: rows are values (diseases, sources, modalities), columns models.

    Diagnosis cells are accuracies; localization cells are "accuracy / precision / recall", in percent.
    """
    sections = []
    for task in TASKS:
        for dimension in BREAKDOWN_DIMENSIONS:
            part = breakdowns[(breakdowns["task"] == task) & (breakdowns["dimension"] == dimension)]
            if not part.empty:
                rows = breakdown_rows(part, task, LABELS if dimension == "disease" else (), models)
                sections.append({"task": task, "dimension": dimension, "models": list(models), "rows": rows})
    return sections


def breakdown_rows(part: pd.DataFrame, task: str, order: Sequence[str], models: Sequence[str]) -> list[dict]:
    """Rows of one breakdown table: value, its question count and one formatted cell per model."""
    cells = part.set_index(["value", "model"])
    rows = []
    for value in ordered_values(part["value"], order):
        row_cells = [
            breakdown_cell(task, cells.loc[(value, model)]) if (value, model) in cells.index else "–"
            for model in models
        ]
        questions = int(part.loc[part["value"] == value, "questions"].max())
        rows.append({"value": value, "questions": questions, "cells": row_cells})
    return rows


def ordered_values(values: pd.Series, order: Sequence[str]) -> list[str]:
    """Distinct values: those in `order` first, in that order, then the rest by name."""
    present = set(values)
    known = [value for value in order if value in present]
    return known + sorted(present - set(known))


def breakdown_cell(task: str, cell: pd.Series) -> str:
    """A breakdown table cell: accuracy, plus precision and recall for localization."""
    if task == "localization":
        return " / ".join(percent(cell[column]) for column in ("accuracy", "precision", "recall"))
    return percent(cell["accuracy"])


def paper_rows(paper: pd.DataFrame) -> list[dict]:
    """The paper's Table 2 reference rows (already percentages), formatted with two decimals."""
    return [
        {"model": row["model"], "values": [f"{float(row[column]):.2f}" for column in PAPER_COLUMNS]}
        for row in paper.to_dict("records")
    ]


def build_report_context(
    *,
    title: str,
    seeds: Mapping[str, int],
    split: str,
    leaderboard: Mapping[str, Mapping],
    summaries: Sequence[Mapping],
    breakdowns: pd.DataFrame,
    catalog: pd.DataFrame,
    subset: pd.DataFrame,
    questions: Mapping[str, pd.DataFrame],
    rejected: pd.DataFrame,
    paper: pd.DataFrame,
) -> dict:
    """Everything the templates show, formatted. `breakdowns`: the models' breakdown CSVs concatenated."""
    board = leaderboard_rows(leaderboard, summaries)
    models = [row["model"] for row in board]
    return {
        "title": title,
        "seeds": ", ".join(f"{name} {value}" for name, value in seeds.items()),
        "split": split,
        "dataset": dataset_overview(catalog, rejected),
        "benchmark": benchmark_overview(questions, subset),
        "leaderboard": board,
        "leaderboard_columns": list(LEADERBOARD_COLUMNS.values()),
        "extraction_paths": list(EXTRACTION_PATHS),
        "extraction": extraction_rows(models, summaries),
        "breakdowns": breakdown_sections(breakdowns, models),
        "paper_columns": [LEADERBOARD_COLUMNS[column] for column in PAPER_COLUMNS],
        "paper": paper_rows(paper),
        "random_diagnosis_accuracy": percent(RANDOM_DIAGNOSIS_ACCURACY),
        "bootstrap": bootstrap_note(summaries),
    }


def bootstrap_note(summaries: Sequence[Mapping]) -> dict:
    """Resamples and interval level of the leaderboard's intervals (the same params score every model)."""
    settings = {
        (summary["bootstrap"]["samples"], summary["bootstrap"]["confidence"]) for summary in summaries
    }
    if len(settings) > 1:
        raise ValueError(f"models were scored with different bootstrap settings: {sorted(settings)}")
    samples, confidence = settings.pop() if settings else (0, None)
    return {"samples": samples, "confidence": f"{100 * confidence:g}" if confidence else "–"}


def markdown_cell(value) -> str:
    """Text safe inside a Markdown table cell (pipes escaped, no line breaks)."""
    return str(value).replace("|", "\\|").replace("\n", " ")


def escape_markdown_html(value) -> str:
    """Any expression's output in the Markdown report, with HTML's special characters as entities.

    Markdown passes raw HTML through, so a model's output or a label holding `<script>` would run in
    whatever renders the report; as entities it shows as the text it is, as in the HTML report.
    """
    return html.escape(str(value), quote=False)


def template_environment(template_dir: Path, autoescape: bool) -> jinja2.Environment:
    """A strict Jinja environment (undefined names fail) over `template_dir`.

    HTML is autoescaped by Jinja; Markdown escapes every expression's output through a finalize hook.
    """
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(template_dir)),
        autoescape=autoescape,
        finalize=None if autoescape else escape_markdown_html,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["md"] = markdown_cell
    return environment


def render_report(
    context: Mapping, html_template: str | os.PathLike, markdown_template: str | os.PathLike
) -> tuple[str, str]:
    """(HTML, Markdown) rendered from the two template files, each escaping what it shows."""
    rendered = []
    for path, autoescape in ((Path(html_template), True), (Path(markdown_template), False)):
        environment = template_environment(path.parent, autoescape)
        rendered.append(environment.get_template(path.name).render(**context))
    return rendered[0], rendered[1]


def write_text(text: str, path: str | os.PathLike) -> None:
    """Write UTF-8 text atomically (temp file + rename), creating parent folders."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
