"""The report: self-contained HTML and Markdown from scored models, benchmark tables and rejected items."""

from __future__ import annotations

import re
import runpy
from pathlib import Path

import pandas as pd
import pytest

from spinebench.io import read_table, rejected_frame, write_table
from spinebench.report import (
    build_report_context,
    dataset_overview,
    leaderboard_rows,
    load_rejected,
    percent,
    percent_interval,
    render_report,
    template_environment,
)
from tests.test_metrics import CATALOG, fake_snakemake, run_score_script, write_benchmark

REPO = Path(__file__).resolve().parents[1]
TEMPLATES = REPO / "templates" / "report"
MODELS = ("model-a", "model-b")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Scored models plus every table the report rule feeds the script, on the metrics tests' benchmark."""
    directory = tmp_path_factory.mktemp("report")
    benchmark = write_benchmark(directory)
    catalog = CATALOG.assign(levels=[["L4/L5", "L5/S1"], ["L1/L2"], [], ["L4/L5"], [], []])
    write_table(catalog, benchmark["catalog_path"])
    scored = {model: run_score_script(directory / "metrics", benchmark, model) for model in MODELS}
    leaderboard = directory / "leaderboard.json"
    runpy.run_path(
        str(REPO / "scripts" / "leaderboard.py"),
        init_globals={
            "snakemake": fake_snakemake(
                directory,
                input={"summaries": [str(scored[model]["summary"]) for model in MODELS]},
                output={"csv": str(directory / "leaderboard.csv"), "json": str(leaderboard)},
            )
        },
    )
    rejected = [
        directory / "rejected" / "vindr.parquet",
        directory / "rejected" / "render" / "rsna" / "000.parquet",
    ]
    write_table(
        rejected_frame(
            [
                {
                    "source": "vindr",
                    "item": "x1",
                    "file": "annotations/train.csv",
                    "reason": "unknown label 'Other'",
                },
                {
                    "source": "vindr",
                    "item": "x2",
                    "file": "annotations/train.csv",
                    "reason": "unknown label 'Other'",
                },
                {"source": "vindr", "item": "x3", "file": "train_images/x3.dicom", "reason": "missing image"},
            ]
        ),
        rejected[0],
    )
    write_table(
        rejected_frame(
            [{"source": "rsna", "item": "s1", "file": "1.dcm", "reason": "corrupt DICOM | bad header"}]
        ),
        rejected[1],
    )
    return {
        "directory": directory,
        "benchmark": benchmark,
        "scored": scored,
        "leaderboard": leaderboard,
        "rejected": rejected,
    }


def run_report_script(inputs, out: Path) -> dict[str, Path]:
    outputs = {"html": out / "report.html", "markdown": out / "report.md"}
    benchmark = inputs["benchmark"]
    snakemake = fake_snakemake(
        out,
        input={
            "leaderboard": str(inputs["leaderboard"]),
            "summaries": [str(inputs["scored"][model]["summary"]) for model in MODELS],
            "breakdowns": [str(inputs["scored"][model]["breakdown"]) for model in MODELS],
            "catalog": str(benchmark["catalog_path"]),
            "subset": str(benchmark["subset_path"]),
            "questions": [str(benchmark["questions_paths"][task]) for task in ("diagnosis", "localization")],
            "rejected": [str(path) for path in inputs["rejected"]],
            "paper": str(REPO / "resources" / "paper_table2.csv"),
            "html_template": str(TEMPLATES / "report.html.j2"),
            "md_template": str(TEMPLATES / "report.md.j2"),
        },
        output={name: str(path) for name, path in outputs.items()},
        params={"seeds": {"library": 20251014, "bootstrap": 1}, "split": "subset"},
    )
    runpy.run_path(str(REPO / "scripts" / "report.py"), init_globals={"snakemake": snakemake})
    return outputs


@pytest.fixture(scope="module")
def report(inputs, tmp_path_factory):
    outputs = run_report_script(inputs, tmp_path_factory.mktemp("out"))
    return {name: path.read_text(encoding="utf-8") for name, path in outputs.items()}


def test_html_is_self_contained(report):
    html = report["html"]
    assert html.startswith("<!DOCTYPE html>") and "<style>" in html
    assert not re.search(r"<(?:link|script|img|iframe)\b", html, re.IGNORECASE)
    assert not re.search(r"(?:src|href)\s*=", html, re.IGNORECASE)
    assert not re.search(r"url\(|@import|https?://", html, re.IGNORECASE)


def test_html_escapes_data(report):
    assert "unknown label &#39;Other&#39;" in report["html"]


def test_markdown_has_one_leaderboard_row_per_model(report):
    section = report["markdown"].split("## Leaderboard", 1)[1].split("###", 1)[0]
    rows = [line for line in section.splitlines() if re.match(r"^\| \d+ \|", line)]
    assert [row.split("|")[2].strip() for row in rows] == list(MODELS)
    header = next(line for line in section.splitlines() if line.startswith("| Rank"))
    assert all(row.count("|") == header.count("|") for row in rows)


def markdown_tables(text: str) -> list[list[str]]:
    """Blocks of consecutive lines that start with a pipe."""
    tables, current = [], []
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            current.append(line)
        elif current:
            tables.append(current)
            current = []
    return tables


def cell_count(row: str) -> int:
    return row.count("|") - row.count("\\|") - 1


def test_markdown_tables_are_well_formed(report):
    """Every table has a header, a delimiter row and rows as wide as the header, no blank line inside."""
    tables = markdown_tables(report["markdown"])
    assert len(tables) >= 12
    for table in tables:
        assert len(table) >= 3, table
        assert re.fullmatch(r"\|(?:---:?\|)+", table[1]), table[:2]
        assert {cell_count(row) for row in table} == {cell_count(table[0])}, table


def test_paper_rows_are_marked_and_baseline_noted(report):
    for text in report.values():
        assert "Gemini-2.5-pro (paper)" in text and "MedGemma-4B (paper)" in text
        assert "not produced by this run" in text
        assert "20.00% diagnosis" in text
    assert "| Gemini-2.5-pro (paper) | 20.86 | 32.37 | 9.35 | 48.61 | 63.55 |" in report["markdown"]


def test_report_sections_show_the_inputs(report, inputs):
    markdown = report["markdown"]
    summary = pd.read_json(inputs["scored"]["model-a"]["summary"], typ="series")
    overall = percent(summary["metrics"]["overall_accuracy"])
    assert (
        f"| 1 | model-a | {overall} {percent_interval(summary['intervals']['overall_accuracy'])} |"
        in markdown
    )
    assert (
        "| model-a | diagnosis | 1 | 1 | 0 | 0 | 0 | 1 | 1 | 4 | 1 |" in markdown
    )  # subset extraction paths
    assert "### Localization by source" in markdown
    assert "| diagnosis | 6 | 4 |" in markdown and "| localization | 6 | 3 |" in markdown
    assert "| Foraminal stenosis | 2 | 2 | 2 | 2 |" in markdown
    assert "| L4/L5 | 2 |" in markdown
    assert "| render | rsna | corrupt DICOM \\| bad header | 1 |" in markdown
    assert "| standardize | vindr | unknown label 'Other' | 2 |" in markdown
    assert "6 standardized images, 3 of them with lumbar levels (localization); 4 items rejected." in markdown


def test_report_is_byte_stable(inputs, report, tmp_path):
    again = run_report_script(inputs, tmp_path)
    assert again["html"].read_text(encoding="utf-8") == report["html"]
    assert again["markdown"].read_text(encoding="utf-8") == report["markdown"]


def test_leaderboard_without_summary_is_refused():
    with pytest.raises(ValueError, match="without a summary"):
        leaderboard_rows({"ghost": {"rank": 1}}, [])


def test_dataset_overview_counts(inputs):
    catalog = read_table(inputs["benchmark"]["catalog_path"])
    overview = dataset_overview(catalog, load_rejected(inputs["rejected"]))
    assert overview["by_source"] == [
        {"source": "buu", "count": 2},
        {"source": "rsna", "count": 3},
        {"source": "vindr", "count": 1},
    ]
    assert [row["disease"] for row in overview["by_disease"]][:2] == ["Foraminal stenosis", "Osteophytes"]
    assert overview["by_level"][0] == {"level": "L1/L2", "count": 1}
    assert overview["rejected"][0] == {
        "stage": "standardize",
        "source": "vindr",
        "reason": "unknown label 'Other'",
        "items": 2,
    }


def test_render_report_fails_on_missing_context():
    with pytest.raises(Exception, match="undefined"):
        render_report({"title": "x"}, TEMPLATES / "report.html.j2", TEMPLATES / "report.md.j2")


def test_context_has_no_run_dependent_values(inputs):
    """Same inputs, same context: nothing (time, paths) that differs between runs enters the report."""
    benchmark = inputs["benchmark"]

    def context():
        return build_report_context(
            title="t",
            seeds={"library": 1},
            split="subset",
            leaderboard=pd.read_json(inputs["leaderboard"]).to_dict(),
            summaries=[pd.read_json(inputs["scored"][m]["summary"], typ="series").to_dict() for m in MODELS],
            breakdowns=pd.concat(pd.read_csv(inputs["scored"][m]["breakdown"]) for m in MODELS),
            catalog=read_table(benchmark["catalog_path"]),
            subset=read_table(benchmark["subset_path"]),
            questions={task: read_table(path) for task, path in benchmark["questions_paths"].items()},
            rejected=load_rejected(inputs["rejected"]),
            paper=pd.read_csv(REPO / "resources" / "paper_table2.csv"),
        )

    assert context() == context()


def test_markdown_escapes_html_in_every_expression(tmp_path):
    """Markdown passes raw HTML through: a label or a model's text holding markup must show as text."""
    (tmp_path / "cell.md.j2").write_text("| {{ text | md }} |\n{{ text }}\n", encoding="utf-8")
    environment = template_environment(tmp_path, autoescape=False)
    hostile = "Osteophytes <script>alert(1)</script> | & <img src=x onerror=alert(2)>"
    rendered = environment.get_template("cell.md.j2").render(text=hostile)
    assert "<script>" not in rendered and "<img" not in rendered
    assert "&lt;script&gt;alert(1)&lt;/script&gt; \\| &amp; &lt;img" in rendered.splitlines()[0]
    assert (
        rendered.splitlines()[1]
        == "Osteophytes &lt;script&gt;alert(1)&lt;/script&gt; | &amp; &lt;img src=x onerror=alert(2)&gt;"
    )
