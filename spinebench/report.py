"""The benchmark report: the release it evaluated, the leaderboard in the paper's Table 2 layout with the
paper's rows as references, charts (disease distributions, localization precision and recall, diagnosis
confusion matrices), per-level localization scores, example questions with their image and every model's
answer, extraction paths and the audit of judged and low-confidence answers, breakdowns, benchmark and
dataset overview: rendered to self-contained HTML and Markdown with Jinja (images are data URIs, nothing is
fetched).

All numbers are formatted here (percentages with two decimals) so that both templates show the same text
and stay free of logic; nothing time-dependent enters the context, so the same inputs render the same bytes.
Model output is text: both templates escape it (HTML by autoescaping, Markdown by a finalize hook).
"""

from __future__ import annotations

import hashlib
import html
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import jinja2
import pandas as pd

from spinebench import answers as answer_views
from spinebench import figures
from spinebench.io import create_temporary
from spinebench.metrics import EXTRACTION_PATHS
from spinebench.vocab import LABELS, LETTERS, LEVELS, TASKS

DEFAULT_TITLE = "SpineBench evaluation report"

# Chance level of a diagnosis question: one right option out of five.
RANDOM_DIAGNOSIS_ACCURACY = 1 / len(LETTERS)

# Leaderboard columns in display order (the paper's Table 2: diagnosis, localization, overall; then ours):
# metric key -> heading.
LEADERBOARD_COLUMNS: dict[str, str] = {
    "diagnosis_accuracy": "Diagnosis acc.",
    "localization_accuracy": "Localization acc.",
    "localization_precision": "Localization pre.",
    "localization_recall": "Localization rec.",
    "overall_accuracy": "Overall acc.",
    "pooled_accuracy": "Pooled acc.",
}

# The HTML leaderboard's grouped header, as in the paper's Table 2: group -> the short headings under it.
LEADERBOARD_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Diagnosis", ("Acc.",)),
    ("Localization", ("Acc.", "Pre.", "Rec.")),
    ("Overall", ("Acc.",)),
    ("Pooled", ("Acc.",)),
)

# Columns of resources/paper_table2.csv (percentages as printed in the paper), in the leaderboard's order;
# the paper has no pooled accuracy.
PAPER_COLUMNS: tuple[str, ...] = (
    "diagnosis_accuracy",
    "localization_accuracy",
    "localization_precision",
    "localization_recall",
    "overall_accuracy",
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


def extraction_paths(summaries: Sequence[Mapping]) -> list[str]:
    """The known extraction paths (metrics.EXTRACTION_PATHS), then any other one a summary counts, by name."""
    found = {path for summary in summaries for counts in summary["extraction"].values() for path in counts}
    return list(EXTRACTION_PATHS) + sorted(found - set(EXTRACTION_PATHS))


def extraction_rows(leaderboard_order: Sequence[str], summaries: Sequence[Mapping]) -> list[dict]:
    """Per model and task: how many counted answers came from each extraction path, and errors."""
    by_model = {summary["model"]: summary for summary in summaries}
    paths = extraction_paths(summaries)
    rows = []
    for model in leaderboard_order:
        for task in TASKS:
            counts = by_model[model]["extraction"][task]
            rows.append(
                {
                    "model": model,
                    "task": task,
                    "counts": [counts.get(path, 0) for path in paths],
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


def manifest_digest(path: str | os.PathLike) -> str:
    """Hex SHA-256 of the release manifest's bytes: the name of the benchmark release a report evaluated."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def param_value(value) -> str:
    """A param value as shown in the report: strings as they are, anything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, ensure_ascii=False)


def flatten_params(params: Mapping | None, prefix: str = "") -> list[dict]:
    """Nested params as rows {key: 'a.b.c', value}, in the mapping's order; lists and scalars are leaves."""
    rows = []
    for key, value in (params or {}).items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            rows.extend(flatten_params(value, f"{name}."))
        else:
            rows.append({"key": name, "value": param_value(value)})
    return rows


# Manifest keys shown in their own part of the release details rather than as plain fields.
MANIFEST_SECTIONS = frozenset({"tables", "files", "params"})


def release_context(
    *,
    manifest: Mapping,
    manifest_sha256: str,
    code_version: str,
    mode: str,
    benchmark_params: Mapping | None,
    evaluation: Mapping,
) -> dict:
    """What names the evaluated release: the manifest's digest, its fields, tables (rows, short hashes) and
    how many other files it hashes; the code version; the params that define the benchmark and where they
    come from; the evaluation params.

    The benchmark params are the manifest's own `params` when it records them (true in release mode too);
    else `benchmark_params` (this checkout's params.yaml, given in build mode only, None in release mode).
    """
    tables = [
        {"name": name, "rows": entry.get("rows", "–"), "sha256": str(entry.get("sha256", "–"))[:16]}
        for name, entry in sorted((manifest.get("tables") or {}).items())
    ]
    if manifest.get("params") is not None:
        params, params_source = manifest["params"], "manifest"
    elif benchmark_params is not None:
        params, params_source = benchmark_params, "params.yaml"
    else:
        params, params_source = None, None
    return {
        "manifest_sha256": manifest_sha256,
        "code_version": code_version,
        "mode": mode,
        "manifest": flatten_params(
            {key: value for key, value in manifest.items() if key not in MANIFEST_SECTIONS}
        ),
        "tables": tables,
        "files": len(manifest.get("files") or {}),
        "benchmark_params": None if params is None else flatten_params(params),
        "benchmark_params_source": params_source,
        "evaluation": flatten_params(evaluation),
    }


def unnamed_release() -> dict:
    """The release context of a report given no manifest: every name 'unknown'."""
    return release_context(
        manifest={},
        manifest_sha256="unknown",
        code_version="unknown",
        mode="unknown",
        benchmark_params=None,
        evaluation={},
    )


def localization_scores(board: Sequence[Mapping], summaries: Sequence[Mapping]) -> list[dict]:
    """Localization accuracy, precision and recall (fractions) with intervals, per model in rank order."""
    by_model = {summary["model"]: summary for summary in summaries}
    rows = []
    for row in board:
        summary = by_model[row["model"]]
        rows.append(
            {
                "model": row["model"],
                **{
                    name: summary["metrics"][f"localization_{name}"]
                    for name in ("accuracy", "precision", "recall")
                },
                "intervals": {
                    name: summary["intervals"].get(f"localization_{name}")
                    for name in ("accuracy", "precision", "recall")
                },
            }
        )
    return rows


def paper_localization(paper: pd.DataFrame) -> list[dict]:
    """The paper's localization accuracy, precision and recall (percentages) per model."""
    return [
        {
            "model": row["model"],
            "accuracy": row["localization_accuracy"],
            "precision": row["localization_precision"],
            "recall": row["localization_recall"],
        }
        for row in paper.to_dict("records")
    ]


def chart_context(
    benchmark: Mapping, localization: Sequence[Mapping], paper: pd.DataFrame, confusion: Mapping
) -> dict:
    """Every chart as an SVG data URI: disease distributions of the full benchmark and of SpineBench-Sub
    (paper Figures 2 and 4), localization scores against the paper's (Figure 5), a confusion matrix per
    model."""
    rows = benchmark["by_disease"]
    return {
        "disease_full": figures.disease_distribution_chart(
            rows, "full", "Questions per disease: full benchmark"
        ),
        "disease_subset": figures.disease_distribution_chart(
            rows, "subset", "Questions per disease: SpineBench-Sub"
        ),
        "localization": figures.localization_chart(localization, paper_localization(paper)),
        "confusion": [
            {
                "model": model,
                "uri": figures.confusion_chart(
                    matrix, confusion["truths"], confusion["answers"], f"Diagnosis: {model}"
                ),
            }
            for model, matrix in confusion["matrices"].items()
            if confusion["truths"]
        ],
    }


def level_rows(scores: Sequence[Mapping], models: Sequence[str]) -> list[dict]:
    """Per-level table rows: level, questions whose truth names it, and per model
    "accuracy / precision / recall" in percent (answers.level_scores)."""
    by_key = {(row["model"], row["level"]): row for row in scores}
    rows = []
    for level in LEVELS:
        cells = [by_key.get((model, level)) for model in models]
        truth = max((cell["truth"] for cell in cells if cell), default=0)
        rows.append(
            {
                "level": level,
                "truth": truth,
                "cells": [
                    " / ".join(percent(cell[name]) for name in ("accuracy", "precision", "recall"))
                    if cell
                    else "–"
                    for cell in cells
                ],
            }
        )
    return rows


def example_context(examples: Sequence[dict], images: Mapping[str, bytes]) -> list[dict]:
    """The example questions, each with its image as a small JPEG data URI (None when it has no image)."""
    shown = []
    for example in examples:
        png = images.get(example["image_id"])
        image = None if png is None else figures.data_uri(answer_views.thumbnail_jpeg(png), "image/jpeg")
        shown.append(example | {"image": image})
    return shown


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
    release: Mapping | None = None,
    answers: pd.DataFrame | None = None,
    responses: Mapping[tuple[str, str], Mapping] | None = None,
    examples: Sequence[tuple[str, str]] = (),
    example_images: Mapping[str, bytes] | None = None,
) -> dict:
    """Everything the templates show, formatted.

    `breakdowns`: the models' breakdown CSVs concatenated; `release`: release_context() (None: a release
    named nowhere, every field 'unknown'); `answers`: answers.answer_table() (None: no answer to show);
    `responses`: the raw responses of the examples and audited answers (answers.read_responses);
    `examples`: (task, question_id) pairs (answers.pick_examples) and `example_images`: their images' PNG
    bytes by image_id.
    """
    if release is None:
        release = unnamed_release()
    if answers is None:
        answers = answer_views.answer_table({}, {})
    responses = responses or {}
    board = leaderboard_rows(leaderboard, summaries)
    models = [row["model"] for row in board]
    benchmark = benchmark_overview(questions, subset)
    confusion = answer_views.confusion_matrices(answers, models)
    return {
        "title": title,
        "seeds": ", ".join(f"{name} {value}" for name, value in seeds.items()),
        "split": split,
        "release": release,
        "dataset": dataset_overview(catalog, rejected),
        "benchmark": benchmark,
        "leaderboard": board,
        "leaderboard_columns": list(LEADERBOARD_COLUMNS.values()),
        "leaderboard_groups": [
            {"name": name, "columns": list(columns)} for name, columns in LEADERBOARD_GROUPS
        ],
        "extraction_paths": extraction_paths(summaries),
        "extraction": extraction_rows(models, summaries),
        "breakdowns": breakdown_sections(breakdowns, models),
        "paper": paper_rows(paper),
        "random_diagnosis_accuracy": percent(RANDOM_DIAGNOSIS_ACCURACY),
        "bootstrap": bootstrap_note(summaries),
        "charts": chart_context(benchmark, localization_scores(board, summaries), paper, confusion),
        "models": models,
        "levels": level_rows(answer_views.level_scores(answers, models), models),
        "examples": example_context(
            answer_views.example_questions(answers, responses, questions, examples, models),
            example_images or {},
        ),
        "audit_paths": list(answer_views.AUDIT_PATHS),
        "audit_limit": answer_views.AUDIT_LIMIT,
        "audit": answer_views.audit_rows(answers, responses, models),
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
    fd, temporary = create_temporary(path)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
