"""The report's charts, drawn with matplotlib and returned as SVG data URIs (the report stays one file).

Deterministic: the same data gives the same bytes. Figures are built with the object API (no pyplot, no
global backend), text is drawn as paths with matplotlib's bundled DejaVu Sans (no system font is looked
up), element ids come from a fixed salt and the SVG carries no date and no creator (library version).
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch

STYLE: dict = {
    "svg.hashsalt": "spinebench-report",
    "svg.fonttype": "path",
    "font.family": "DejaVu Sans",
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.titlesize": 10,
}

# No date, no creator: the same figure gives the same bytes whenever and with whichever build it is drawn.
SVG_METADATA = {"Date": None, "Creator": None}

TASK_COLOURS = {"diagnosis": "#4c72b0", "localization": "#dd8452"}
METRIC_COLOURS = {"accuracy": "#4c72b0", "precision": "#55a868", "recall": "#c44e52"}


def svg_bytes(figure: Figure) -> bytes:
    """The figure as SVG bytes, drawn under the report's style."""
    buffer = io.BytesIO()
    with matplotlib.rc_context(STYLE):
        figure.savefig(buffer, format="svg", metadata=SVG_METADATA, bbox_inches="tight")
    return buffer.getvalue()


def data_uri(payload: bytes, media_type: str) -> str:
    """`payload` as a base64 data URI: the report embeds it, no file or request is needed to show it."""
    return f"data:{media_type};base64,{base64.b64encode(payload).decode('ascii')}"


def svg_data_uri(figure: Figure) -> str:
    """The figure as an SVG data URI."""
    return data_uri(svg_bytes(figure), "image/svg+xml")


def new_figure(width: float, height: float) -> Figure:
    """A figure of `width` x `height` inches, created under the report's style (fonts, spines)."""
    with matplotlib.rc_context(STYLE):
        return Figure(figsize=(width, height))


def disease_distribution_chart(rows: Sequence[Mapping], split: str, title: str) -> str:
    """Horizontal bars of questions per disease and task for one split ('full' or 'subset').

    `rows` are benchmark_overview()'s `by_disease` rows ({disease, diagnosis_full, ...}), in display order;
    the paper's Figures 2 (full benchmark) and 4 (SpineBench-Sub) show these distributions.
    """
    diseases = [row["disease"] for row in rows]
    figure = new_figure(5.0, 0.42 * max(len(diseases), 1) + 1.2)
    with matplotlib.rc_context(STYLE):
        axes = figure.add_subplot()
        positions = np.arange(len(diseases))
        height = 0.38
        for offset, task in ((-height / 2, "diagnosis"), (height / 2, "localization")):
            counts = [row[f"{task}_{split}"] for row in rows]
            bars = axes.barh(positions + offset, counts, height, label=task, color=TASK_COLOURS[task])
            axes.bar_label(bars, padding=2, fontsize=8)
        axes.set_yticks(positions, diseases)
        axes.invert_yaxis()
        axes.set_xlabel("questions")
        axes.set_title(title)
        axes.margins(x=0.12)
        axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return svg_data_uri(figure)


def localization_chart(models: Sequence[Mapping], references: Sequence[Mapping]) -> str:
    """Grouped bars of localization exact-match accuracy, precision and recall (percent) per model.

    `models`: {model, accuracy, precision, recall, intervals: {metric: [low, high] | None}} as fractions,
    drawn solid with their bootstrap intervals; `references`: the paper's rows (percentages), hatched and
    labelled "(paper)" after a dashed line (the paper's Figure 5 compares these three per model).
    """
    metrics = ("accuracy", "precision", "recall")
    labels = [row["model"] for row in models] + [f"{row['model']} (paper)" for row in references]
    figure = new_figure(max(7.0, 0.75 * len(labels) + 1.5), 3.6)
    with matplotlib.rc_context(STYLE):
        axes = figure.add_subplot()
        width = 0.26
        for index, metric in enumerate(metrics):
            offset = (index - 1) * width
            ours = [percent_value(row[metric]) for row in models]
            errors = interval_errors(
                ours, [(row.get("intervals") or {}).get(metric) for row in models], scale=100
            )
            axes.bar(
                np.arange(len(models)) + offset,
                ours,
                width,
                yerr=errors,
                capsize=2,
                color=METRIC_COLOURS[metric],
                label=metric,
                error_kw={"elinewidth": 0.8},
            )
            axes.bar(
                np.arange(len(models), len(labels)) + offset,
                [float(row[metric]) for row in references],
                width,
                color="white",
                edgecolor=METRIC_COLOURS[metric],
                hatch="///",
                linewidth=0.8,
            )
        if models and references:
            axes.axvline(len(models) - 0.5, color="#888888", linestyle="--", linewidth=0.8)
        axes.set_xticks(np.arange(len(labels)), labels, rotation=30, ha="right")
        axes.set_ylim(0, 100)
        axes.set_ylabel("percent")
        axes.set_title("Localization: exact-match accuracy, precision and recall")
        handles, _ = axes.get_legend_handles_labels()
        if references:
            handles.append(Patch(facecolor="white", edgecolor="#555555", hatch="///", label="the paper"))
        axes.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return svg_data_uri(figure)


def percent_value(value: float | None) -> float:
    """A fraction as a percentage for a bar (0 for a missing value: an empty bar)."""
    return 0.0 if value is None or np.isnan(value) else 100 * float(value)


def interval_errors(values: Sequence[float], intervals: Sequence, scale: float) -> np.ndarray:
    """Error bar lengths (2 x n) below and above each value from [low, high] intervals (0 where none)."""
    errors = np.zeros((2, len(values)))
    for index, (value, interval) in enumerate(zip(values, intervals, strict=True)):
        if interval:
            errors[0, index] = max(0.0, value - scale * interval[0])
            errors[1, index] = max(0.0, scale * interval[1] - value)
    return errors


def confusion_chart(
    matrix: Sequence[Sequence[int]], truths: Sequence[str], answers: Sequence[str], title: str
) -> str:
    """A heat map of a diagnosis confusion matrix: rows the true labels, columns the answered labels.

    Cells show counts; their shade is the share of the row, so that rare diseases stay readable.
    """
    counts = np.asarray(matrix, dtype=float).reshape(len(truths), len(answers))
    totals = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    figure = new_figure(0.42 * len(answers) + 2.6, 0.36 * len(truths) + 2.2)
    with matplotlib.rc_context(STYLE):
        axes = figure.add_subplot()
        axes.pcolormesh(shares, cmap="Blues", vmin=0.0, vmax=1.0, edgecolors="white", linewidth=0.5)
        for (row, column), count in np.ndenumerate(counts):
            if count:
                colour = "white" if shares[row, column] > 0.6 else "#1d2327"
                axes.text(
                    column + 0.5,
                    row + 0.5,
                    f"{int(count)}",
                    ha="center",
                    va="center",
                    fontsize=8,
                    color=colour,
                )
        axes.set_xticks(np.arange(len(answers)) + 0.5, answers, rotation=45, ha="right")
        axes.set_yticks(np.arange(len(truths)) + 0.5, truths)
        axes.invert_yaxis()
        axes.set_xlabel("answered")
        axes.set_ylabel("truth")
        axes.set_title(title)
        axes.tick_params(length=0)
        for spine in axes.spines.values():
            spine.set_visible(False)
    return svg_data_uri(figure)
