"""Synthetic source archives: layout, schemas, DICOM properties, counts, decoys, determinism.

The expected layouts are spelled out here from shared/SOURCES.md rather than imported from the
generator, so that a drift in the generator fails the tests.
"""

from __future__ import annotations

import csv
import io
import json
import re
import runpy
import zipfile
from collections import Counter, defaultdict
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pydicom
import pytest
import SimpleITK as sitk
from PIL import Image

from spinebench import synth
from spinebench.synth import buu, csxa, phantoms, rsna, vindr
from spinebench.synth.seeding import UniqueIds

SEED = 20251014
TINY = {"rsna_images": 8, "vindr_images": 10, "buu_cases": 3, "csxa_images": 6}
LEVELS = ["L1/L2", "L2/L3", "L3/L4", "L4/L5", "L5/S1"]
RSNA_ZIP = "rsna-2024-lumbar-spine-degenerative-classification.zip"
RSNA_CONDITIONS = [
    "Spinal Canal Stenosis",
    "Left Neural Foraminal Narrowing",
    "Right Neural Foraminal Narrowing",
    "Left Subarticular Stenosis",
    "Right Subarticular Stenosis",
]
VINDR_DIR = (
    "vindr-spinexr-a-large-annotated-medical-image-dataset-for-spinal-lesions-detection-and-classification"
    "-from-radiographs-1.0.0"
)
VINDR_HEADER = ["study_id", "series_id", "image_id", "rad_id", "lesion_type", "xmin", "ymin", "xmax", "ymax"]
VINDR_KEPT = {
    "Osteophytes",
    "Disc space narrowing",
    "Foraminal stenosis",
    "Spondylolysthesis",
    "Vertebral collapse",
}
VINDR_DROPPED = {"Other lesions", "Surgical implant"}
CR, DX = "1.2.840.10008.5.1.4.1.1.1", "1.2.840.10008.5.1.4.1.1.1.1"
J2K_LOSSLESS = "1.2.840.10008.1.2.4.90"
CSXA_CURVATURE = "Curvature: 1.Lordotic, 2.Straight, 3.Sigmoid1, 4.Sigmoid2, 5.Kyphotic"
CSXA_LABELS = ["C2 centroid", "C2 bottom left", "C2 bottom right"] + [
    f"C{n} {corner}"
    for n in range(3, 8)
    for corner in ("top left", "top right", "bottom left", "bottom right")
]

pytestmark = [
    pytest.mark.filterwarnings("ignore:Invalid value for VR UI"),  # VinDr's hex UIDs, as in the real files
    pytest.mark.filterwarnings("ignore:End of file reached before delimiter"),  # the truncated decoy
]


@pytest.fixture(scope="module")
def archives(tmp_path_factory) -> dict[tuple[str, bool], Path]:
    """Every source written at tiny counts, with and without decoys."""
    root = tmp_path_factory.mktemp("synthetic")
    written = {}
    for decoys in (True, False):
        for source in ("rsna", "vindr", "buu", "csxa"):
            out = root / ("decoys" if decoys else "clean") / source
            synth.write_source(source, out, TINY, SEED, decoys)
            written[(source, decoys)] = out
    return written


def read_csv_rows(data: bytes) -> list[dict]:
    return list(csv.DictReader(io.StringIO(data.decode("utf-8"))))


def natural_key(path: str) -> int:
    return int(Path(path).stem)


# --------------------------------------------------------------------------------------------------
# RSNA
# --------------------------------------------------------------------------------------------------
def rsna_tables(out: Path):
    archive = zipfile.ZipFile(out / RSNA_ZIP)
    names = archive.namelist()
    coordinates = read_csv_rows(archive.read("train_label_coordinates.csv"))
    return archive, names, coordinates


def test_rsna_zip_layout_and_csv_schemas(archives):
    archive, names, coordinates = rsna_tables(archives[("rsna", True)])
    root_files = sorted(name for name in names if "/" not in name)
    assert root_files == sorted(
        [
            "train.csv",
            "train_label_coordinates.csv",
            "train_series_descriptions.csv",
            "test_series_descriptions.csv",
            "sample_submission.csv",
        ]
    )
    for name in names:
        if "/" in name:
            assert re.fullmatch(r"(train|test)_images/\d+/\d+/[1-9]\d*\.dcm", name), name

    train = archive.read("train.csv").decode().splitlines()
    expected_columns = ["study_id"] + [
        f"{condition.lower().replace(' ', '_')}_{level.lower().replace('/', '_')}"
        for condition in RSNA_CONDITIONS
        for level in LEVELS
    ]
    assert train[0].split(",") == expected_columns
    assert expected_columns[1] == "spinal_canal_stenosis_l1_l2" and expected_columns[-1].endswith("_l5_s1")
    cells = [cell for line in train[1:] for cell in line.split(",")[1:]]
    assert set(cells) <= {"Normal/Mild", "Moderate", "Severe", ""}
    assert "" in cells and "Normal/Mild" in cells

    assert list(coordinates[0]) == [
        "study_id",
        "series_id",
        "instance_number",
        "condition",
        "level",
        "x",
        "y",
    ]
    assert {row["level"] for row in coordinates} <= set(LEVELS)
    series = read_csv_rows(archive.read("train_series_descriptions.csv"))
    assert list(series[0]) == ["study_id", "series_id", "series_description"]
    assert {row["series_description"] for row in series} == {"Sagittal T1", "Sagittal T2/STIR", "Axial T2"}
    described = {(row["study_id"], row["series_id"]) for row in series}
    assert {(row["study_id"], row["series_id"]) for row in coordinates} <= described
    test_series = read_csv_rows(archive.read("test_series_descriptions.csv"))
    submission = read_csv_rows(archive.read("sample_submission.csv"))
    assert list(submission[0]) == ["row_id", "normal_mild", "moderate", "severe"]
    test_study = test_series[0]["study_id"]
    assert [row["row_id"] for row in submission] == [
        f"{test_study}_{column}" for column in expected_columns[1:]
    ]
    assert any(name.startswith(f"test_images/{test_study}/") for name in names)


def test_rsna_valid_instances_count_and_levels(archives):
    archive, names, coordinates = rsna_tables(archives[("rsna", True)])
    files = set(names)
    instances = defaultdict(list)
    for row in coordinates:
        path = f"train_images/{row['study_id']}/{row['series_id']}/{row['instance_number']}.dcm"
        if row["condition"] in RSNA_CONDITIONS and path in files:
            instances[path].append(row)
    assert len(instances) == TINY["rsna_images"]
    assert all(rows and all(row["level"] in LEVELS for row in rows) for rows in instances.values())
    merged = {path: {row["condition"].split(" ", 1)[-1] for row in rows} for path, rows in instances.items()}
    # L+R subarticular on one axial instance (one merged image) ...
    assert any(
        {r["condition"] for r in rows} >= {RSNA_CONDITIONS[3], RSNA_CONDITIONS[4]}
        for rows in instances.values()
    )
    # ... and canal + foraminal points on one instance (multi_condition).
    assert any(
        "Spinal Canal Stenosis" in {r["condition"] for r in rows}
        and any("Foraminal" in r["condition"] for r in rows)
        for rows in instances.values()
    )
    assert merged  # every valid instance maps to at least one condition


def test_rsna_decoys_only_with_decoys(archives):
    for decoys in (True, False):
        archive, names, coordinates = rsna_tables(archives[("rsna", decoys)])
        files = set(names)
        unknown = [row for row in coordinates if row["condition"] not in RSNA_CONDITIONS]
        missing = [
            row
            for row in coordinates
            if f"train_images/{row['study_id']}/{row['series_id']}/{row['instance_number']}.dcm" not in files
        ]
        if decoys:
            assert [row["condition"] for row in unknown] == ["Facet Arthropathy"]
            assert len(missing) == 1 and missing[0]["condition"] == "Spinal Canal Stenosis"
            unknown_path = "train_images/{study_id}/{series_id}/{instance_number}.dcm".format(**unknown[0])
            assert unknown_path in files
        else:
            assert unknown == [] and missing == []


def test_rsna_dicom_headers_geometry_and_points(archives):
    archive, names, coordinates = rsna_tables(archives[("rsna", True)])
    orientations = defaultdict(set)
    numbers = defaultdict(list)
    for name in names:
        if not name.endswith(".dcm"):
            continue
        dataset = pydicom.dcmread(io.BytesIO(archive.read(name)))
        assert dataset.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
        assert dataset.Modality == "MR"
        assert dataset.PhotometricInterpretation == "MONOCHROME2"
        assert (dataset.BitsAllocated, dataset.PixelRepresentation, dataset.SamplesPerPixel) == (16, 0, 1)
        for keyword in ("ImagePositionPatient", "PixelSpacing", "SliceThickness", "SpacingBetweenSlices"):
            assert keyword in dataset, keyword
        assert "SeriesDescription" not in dataset  # the series type lives only in the CSV
        pixels = dataset.pixel_array
        assert pixels.dtype == np.uint16 and pixels.shape == (dataset.Rows, dataset.Columns)
        assert 128 <= dataset.Rows <= 192 and pixels.std() > 0
        assert dataset.InstanceNumber == natural_key(name)
        series = name.rsplit("/", 1)[0]
        orientations[series].add(tuple(round(float(v), 3) for v in dataset.ImageOrientationPatient))
        numbers[series].append(dataset.InstanceNumber)
        for row in coordinates:
            if name == "train_images/{study_id}/{series_id}/{instance_number}.dcm".format(**row):
                assert 0 <= float(row["x"]) < dataset.Columns and 0 <= float(row["y"]) < dataset.Rows
    assert any(len(found) == 2 for found in orientations.values()), "an axial series with two stacks"
    lexical_differs = [
        sorted(map(str, found)) != [str(n) for n in sorted(found)] for found in numbers.values()
    ]
    assert any(lexical_differs), "instance numbers that sort differently as text"


def test_rsna_plans_meet_any_count():
    for count in (1, 7, 8, 9, 19, 20, 120, 997):
        plans = rsna.plan_train_studies(SEED, count, UniqueIds(), UniqueIds())
        assert sum(len(plan.groups) for plan in plans) == count
        for plan in plans:
            assert all(group.points for group in plan.groups)
            instances = [(s.series_id, i) for s in plan.series for i in s.groups_at]
            assert len(instances) == len(set(instances)) == len(plan.groups)
            assert set(plan.severities) == {(p.condition, p.level) for g in plan.groups for p in g.points}


# --------------------------------------------------------------------------------------------------
# VinDr
# --------------------------------------------------------------------------------------------------
def vindr_rows(out: Path) -> list[dict]:
    rows = []
    for split in ("train", "test"):
        data = (out / VINDR_DIR / "annotations" / f"{split}.csv").read_bytes()
        assert data.decode().splitlines()[0].split(",") == VINDR_HEADER
        rows += [dict(row, split=split) for row in read_csv_rows(data)]
    return rows


def test_vindr_annotations(archives):
    rows = vindr_rows(archives[("vindr", True)])
    for row in rows:
        for key in ("study_id", "series_id", "image_id"):
            assert re.fullmatch(r"[0-9a-f]{32}", row[key])
        assert re.fullmatch(r"rad\d+", row["rad_id"])
        if row["lesion_type"] == "No finding":
            assert [row[k] for k in ("xmin", "ymin", "xmax", "ymax")] == ["", "", "", ""]
        else:
            xmin, ymin, xmax, ymax = (float(row[k]) for k in ("xmin", "ymin", "xmax", "ymax"))
            assert xmin < xmax and ymin < ymax
    by_image = defaultdict(list)
    for row in rows:
        by_image[row["image_id"]].append(row["lesion_type"])
    types = set(Counter(t for found in by_image.values() for t in found))
    assert {"No finding", "Spondylolysthesis", "Other lesions", "Surgical implant"} <= types
    labelled = [image for image, found in by_image.items() if set(found) & (VINDR_KEPT | {"No finding"})]
    # The counted films plus two decoys with a valid label: the missing and the truncated .dicom.
    assert len(labelled) == TINY["vindr_images"] + 2
    assert any(len(set(found) & VINDR_KEPT) >= 2 for found in by_image.values()), "two kept lesion types"
    assert any(Counter(found).most_common(1)[0][1] >= 2 for found in by_image.values()), "several boxes"
    assert any(set(found) & VINDR_DROPPED and set(found) & VINDR_KEPT for found in by_image.values())
    dropped_only = [image for image, found in by_image.items() if set(found) <= VINDR_DROPPED]
    assert len(dropped_only) == 2
    assert {row["split"] for row in rows} == {"train", "test"}


def test_vindr_dicoms(archives):
    out = archives[("vindr", True)] / VINDR_DIR
    rows = vindr_rows(archives[("vindr", True)])
    seen = Counter()
    regions = set()
    for path in sorted(out.glob("*_images/*.dicom")):
        try:
            dataset = pydicom.dcmread(path)
            pixels = dataset.pixel_array
        except Exception:
            seen["undecodable"] += 1
            continue
        assert "Modality" not in dataset
        assert dataset.SOPInstanceUID == path.stem
        assert (dataset.BitsAllocated, dataset.BitsStored, dataset.HighBit) == (16, 12, 11)
        assert dataset.SOPClassUID in (CR, DX)
        assert "WindowCenter" in dataset and "WindowWidth" in dataset
        assert pixels.shape == (dataset.Rows, dataset.Columns) and 256 <= max(pixels.shape) <= 384
        assert pixels.max() < 4096
        seen[dataset.file_meta.TransferSyntaxUID] += 1
        seen[dataset.PhotometricInterpretation] += 1
        seen[dataset.SOPClassUID] += 1
        if dataset.file_meta.TransferSyntaxUID == J2K_LOSSLESS and seen["itk"] < 3:
            itk_pixels = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
            assert np.array_equal(itk_pixels.reshape(pixels.shape), pixels)
            seen["itk"] += 1
        regions.add("tall" if dataset.Rows > dataset.Columns else "other")
        for row in rows:
            if row["image_id"] == path.stem and row["xmax"]:
                assert float(row["xmax"]) <= dataset.Columns and float(row["ymax"]) <= dataset.Rows
    assert seen[J2K_LOSSLESS] >= 3 and seen["1.2.840.10008.1.2.1"] >= 1
    assert seen["MONOCHROME1"] >= 1 and seen["MONOCHROME2"] >= 1
    assert seen[CR] >= 1 and seen[DX] >= 1
    assert seen["itk"] >= 1
    assert seen["undecodable"] == 1  # the truncated decoy


def test_vindr_decoys_and_clean(archives):
    for decoys in (True, False):
        out = archives[("vindr", decoys)]
        rows = vindr_rows(out)
        image_ids = {row["image_id"]: row["split"] for row in rows}
        files = {path.stem for path in (out / VINDR_DIR).glob("*_images/*.dicom")}
        missing = set(image_ids) - files
        unknown = {row["lesion_type"] for row in rows} - VINDR_KEPT - VINDR_DROPPED - {"No finding"}
        if decoys:
            assert len(missing) == 1 and unknown == {"Scoliosis"}
        else:
            assert missing == set() and unknown == set()
            assert all(
                set(r["lesion_type"] for r in rows if r["image_id"] == i) - VINDR_DROPPED for i in image_ids
            )
            assert len(image_ids) == TINY["vindr_images"]
            for path in (out / VINDR_DIR).glob("*_images/*.dicom"):
                assert pydicom.dcmread(path).pixel_array.size > 0
        assert files <= set(image_ids)
        for image_id, split in image_ids.items():
            if image_id in files:
                assert (out / VINDR_DIR / f"{split}_images" / f"{image_id}.dicom").exists()


def test_vindr_plans_meet_any_count():
    for count in (1, 2, 7, 10, 101):
        films = vindr.plan_films(SEED, count)
        assert len(films) == count
        assert all(set(f.findings) & VINDR_KEPT or not f.findings for f in films)
        assert len({f.image_id for f in films}) == count


# --------------------------------------------------------------------------------------------------
# BUU
# --------------------------------------------------------------------------------------------------
def buu_files(out: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(out / "BUU-LSPINE_400.zip") as archive:
        return {name: archive.read(name) for name in archive.namelist() if not name.endswith("/")}


def parse_buu_csv(data: bytes) -> list[list[float]]:
    lines = data.decode("ascii").splitlines()
    rows = [[float(value) for value in line.split(",")] for line in lines]
    assert all(len(row) == 5 for row in rows)
    assert all(re.fullmatch(r"-?\d+(\.\d+)?", value) for line in lines for value in line.split(","))
    return rows


def test_buu_layout_rows_and_labels(archives):
    files = buu_files(archives[("buu", False)])
    pattern = r"BUU-LSPINE_400/(AP/\d{4}-[FM]-\d{3}Y0|LA/\d{4}-[FM]-\d{3}Y1)\.(jpg|csv)"
    assert all(re.fullmatch(pattern, name) for name in files)
    jpgs = [name for name in files if name.endswith(".jpg")]
    assert len(jpgs) == 2 * TINY["buu_cases"]
    for jpg in jpgs:
        rows = parse_buu_csv(files[jpg[:-4] + ".csv"])
        lateral = "/LA/" in jpg
        assert len(rows) == (11 if lateral else 10)
        labels = {int(row[4]) for row in rows}
        assert labels <= ({0, 3} if lateral else {0, 1, 2})
        ys = [(row[1] + row[3]) / 2 for row in rows]
        assert ys == sorted(ys), "endplates cranial to caudal"
        image = Image.open(io.BytesIO(files[jpg]))
        assert image.format == "JPEG" and image.mode in ("L", "RGB")  # RGB: identical channels
        assert max(max(row[0], row[2]) for row in rows) < image.width
        assert max(max(row[1], row[3]) for row in rows) < image.height


def test_buu_flagged_endplates_face_a_slip():
    for view in ("LA", "AP"):
        case = buu.CasePlan(1, "F", 50, 3, (view,))
        _, rows = buu.render_view(SEED, case, view)
        flagged = [i for i, row in enumerate(rows) if row[4]]
        assert flagged == [7, 8]  # L4 inferior and L5 superior face the L4/L5 disc
        shift = rows[7][0] - rows[8][0]
        if view == "LA":
            assert rows[7][4] == 3 and shift < -4  # L4 slipped anteriorly (image left)
        else:
            assert abs(shift) > 2 and rows[7][4] == (1 if shift < 0 else 2)
    case = buu.CasePlan(1, "F", 50, 4, ("AP",))
    _, rows = buu.render_view(SEED, case, "AP")
    assert [i for i, row in enumerate(rows) if row[4]] == [9]  # no S1 row on AP


def test_buu_flagged_image_share():
    cases = buu.plan_cases(SEED, 400)
    assert sum(len(case.slip_views) for case in cases) == 200
    assert len({case.stem[:4] for case in cases}) == 400


def test_buu_decoys(archives):
    files = buu_files(archives[("buu", True)])
    stems = {name[:-4] for name in files}
    bad = [
        stem
        for stem in stems
        if f"{stem}.jpg" in files
        and f"{stem}.csv" in files
        and len(files[f"{stem}.csv"].splitlines()) not in (10, 11)
    ]
    assert len(bad) == 1 and "/AP/" in bad[0] and len(files[f"{bad[0]}.csv"].splitlines()) == 9
    orphans = [stem for stem in stems if f"{stem}.csv" not in files]
    assert len(orphans) == 1 and "/LA/" in orphans[0]


# --------------------------------------------------------------------------------------------------
# CSXA
# --------------------------------------------------------------------------------------------------
def csxa_contents(out: Path):
    with (
        zipfile.ZipFile(out / "datasets-PNG.zip") as pngs,
        zipfile.ZipFile(out / "datasets-JSON.zip") as jsons,
    ):
        png = {Path(n).stem: pngs.read(n) for n in pngs.namelist() if not n.endswith("/")}
        labelme = {Path(n).stem: json.loads(jsons.read(n)) for n in jsons.namelist() if not n.endswith("/")}
        names = pngs.namelist() + jsons.namelist()
    sheet = pd.read_excel(out / "datasets.xlsx", sheet_name="Sheet1", header=1)
    return png, labelme, sheet, names


def test_csxa_layout_labelme_and_sheet(archives):
    png, labelme, sheet, names = csxa_contents(archives[("csxa", False)])
    for name in names:
        assert re.fullmatch(r"datasets-PNG/(\d{7}\.png)?|datasets-JSON/(\d{7}\.json)?", name), name
    assert list(sheet.columns) == ["Number", "Gender", "Age", CSXA_CURVATURE, "Disease"]
    assert set(sheet[CSXA_CURVATURE]) == {1, 2, 3, 4, 5}
    assert len(png) == len(labelme) == len(sheet) == TINY["csxa_images"]
    assert {int(stem[:4]) for stem in png} == set(sheet["Number"])
    ages = dict(zip(sheet["Number"], sheet["Age"], strict=True))
    assert any(int(stem[4:]) != ages[int(stem[:4])] for stem in png), "a file-name age mismatch"
    duplicated = 0
    for stem, document in labelme.items():
        image = Image.open(io.BytesIO(png[stem]))
        assert image.format == "PNG" and image.mode == "L"
        assert (document["imageWidth"], document["imageHeight"]) == image.size
        assert document["imagePath"] == f"{stem}.png" and "version" in document and "flags" in document
        labels = [shape["label"] for shape in document["shapes"]]
        assert len(labels) == 23
        assert all(len(shape["points"]) == 1 for shape in document["shapes"])
        assert {shape["shape_type"] for shape in document["shapes"]} <= {"point", "polygon"}
        if labels == CSXA_LABELS:
            continue
        assert Counter(labels)["C3 top right"] == 2 and set(labels) == set(CSXA_LABELS) - {"C3 top left"}
        duplicated += 1
    assert duplicated == 1
    assert csxa.landmark_labels() == CSXA_LABELS


def test_csxa_landmarks_follow_curvature(archives):
    png, labelme, sheet, _ = csxa_contents(archives[("csxa", False)])
    curvature = dict(zip(sheet["Number"], sheet[CSXA_CURVATURE], strict=True))
    bows = {}
    for stem, document in labelme.items():
        points = {shape["label"]: np.array(shape["points"][0]) for shape in document["shapes"]}
        top, bottom = points["C2 centroid"], (points["C7 bottom left"] + points["C7 bottom right"]) / 2
        middle = (
            points["C4 bottom left"]
            + points["C4 bottom right"]
            + points["C5 top left"]
            + points["C5 top right"]
        ) / 4
        direction = (bottom - top) / np.linalg.norm(bottom - top)
        offset = middle - top
        bows[curvature[int(stem[:4])]] = float(offset[0] * direction[1] - offset[1] * direction[0])
    assert bows[1] < -3 < 3 < bows[5]  # lordotic bows anterior (image left), kyphotic posterior
    assert abs(bows[2]) < abs(bows[1]) and abs(bows[2]) < abs(bows[5])


def test_csxa_decoys(archives):
    png, labelme, sheet, _ = csxa_contents(archives[("csxa", True)])
    numbers = {int(stem[:4]) for stem in png}
    rows = set(sheet["Number"])
    assert len(rows - numbers) == 1 and len(numbers - rows) == 1
    assert len(numbers & rows) == TINY["csxa_images"]
    assert len(set(png) - set(labelme)) == 1


# --------------------------------------------------------------------------------------------------
# Determinism, atomicity, entry point, phantoms
# --------------------------------------------------------------------------------------------------
def tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("source", ["rsna", "vindr", "buu", "csxa"])
def test_byte_identical_reruns(archives, tmp_path, source):
    synth.write_source(source, tmp_path / source, TINY, SEED, True)
    assert tree_bytes(tmp_path / source) == tree_bytes(archives[(source, True)])
    synth.write_source(source, tmp_path / "other-seed", TINY, SEED + 1, True)
    assert tree_bytes(tmp_path / "other-seed") != tree_bytes(archives[(source, True)])


def test_worker_processes_do_not_change_output(tmp_path):
    counts = dict(TINY, vindr_images=20)
    synth.write_source("vindr", tmp_path / "serial", counts, SEED, True, workers=1)
    synth.write_source("vindr", tmp_path / "forked", counts, SEED, True, workers=2)
    assert tree_bytes(tmp_path / "serial") == tree_bytes(tmp_path / "forked")


def test_interrupted_write_leaves_previous_output(tmp_path, monkeypatch):
    out = tmp_path / "buu"
    synth.write_source("buu", out, TINY, SEED, False)
    before = tree_bytes(out)

    def failing_writer(staging, counts, seed, decoys, workers=None, film_size="compact"):
        (staging / "half-written.zip").write_bytes(b"PK")
        raise RuntimeError("interrupted")

    monkeypatch.setitem(synth.WRITERS, "buu", failing_writer)
    with pytest.raises(RuntimeError):
        synth.write_source("buu", out, TINY, SEED, False)
    assert tree_bytes(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["buu"]  # no staging left behind


def test_rerun_replaces_stale_output(tmp_path):
    out = tmp_path / "csxa"
    out.mkdir()
    (out / "stale.txt").write_text("old")
    synth.write_source("csxa", out, TINY, SEED, False)
    assert sorted(p.name for p in out.iterdir()) == ["datasets-JSON.zip", "datasets-PNG.zip", "datasets.xlsx"]


def test_bad_arguments_are_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown source"):
        synth.write_source("mimic", tmp_path / "x", TINY, SEED, False)
    with pytest.raises(ValueError, match="rsna_images"):
        synth.write_source("rsna", tmp_path / "x", {"vindr_images": 3}, SEED, False)
    with pytest.raises(ValueError, match="non-negative"):
        synth.write_source("buu", tmp_path / "x", {"buu_cases": -1}, SEED, False)
    assert not (tmp_path / "x").exists()


def test_snakemake_script_entry_point(tmp_path):
    out = tmp_path / "resources" / "synthetic" / "buu"
    fake = SimpleNamespace(
        wildcards=SimpleNamespace(source="buu"),
        params=SimpleNamespace(counts={"buu_cases": 2}, seed=SEED, decoys=False, film_size="compact"),
        output=[str(out)],
        log=[str(tmp_path / "synth.log")],
        config={"cache": {"dir": str(tmp_path / "store")}},
        threads=1,
    )
    script = Path(__file__).resolve().parents[1] / "scripts" / "synthesize_source.py"
    runpy.run_path(str(script), init_globals={"snakemake": fake})
    assert len(buu_files(out)) == 8
    assert "wrote 1 files" in (tmp_path / "synth.log").read_text()
    # Again: the archive is copied from the store, byte for byte.
    first = (out / "BUU-LSPINE_400.zip").read_bytes()
    runpy.run_path(str(script), init_globals={"snakemake": fake})
    assert "copied from the store 1 files" in (tmp_path / "synth.log").read_text()
    assert (out / "BUU-LSPINE_400.zip").read_bytes() == first


def test_column_geometry_reflects_lesions():
    rng = np.random.default_rng(0)
    spec = phantoms.fitted(phantoms.lumbar_spec(rng, 1.0, (0.0, 0.0), lateral=True), 400, 320)
    normal = phantoms.build_column(spec)
    slipped = phantoms.build_column(replace(spec, slips={3: -12.0}))
    assert slipped["L4"].center[0] < normal["L4"].center[0] - 10  # L4 and above moved anteriorly
    assert slipped["L1"].center[0] < normal["L1"].center[0] - 10
    assert np.allclose(slipped["L5"].corners, normal["L5"].corners)  # below the slipped disc: unchanged
    collapsed = phantoms.build_column(replace(spec, collapse={1: 0.4}, wedge={1: 0.5}))
    assert collapsed["L2"].height == pytest.approx(normal["L2"].height * 0.6 * 0.75, rel=0.02)
    anterior = np.linalg.norm(
        collapsed["L2"].corners[phantoms.BOTTOM_LEFT] - collapsed["L2"].corners[phantoms.TOP_LEFT]
    )
    posterior = np.linalg.norm(
        collapsed["L2"].corners[phantoms.BOTTOM_RIGHT] - collapsed["L2"].corners[phantoms.TOP_RIGHT]
    )
    assert anterior == pytest.approx(posterior * 0.5, rel=1e-6)  # wedge: the anterior side lost half
    spur = phantoms.osteophyte(normal["L3"], phantoms.TOP_LEFT, 8.0)
    assert spur[:, 0].min() < normal["L3"].corners[:, 0].min()  # grows out of the body
