"""Source folders a careless user (or a hostile dataset) hands the build (issue 9).

A symbolic link inside an extracted dataset is followed when it stays inside the dataset folder and refused,
naming it, when it leaves; a source most of whose labelled images are missing fails loudly unless its
`max_missing_image_share` accepts it; a source with no labelled image at all still only warns.
"""

from __future__ import annotations

import logging
import re
import shutil
import zipfile
from pathlib import Path

import pytest

from spinebench import vocab
from spinebench.archive import ArchiveError
from spinebench.standardize import (
    MISSING_IMAGE_REASONS,
    MissingImagesError,
    StandardizeError,
)
from tests.test_empty_inputs import IMAGE_SUFFIXES, source_settings, standardize

pytestmark = pytest.mark.faults  # the fault-injection suite (pytest -m faults)

VINDR_HEADER = "study_id,series_id,image_id,rad_id,lesion_type,xmin,ymin,xmax,ymax"
VINDR_SETTINGS = {"splits": ["train"], "multi_lesion": "most_boxes"}


def without_images_zipped(archive: Path, destination: Path) -> Path:
    """A copy of a synthetic source folder, zips kept as zips, with every image file left out
    (tests.test_empty_inputs.without_images extracts them instead)."""
    for path in sorted(archive.rglob("*")):
        if not path.is_file() or path.name.lower().endswith(IMAGE_SUFFIXES):
            continue
        target = destination / path.relative_to(archive)
        target.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix != ".zip":
            shutil.copy2(path, target)
            continue
        with zipfile.ZipFile(path) as original, zipfile.ZipFile(target, "w") as copy:
            for info in original.infolist():
                if not info.filename.lower().endswith(IMAGE_SUFFIXES):
                    copy.writestr(info, original.read(info))
    return destination


def vindr_folder(root: Path, image_ids: list[str], present: list[str]) -> Path:
    """A VinDr folder with one Osteophytes box per image id; only the `present` films exist."""
    (root / "annotations").mkdir(parents=True)
    rows = [f"st{i},se{i},{i},rad1,Osteophytes,1,2,30,40" for i in image_ids]
    (root / "annotations" / "train.csv").write_text("\n".join([VINDR_HEADER, *rows]) + "\n")
    (root / "train_images").mkdir()
    for image_id in present:
        (root / "train_images" / f"{image_id}.dicom").write_bytes(b"DICM")
    return root


# ------------------------------------------------------------------------------------- symbolic links
def copy_vindr_with_linked_images(synthetic: Path, destination: Path, store: Path | None = None) -> Path:
    """A copy of the synthetic VinDr folder whose train_images/ is a link to the folder the films were moved
    to: `store`, or by default storage/train inside the dataset folder. Returns the link."""
    shutil.copytree(synthetic, destination)
    dataset = next(destination.glob("vindr-spinexr-*"))
    store = store or dataset / "storage" / "train"
    store.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(dataset / "train_images", store)
    (dataset / "train_images").symlink_to(store)
    return dataset / "train_images"


def test_images_behind_a_link_inside_the_dataset_are_kept(synthetic_archives, tmp_path):
    # The reviewer's report: the films of a linked folder all became `missing image` and the build passed.
    expected, _ = standardize("vindr", synthetic_archives["vindr"], source_settings("vindr"))
    link = copy_vindr_with_linked_images(synthetic_archives["vindr"], tmp_path / "vindr")
    kept, rejected = standardize("vindr", tmp_path / "vindr", source_settings("vindr"))
    assert link.is_symlink()
    assert kept.equals(expected)
    assert kept["member"].str.startswith("train_images/").any()
    assert (rejected["reason"] == "missing image").sum() == 1  # the synthetic decoy only


def test_images_behind_a_link_leaving_the_dataset_stop_the_source_naming_the_link(
    synthetic_archives, tmp_path
):
    store = tmp_path / "big-disk" / "films"
    copy_vindr_with_linked_images(synthetic_archives["vindr"], tmp_path / "vindr", store)
    with pytest.raises(ArchiveError) as error:
        standardize("vindr", tmp_path / "vindr", source_settings("vindr"))
    message = str(error.value)
    assert re.search(
        rf"train_images is a symbolic link to {re.escape(str(store))}, outside the dataset", message
    )
    assert "`path`" in message


# ------------------------------------------------------------------------------------ missing images
@pytest.mark.parametrize("source", vocab.SOURCES)
def test_a_source_whose_images_are_all_missing_fails_naming_source_count_and_fix(
    synthetic_archives, tmp_path, source
):
    labels_only = without_images_zipped(synthetic_archives[source], tmp_path / source)
    with pytest.raises(MissingImagesError) as error:
        standardize(source, labels_only, source_settings(source))
    message = str(error.value)
    count = re.search(r"(\d+) of (\d+) labelled image\(s\) \(100%\) are missing", message)
    assert count and count.group(1) == count.group(2) and int(count.group(1)) > 1, message
    assert message.startswith(f"{source}: ") and str(labels_only) in message
    assert "For example: " in message and "not extracted" in message
    assert f"sources.{source}.max_missing_image_share: 1" in message
    if source in ("rsna", "vindr"):  # the examples give the CSV line that points at the image
        assert re.search(r"\.csv lines? \d+.* -> \w+_images/", message), message


@pytest.mark.parametrize("source", vocab.SOURCES)
def test_accepted_missing_images_leave_an_empty_source_with_a_warning(
    synthetic_archives, tmp_path, caplog, source
):
    labels_only = without_images_zipped(synthetic_archives[source], tmp_path / source)
    with caplog.at_level(logging.WARNING, logger="spinebench.standardize"):
        kept, rejected = standardize(source, labels_only, source_settings(source, max_missing_image_share=1))
    assert kept.empty
    assert rejected["reason"].str.startswith(MISSING_IMAGE_REASONS[source]).sum() > 1
    assert "(accepted: max_missing_image_share is 1)" in caplog.text
    assert f"{source}: no image kept" in caplog.text


@pytest.mark.parametrize(
    ("present", "share", "outcome"),
    [
        (["a1", "a2"], None, "silent"),  # 2 of 4 missing: not more than half
        (["a1"], None, "fails"),  # 3 of 4 missing
        (["a1"], 0.8, "warns"),  # accepted by a looser setting
        (["a1", "a2"], 0.25, "fails"),  # a stricter setting stops a half-missing source
    ],
)
def test_the_missing_share_is_checked_against_the_setting(tmp_path, caplog, present, share, outcome):
    root = vindr_folder(tmp_path / "vindr", ["a1", "a2", "a3", "a4"], present)
    settings = VINDR_SETTINGS if share is None else {**VINDR_SETTINGS, "max_missing_image_share": share}
    if outcome == "fails":
        with pytest.raises(MissingImagesError, match=rf"vindr: {4 - len(present)} of 4 labelled image"):
            standardize("vindr", root, settings)
        return
    with caplog.at_level(logging.WARNING, logger="spinebench.standardize"):
        kept, rejected = standardize("vindr", root, settings)
    assert sorted(kept["image_id"]) == [f"vindr-{i}" for i in present]
    assert ("accepted: max_missing_image_share" in caplog.text) == (outcome == "warns")


def test_a_source_with_no_labelled_image_only_warns(tmp_path, caplog):
    # Nothing was looked for, so nothing is missing: an empty label file is not a misconfigured path.
    root = vindr_folder(tmp_path / "vindr", [], [])
    with caplog.at_level(logging.WARNING, logger="spinebench.standardize"):
        kept, rejected = standardize("vindr", root, VINDR_SETTINGS)
    assert kept.empty and rejected.empty
    assert "vindr: no image kept" in caplog.text


@pytest.mark.parametrize("value", [1.5, -0.1, "all", True, None])
def test_a_bad_max_missing_image_share_fails_before_reading_the_source(tmp_path, value):
    with pytest.raises(StandardizeError, match="max_missing_image_share must be a number from 0 to 1"):
        standardize("vindr", tmp_path / "absent", {**VINDR_SETTINGS, "max_missing_image_share": value})
