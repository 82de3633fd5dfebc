"""spinebench.archive: path resolution, member validation, size limits, CSV parsing."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from spinebench import archive as archive_module
from spinebench.archive import ArchiveError, open_source, read_csv_member, validate_member_path

RSNA_ZIP = "rsna-2024-lumbar-spine-degenerative-classification.zip"
VINDR_TOP = (
    "vindr-spinexr-a-large-annotated-medical-image-dataset-for-spinal-lesions-detection-and-"
    "classification-from-radiographs-1.0.0"
)


def write_zip(path: Path, files: dict[str, bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as bundle:
        for name, data in files.items():
            bundle.writestr(name, data)
    return path


def write_folder(root: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return root


RSNA_FILES = {
    "train.csv": b"study_id\n1\n",
    "train_label_coordinates.csv": b"study_id,series_id,instance_number,condition,level,x,y\n",
    "train_series_descriptions.csv": b"study_id,series_id,series_description\n",
    "train_images/1/2/3.dcm": b"dicom",
}
BUU_FILES = {
    "AP/0001-F-037Y0.jpg": b"jpg",
    "AP/0001-F-037Y0.csv": b"1,2,3,4,0\n",
    "LA/0001-F-037Y1.jpg": b"j",
}
VINDR_FILES = {"annotations/train.csv": b"image_id\n", "train_images/ab.dicom": b"d"}


@pytest.mark.parametrize(
    "name",
    ["../x", "a/../b", "/etc/passwd", "C:/x.csv", "c:x", "a\\b.csv", "./a", "a//b", "a/./b", ".."],
)
def test_unsafe_member_paths_are_rejected_with_archive_and_member(name):
    with pytest.raises(ArchiveError) as error:
        validate_member_path("some.zip", name)
    assert "some.zip" in str(error.value) and repr(name) in str(error.value)


@pytest.mark.parametrize("name", ["a.csv", "train_images/1/2/3.dcm", "x..y/z", "AP/0001-F-037Y0.jpg"])
def test_safe_member_paths_pass(name):
    assert validate_member_path("some.zip", name) == name


@pytest.mark.parametrize("bad", ["../evil.csv", "/abs/train.csv", "D:/x.csv"])
def test_zip_with_unsafe_member_is_refused(tmp_path, bad):
    path = write_zip(tmp_path / RSNA_ZIP, {**RSNA_FILES, bad: b"x"})
    with pytest.raises(ArchiveError, match="unsafe member path") as error:
        open_source("rsna", path)
    assert str(path) in str(error.value) and bad in str(error.value)


def test_zip_with_backslash_member_is_refused(tmp_path):
    path = tmp_path / "b.zip"
    with zipfile.ZipFile(path, "w") as bundle:
        bundle.writestr("BUU-LSPINE_400/AP/a.csv", b"x")
        info = zipfile.ZipInfo("BUU-LSPINE_400/AP/x.jpg")
        bundle.writestr(info, b"x")
    # zipfile normalises '\\' on write, so patch the central directory name in the bytes.
    raw = path.read_bytes().replace(b"BUU-LSPINE_400/AP/x.jpg", b"BUU-LSPINE_400\\AP\\x.jpg")
    path.write_bytes(raw)
    with pytest.raises(ArchiveError, match="backslash"):
        open_source("buu", path)


def test_oversized_member_by_header_is_refused(tmp_path, monkeypatch):
    path = write_zip(tmp_path / RSNA_ZIP, {**RSNA_FILES, "train.csv": b"study_id\n" + b"1\n" * 100})
    monkeypatch.setattr(archive_module, "MAX_MEMBER_BYTES", 50)
    with open_source("rsna", path) as source:
        assert source.size("train.csv") > 50
        with pytest.raises(ArchiveError, match="limit") as error:
            source.read("train.csv")
        assert "train.csv" in str(error.value)
        assert source.read("train_images/1/2/3.dcm") == b"dicom"


def test_member_growing_past_the_limit_after_listing_is_refused(tmp_path, monkeypatch):
    root = write_folder(tmp_path / "rsna", RSNA_FILES)
    monkeypatch.setattr(archive_module, "MAX_MEMBER_BYTES", 50)
    with open_source("rsna", root) as source:
        listed = source.size("train.csv")
        (root / "train.csv").write_bytes(b"study_id\n" + b"1\n" * 100)
        assert listed < 50
        with pytest.raises(ArchiveError, match="limit"):
            source.read("train.csv")


def test_zip_member_whose_data_disagrees_with_its_header_is_corrupt(tmp_path):
    path = write_zip(tmp_path / RSNA_ZIP, RSNA_FILES)
    with open_source("rsna", path) as source:
        # Simulate a header that understates the size: zipfile then stops early and the CRC fails.
        info = source._mounts["train.csv"].container._infos["train.csv"]
        info.file_size = 3
        with pytest.raises(ArchiveError, match="corrupt"):
            source.read("train.csv")


def test_missing_member_names_it(tmp_path):
    with open_source("rsna", write_zip(tmp_path / RSNA_ZIP, RSNA_FILES)) as source:
        with pytest.raises(ArchiveError, match="train_images/9/9/9.dcm"):
            source.read("train_images/9/9/9.dcm")
        with pytest.raises(ArchiveError, match="not found"):
            source.size("nope.csv")


@pytest.mark.parametrize(
    ("source", "files", "prefix"),
    [
        ("rsna", RSNA_FILES, ""),
        ("rsna", RSNA_FILES, "rsna-2024/"),
        ("buu", BUU_FILES, "BUU-LSPINE_400/"),
        ("buu", BUU_FILES, "BUU-LSPINE_400/BUU-LSPINE_400/"),
        ("vindr", VINDR_FILES, VINDR_TOP + "/"),
        ("vindr", VINDR_FILES, "physionet.org/files/vindr-spinexr/1.0.0/"),
    ],
)
def test_zip_folder_and_folder_holding_zip_give_the_same_members(tmp_path, source, files, prefix):
    packed = {prefix + name: data for name, data in files.items()}
    zip_path = write_zip(tmp_path / "holder" / f"{source}.zip", packed)
    folder = write_folder(tmp_path / "extracted", packed)
    expected = sorted(files)
    for path in (zip_path, zip_path.parent, folder):
        with open_source(source, path) as opened:
            assert opened.members() == expected, path
            assert {member: opened.read(member) for member in expected} == files
            assert opened.sizes() == [(member, len(files[member])) for member in expected]


def test_known_archive_name_is_preferred_in_a_folder_with_other_files(tmp_path):
    write_zip(tmp_path / RSNA_ZIP, RSNA_FILES)
    (tmp_path / "README.txt").write_text("notes")
    (tmp_path / ".done").write_text("")
    with open_source("rsna", tmp_path) as source:
        assert "train.csv" in source.members()


def test_packaging_entries_are_not_members(tmp_path):
    files = {
        "BUU-LSPINE_400/AP/a.csv": b"1",
        "__MACOSX/BUU-LSPINE_400/._a": b"x",
        "BUU-LSPINE_400/AP/.DS_Store": b"x",
    }
    path = write_zip(tmp_path / "b.zip", files)
    with open_source("buu", path) as source:
        assert source.members() == ["AP/a.csv"]
    # A Snakemake directory() output holds a hidden timestamp file beside the dataset folder.
    folder = write_folder(
        tmp_path / "synthetic" / "vindr", {VINDR_TOP + "/" + k: v for k, v in VINDR_FILES.items()}
    )
    (folder / ".snakemake_timestamp").write_text("")
    with open_source("vindr", folder) as source:
        assert source.members() == sorted(VINDR_FILES)


def test_a_folder_without_the_dataset_root_is_refused(tmp_path):
    write_folder(tmp_path / "x", {"a/readme.txt": b"x", "b/other.txt": b"y"})
    with pytest.raises(ArchiveError, match="AP/ or LA/"):
        open_source("buu", tmp_path / "x")
    with pytest.raises(ArchiveError, match="does not exist"):
        open_source("buu", tmp_path / "missing")
    not_zip = tmp_path / "fake.zip"
    not_zip.write_text("not a zip")
    with pytest.raises(ArchiveError, match="not a readable zip"):
        open_source("vindr", not_zip)


CSXA_PNG = {"0001035.png": b"png1", "0002040.png": b"png2"}
CSXA_JSON = {"0001035.json": b"{}", "0002040.json": b"{}"}
CSXA_EXPECTED = sorted(
    [f"datasets-PNG/{name}" for name in CSXA_PNG] + [f"datasets-JSON/{name}" for name in CSXA_JSON]
) + ["datasets.xlsx"]


@pytest.mark.parametrize("png_top", ["", "datasets-PNG/", "datasets-PNG/datasets-PNG/"])
@pytest.mark.parametrize("packed", [True, False])
def test_csxa_merges_its_three_files(tmp_path, png_top, packed):
    root = tmp_path / "csxa"
    root.mkdir()
    (root / "datasets.xlsx").write_bytes(b"xlsx")
    png = {png_top + name: data for name, data in CSXA_PNG.items()}
    if packed:
        write_zip(root / "datasets-PNG.zip", png)
        write_zip(
            root / "datasets-JSON.zip", {"datasets-JSON/" + name: data for name, data in CSXA_JSON.items()}
        )
    else:
        write_folder(root / "datasets-PNG", png)
        write_folder(root / "datasets-JSON", CSXA_JSON)
    for path in (root, tmp_path):  # the folder itself, or a folder wrapping it
        with open_source("csxa", path) as source:
            assert sorted(source.members()) == sorted(CSXA_EXPECTED)
            assert source.read("datasets-PNG/0002040.png") == b"png2"
            assert source.read("datasets.xlsx") == b"xlsx"


def test_csxa_without_its_parts_is_refused(tmp_path):
    (tmp_path / "datasets.xlsx").write_bytes(b"x")
    with pytest.raises(ArchiveError, match="datasets-PNG"):
        open_source("csxa", tmp_path)
    with pytest.raises(ArchiveError, match="datasets.xlsx"):
        open_source("csxa", tmp_path / "datasets.xlsx")


def test_read_csv_member_keeps_text_and_line_numbers(tmp_path):
    csv = b"\xef\xbb\xbfstudy_id,level,x\n0012,L1/L2,NA\n\n7,,3.50\n"
    path = write_zip(tmp_path / RSNA_ZIP, {**RSNA_FILES, "train_label_coordinates.csv": csv})
    with open_source("rsna", path) as source:
        frame = read_csv_member(source, "train_label_coordinates.csv", line_column="line")
    assert list(frame.columns) == ["line", "study_id", "level", "x"]
    assert frame["study_id"].tolist() == ["0012", "7"]  # leading zeros survive: all strings
    assert frame["x"].tolist() == ["NA", "3.50"]  # only empty cells are missing
    assert pd.isna(frame.loc[1, "level"])
    assert frame["line"].tolist() == [2, 4]  # the blank line 3 is skipped but counted


def test_read_csv_member_reports_the_member_on_bad_bytes(tmp_path):
    path = write_zip(tmp_path / RSNA_ZIP, {**RSNA_FILES, "train.csv": b"a,b\n\xff\xfe,1\n"})
    with open_source("rsna", path) as source:
        with pytest.raises(ArchiveError, match="train.csv"):
            read_csv_member(source, "train.csv")


# ------------------------------------------------------------------------------------- symbolic links
RSNA_LABELS = {name: data for name, data in RSNA_FILES.items() if not name.startswith("train_images/")}


def test_links_inside_the_dataset_folder_are_followed(tmp_path):
    # The DICOMs sit in another folder of the dataset; train_images/ (absolute link) and train.csv
    # (relative link) point into it. Before links were followed, the linked folder was silently skipped.
    root = write_folder(tmp_path / "rsna", {**RSNA_LABELS, "storage/dicoms/1/2/3.dcm": b"dicom"})
    (root / "storage" / "train.csv").write_bytes((root / "train.csv").read_bytes())
    (root / "train.csv").unlink()
    (root / "train.csv").symlink_to("storage/train.csv")
    (root / "train_images").symlink_to(root / "storage" / "dicoms")
    with open_source("rsna", root) as source:
        assert "train_images/1/2/3.dcm" in source.members()
        assert source.read("train_images/1/2/3.dcm") == b"dicom"
        assert source.read("train.csv") == RSNA_FILES["train.csv"]
        assert source.size("train_images/1/2/3.dcm") == len(b"dicom")


def test_the_configured_path_may_be_a_link_and_its_real_folder_is_the_boundary(tmp_path):
    real = write_folder(tmp_path / "big-disk" / "rsna", {**RSNA_LABELS, "store/1/2/3.dcm": b"dicom"})
    # An absolute link into the real folder: inside the dataset only if the boundary is the real path.
    (real / "train_images").symlink_to(real / "store")
    configured = tmp_path / "resources" / "rsna"
    configured.parent.mkdir()
    configured.symlink_to(real)
    with open_source("rsna", configured) as source:
        assert source.read("train_images/1/2/3.dcm") == b"dicom"


@pytest.mark.parametrize(
    ("link", "target"),
    [
        ("train_images", "big-disk/train_images"),  # a folder on another disk
        ("train.csv", "big-disk/secret.csv"),  # a single file
        ("train_images/1/2/4.dcm", "big-disk/secret.csv"),  # deep inside
    ],
)
@pytest.mark.parametrize("relative", [False, True])
def test_a_link_leaving_the_dataset_folder_is_refused_naming_it_and_the_fix(tmp_path, link, target, relative):
    write_folder(tmp_path / "big-disk", {"train_images/1/2/3.dcm": b"dicom", "secret.csv": b"study_id\n"})
    kept = {name: data for name, data in RSNA_FILES.items() if name != link and not name.startswith(link)}
    root = write_folder(tmp_path / "rsna", kept)
    (root / link).parent.mkdir(parents=True, exist_ok=True)
    destination = tmp_path / target
    (root / link).symlink_to(os.path.relpath(destination, (root / link).parent) if relative else destination)
    with pytest.raises(ArchiveError, match="outside the dataset folder") as error:
        open_source("rsna", root)
    message = str(error.value)
    assert f" {link} is a symbolic link to {destination}" in message
    assert "`path`" in message and "bind-mount" in message


@pytest.mark.parametrize(
    ("make_link", "match"),
    [
        (lambda root: (root / "train_images/1/2/4.dcm").symlink_to(root / "nowhere.dcm"), "broken"),
        (lambda root: (root / "train_images/1/again").symlink_to(root / "train_images"), "loop"),
        (lambda root: (root / "train_images/1/to-root").symlink_to(".."), "loop"),
    ],
)
def test_broken_and_looping_links_are_refused(tmp_path, make_link, match):
    root = write_folder(tmp_path / "rsna", RSNA_FILES)
    make_link(root)
    with pytest.raises(ArchiveError, match=match) as error:
        open_source("rsna", root)
    assert str(root) in str(error.value)


def test_two_links_that_loop_through_each_other_are_refused(tmp_path):
    root = write_folder(tmp_path / "rsna", {**RSNA_FILES, "a/x.txt": b"a", "b/y.txt": b"b"})
    (root / "a" / "to-b").symlink_to(root / "b")
    (root / "b" / "to-a").symlink_to(root / "a")
    with pytest.raises(ArchiveError, match="loop"):
        open_source("rsna", root)


def test_fifos_and_sockets_are_not_members(tmp_path):
    root = write_folder(tmp_path / "rsna", RSNA_FILES)
    os.mkfifo(root / "train_images" / "1" / "2" / "4.dcm")  # reading it would block the job forever
    with open_source("rsna", root) as source:
        assert source.members() == sorted(RSNA_FILES)


def test_a_zip_linked_from_the_folder_holding_it_must_stay_inside(tmp_path):
    downloads = write_zip(tmp_path / "downloads" / RSNA_ZIP, RSNA_FILES)
    holder = tmp_path / "holder"
    holder.mkdir()
    (holder / RSNA_ZIP).symlink_to(downloads)
    with pytest.raises(ArchiveError, match=f"{RSNA_ZIP} is a symbolic link to {downloads}, outside"):
        open_source("rsna", holder)
    with open_source("rsna", downloads) as source:  # the fix the message gives: point `path` at the zip
        assert source.read("train_images/1/2/3.dcm") == b"dicom"
    inside = write_zip(holder / "kept" / "copy.zip", RSNA_FILES)
    (holder / RSNA_ZIP).unlink()
    (holder / RSNA_ZIP).symlink_to(inside)
    with open_source("rsna", holder) as source:
        assert source.read("train_images/1/2/3.dcm") == b"dicom"


def test_csxa_parts_may_link_inside_its_folder_only(tmp_path):
    root = tmp_path / "csxa"
    write_folder(root / "store" / "png", CSXA_PNG)
    write_folder(root / "datasets-JSON", CSXA_JSON)
    (root / "datasets.xlsx").write_bytes(b"xlsx")
    (root / "datasets-PNG").symlink_to(root / "store" / "png")
    with open_source("csxa", root) as source:
        assert source.read("datasets-PNG/0002040.png") == b"png2"
    elsewhere = write_folder(tmp_path / "elsewhere", {"datasets.xlsx": b"other"})
    (root / "datasets.xlsx").unlink()
    (root / "datasets.xlsx").symlink_to(elsewhere / "datasets.xlsx")
    with pytest.raises(ArchiveError, match="datasets.xlsx is a symbolic link to .*outside"):
        open_source("csxa", root)
