"""The loader every export shares: splits, catalog columns, images streamed per shard, atomic folders."""

from __future__ import annotations

from dataclasses import replace

import pytest

from spinebench.exports.common import (
    benchmark_version,
    iter_question_images,
    split_questions,
    write_folder_atomically,
)
from tests.benchmark_fixture import export_inputs_of, write_tiny_benchmark


@pytest.fixture()
def tiny(tmp_path):
    paths = write_tiny_benchmark(tmp_path)
    inputs = export_inputs_of(paths)
    return paths, inputs


def test_split_questions_joins_catalog_columns_in_question_order(tiny):
    paths, inputs = tiny
    full = split_questions(inputs, "localization", "full")
    assert list(full["question_id"]) == sorted(paths["frames"]["localization"]["question_id"])
    assert list(full.loc[full["image_id"] == "rsna-1-2-3", "levels"].iloc[0]) == ["L3/L4", "L4/L5"]
    subset = split_questions(inputs, "diagnosis", "subset")
    wanted = paths["frames"]["subset"].query("task == 'diagnosis'")["question_id"]
    assert list(subset["question_id"]) == sorted(wanted)


def test_question_whose_image_is_not_in_the_catalog_is_named(tiny):
    _, inputs = tiny
    inputs = replace(inputs, catalog=inputs.catalog[inputs.catalog["image_id"] != "csxa-0001"])
    with pytest.raises(ValueError, match="diagnosis question dx-csxa-0001: its image is not in the catalog"):
        split_questions(inputs, "diagnosis", "full")


def test_images_come_with_their_question_in_order(tiny):
    paths, inputs = tiny
    questions = split_questions(inputs, "diagnosis", "full")
    pairs = list(iter_question_images(inputs, questions))
    assert [row["question_id"] for row, _ in pairs] == list(questions["question_id"])
    assert all(png == paths["pngs"][row["image_id"]] for row, png in pairs)


def test_benchmark_version_follows_the_manifest(tiny):
    _, inputs = tiny
    version = benchmark_version(inputs.manifest)
    assert len(version) == 12 and version == benchmark_version(dict(inputs.manifest))
    changed = dict(inputs.manifest, encoder="another")
    assert benchmark_version(changed) != version


def test_folder_written_atomically_or_not_at_all(tmp_path):
    target = tmp_path / "export"
    with write_folder_atomically(target) as staging:
        (staging / "a.txt").write_text("one")
    assert (target / "a.txt").read_text() == "one"
    with pytest.raises(RuntimeError), write_folder_atomically(target) as staging:
        (staging / "a.txt").write_text("two")
        raise RuntimeError("killed")
    assert (target / "a.txt").read_text() == "one"
    assert [path.name for path in tmp_path.iterdir()] == ["export"]
