"""Every stage on empty input: a source that keeps no image (say, label CSVs whose images are missing) leaves
empty tables with the contract's schema and a warning naming it, and the build goes on without it. Missing
images fail a source unless its `max_missing_image_share` accepts them (tests/test_source_faults.py); here
they are accepted (1), as for a labels-only download.

One test per stage function, then one workflow build whose RSNA source has the real CSVs but no DICOM.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from spinebench import vocab
from spinebench.backends import BackendContext, make_backend
from spinebench.catalog import (
    EmptyBenchmarkError,
    build_catalog_table,
    check_source_images,
    images_per_source,
)
from spinebench.distractors import DISTRACTORS_SCHEMA, LIBRARY_SCHEMA, assign_distractors, sample_library
from spinebench.embeddings import EMBEDDINGS_SCHEMA, embeddings_frame, load_embeddings
from spinebench.finalize import PREDICTIONS_SCHEMA, finalize, write_predictions
from spinebench.io import read_table, rejected_frame, write_table
from spinebench.journal import jsonl_path_for
from spinebench.metrics import leaderboard_metrics, leaderboard_table, score_model
from spinebench.predict import model_fingerprint, run_predictions
from spinebench.questions import (
    QUESTIONS_SCHEMA,
    load_pool,
    make_diagnosis_questions,
    make_localization_questions,
)
from spinebench.release import build_manifest
from spinebench.render import images_frame, render_shard
from spinebench.report import build_report_context, load_rejected, render_report
from spinebench.shards import select_shard
from spinebench.splits import select_questions
from spinebench.standardize import (
    MISSING_IMAGE_REASONS,
    STANDARDIZED_SCHEMA,
    standardize_source,
    standardized_frame,
)
from spinebench.subset import SUBSET_SCHEMA, select_subset
from spinebench.tables import IMAGES_SCHEMA
from spinebench.workflow import copy_workflow, edit_params, run_snakemake

REPO = Path(__file__).resolve().parents[1]
PARAMS = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
# Image files of the four sources; everything else in an archive is labels and metadata.
IMAGE_SUFFIXES = (".dcm", ".dicom", ".jpg", ".png")
# Why each source rejects a labelled item whose image file is absent (the start of the reason).


def without_images(archive: Path, destination: Path) -> Path:
    """A copy of a synthetic source folder with every image file left out, zips extracted (the layout of
    a download whose images are missing). CSXA's PNG zip becomes an empty datasets-PNG/ folder."""
    for path in sorted(archive.rglob("*")):
        relative = path.relative_to(archive)
        if path.is_dir() or path.name.lower().endswith(IMAGE_SUFFIXES):
            continue
        if path.name == "datasets-PNG.zip":
            (destination / relative.parent / "datasets-PNG").mkdir(parents=True, exist_ok=True)
        elif path.suffix == ".zip":
            # CSXA's JSON zip stays a part folder of its own; the other sources' zips hold the dataset root.
            folder = destination / relative.parent / (path.stem if path.stem == "datasets-JSON" else "")
            with zipfile.ZipFile(path) as bundle:
                for name in bundle.namelist():
                    if not name.endswith("/") and not name.lower().endswith(IMAGE_SUFFIXES):
                        (folder / name).parent.mkdir(parents=True, exist_ok=True)
                        (folder / name).write_bytes(bundle.read(name))
        else:
            (destination / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, destination / relative)
    return destination


def source_settings(source: str, **overrides) -> dict:
    """A source's standardization settings from params.yaml (placement keys dropped)."""
    settings = {k: v for k, v in PARAMS["sources"][source].items() if k not in ("path", "shards")}
    return settings | overrides


def standardize(source: str, archive: Path, settings: dict):
    return standardize_source(
        source,
        archive,
        REPO / "sql" / "standardize" / f"{source}.sql",
        REPO / "resources" / "label_maps" / f"{source}.csv",
        settings,
    )


def assert_written_with(frame: pd.DataFrame, schema: pa.Schema, path: Path) -> pd.DataFrame:
    """Write `frame` with the project's writer and `schema`; the file has exactly that schema. Read back."""
    write_table(frame, path, schema=schema)
    assert pq.read_schema(path).remove_metadata() == schema
    return read_table(path)


def empty_catalog(tmp_path: Path) -> pa.Table:
    """The catalog of one source that kept no image, as the catalog stage builds it."""
    standardized, shard = tmp_path / "standardized" / "rsna.parquet", tmp_path / "images" / "000.parquet"
    write_table(standardized_frame([]), standardized, schema=STANDARDIZED_SCHEMA)
    write_table(images_frame([]), shard, schema=IMAGES_SCHEMA)
    return build_catalog_table([standardized], [shard])


def empty_questions() -> pd.DataFrame:
    return QUESTIONS_SCHEMA.empty_table().to_pandas()


# ------------------------------------------------------------------------------------------------- writer


def test_the_writer_gives_an_empty_frame_its_schema_whatever_pandas_inferred(tmp_path):
    # pandas makes an empty column float64 whatever it was meant to hold, lists included.
    frame = pd.DataFrame({"image_id": [], "embedding": []})
    assert frame["embedding"].dtype == np.float64
    assert assert_written_with(frame, EMBEDDINGS_SCHEMA, tmp_path / "embeddings.parquet").empty
    with pytest.raises(KeyError, match="embedding"):
        write_table(frame.drop(columns="embedding"), tmp_path / "broken.parquet", schema=EMBEDDINGS_SCHEMA)


# -------------------------------------------------------------------------------------------- standardize


def test_standardized_frame_of_no_rows_writes_with_the_contract_schema(tmp_path):
    frame = standardized_frame([])
    assert list(frame.columns) == STANDARDIZED_SCHEMA.names and frame.empty
    assert frame["levels"].dtype == object and frame["source_labels"].dtype == object
    assert assert_written_with(frame, STANDARDIZED_SCHEMA, tmp_path / "rsna.parquet").empty


@pytest.mark.parametrize(
    ("source", "overrides"),
    [
        ("rsna", {}),
        ("rsna", {"slice_policy": "middle_slice"}),
        ("vindr", {}),
        ("buu", {}),
        ("csxa", {}),
    ],
)
def test_a_source_whose_images_are_all_missing_standardizes_to_empty_tables(
    synthetic_archives, tmp_path, caplog, source, overrides
):
    labels_only = without_images(synthetic_archives[source], tmp_path / source)
    with caplog.at_level(logging.WARNING, logger="spinebench.standardize"):
        table, rejected = standardize(
            source, labels_only, source_settings(source, max_missing_image_share=1, **overrides)
        )
    assert table.empty
    assert_written_with(table, STANDARDIZED_SCHEMA, tmp_path / "standardized.parquet")
    missing = rejected["reason"].str.startswith(MISSING_IMAGE_REASONS[source])
    assert missing.sum() > 0, rejected["reason"].value_counts()
    assert f"{source}: no image kept" in caplog.text


# ----------------------------------------------------------------------------------------- render, embed


def test_rendering_a_shard_of_no_rows_writes_an_empty_images_table(synthetic_archives, tmp_path):
    labels_only = without_images(synthetic_archives["rsna"], tmp_path / "rsna")
    rows = select_shard(standardized_frame([]), 1, 2)
    images, rejected = render_shard(rows, labels_only, "rsna", PARAMS["render"])
    assert images.empty and rejected.empty
    assert_written_with(images, IMAGES_SCHEMA, tmp_path / "images.parquet")


# Embeds an empty images table with the real encoder factory: calling it would import torch.
EMBED_NOTHING = """
import sys
import pandas as pd
from spinebench.embeddings import EncoderSettings, embed_with_store, encoder_fingerprint
from spinebench.io import write_table
from spinebench.embeddings import EMBEDDINGS_SCHEMA
from spinebench.store import Store

settings = EncoderSettings.from_params(PARAMS)
def make_embedder():
    from spinebench.embed import make_embedder
    return make_embedder(settings, 7, threads=1)
images = pd.DataFrame({"image_id": pd.Series([], dtype=object), "png": pd.Series([], dtype=object)})
frame = embed_with_store(images, encoder_fingerprint(settings, 7), Store(sys.argv[1]), make_embedder)
write_table(frame, sys.argv[2], schema=EMBEDDINGS_SCHEMA)
heavy = sorted(name for name in ("torch", "open_clip") if name in sys.modules)
assert not heavy, f"imported {heavy}"
"""


def test_embedding_no_images_writes_an_empty_shard_without_torch(tmp_path):
    code = EMBED_NOTHING.replace("PARAMS", repr(PARAMS["embed"]))
    shard = tmp_path / "000.parquet"
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "store"), str(shard)], check=True, cwd=REPO)
    assert pq.read_schema(shard).remove_metadata() == EMBEDDINGS_SCHEMA
    image_ids, matrix = load_embeddings([shard])
    assert image_ids == [] and matrix.shape == (0, 0)


def test_an_empty_shard_beside_a_full_one_loads_the_full_ones_embeddings(tmp_path):
    empty, full = tmp_path / "rsna-000.parquet", tmp_path / "vindr-000.parquet"
    write_table(embeddings_frame([], np.zeros((0, 0))), empty, schema=EMBEDDINGS_SCHEMA)
    write_table(embeddings_frame(["v1", "v2"], np.eye(2, 3)), full, schema=EMBEDDINGS_SCHEMA)
    image_ids, matrix = load_embeddings([empty, full])
    assert image_ids == ["v1", "v2"] and matrix.shape == (2, 3)


# ------------------------------------------------------------------------------------------------ catalog


def test_catalog_with_one_empty_source_keeps_the_others_and_warns(tmp_path, caplog):
    paths = {source: tmp_path / "standardized" / f"{source}.parquet" for source in ("rsna", "vindr")}
    write_table(standardized_frame([]), paths["rsna"], schema=STANDARDIZED_SCHEMA)
    vindr = {
        "image_id": "vindr-a",
        "source": "vindr",
        "modality": "X-ray",
        "region": "spine",
        "disease": "Osteophytes",
        "levels": [],
        "member": "train_images/a.dicom",
        "view": None,
        "study_id": "a",
        "series_id": None,
        "instance_number": None,
        "source_labels": ["Osteophytes"],
    }
    write_table(standardized_frame([vindr]), paths["vindr"], schema=STANDARDIZED_SCHEMA)
    shards = [tmp_path / "images" / "rsna" / "000.parquet", tmp_path / "images" / "vindr" / "000.parquet"]
    write_table(images_frame([]), shards[0], schema=IMAGES_SCHEMA)
    image = {"image_id": "vindr-a", "png": b"png", "png_sha256": "0" * 64, "width": 4, "height": 3}
    image |= {"variance": 0.1, "laplacian_variance": 0.1, "contrast": 0.5}
    write_table(images_frame([image]), shards[1], schema=IMAGES_SCHEMA)

    catalog = build_catalog_table(list(paths.values()), shards)
    assert catalog["image_id"].to_pylist() == ["vindr-a"]
    counts = images_per_source(list(paths.values()), catalog)
    assert counts == {"rsna": 0, "vindr": 1}
    with caplog.at_level(logging.WARNING, logger="spinebench.catalog"):
        check_source_images(counts)
    assert "rsna: no rendered image" in caplog.text and "vindr" not in caplog.text


def test_catalog_without_any_image_is_empty_and_stops_the_build_naming_why(tmp_path):
    catalog = empty_catalog(tmp_path)
    assert catalog.num_rows == 0 and catalog.schema.field("levels").type == pa.list_(pa.string())
    with pytest.raises(EmptyBenchmarkError, match=r"no source has a rendered image \(rsna\)"):
        check_source_images(images_per_source([tmp_path / "standardized" / "rsna.parquet"], catalog))


# ------------------------------------------------------------------------------------ distractors, questions


def test_distractors_of_an_empty_catalog_are_empty_tables(tmp_path):
    catalog = empty_catalog(tmp_path).to_pandas()
    library = sample_library(catalog, per_disease=200, seed=1)
    distractors = assign_distractors(catalog, library, [], np.zeros((0, 0), dtype=np.float32), count=3)
    assert library.empty and distractors.empty
    assert_written_with(library, LIBRARY_SCHEMA, tmp_path / "library.parquet")
    assert_written_with(distractors, DISTRACTORS_SCHEMA, tmp_path / "distractors.parquet")


def test_distractors_without_enough_diseases_name_the_diseases_the_library_has():
    # Only RSNA's three diseases left (every other source empty): a 5-option question cannot be built.
    diseases = ["Foraminal stenosis", "Subarticular stenosis", "Spinal canal stenosis"]
    catalog = pd.DataFrame({"image_id": ["a", "b", "c"], "disease": diseases})
    library = sample_library(catalog, per_disease=200, seed=1)
    with pytest.raises(ValueError, match="library has images of 3 disease"):
        assign_distractors(catalog, library, ["a", "b", "c"], np.eye(3, dtype=np.float32), count=3)


def test_questions_of_an_empty_catalog_are_empty_tables(tmp_path):
    catalog = empty_catalog(tmp_path).to_pandas()
    distractors = DISTRACTORS_SCHEMA.empty_table().to_pandas()
    pool = load_pool(REPO / PARAMS["questions"]["pool"])
    diagnosis = make_diagnosis_questions(catalog, distractors, pool, seed=1)
    localization = make_localization_questions(catalog, pool, seed=1)
    for task, questions in (("diagnosis", diagnosis), ("localization", localization)):
        assert questions.empty
        assert_written_with(questions, QUESTIONS_SCHEMA, tmp_path / f"{task}.parquet")


# ----------------------------------------------------------------------------------------------- subset


def test_subset_of_no_questions_is_empty_and_warns(tmp_path, caplog):
    catalog = empty_catalog(tmp_path).to_pandas()
    with caplog.at_level(logging.WARNING, logger="spinebench.subset"):
        subset = select_subset(catalog, empty_questions(), empty_questions(), PARAMS["subset"], seed=1)
    assert subset.empty
    assert_written_with(subset, SUBSET_SCHEMA, tmp_path / "subset.parquet")
    assert "the benchmark has no diagnosis question" in caplog.text
    assert "the benchmark has no localization question" in caplog.text


# ---------------------------------------------------------------------------------------------- predict


@pytest.mark.parametrize("split", ["subset", "full"])
def test_predicting_no_question_writes_an_empty_predictions_table(tmp_path, caplog, split):
    questions = select_questions(
        empty_questions(), SUBSET_SCHEMA.empty_table().to_pandas(), "diagnosis", split
    )
    backend = make_backend("random", {"backend": "random"}, BackendContext("random", seed=1))
    output = tmp_path / "random" / "diagnosis.parquet"
    prompt_files = {
        "templates_dir": REPO / "templates" / "prompts",
        "definitions_path": REPO / "resources" / "disease_definitions.yaml",
    }
    fingerprint = model_fingerprint(backend)
    summary = run_predictions(
        questions,
        None,
        backend,
        jsonl_path_for(output),
        fingerprint,
        task="diagnosis",
        definitions=False,
        **prompt_files,
    )
    assert summary.planned == summary.attempted == 0
    assert "random/diagnosis: no question to predict" in caplog.text
    frame = finalize(
        questions, jsonl_path_for(output), fingerprint, task="diagnosis", definitions=False, **prompt_files
    )
    write_predictions(frame, output)
    assert pq.read_schema(output).remove_metadata() == PREDICTIONS_SCHEMA
    assert read_table(output).empty


# ------------------------------------------------------------------------------- metrics, leaderboard, report


@pytest.fixture
def empty_scores(tmp_path):
    """One model scored on a benchmark without questions (every table empty, with its schema)."""
    paths = {"catalog_path": tmp_path / "images.parquet", "subset_path": tmp_path / "subset.parquet"}
    write_table(empty_catalog(tmp_path), paths["catalog_path"])
    write_table(SUBSET_SCHEMA.empty_table(), paths["subset_path"])
    paths["questions_paths"] = {task: tmp_path / f"{task}.parquet" for task in vocab.TASKS}
    paths["predictions_paths"] = {task: tmp_path / "model" / f"{task}.parquet" for task in vocab.TASKS}
    for task in vocab.TASKS:
        write_table(QUESTIONS_SCHEMA.empty_table(), paths["questions_paths"][task])
        write_table(PREDICTIONS_SCHEMA.empty_table(), paths["predictions_paths"][task])
    return score_model(**paths, split="subset", bootstrap_samples=50, confidence=0.95, seed=1)


def test_scoring_no_prediction_gives_null_metrics(empty_scores, caplog):
    warnings = [record.getMessage() for record in caplog.get_records("setup")]
    assert "no localization question counts under split 'subset': its metrics are null" in warnings
    summary = empty_scores.summary
    assert summary["questions"] == {"diagnosis": 0, "localization": 0} and summary["images"] == 0
    assert set(summary["metrics"].values()) == {None} and set(summary["intervals"].values()) == {None}
    assert empty_scores.breakdown.empty and empty_scores.questions.num_rows == 0


def test_leaderboard_of_models_without_questions_ranks_them_by_name(empty_scores):
    summaries = [{"model": name, **empty_scores.summary} for name in ("b-model", "a-model")]
    table = leaderboard_table(summaries)
    assert table["model"].tolist() == ["a-model", "b-model"] and table["rank"].tolist() == [1, 2]
    metrics = leaderboard_metrics(table)
    assert metrics["a-model"]["overall_accuracy"] is None and metrics["a-model"]["diagnosis_questions"] == 0


def test_report_of_an_empty_benchmark_renders_and_lists_the_rejected_images(empty_scores, tmp_path):
    rejected = tmp_path / "rejected" / "rsna.parquet"
    rows = [{"source": "rsna", "item": f"1,{n}", "file": "train_label_coordinates.csv"} for n in (2, 3)]
    write_table(rejected_frame([row | {"reason": "missing image"} for row in rows]), rejected)
    summary = {"model": "random", **empty_scores.summary}
    table = leaderboard_table([summary])
    breakdown = empty_scores.breakdown.assign(model="random")
    context = build_report_context(
        title="empty",
        seeds={"library": 1},
        split="subset",
        leaderboard=leaderboard_metrics(table),
        summaries=[summary],
        breakdowns=breakdown[["model", *empty_scores.breakdown.columns]],
        catalog=empty_catalog(tmp_path).to_pandas(),
        subset=SUBSET_SCHEMA.empty_table().to_pandas(),
        questions={task: empty_questions() for task in vocab.TASKS},
        rejected=load_rejected([rejected]),
        paper=pd.read_csv(REPO / "resources" / "paper_table2.csv"),
    )
    templates = REPO / "templates" / "report"
    html, markdown = render_report(context, templates / "report.html.j2", templates / "report.md.j2")
    assert context["dataset"]["images"] == 0 and context["dataset"]["rejected_total"] == 2
    assert "missing image" in markdown and "missing image" in html


def test_manifest_of_empty_tables_counts_zero_rows(tmp_path):
    tables = [tmp_path / "subset.parquet", tmp_path / "diagnosis.parquet"]
    write_table(SUBSET_SCHEMA.empty_table(), tables[0])
    write_table(QUESTIONS_SCHEMA.empty_table(), tables[1])
    manifest = build_manifest([str(path) for path in tables], {"subset": 1}, "tiny-siglip", 1)
    assert {name: entry["rows"] for name, entry in manifest["tables"].items()} == {
        "diagnosis.parquet": 0,
        "subset.parquet": 0,
    }


# ---------------------------------------------------------------------------------------------- workflow


def labels_only_rsna_build(params: dict, rsna_path: Path) -> None:
    """RSNA read from a folder of its real CSVs without images; the other sources small and synthetic."""
    params["sources"]["rsna"]["path"] = str(rsna_path)
    params["sources"]["rsna"]["max_missing_image_share"] = 1
    params["synthetic"]["demo"].update(vindr_images=30, buu_cases=6, csxa_images=24)
    params["sources"]["vindr"]["shards"] = 1


@pytest.mark.workflow
def test_demo_builds_when_one_source_keeps_no_image(synthetic_archives, tiny_counts, tmp_path):
    rsna = without_images(synthetic_archives["rsna"], tmp_path / "rsna-labels-only")
    (tmp_path / "workflow").mkdir()
    workdir = copy_workflow(tmp_path / "workflow")
    edit_params(workdir, lambda params: labels_only_rsna_build(params, rsna))
    run_snakemake(workdir)

    assert read_table(workdir / "results/standardized/rsna.parquet").empty
    rejected = read_table(workdir / "results/rejected/rsna.parquet")
    # Every labelled RSNA image (and the missing-image decoy) is rejected because its DICOM is missing.
    assert (rejected["reason"] == "missing image").sum() >= tiny_counts["rsna_images"]
    catalog = read_table(workdir / "results/benchmark/images.parquet")
    assert len(catalog) > 0 and "rsna" not in set(catalog["source"])
    assert "rsna: no image kept" in (workdir / "logs/standardize/rsna.log").read_text()
    assert "rsna: no rendered image" in (workdir / "logs/catalog.log").read_text()
    report = (workdir / "results/report/report.md").read_text()
    assert "missing image" in report
    assert (workdir / "results/report/report.html").stat().st_size > 0
