"""Rendering shards: PNG format, size limits, quality columns, rejections, byte-identical output."""

from __future__ import annotations

import io
import runpy
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from spinebench.io import read_table, write_table
from spinebench.quality import image_quality
from spinebench.render import IMAGES_SCHEMA, fitted_size, render_rows, render_shard
from tests.test_decode import dicom_bytes, raster_bytes

REPO = Path(__file__).resolve().parents[1]
SETTINGS = {
    "max_side": 64,
    "mr_percentiles": [1, 99],
    "xray_windowing": "dicom",
    "xray_percentiles": [0.5, 99.5],
}


def smooth_image(height: int, width: int, seed: int, top: int) -> np.ndarray:
    """A deterministic smooth pattern plus noise with values 0..top, like a small radiograph or MR slice."""
    rows, columns = np.mgrid[0:height, 0:width]
    pattern = np.sin(columns / 7.0) * np.cos(rows / 11.0)
    noise = np.random.default_rng(seed).normal(0.0, 0.1, size=(height, width))
    return np.clip((pattern + noise + 1.2) / 2.4 * top, 0, top)


def rsna_folder(root: Path) -> Path:
    """An extracted RSNA-layout folder with two MR slices (train.csv marks the dataset root)."""
    folder = root / "rsna"
    (folder / "train_images" / "1" / "2").mkdir(parents=True)
    (folder / "train.csv").write_text("study_id\n1\n")
    wide = smooth_image(90, 150, seed=1, top=2000).astype(np.uint16)  # larger than max_side: downscaled
    small = smooth_image(40, 30, seed=2, top=900).astype(np.uint16)  # smaller: kept as is
    (folder / "train_images/1/2/1.dcm").write_bytes(dicom_bytes(wide))
    (folder / "train_images/1/2/2.dcm").write_bytes(dicom_bytes(small))
    (folder / "train_images/1/2/3.dcm").write_bytes(dicom_bytes(small)[:-200])  # truncated: corrupt
    return folder


def rsna_rows() -> pd.DataFrame:
    # Deliberately not in image_id order: the output must be.
    return pd.DataFrame(
        {
            "image_id": ["rsna-1-2-2", "rsna-1-2-1", "rsna-1-2-3", "rsna-1-2-4", "rsna-1-2-5"],
            "modality": ["MRI"] * 5,
            "member": [
                "train_images/1/2/2.dcm",
                "train_images/1/2/1.dcm",
                "train_images/1/2/3.dcm",
                "train_images/1/2/4.dcm",  # not in the archive
                None,  # no member at all
            ],
        }
    )


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ((1000, 500), (64, 32)),
        ((500, 1000), (32, 64)),
        ((30, 40), (30, 40)),  # smaller images are not enlarged
        ((64, 64), (64, 64)),
        ((1000, 3), (64, 1)),  # never rounds a side down to zero
        ((150, 90), (64, 38)),  # 90 * 64 / 150 = 38.4
    ],
)
def test_fitted_size(size, expected):
    assert fitted_size(*size, 64) == expected


def test_render_shard_renders_sizes_and_quality(tmp_path):
    images, rejected = render_shard(rsna_rows(), rsna_folder(tmp_path), "rsna", SETTINGS)
    assert images["image_id"].tolist() == ["rsna-1-2-1", "rsna-1-2-2"]
    assert list(images.columns) == IMAGES_SCHEMA.names
    assert images[["width", "height"]].values.tolist() == [[64, 38], [30, 40]]
    for row in images.itertuples():
        png = Image.open(io.BytesIO(row.png))
        assert png.format == "PNG" and png.mode == "RGB" and png.size == (row.width, row.height)
        assert not png.info  # no metadata chunks
        rgb = np.asarray(png)
        assert (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()
        quality = image_quality(rgb[..., 0])
        assert (row.variance, row.laplacian_variance, row.contrast) == (
            quality["variance"],
            quality["laplacian_variance"],
            quality["contrast"],
        )
        assert row.variance > 0.01  # the percentile window spreads the slice over the grey range


def test_unrenderable_rows_are_rejected_with_reasons(tmp_path):
    images, rejected = render_shard(rsna_rows(), rsna_folder(tmp_path), "rsna", SETTINGS)
    assert rejected.columns.tolist() == ["source", "item", "file", "reason"]
    assert rejected["source"].tolist() == ["rsna"] * 3
    assert rejected["item"].tolist() == ["rsna-1-2-3", "rsna-1-2-4", "rsna-1-2-5"]
    assert rejected["file"].tolist() == ["train_images/1/2/3.dcm", "train_images/1/2/4.dcm", ""]
    reasons = rejected["reason"].tolist()
    assert reasons[0].startswith("cannot decode archive member train_images/1/2/3.dcm: truncated pixel data")
    assert (
        reasons[1].startswith("cannot read archive member train_images/1/2/4.dcm")
        and "not found" in reasons[1]
    )
    assert reasons[2] == "the standardized row names no archive member"
    assert len(images) + len(rejected) == len(rsna_rows())
    # Reasons never say where the archive lies: the same archive elsewhere gives the same rejected table.
    assert not any(str(tmp_path) in reason for reason in reasons)


def test_rendering_is_byte_identical(tmp_path):
    folder = rsna_folder(tmp_path)
    written = []
    for attempt in range(2):
        images, rejected = render_shard(rsna_rows(), folder, "rsna", SETTINGS)
        write_table(images, tmp_path / f"images{attempt}.parquet", schema=IMAGES_SCHEMA)
        write_table(rejected, tmp_path / f"rejected{attempt}.parquet")
        written.append(((tmp_path / f"images{attempt}.parquet").read_bytes(), rejected))
    assert written[0][0] == written[1][0]
    pd.testing.assert_frame_equal(written[0][1], written[1][1])


def test_raster_sources_render_through_a_stand_in_reader():
    """render_rows needs only `.read(member)`: JPEG (BUU) and PNG (CSXA) members from a dict."""
    jpeg = raster_bytes(smooth_image(200, 100, seed=3, top=255).astype(np.uint8), "JPEG", quality=90)
    png = raster_bytes(smooth_image(50, 60, seed=4, top=255).astype(np.uint8), "PNG")
    members = {"AP/0001-F-037Y0.jpg": jpeg, "datasets-PNG/0001035.png": png}
    reader = SimpleNamespace(read=members.__getitem__)
    rows = pd.DataFrame(
        {
            "image_id": ["buu-0001-AP", "csxa-0001"],
            "modality": ["X-ray", "X-ray"],
            "member": list(members),
        }
    )
    images, rejected = render_rows(rows, reader, "mixed", SETTINGS)
    assert rejected.empty
    assert images[["width", "height"]].values.tolist() == [[32, 64], [60, 50]]
    # The PNG member needs no resize: its grey levels pass through unchanged.
    rendered = np.asarray(Image.open(io.BytesIO(images["png"].iloc[1])))[..., 0]
    np.testing.assert_array_equal(rendered, smooth_image(50, 60, seed=4, top=255).astype(np.uint8))


def test_duplicate_image_ids_are_an_error():
    rows = pd.DataFrame({"image_id": ["a", "a"], "modality": ["MRI", "MRI"], "member": ["x.dcm", "y.dcm"]})
    with pytest.raises(ValueError, match="duplicate image_id"):
        render_rows(rows, SimpleNamespace(read=lambda member: b""), "rsna", SETTINGS)


def test_render_script_writes_the_selected_shard(tmp_path):
    standardized = tmp_path / "standardized.parquet"
    write_table(rsna_rows(), standardized)
    outputs = SimpleNamespace(
        images=str(tmp_path / "images/001.parquet"), rejected=str(tmp_path / "rej/001.parquet")
    )
    snakemake = SimpleNamespace(
        input=SimpleNamespace(table=str(standardized), archive=str(rsna_folder(tmp_path))),
        output=outputs,
        params=SimpleNamespace(shard_index=1, shard_count=2, settings=SETTINGS),
        wildcards=SimpleNamespace(source="rsna", shard="001"),
        log=[str(tmp_path / "render.log")],
        config={"cache": {"dir": str(tmp_path / "store")}},
        threads=1,
    )
    runpy.run_path(str(REPO / "scripts/render_shard.py"), init_globals={"snakemake": snakemake})
    # Shard 1 of 2 over the 5 sorted rows is rows 2..4: rsna-1-2-3 (corrupt), -4 (missing), -5 (no member).
    assert read_table(outputs.images).empty
    assert read_table(outputs.rejected)["item"].tolist() == ["rsna-1-2-3", "rsna-1-2-4", "rsna-1-2-5"]
    log = (tmp_path / "render.log").read_text()
    assert "rejected rsna-1-2-4" in log
    # Only the corrupt file was decoded (missing members have no bytes to key); its failure is stored.
    assert "store kind=render hits=0 misses=1 damaged=0" in log
    first = Path(outputs.rejected).read_bytes()
    runpy.run_path(str(REPO / "scripts/render_shard.py"), init_globals={"snakemake": snakemake})
    assert "store kind=render hits=1 misses=0 damaged=0" in (tmp_path / "render.log").read_text()
    assert Path(outputs.rejected).read_bytes() == first
