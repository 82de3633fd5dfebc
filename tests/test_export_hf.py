"""The Hugging Face export: `datasets` loads it (offline) with the benchmark's rows, an Image feature and the
benchmark's PNGs; the card describes it; the bytes are the same on every run."""

from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from spinebench.exports.common import SPLITS, split_questions
from spinebench.exports.hf import HFExportError, export_hf
from spinebench.vocab import LETTERS, TASKS
from tests.benchmark_fixture import export_inputs_of, run_export_scripts, write_tiny_benchmark

REPO = Path(__file__).resolve().parents[1]
CARD = REPO / "templates" / "exports" / "hf_card.md.j2"
SOURCE_NOTES = REPO / "resources" / "exports" / "sources.yaml"
ROWS_PER_FILE = 3


@pytest.fixture(scope="module")
def datasets():
    """The `datasets` library, imported offline (it reads these settings when imported): never the Hub."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        patch.setenv("HF_DATASETS_OFFLINE", "1")
        yield pytest.importorskip("datasets")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The tiny benchmark and its export (3 questions a file, so that splits have several files)."""
    root = tmp_path_factory.mktemp("hf")
    paths = write_tiny_benchmark(root)
    inputs = export_inputs_of(paths)
    folder = root / "results" / "exports" / "hf"
    splits = export_hf(inputs, folder, ROWS_PER_FILE, CARD, SOURCE_NOTES)
    return {"paths": paths, "inputs": inputs, "folder": folder, "splits": splits, "cache": root / "cache"}


def expected_features(datasets):
    return datasets.Features(
        {
            "question_id": datasets.Value("string"),
            "image_id": datasets.Value("string"),
            "image": datasets.Image(),
            "question": datasets.Value("string"),
            "options": datasets.List(datasets.Value("string")),
            "answer": datasets.Value("string"),
            "answer_texts": datasets.List(datasets.Value("string")),
            "source": datasets.Value("string"),
            "modality": datasets.Value("string"),
            "region": datasets.Value("string"),
            "disease": datasets.Value("string"),
            "levels": datasets.List(datasets.Value("string")),
            "width": datasets.Value("int32"),
            "height": datasets.Value("int32"),
            "png_sha256": datasets.Value("string"),
        }
    )


def test_splits_are_cut_into_files_named_like_the_hub(exported):
    for files in exported["splits"]:
        count = -(-files.rows // ROWS_PER_FILE)
        assert files.files == tuple(
            f"{files.config}/{files.split}-{index:05d}-of-{count:05d}.parquet" for index in range(count)
        )
    written = sorted(
        path.relative_to(exported["folder"]).as_posix() for path in exported["folder"].rglob("*")
    )
    listed = sorted(name for files in exported["splits"] for name in files.files)
    assert written == sorted(["README.md", "diagnosis", "localization", *listed])


@pytest.mark.parametrize("task", TASKS)
def test_the_folder_loads_with_the_benchmark_rows_and_an_image_feature(datasets, exported, task):
    dataset = datasets.load_dataset(str(exported["folder"]), task, cache_dir=str(exported["cache"]))
    assert set(dataset) == set(SPLITS)
    for split in SPLITS:
        questions = split_questions(exported["inputs"], task, split)
        assert dataset[split].features == expected_features(datasets)
        assert dataset[split]["question_id"] == list(questions["question_id"])
    row, question = dataset["full"][0], split_questions(exported["inputs"], task, "full").iloc[0]
    assert row["options"] == [question[f"option_{letter.lower()}"] for letter in LETTERS]
    assert row["answer"] == question["answer"]
    assert row["answer_texts"] == [
        row["options"][LETTERS.index(letter)] for letter in question["answer"].split(",")
    ]
    assert row["levels"] == list(question["levels"]) and row["png_sha256"] == question["png_sha256"]


def test_a_decoded_image_is_the_benchmark_png(datasets, exported):
    dataset = datasets.load_dataset(
        "parquet",
        data_files={"subset": str(exported["folder"] / "localization" / "subset-*.parquet")},
        split="subset",
        cache_dir=str(exported["cache"]),
    )
    # The Parquet schema metadata alone (no card) makes `image` an Image feature.
    assert isinstance(dataset.features["image"], datasets.Image)
    row = dataset[1]
    png = exported["paths"]["pngs"][row["image_id"]]
    assert np.array_equal(np.asarray(row["image"]), np.asarray(Image.open(io.BytesIO(png))))
    raw = dataset.cast_column("image", datasets.Image(decode=False))[1]["image"]
    assert raw["bytes"] == png and raw["path"] == f"{row['image_id']}.png"


def test_the_card_metadata_matches_the_files(exported):
    text = (exported["folder"] / "README.md").read_text(encoding="utf-8")
    _, metadata, body = text.split("---\n", 2)
    metadata = yaml.safe_load(metadata)
    rows = {(files.config, files.split): files.rows for files in exported["splits"]}
    assert [config["config_name"] for config in metadata["configs"]] == list(TASKS)
    for config, info in zip(metadata["configs"], metadata["dataset_info"], strict=True):
        assert config["data_files"] == [
            {"split": split, "path": f"{config['config_name']}/{split}-*.parquet"} for split in SPLITS
        ]
        assert {split["name"]: split["num_examples"] for split in info["splits"]} == {
            split: rows[(config["config_name"], split)] for split in SPLITS
        }
        assert {"name": "image", "dtype": "image"} in info["features"]
    assert metadata["license"] == "other" and metadata["size_categories"] == ["n<1K"]
    assert "eprint        = {2510.12267}" in body
    for name in ("RSNA 2024 Lumbar Spine", "VinDr-SpineXR", "BUU-LSPINE", "Cervical Spine X-ray Atlas"):
        assert f"### {name}" in body
    assert body.count("Licence **not verified**") == 4
    assert "this build holds VinDr-SpineXR images, so it must not be published" in body


def test_the_card_shows_the_build_params_of_the_manifest(exported, tmp_path):
    manifest = {
        **exported["inputs"].manifest,
        "params": {"subset": {"diagnosis": 1758}, "seeds": {"subset": 9}},
    }
    export_hf(replace(exported["inputs"], manifest=manifest), tmp_path / "hf", 50, CARD, SOURCE_NOTES)
    card = (tmp_path / "hf" / "README.md").read_text(encoding="utf-8")
    assert "```yaml\nseeds:\n  subset: 9\nsubset:\n  diagnosis: 1758\n```" in card
    # 50 questions a file: one file per split.
    names = sorted(path.name for path in (tmp_path / "hf" / "diagnosis").iterdir())
    assert names == ["full-00000-of-00001.parquet", "subset-00000-of-00001.parquet"]


def test_the_export_is_byte_identical_when_rebuilt(exported, tmp_path):
    again = tmp_path / "hf"
    export_hf(exported["inputs"], again, ROWS_PER_FILE, CARD, SOURCE_NOTES)
    for path in exported["folder"].rglob("*.*"):
        assert (again / path.relative_to(exported["folder"])).read_bytes() == path.read_bytes(), path


def test_a_split_without_questions_is_left_out(datasets, exported, tmp_path):
    inputs = exported["inputs"]
    inputs = replace(inputs, subset=inputs.subset[inputs.subset["task"] == "diagnosis"])
    export_hf(inputs, tmp_path / "hf", ROWS_PER_FILE, CARD, SOURCE_NOTES)
    dataset = datasets.load_dataset(str(tmp_path / "hf"), "localization", cache_dir=str(tmp_path / "cache"))
    assert set(dataset) == {"full"}
    assert "no questions in localization/subset" in (tmp_path / "hf" / "README.md").read_text(
        encoding="utf-8"
    )


def test_bad_settings_and_notes_are_named(exported, tmp_path):
    inputs = exported["inputs"]
    with pytest.raises(HFExportError, match="rows_per_file must be a positive integer, not 0"):
        export_hf(inputs, tmp_path / "a", 0, CARD, SOURCE_NOTES)
    notes = yaml.safe_load(SOURCE_NOTES.read_text(encoding="utf-8"))
    del notes["sources"]["csxa"]
    notes_path = tmp_path / "sources.yaml"
    notes_path.write_text(yaml.safe_dump(notes), encoding="utf-8")
    with pytest.raises(HFExportError, match=f"{notes_path}: no notes for source 'csxa'"):
        export_hf(inputs, tmp_path / "b", 5, CARD, notes_path)
    diagnosis = inputs.questions["diagnosis"].copy()
    diagnosis.loc[diagnosis["question_id"] == "dx-csxa-0001", "answer"] = "F"
    broken = replace(inputs, questions={**inputs.questions, "diagnosis": diagnosis})
    with pytest.raises(HFExportError, match="question dx-csxa-0001: answer 'F' names no option letter"):
        export_hf(broken, tmp_path / "c", 5, CARD, SOURCE_NOTES)
    assert not (tmp_path / "c").exists()


def test_the_scripts_link_the_split_parts_into_the_same_folder(exported, tmp_path):
    paths = exported["paths"]
    output = tmp_path / "exports" / "hf"
    parts = run_export_scripts(
        paths,
        tmp_path,
        "hf",
        output,
        rows_per_file=ROWS_PER_FILE,
        catalog=paths["catalog"],
        manifest=paths["manifest"],
        card=CARD,
        sources=SOURCE_NOTES,
    )

    def contents(root: Path) -> dict[str, bytes]:
        return {str(path.relative_to(root)): path.read_bytes() for path in root.rglob("*") if path.is_file()}

    assert contents(output) == contents(exported["folder"])
    # The Parquet files are the parts' own, linked: the export folder costs no second copy of the images.
    for split, part in zip(SPLITS, parts, strict=True):
        for file in Path(part).rglob("*.parquet"):
            assert file.samefile(output / file.relative_to(part)), (split, file)
