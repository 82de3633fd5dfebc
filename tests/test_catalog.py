"""The catalog: standardized rows joined with rendered image metadata."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from spinebench import catalog as catalog_module
from spinebench.catalog import build_catalog, build_catalog_table
from spinebench.io import write_table
from spinebench.render import IMAGES_SCHEMA
from spinebench.standardize import STANDARDIZED_SCHEMA


def standardized_rows(source: str, ids: list[str], levels: list[list[str]] | None = None) -> pa.Table:
    levels = levels or [[] for _ in ids]
    return pa.table(
        {
            "image_id": ids,
            "source": [source] * len(ids),
            "modality": ["MRI"] * len(ids),
            "region": ["lumbar"] * len(ids),
            "disease": ["Foraminal stenosis"] * len(ids),
            "levels": levels,
            "member": [f"{i}.dcm" for i in ids],
            "view": [None] * len(ids),
            "study_id": ["1"] * len(ids),
            "series_id": ["2"] * len(ids),
            "instance_number": [str(n) for n in range(len(ids))],
            "source_labels": [["Left Neural Foraminal Narrowing"]] * len(ids),
        },
        schema=STANDARDIZED_SCHEMA,
    )


def image_rows(ids: list[str]) -> pa.Table:
    return pa.table(
        {
            "image_id": ids,
            "png": [b"\x89PNG fake " + i.encode() for i in ids],
            "png_sha256": [hashlib.sha256(b"\x89PNG fake " + i.encode()).hexdigest() for i in ids],
            "width": [64] * len(ids),
            "height": [48] * len(ids),
            "variance": [0.01 * (n + 1) for n in range(len(ids))],
            "laplacian_variance": [0.001] * len(ids),
            "contrast": [0.2] * len(ids),
        },
        schema=IMAGES_SCHEMA,
    )


@pytest.fixture
def layout(tmp_path: Path):
    """Two sources; rsna has two shards and one image (rsna-c) rejected at render time."""
    standardized = {
        "rsna": standardized_rows(
            "rsna", ["rsna-b", "rsna-a", "rsna-c", "rsna-d"], [["L4/L5"], [], ["L1/L2"], []]
        ),
        "buu": standardized_rows("buu", ["buu-1", "buu-2"]),
    }
    shards = {
        "rsna/000": ["rsna-a", "rsna-b"],
        "rsna/001": ["rsna-d"],
        "buu/000": ["buu-2", "buu-1"],
    }
    standardized_paths, shard_paths = [], []
    for source, table in standardized.items():
        standardized_paths.append(tmp_path / "standardized" / f"{source}.parquet")
        write_table(table, standardized_paths[-1])
    for name, ids in shards.items():
        shard_paths.append(tmp_path / "images" / f"{name}.parquet")
        write_table(image_rows(ids), shard_paths[-1])
    return standardized_paths, shard_paths


def test_catalog_joins_metadata_and_skips_rejected_images(layout):
    standardized_paths, shard_paths = layout
    catalog = build_catalog(standardized_paths, shard_paths)
    assert catalog["image_id"].tolist() == ["buu-1", "buu-2", "rsna-a", "rsna-b", "rsna-d"]
    assert list(catalog.columns) == [
        *STANDARDIZED_SCHEMA.names,
        "shard",
        "png_sha256",
        "width",
        "height",
        "variance",
        "laplacian_variance",
        "contrast",
    ]
    assert catalog.set_index("image_id")["shard"].to_dict() == {
        "buu-1": "000",
        "buu-2": "000",
        "rsna-a": "000",
        "rsna-b": "000",
        "rsna-d": "001",
    }
    by_id = catalog.set_index("image_id")
    assert list(by_id.at["rsna-b", "levels"]) == ["L4/L5"]
    assert by_id.at["buu-1", "variance"] == pytest.approx(0.02)  # second row of its shard
    assert "png" not in catalog.columns


def test_catalog_table_keeps_input_types(layout):
    table = build_catalog_table(*layout)
    assert table.schema.field("levels").type == pa.list_(pa.string())
    assert table.schema.field("width").type == pa.int32()
    assert table.schema.field("shard").type == pa.string()


def test_png_column_is_never_read(layout, monkeypatch):
    requested = []
    real_read_table = pq.read_table

    def spy(path, *args, columns=None, **kwargs):
        if "images" in str(path):
            requested.append(columns)
        return real_read_table(path, *args, columns=columns, **kwargs)

    monkeypatch.setattr(catalog_module.pq, "read_table", spy)
    build_catalog(*layout)
    assert requested and all(columns is not None and "png" not in columns for columns in requested)


def test_image_without_standardized_row_is_named(layout, tmp_path):
    standardized_paths, shard_paths = layout
    extra = tmp_path / "images" / "rsna" / "002.parquet"
    write_table(image_rows(["rsna-zz"]), extra)
    with pytest.raises(ValueError, match="without a standardized row: rsna-zz"):
        build_catalog(standardized_paths, [*shard_paths, extra])


def test_duplicate_image_ids_are_named(layout, tmp_path):
    standardized_paths, shard_paths = layout
    duplicate = tmp_path / "images" / "rsna" / "002.parquet"
    write_table(image_rows(["rsna-a"]), duplicate)
    with pytest.raises(ValueError, match="duplicate image_id.*image shards: rsna-a"):
        build_catalog(standardized_paths, [*shard_paths, duplicate])

    twice = tmp_path / "standardized" / "again.parquet"
    write_table(standardized_rows("buu", ["buu-2"]), twice)
    with pytest.raises(ValueError, match="duplicate image_id.*standardized tables: buu-2"):
        build_catalog([*standardized_paths, twice], shard_paths)


def test_shard_lacking_metrics_is_named(layout, tmp_path):
    standardized_paths, shard_paths = layout
    broken = tmp_path / "images" / "rsna" / "009.parquet"
    write_table(image_rows(["rsna-c"]).drop_columns(["contrast"]), broken)
    with pytest.raises(ValueError, match=r"009\.parquet: image shard lacks column\(s\) contrast"):
        build_catalog(standardized_paths, [*shard_paths, broken])


def test_catalog_bytes_are_deterministic(layout, tmp_path):
    standardized_paths, shard_paths = layout
    write_table(build_catalog_table(standardized_paths, shard_paths), tmp_path / "a.parquet")
    write_table(build_catalog_table(standardized_paths[::-1], shard_paths[::-1]), tmp_path / "b.parquet")
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes()
