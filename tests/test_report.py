"""The report: self-contained HTML and Markdown from scored models, benchmark tables and rejected items."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import runpy
import subprocess
from pathlib import Path
from xml.etree import ElementTree

import pandas as pd
import pyarrow as pa
import pytest
from PIL import Image

from spinebench import figures
from spinebench.answers import (
    answer_table,
    audit_rows,
    confusion_matrices,
    level_scores,
    pick_examples,
    read_images,
    read_responses,
    responses_to_read,
)
from spinebench.io import read_table, rejected_frame, write_table
from spinebench.metrics import EXTRACTION_PATHS
from spinebench.provenance import benchmark_params, describe_code, package_version
from spinebench.report import (
    build_report_context,
    dataset_overview,
    extraction_paths,
    flatten_params,
    leaderboard_rows,
    load_rejected,
    percent,
    percent_interval,
    release_context,
    render_report,
    template_environment,
)
from spinebench.vocab import LETTERS, LEVELS
from tests.test_metrics import (
    CATALOG,
    DIAGNOSIS_PREDICTIONS,
    DIAGNOSIS_TRUTH,
    LOCALIZATION_PREDICTIONS,
    fake_snakemake,
    predictions_table,
    run_score_script,
    write_benchmark,
)

REPO = Path(__file__).resolve().parents[1]
TEMPLATES = REPO / "templates" / "report"
MODELS = ("model-a", "model-b")

# Markup a model might answer with: the report must show it as text and run none of it.
HOSTILE = 'Reasoning <script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2"> & so on'

# model-a: the metrics tests' predictions, but the subset's wrong diagnosis letter comes from the judge.
MODEL_A_DIAGNOSIS = DIAGNOSIS_PREDICTIONS | {"img2": ("C", "judge", None)}
# The judge's raw reply to model-a's dx-img2, with markup of its own.
JUDGE_REPLY = "The answer is C <script>window.__pwned = 3</script>\n[C]"
MODEL_B_DIAGNOSIS = {
    "img1": ("B", "final_phrase", None),
    "img2": ("B", "final_phrase", None),
    "img3": ("C", "final_phrase", None),
    "img4": ("A", "low_confidence", None),  # the rules' low-confidence reading, no judge asked
}
MODEL_B_LOCALIZATION = {
    "img1": ("A,C,D", "final_phrase", None),
    "img2": ("B", "final_phrase", None),
    "img3": ("A,C,E", "option_text", None),
}
DIAGNOSIS_FILLERS = (
    "Disc space narrowing",
    "Osteophytes",
    "Spondylolisthesis",
    "Healthy",
    "Vertebral collapse",
)
SEEDS = {"library": 20251014, "subset": 20251014, "bootstrap": 1}
CODE_VERSION = "git v1.2.3-4-gabcdef0"
BENCHMARK_PARAMS = {"seeds": {"subset": 20251014}, "subset": {"diagnosis_size": 4, "localization_size": 3}}
EVALUATION = {"split": "subset", "judge": "judge-model", "disease_definitions": False}


def diagnosis_options(disease: str, letter: str) -> list[str]:
    """Five options with `disease` at `letter` (fillers elsewhere)."""
    options = [label for label in DIAGNOSIS_FILLERS if label != disease][:4]
    options.insert(LETTERS.index(letter), disease)
    return options


def with_question_texts(questions: pd.DataFrame, task: str) -> pd.DataFrame:
    """The metrics tests' question table plus question text and options (levels A..E in order)."""
    frame = questions.copy()
    frame["question"] = f"Which {task} fits this image?"
    for index, letter in enumerate(LETTERS):
        if task == "diagnosis":
            frame[f"option_{letter.lower()}"] = [
                diagnosis_options(disease, DIAGNOSIS_TRUTH[image])[index]
                for disease, image in zip(frame["disease"], frame["image_id"], strict=True)
            ]
        else:
            frame[f"option_{letter.lower()}"] = LEVELS[index]
    frame["paraphrase"] = 0
    return frame


def write_predictions(
    directory: Path, diagnosis: dict, localization: dict, response=None, judge_replies=None
) -> dict[str, Path]:
    """A model's two predictions tables; `response(text)` rewrites every non-null response and
    `judge_replies` (question_id -> text) fills `judge_response`."""
    schema = predictions_table("diagnosis", {}).schema
    if "judge_response" not in schema.names:
        schema = schema.append(pa.field("judge_response", pa.string()))
    paths = {}
    for task, predictions in (("diagnosis", diagnosis), ("localization", localization)):
        table = predictions_table(task, predictions).to_pandas()
        if response is not None:
            table["response"] = table["response"].map(lambda text: None if text is None else response(text))
        table["judge_response"] = table["question_id"].map(judge_replies or {})
        paths[task] = directory / f"{task}.parquet"
        write_table(table, paths[task], schema=schema)
    return paths


def fixture_png(image_id: str) -> bytes:
    """A 320 x 200 grey gradient with a bright square, different per image."""
    image = Image.linear_gradient("L").resize((320, 200)).convert("RGB")
    offset = 20 * int(image_id[-1])
    image.paste((255, 255, 255), (offset, 40, offset + 60, 100))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def write_image_shards(directory: Path, catalog: pd.DataFrame) -> list[Path]:
    """results/images/{source}/{shard}.parquet-like shards holding the catalog's images."""
    paths = []
    for (source, shard), group in catalog.groupby(["source", "shard"]):
        path = directory / "images" / source / f"{shard}.parquet"
        write_table(
            pd.DataFrame({"image_id": group["image_id"], "png": group["image_id"].map(fixture_png)}), path
        )
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Scored models plus every table the report rule feeds the script, on the metrics tests' benchmark."""
    directory = tmp_path_factory.mktemp("report")
    benchmark = write_benchmark(directory, diagnosis_predictions=MODEL_A_DIAGNOSIS)
    catalog = CATALOG.assign(levels=[["L4/L5", "L5/S1"], ["L1/L2"], [], ["L4/L5"], [], []], shard="000")
    write_table(catalog, benchmark["catalog_path"])
    for task, path in benchmark["questions_paths"].items():
        write_table(with_question_texts(read_table(path), task), path)
    predictions = {
        "model-a": write_predictions(
            directory / "model-a",
            MODEL_A_DIAGNOSIS,
            LOCALIZATION_PREDICTIONS,
            lambda text: f"{HOSTILE}\n{text}",
            {"dx-img2": JUDGE_REPLY},
        ),
        "model-b": write_predictions(directory / "model-b", MODEL_B_DIAGNOSIS, MODEL_B_LOCALIZATION),
    }
    scored = {
        model: run_score_script(
            directory / "metrics", benchmark | {"predictions_paths": predictions[model]}, model
        )
        for model in MODELS
    }
    leaderboard = directory / "leaderboard.json"
    runpy.run_path(
        str(REPO / "scripts" / "leaderboard.py"),
        init_globals={
            "snakemake": fake_snakemake(
                directory,
                input={"summaries": [str(scored[model]["summary"]) for model in MODELS]},
                output={
                    "csv": str(directory / "leaderboard.csv"),
                    "json": str(leaderboard),
                    "scores": str(directory / "scores"),
                },
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
    manifest = directory / "manifest.json"
    manifest.write_text(
        json.dumps(
            {
                "encoder": "tiny-siglip",
                "question_pool_version": 1,
                "seeds": {"subset": 20251014},
                "tables": {"diagnosis.parquet": {"sha256": "ab" * 32, "rows": 6, "columns": ["question_id"]}},
                "files": {"results/images/rsna/000.parquet": "cd" * 32},
            },
            indent=2,
        ),
        encoding="utf-8",
    )
    return {
        "directory": directory,
        "benchmark": benchmark,
        "predictions": predictions,
        "scored": scored,
        "leaderboard": leaderboard,
        "rejected": rejected,
        "manifest": manifest,
        "images": write_image_shards(directory, catalog),
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
            "scored": [str(inputs["scored"][model]["questions"]) for model in MODELS],
            "predictions": [
                str(inputs["predictions"][model][task])
                for model in MODELS
                for task in ("diagnosis", "localization")
            ],
            "manifest": str(inputs["manifest"]),
            "images": [str(path) for path in inputs["images"]],
        },
        output={name: str(path) for name, path in outputs.items()},
        params={
            "seeds": SEEDS,
            "split": "subset",
            "evaluation": EVALUATION,
            "mode": "build",
            "benchmark": BENCHMARK_PARAMS,
            "code_version": CODE_VERSION,
        },
    )
    runpy.run_path(str(REPO / "scripts" / "report.py"), init_globals={"snakemake": snakemake})
    return outputs


@pytest.fixture(scope="module")
def report(inputs, tmp_path_factory):
    outputs = run_report_script(inputs, tmp_path_factory.mktemp("out"))
    return {name: path.read_text(encoding="utf-8") for name, path in outputs.items()}


def without_data_uris(text: str) -> str:
    """The text with every base64 data URI cut down to its media type."""
    return re.sub(r"(data:[a-z/+]+;base64,)[A-Za-z0-9+/=]+", r"\1", text)


def data_uris(text: str, media_type: str) -> list[bytes]:
    """The decoded payloads of the text's base64 data URIs of `media_type`."""
    pattern = rf"data:{re.escape(media_type)};base64,([A-Za-z0-9+/=]+)"
    return [base64.b64decode(payload) for payload in re.findall(pattern, text)]


def test_html_is_self_contained(report):
    html = without_data_uris(report["html"])
    assert html.startswith("<!DOCTYPE html>") and "<style>" in html
    assert "Content-Security-Policy\" content=\"default-src 'none'; img-src data:;" in html
    assert not re.search(r"<(?:link|script|iframe|object|embed)\b", html, re.IGNORECASE)
    sources = re.findall(r"\bsrc\s*=\s*\"([^\"]*)\"", html, re.IGNORECASE)
    assert len(sources) == 9 and all(source.startswith("data:image/") for source in sources), sources
    assert all(link.startswith("#") for link in re.findall(r"\bhref\s*=\s*\"([^\"]*)\"", html, re.IGNORECASE))
    assert not re.search(r"url\(|@import|https?://", html, re.IGNORECASE)


def test_html_escapes_data(report):
    assert "unknown label &#39;Other&#39;" in report["html"]


def test_model_output_shows_as_text_in_both_formats(report):
    """A response holding markup is escaped wherever it is shown (examples and the audit)."""
    escaped = "Reasoning &lt;script&gt;window.__pwned = 1&lt;/script&gt;&lt;img src=x onerror="
    for text in report.values():
        assert "<script" not in text.lower() and "<img src=x" not in text
        assert text.count(escaped) >= 2
    assert '<pre class="response">' + escaped in report["html"]
    assert "<pre>\n" + escaped in report["markdown"]


def test_markdown_has_one_leaderboard_row_per_model(report):
    section = report["markdown"].split("## Leaderboard", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if re.match(r"^\| \d+ \|", line)]
    assert [row.split("|")[2].strip() for row in rows] == ["model-b", "model-a"]
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
    assert (
        "| ref | Gemini-2.5-pro (paper) | 32.37 | 9.35 | 48.61 | 63.55 | 20.86 | – | – | – |"
        in report["markdown"]
    )
    assert '<tr class="paper"><td class="num">ref</td><td>Gemini-2.5-pro (paper)</td>' in report["html"]


def test_report_sections_show_the_inputs(report, inputs):
    markdown = report["markdown"]
    summary = pd.read_json(inputs["scored"]["model-a"]["summary"], typ="series")
    overall = percent(summary["metrics"]["overall_accuracy"])
    diagnosis = percent(summary["metrics"]["diagnosis_accuracy"])
    assert (
        f"| 2 | model-a | {diagnosis} {percent_interval(summary['intervals']['diagnosis_accuracy'])} |"
        in markdown
    )
    assert f" {overall} {percent_interval(summary['intervals']['overall_accuracy'])} |" in markdown
    # Subset extraction paths of model-a's diagnoses: dx-img1 final phrase, dx-img2 judge, dx-img3 error,
    # dx-img4 missing; model-b's low-confidence reading gives its path a column.
    summaries = [json.loads(inputs["scored"][model]["summary"].read_text()) for model in MODELS]
    counts = {"final_phrase": 1, "judge": 1, "error": 1, "missing": 1}
    cells = " | ".join(str(counts.get(path, 0)) for path in extraction_paths(summaries))
    assert "low_confidence" in extraction_paths(summaries)
    assert f"| model-a | diagnosis | {cells} | 4 | 1 |" in markdown
    assert "| L1/L2 | 2 | 100.00 / 100.00 / 100.00 | 66.67 / 100.00 / 50.00 |" in markdown  # per level
    assert "#### model-a · diagnosis: 1 of 1 shown" in markdown  # the judged answer's audit
    assert "#### model-b · diagnosis: 1 of 1 shown" in markdown  # the low-confidence reading's
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


def load_answers(inputs) -> pd.DataFrame:
    """answers.answer_table over the fixture's two models, as the report script builds it."""
    benchmark = inputs["benchmark"]
    return answer_table(
        {model: read_table(inputs["scored"][model]["questions"]) for model in MODELS},
        {task: read_table(path) for task, path in benchmark["questions_paths"].items()},
    )


def load_responses(inputs, answers: pd.DataFrame, chosen=()) -> dict:
    """The raw responses the report shows (examples and audit), read as the report script reads them."""
    return read_responses(inputs["predictions"], responses_to_read(answers, chosen, MODELS))


def test_context_has_no_run_dependent_values(inputs):
    """Same inputs, same context: nothing (time, paths) that differs between runs enters the report."""
    benchmark = inputs["benchmark"]

    def context():
        catalog = read_table(benchmark["catalog_path"])
        subset = read_table(benchmark["subset_path"])
        examples = pick_examples(subset, seed=1)
        answers = load_answers(inputs)
        return build_report_context(
            title="t",
            seeds={"library": 1},
            split="subset",
            leaderboard=pd.read_json(inputs["leaderboard"]).to_dict(),
            summaries=[pd.read_json(inputs["scored"][m]["summary"], typ="series").to_dict() for m in MODELS],
            breakdowns=pd.concat(pd.read_csv(inputs["scored"][m]["breakdown"]) for m in MODELS),
            catalog=catalog,
            subset=subset,
            questions={task: read_table(path) for task, path in benchmark["questions_paths"].items()},
            rejected=load_rejected(inputs["rejected"]),
            paper=pd.read_csv(REPO / "resources" / "paper_table2.csv"),
            release=release_context(
                manifest={"tables": {}},
                manifest_sha256="0" * 64,
                code_version="v",
                mode="build",
                benchmark_params=None,
                evaluation={},
            ),
            answers=answers,
            responses=load_responses(inputs, answers, examples),
            examples=examples,
            example_images=read_images(
                catalog, inputs["images"], [qid.split("-", 1)[1] for _, qid in examples]
            ),
        )

    assert context() == context()


def test_release_is_named_in_both_formats(report, inputs):
    digest = hashlib.sha256(inputs["manifest"].read_bytes()).hexdigest()
    for text in report.values():
        assert digest in text and CODE_VERSION in text
        assert "subset.diagnosis_size" in text and "evaluate.judge" in text and "judge-model" in text
        assert "question_pool_version" in text and "diagnosis.parquet" in text and "abababababababab" in text
    assert "| `subset.diagnosis_size` | 4 |" in report["markdown"]
    assert "The params that define the benchmark (from the params.yaml):" in report["markdown"]
    assert "SHA-256 of 1 other released files" in report["markdown"]
    assert "| `evaluate.disease_definitions` | false |" in report["markdown"]


def test_release_context_in_release_mode_names_the_manifest_only():
    manifest = {
        "seeds": {"subset": 3},
        "encoder": "e",
        "tables": {"x.parquet": {"sha256": "f" * 64, "rows": 2}},
    }
    release = release_context(
        manifest=manifest,
        manifest_sha256="d" * 64,
        code_version="spinebench 0.1.0",
        mode="release",
        benchmark_params=None,
        evaluation={"split": "full", "judge": None},
    )
    assert release["benchmark_params"] is None and release["benchmark_params_source"] is None
    assert release["manifest"] == [{"key": "seeds.subset", "value": "3"}, {"key": "encoder", "value": "e"}]
    assert release["tables"] == [{"name": "x.parquet", "rows": 2, "sha256": "f" * 16}]
    assert release["files"] == 0
    assert release["evaluation"] == [{"key": "split", "value": "full"}, {"key": "judge", "value": "null"}]


def test_release_context_prefers_the_params_the_manifest_records():
    manifest = {
        "tables": {},
        "params": {"subset": {"diagnosis_size": 7}},
        "files": {"results/images/rsna/000.parquet": "a" * 64, "results/images/rsna/001.parquet": "b" * 64},
    }
    release = release_context(
        manifest=manifest,
        manifest_sha256="d" * 64,
        code_version="v",
        mode="build",
        benchmark_params={"subset": {"diagnosis_size": 9}},
        evaluation={},
    )
    assert release["benchmark_params"] == [{"key": "subset.diagnosis_size", "value": "7"}]
    assert release["benchmark_params_source"] == "manifest"
    assert release["files"] == 2 and release["manifest"] == []


def test_flatten_params_keeps_order_and_shows_leaves_as_json():
    params = {"b": {"x": [1, 2], "y": {"z": None}}, "a": "text", "c": {}}
    assert flatten_params(params) == [
        {"key": "b.x", "value": "[1, 2]"},
        {"key": "b.y.z", "value": "null"},
        {"key": "a", "value": "text"},
        {"key": "c", "value": "{}"},
    ]


def test_charts_are_deterministic_svg_without_date_or_version(report):
    charts = data_uris(report["html"], "image/svg+xml")
    assert len(charts) == 5  # two disease distributions, localization, a confusion matrix per model
    assert charts == data_uris(report["markdown"], "image/svg+xml")
    for svg in charts:
        root = ElementTree.fromstring(svg)
        assert root.tag == "{http://www.w3.org/2000/svg}svg"
        assert b"dc:date" not in svg and b"Matplotlib v" not in svg and b"<script" not in svg
    rows = [{"model": "m", "accuracy": 0.1, "precision": 0.5, "recall": 0.4, "intervals": {}}]
    references = [{"model": "p", "accuracy": 9.35, "precision": 48.61, "recall": 63.55}]
    assert figures.localization_chart(rows, references) == figures.localization_chart(rows, references)
    assert figures.localization_chart(rows, references) != figures.localization_chart(rows, [])


def test_confusion_matrices_count_answered_labels(inputs):
    confusion = confusion_matrices(load_answers(inputs), MODELS)
    assert confusion["truths"] == ["Foraminal stenosis", "Osteophytes", "Spinal canal stenosis"]
    assert confusion["answers"] == [
        "Disc space narrowing",
        "Foraminal stenosis",
        "Osteophytes",
        "Spinal canal stenosis",
        "No answer",
    ]
    # model-a: img1 right, img2 judged Osteophytes, img3 a failed request, img4 no prediction row.
    assert confusion["matrices"]["model-a"] == [[0, 1, 1, 0, 0], [0, 0, 0, 0, 1], [0, 0, 0, 0, 1]]
    assert confusion["matrices"]["model-b"] == [[1, 1, 0, 0, 0], [1, 0, 0, 0, 0], [0, 0, 0, 1, 0]]


def test_level_scores_are_hand_computed(inputs):
    """model-a on the subset: img1 A,C for A,C; img2 B,D for B; img3 C for A,C,E (A = L1/L2 ... E = L5/S1)."""
    scores = {(row["model"], row["level"]): row for row in level_scores(load_answers(inputs), MODELS)}
    assert scores[("model-a", "L1/L2")] == {
        "model": "model-a",
        "level": "L1/L2",
        "questions": 3,
        "truth": 2,
        "answered": 1,
        "accuracy": pytest.approx(2 / 3),
        "precision": 1.0,
        "recall": 0.5,
    }
    l4 = scores[("model-a", "L4/L5")]
    assert (l4["truth"], l4["answered"], l4["precision"], l4["recall"]) == (0, 1, 0.0, None)
    assert l4["accuracy"] == pytest.approx(2 / 3)


def test_examples_are_a_seeded_draw_from_the_subset(inputs):
    subset = read_table(inputs["benchmark"]["subset_path"])
    chosen = pick_examples(subset, seed=20251014)
    assert chosen == pick_examples(subset, seed=20251014)
    assert [task for task, _ in chosen] == ["diagnosis", "diagnosis", "localization", "localization"]
    assert {question for _, question in chosen} <= set(subset["question_id"])
    assert len(pick_examples(subset, seed=1, per_task=10)) == len(subset)
    draws = {tuple(pick_examples(subset, seed=seed)) for seed in range(20)}
    assert len(draws) > 1  # the seed matters


def test_example_images_are_small_jpegs_from_their_shards(inputs, report):
    photos = data_uris(report["html"], "image/jpeg")
    assert len(photos) == 4 and photos == data_uris(report["markdown"], "image/jpeg")
    for photo in photos:
        with Image.open(io.BytesIO(photo)) as image:
            assert image.format == "JPEG" and max(image.size) == 256
    catalog = read_table(inputs["benchmark"]["catalog_path"])
    images = read_images(catalog, inputs["images"], ["img1", "img4"])
    assert set(images) == {"img1", "img4"} and images["img1"] == fixture_png("img1")
    with pytest.raises(ValueError, match="vindr/000"):
        read_images(catalog, [path for path in inputs["images"] if "vindr" not in str(path)], ["img4"])


def test_audit_lists_the_answers_of_audit_paths_with_their_response(inputs):
    answers = load_answers(inputs)
    judged, low = audit_rows(answers, load_responses(inputs, answers), MODELS)
    assert (judged["model"], judged["task"], judged["total"]) == ("model-a", "diagnosis", 1)
    [row] = judged["rows"]
    assert row["question_id"] == "dx-img2" and row["extraction"] == "judge"
    assert row["response"].startswith(HOSTILE) and row["judge_response"] == JUDGE_REPLY
    assert (row["answer"], row["truth"], row["correct"]) == ("C: Osteophytes", "B: Foraminal stenosis", False)
    assert (low["model"], low["task"], low["total"]) == ("model-b", "diagnosis", 1)
    assert low["rows"][0]["extraction"] == "low_confidence" and low["rows"][0]["judge_response"] is None
    fallback = audit_rows(answers, {}, MODELS, paths=("fallback",), limit=0)
    assert [(g["model"], g["task"], g["total"], g["rows"]) for g in fallback] == [
        ("model-a", "localization", 1, []),
    ]


def test_judge_reply_is_shown_escaped_beside_the_response(report):
    escaped = "The answer is C &lt;script&gt;window.__pwned = 3&lt;/script&gt;\n[C]"
    assert "Judge's reply:\n\n<pre>\n" + escaped + "\n</pre>" in report["markdown"]
    assert '<pre class="response">' + escaped + "</pre>" in report["html"]


def test_only_the_responses_the_report_shows_are_read(inputs):
    answers = load_answers(inputs)
    wanted = responses_to_read(answers, [("localization", "loc-img3")], MODELS)
    assert wanted == {
        "model-a": {"diagnosis": ["dx-img2"], "localization": ["loc-img3"]},  # dx-img2: judged
        "model-b": {"diagnosis": ["dx-img4"], "localization": ["loc-img3"]},  # dx-img4: low confidence
    }
    responses = read_responses(inputs["predictions"], wanted)
    assert sorted(responses) == [
        ("model-a", "dx-img2"),
        ("model-a", "loc-img3"),
        ("model-b", "dx-img4"),
        ("model-b", "loc-img3"),
    ]
    assert responses[("model-b", "loc-img3")] == {
        "response": "My final option: [A,C,E]",
        "error": None,
        "judge_response": None,
    }
    assert responses_to_read(answers, [], MODELS, limit=0)["model-a"]["diagnosis"] == []


def test_extraction_paths_keep_unknown_ones_after_the_known():
    summaries = [{"extraction": {"diagnosis": {"final_phrase": 1, "text_low": 2}, "localization": {}}}]
    assert extraction_paths(summaries) == [*EXTRACTION_PATHS, "text_low"]


def test_describe_code_names_the_git_commit_or_the_package(tmp_path):
    assert describe_code(tmp_path) == f"spinebench {package_version()}"
    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@example.org"]
    subprocess.run([*git, "init", "-q"], check=True)
    (tmp_path / "file.txt").write_text("one\n", encoding="utf-8")
    subprocess.run([*git, "add", "file.txt"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "one"], check=True)
    assert re.fullmatch(r"git [0-9a-f]{7,}", describe_code(tmp_path))
    (tmp_path / "file.txt").write_text("two\n", encoding="utf-8")
    assert describe_code(tmp_path).endswith("-dirty")


def test_benchmark_params_leave_out_where_sources_live():
    config = {
        "seeds": {"subset": 1, "bootstrap": 2},
        "sources": {"rsna": {"path": "/data/rsna.zip", "shards": 4, "slice_policy": "labeled_instance"}},
        "subset": {"diagnosis_size": 10},
        "models": {"m": {"backend": "random"}},
    }
    assert benchmark_params(config) == {
        "seeds": {"subset": 1},
        "sources": {"rsna": {"slice_policy": "labeled_instance"}},
        "subset": {"diagnosis_size": 10},
    }


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
