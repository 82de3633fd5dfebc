"""Facts learnt from the real public RSNA 2024 and CSXA files (issue 6), twice each: the synthetic archive
has the fact (so the generator cannot silently drift away from it), and the standardization handles it.

RSNA: left and right subarticular points of a level on two axial series or on neighbouring instances of
one series; one side's foraminal points over 2-3 instances; coordinates with about 17 significant digits;
CRLF line ends; 2 to 6 series per study; study ids of 7 to 10 digits (beyond int32); slices of one series
with different shapes. CSXA: LabelMe files carrying imageData (base64 of the image) instead of null.

The synthetic checks read the archives as a consumer would (zip members, CSV text, DICOM headers) and
spell the expectations out here rather than importing them from the generator.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import zipfile
from collections import Counter, defaultdict
from pathlib import Path

import duckdb
import openpyxl
import pandas as pd
import pydicom
import pytest
from PIL import Image

from spinebench import synth
from spinebench.archive import open_source
from spinebench.ingest import ingest_source, load_label_map
from spinebench.io import read_table, write_table
from spinebench.standardize import STANDARDIZED_COLUMNS, STANDARDIZED_SCHEMA, standardize_source
from spinebench.synth import rsna as rsna_synth
from spinebench.synth.seeding import UniqueIds

ROOT = Path(__file__).resolve().parents[1]
SEED = 20251014
# The RSNA generator promises every fact from 65 images on (its module docstring); 12 CSXA cases hold
# two with a null imageData (cases 1 and 11) and ten with an embedded one.
RSNA_COUNT = 65
CSXA_COUNT = 12
RSNA_ZIP = "rsna-2024-lumbar-spine-degenerative-classification.zip"
INT32_MAX = 2**31 - 1
LEVELS = ["L1/L2", "L2/L3", "L3/L4", "L4/L5", "L5/S1"]
SCS = "Spinal Canal Stenosis"
LEFT_NFN, RIGHT_NFN = "Left Neural Foraminal Narrowing", "Right Neural Foraminal Narrowing"
LEFT_SS, RIGHT_SS = "Left Subarticular Stenosis", "Right Subarticular Stenosis"
CONDITIONS = [SCS, LEFT_NFN, RIGHT_NFN, LEFT_SS, RIGHT_SS]
DISEASE = {
    SCS: "Spinal canal stenosis",
    LEFT_NFN: "Foraminal stenosis",
    RIGHT_NFN: "Foraminal stenosis",
    LEFT_SS: "Subarticular stenosis",
    RIGHT_SS: "Subarticular stenosis",
}
TRAIN_HEADER = ["study_id"] + [
    f"{condition.lower().replace(' ', '_')}_{level.lower().replace('/', '_')}"
    for condition in CONDITIONS
    for level in LEVELS
]
COORDINATE_HEADER = ["study_id", "series_id", "instance_number", "condition", "level", "x", "y"]
SERIES_HEADER = ["study_id", "series_id", "series_description"]
RSNA_DEFAULTS = {"slice_policy": "labeled_instance", "min_severity": None, "multi_condition": "most_points"}
CSXA_CURVATURE = "Curvature: 1.Lordotic, 2.Straight, 3.Sigmoid1, 4.Sigmoid2, 5.Kyphotic"
CSXA_DEFAULTS = {"curvature_column": CSXA_CURVATURE, "require_landmarks": False}
CSXA_LABELS = ["C2 centroid", "C2 bottom left", "C2 bottom right"] + [
    f"C{n} {corner}"
    for n in range(3, 8)
    for corner in ("top left", "top right", "bottom left", "bottom right")
]


def run(source: str, path: Path, settings: dict) -> tuple[dict[str, dict], dict[str, str]]:
    """Standardize with the repository's SQL and label map.

    Returns (kept rows by image_id, rejected item -> reason); a missing cell reads None (pandas gives an
    all-null string column NaN).
    """
    table, rejected = standardize_source(
        source,
        path,
        ROOT / "sql" / "standardize" / f"{source}.sql",
        ROOT / "resources" / "label_maps" / f"{source}.csv",
        settings,
    )
    assert list(table.columns) == list(STANDARDIZED_COLUMNS)
    assert not rejected["item"].duplicated().any(), rejected
    records = [
        {key: None if not isinstance(value, list) and pd.isna(value) else value for key, value in row.items()}
        for row in table.to_dict("records")
    ]
    return (
        {row["image_id"]: row for row in records},
        dict(zip(rejected["item"], rejected["reason"], strict=True)),
    )


def csv_records(data: bytes) -> tuple[list[str], list[dict]]:
    """(header, rows) of a CSV member, read like any CSV reader does (either line end)."""
    reader = csv.reader(io.StringIO(data.decode("utf-8"), newline=""))
    header = next(reader)
    return header, [dict(zip(header, row, strict=True)) for row in reader]


def significant_digits(text: str) -> int:
    """Significant digits of a positional decimal, e.g. 322.8314606741573 -> 16."""
    digits = text.lstrip("-").replace(".", "").lstrip("0")
    return len(digits.rstrip("0")) if "." not in text else len(digits)


def natural_middle(instances: list[str]) -> str:
    """The lower middle of a series' instance numbers in numeric order (the middle_slice policy)."""
    ordered = sorted(instances, key=int)
    return ordered[(len(ordered) - 1) // 2]


# --------------------------------------------------------------------------------------------------
# The synthetic RSNA archive
# --------------------------------------------------------------------------------------------------
class RsnaArchive:
    """The synthetic RSNA zip as a reader sees it."""

    def __init__(self, folder: Path):
        self.folder = folder
        with zipfile.ZipFile(folder / RSNA_ZIP) as bundle:
            self.names = bundle.namelist()
            self.csv_bytes = {name: bundle.read(name) for name in self.names if name.endswith(".csv")}
            self.shapes = {}
            for name in self.names:
                if name.startswith("train_images/"):
                    header = pydicom.dcmread(io.BytesIO(bundle.read(name)), stop_before_pixels=True)
                    self.shapes[name] = (int(header.Rows), int(header.Columns))
        _, self.coordinates = csv_records(self.csv_bytes["train_label_coordinates.csv"])
        _, self.series = csv_records(self.csv_bytes["train_series_descriptions.csv"])

    def files_of(self, study: str, series: str) -> list[str]:
        """Instance numbers (text) of the DICOM files of one train series."""
        prefix = f"train_images/{study}/{series}/"
        return [name[len(prefix) : -len(".dcm")] for name in self.shapes if name.startswith(prefix)]

    def valid_points(self) -> list[dict]:
        """Coordinate rows of a known condition whose DICOM file exists (the counted images' points)."""
        return [
            row
            for row in self.coordinates
            if row["condition"] in CONDITIONS
            and f"train_images/{row['study_id']}/{row['series_id']}/{row['instance_number']}.dcm"
            in self.shapes
        ]

    def subarticular_pairs(self) -> list[tuple[dict, dict]]:
        """(left, right) subarticular rows of the same (study, level)."""
        sides = defaultdict(dict)
        for row in self.coordinates:
            if row["condition"] in (LEFT_SS, RIGHT_SS):
                sides[(row["study_id"], row["level"])][row["condition"]] = row
        return [(pair[LEFT_SS], pair[RIGHT_SS]) for pair in sides.values() if len(pair) == 2]


@pytest.fixture(scope="module")
def rsna_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("real-layouts") / "rsna"
    synth.write_source("rsna", folder, {"rsna_images": RSNA_COUNT}, SEED, decoys=True)
    return folder


@pytest.fixture(scope="module")
def rsna_archive(rsna_folder) -> RsnaArchive:
    return RsnaArchive(rsna_folder)


def test_synthetic_subarticular_sides_on_two_series_and_on_neighbouring_instances(rsna_archive):
    descriptions = {
        (row["study_id"], row["series_id"]): row["series_description"] for row in rsna_archive.series
    }
    on_two_series, on_neighbours = [], []
    for left, right in rsna_archive.subarticular_pairs():
        study = left["study_id"]
        if left["series_id"] != right["series_id"]:
            on_two_series.append((left, right))
            assert (
                descriptions[(study, left["series_id"])]
                == descriptions[(study, right["series_id"])]
                == "Axial T2"
            )
        elif left["instance_number"] != right["instance_number"]:
            files = sorted(rsna_archive.files_of(study, left["series_id"]), key=int)
            positions = sorted(files.index(row["instance_number"]) for row in (left, right))
            assert positions[1] - positions[0] == 1, "split sides sit on neighbouring instances"
            on_neighbours.append((left, right))
    assert on_two_series and on_neighbours


def test_synthetic_one_sides_foraminal_points_spread_over_two_or_three_instances(rsna_archive):
    instances = defaultdict(set)
    for row in rsna_archive.coordinates:
        if row["condition"] in (LEFT_NFN, RIGHT_NFN):
            instances[(row["study_id"], row["condition"])].add((row["series_id"], row["instance_number"]))
    spreads = Counter(len(found) for found in instances.values())
    assert spreads[2] and spreads[3]
    assert set(spreads) <= {1, 2, 3}


def test_synthetic_coordinates_carry_all_digits(rsna_archive):
    texts = [row[axis] for row in rsna_archive.coordinates for axis in ("x", "y")]
    for text in texts:
        assert repr(float(text)) == text or float(text).is_integer(), f"{text} is not the float's full text"
        assert "e" not in text.lower()
    digits = sorted(significant_digits(text) for text in texts)
    assert digits[len(digits) // 2] >= 15, "most coordinates carry 15-17 significant digits"
    assert max(digits) == 17


def test_synthetic_csv_line_ends_and_headers(rsna_archive):
    crlf = ["train.csv", "train_label_coordinates.csv", "train_series_descriptions.csv"]
    lf = ["test_series_descriptions.csv", "sample_submission.csv"]
    for name in crlf:
        data = rsna_archive.csv_bytes[name]
        assert data.endswith(b"\r\n") and data.count(b"\n") == data.count(b"\r\n") == data.count(b"\r"), name
    for name in lf:
        assert b"\r" not in rsna_archive.csv_bytes[name] and rsna_archive.csv_bytes[name].endswith(b"\n"), (
            name
        )
    headers = {name: csv_records(data)[0] for name, data in rsna_archive.csv_bytes.items()}
    assert headers == {
        "train.csv": TRAIN_HEADER,
        "train_label_coordinates.csv": COORDINATE_HEADER,
        "train_series_descriptions.csv": SERIES_HEADER,
        "test_series_descriptions.csv": SERIES_HEADER,
        "sample_submission.csv": ["row_id", "normal_mild", "moderate", "severe"],
    }


def test_synthetic_studies_have_two_to_six_series_all_on_disk(rsna_archive):
    per_study = Counter(row["study_id"] for row in rsna_archive.series)
    # 2 to 6 as in the real data; 1 is the decoy study's single series.
    assert {2, 3, 4, 5, 6} <= set(per_study.values()) <= {1, 2, 3, 4, 5, 6}
    labelled = {(row["study_id"], row["series_id"]) for row in rsna_archive.coordinates}
    unlabelled = [
        (row["study_id"], row["series_id"])
        for row in rsna_archive.series
        if (row["study_id"], row["series_id"]) not in labelled
    ]
    assert unlabelled, "extra series without coordinates"
    for row in rsna_archive.series:
        assert rsna_archive.files_of(row["study_id"], row["series_id"]), row


def test_synthetic_study_ids_have_seven_to_ten_digits_beyond_int32(rsna_archive):
    _, train = csv_records(rsna_archive.csv_bytes["train.csv"])
    ids = [row["study_id"] for row in train]
    assert all(text.isdigit() and not text.startswith("0") for text in ids)
    lengths = Counter(len(text) for text in ids)
    assert min(lengths) == 7 and max(lengths) == 10
    assert any(int(text) > INT32_MAX for text in ids)
    assert {row["study_id"] for row in rsna_archive.coordinates} <= set(ids)


def test_synthetic_series_with_slices_of_two_shapes(rsna_archive):
    shapes = defaultdict(set)
    for name, shape in rsna_archive.shapes.items():
        shapes[name.rsplit("/", 1)[0]].add(shape)
    assert any(len(found) == 2 for found in shapes.values())


def test_generator_keeps_the_facts_at_scale():
    """Plans only (no pixels): the series-count mix and id lengths of a large archive, and study 0's
    splits as soon as it has 13 labelled instances."""
    plans = rsna_synth.plan_train_studies(SEED, 3000, UniqueIds(), UniqueIds())
    series_counts = Counter(len(plan.series) for plan in plans)
    assert 0.12 < 1 - series_counts[3] / len(plans) < 0.24  # the real 343 of 1,975 = 17%
    assert set(series_counts) <= {2, 3, 4, 5, 6}
    assert {7, 10} <= {len(str(plan.study_id)) for plan in plans} <= {7, 8, 9, 10}
    assert sum(any(s.resized_from is not None for s in plan.series) for plan in plans) > len(plans) // 100

    (study,) = rsna_synth.plan_train_studies(SEED, 13, UniqueIds(), UniqueIds())
    families = Counter(group.family for group in study.groups)
    assert (families["L"], families["R"]) == (2, 3)
    axial_halves = [group for group in study.groups if group.family == "axial" and len(group.points) == 1]
    assert len(axial_halves) == 4 and sum(group.axial_series for group in axial_halves) == 1


# --------------------------------------------------------------------------------------------------
# Standardization of a hand-made RSNA folder with every fact
# --------------------------------------------------------------------------------------------------
TEN = "4290709089"  # 10 digits, above int32
SEVEN = "4003253"  # 7 digits
SAG_T2, SAG_T1, AXIAL, AXIAL_REPEAT, AXIAL_EXTRA, SAG_T1_EXTRA = (
    "1054713880",
    "702807833",
    "2448190387",
    "3481971518",
    "3844393089",
    "1510451897",
)
B_SAG_T2, B_SAG_T1 = "2828203845", "3844393090"
# x, y with 16-17 significant digits, as the real CSV (322.8314606741573 = 28732/89).
X, Y = "322.8314606741573", "224.73033707865167"
HANDMADE_POINTS = [
    (TEN, SAG_T2, 8, SCS, "L4/L5"),
    (TEN, SAG_T2, 8, SCS, "L5/S1"),
    (TEN, SAG_T1, 3, LEFT_NFN, "L3/L4"),  # the left foraminal points over three instances
    (TEN, SAG_T1, 4, LEFT_NFN, "L4/L5"),
    (TEN, SAG_T1, 5, LEFT_NFN, "L5/S1"),
    (TEN, SAG_T1, 12, RIGHT_NFN, "L4/L5"),
    (TEN, SAG_T1, 12, RIGHT_NFN, "L5/S1"),
    (TEN, AXIAL, 7, LEFT_SS, "L3/L4"),  # L and R on one instance: one merged image
    (TEN, AXIAL, 7, RIGHT_SS, "L3/L4"),
    (TEN, AXIAL, 10, LEFT_SS, "L4/L5"),  # L and R on two series
    (TEN, AXIAL_REPEAT, 4, RIGHT_SS, "L4/L5"),
    (TEN, AXIAL, 13, LEFT_SS, "L5/S1"),  # L and R on neighbouring instances
    (TEN, AXIAL, 14, RIGHT_SS, "L5/S1"),
    (SEVEN, B_SAG_T2, 8, SCS, "L1/L2"),
    (SEVEN, B_SAG_T2, 8, SCS, "L2/L3"),
    (SEVEN, B_SAG_T1, 5, LEFT_NFN, "L3/L4"),  # canal + foraminal on one instance (multi_condition)
    (SEVEN, B_SAG_T1, 5, LEFT_NFN, "L4/L5"),
    (SEVEN, B_SAG_T1, 5, SCS, "L3/L4"),
]
HANDMADE_SERIES = [
    (TEN, SAG_T2, "Sagittal T2/STIR"),
    (TEN, SAG_T1, "Sagittal T1"),
    (TEN, AXIAL, "Axial T2"),
    (TEN, AXIAL_REPEAT, "Axial T2"),
    (TEN, AXIAL_EXTRA, "Axial T2"),  # unlabelled: six series in all
    (TEN, SAG_T1_EXTRA, "Sagittal T1"),
    (SEVEN, B_SAG_T2, "Sagittal T2/STIR"),
    (SEVEN, B_SAG_T1, "Sagittal T1"),
]
HANDMADE_FILES = {
    (TEN, SAG_T2): [7, 8, 9],
    (TEN, SAG_T1): [2, 3, 4, 5, 12],
    (TEN, AXIAL): [6, 7, 10, 13, 14],  # natural middle 10; lexical order would give 14
    (TEN, AXIAL_REPEAT): [3, 4, 5],
    (TEN, AXIAL_EXTRA): [1, 2, 3],
    (TEN, SAG_T1_EXTRA): [1, 2],
    (SEVEN, B_SAG_T2): [8],
    (SEVEN, B_SAG_T1): [4, 5, 6],
}
# Study TEN's last train.csv cell (right_subarticular_stenosis_l5_s1) is Severe, where a kept '\r' would
# sit; SEVEN's last cell is empty ("...,\r\n").
HANDMADE_GRADES = {
    TEN: {
        "spinal_canal_stenosis_l4_l5": "Moderate",
        "spinal_canal_stenosis_l5_s1": "Normal/Mild",
        "left_neural_foraminal_narrowing_l3_l4": "Normal/Mild",
        "left_neural_foraminal_narrowing_l4_l5": "Moderate",
        "left_neural_foraminal_narrowing_l5_s1": "Moderate",
        "right_neural_foraminal_narrowing_l4_l5": "Normal/Mild",
        "right_neural_foraminal_narrowing_l5_s1": "Normal/Mild",
        "left_subarticular_stenosis_l3_l4": "Normal/Mild",
        "right_subarticular_stenosis_l3_l4": "Normal/Mild",
        "left_subarticular_stenosis_l4_l5": "Moderate",
        "right_subarticular_stenosis_l4_l5": "Moderate",
        "left_subarticular_stenosis_l5_s1": "Moderate",
        "right_subarticular_stenosis_l5_s1": "Severe",
    },
    SEVEN: {
        "spinal_canal_stenosis_l1_l2": "Moderate",
        "spinal_canal_stenosis_l2_l3": "Normal/Mild",
        "spinal_canal_stenosis_l3_l4": "Normal/Mild",
        "left_neural_foraminal_narrowing_l3_l4": "Moderate",
        "left_neural_foraminal_narrowing_l4_l5": "Normal/Mild",
    },
}
# A bad row after the points: its line number (header = line 1) must survive CRLF parsing.
BAD_ROW_LINE = len(HANDMADE_POINTS) + 2


def write_crlf_csv(path: Path, header: list[str], rows: list[list]) -> None:
    """A CSV whose every line ends with CRLF."""
    lines = [",".join(str(cell) for cell in row) for row in [header, *rows]]
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode("utf-8"))


@pytest.fixture
def handmade_rsna(tmp_path) -> Path:
    """An extracted RSNA folder with CRLF CSVs and every RSNA fact (DICOMs are placeholders: the
    standardization only lists them)."""
    root = tmp_path / "rsna"
    root.mkdir()
    train = [
        [study] + [grades.get(column, "") for column in TRAIN_HEADER[1:]]
        for study, grades in HANDMADE_GRADES.items()
    ]
    write_crlf_csv(root / "train.csv", TRAIN_HEADER, train)
    coordinates = [[*point, X, Y] for point in HANDMADE_POINTS]
    coordinates.append([SEVEN, B_SAG_T2, 8, SCS, "L6/S1", X, Y])
    write_crlf_csv(root / "train_label_coordinates.csv", COORDINATE_HEADER, coordinates)
    write_crlf_csv(
        root / "train_series_descriptions.csv", SERIES_HEADER, [list(row) for row in HANDMADE_SERIES]
    )
    for (study, series), instances in HANDMADE_FILES.items():
        folder = root / "train_images" / study / series
        folder.mkdir(parents=True)
        for instance in instances:
            (folder / f"{instance}.dcm").write_bytes(b"DICM")
    return root


def expected_row(study, series, instance, disease, levels, view, labels) -> dict:
    """A standardized RSNA row, every column spelled out."""
    return {
        "image_id": f"rsna-{study}-{series}-{instance}",
        "source": "rsna",
        "modality": "MRI",
        "region": "lumbar",
        "disease": disease,
        "levels": levels,
        "member": f"train_images/{study}/{series}/{instance}.dcm",
        "view": view,
        "study_id": study,
        "series_id": series,
        "instance_number": str(instance),
        "source_labels": labels,
    }


BAD_ROW = {f"study {SEVEN} {SCS} L6/S1": "unknown level: L6/S1"}


def test_standardize_handmade_rsna_labeled_instances(handmade_rsna):
    kept, rejected = run("rsna", handmade_rsna, RSNA_DEFAULTS)
    sub, nfn, scs = "Subarticular stenosis", "Foraminal stenosis", "Spinal canal stenosis"
    rows = [
        expected_row(TEN, SAG_T2, 8, scs, ["L4/L5", "L5/S1"], "Sagittal T2/STIR", [SCS]),
        expected_row(TEN, SAG_T1, 3, nfn, ["L3/L4"], "Sagittal T1", [LEFT_NFN]),
        expected_row(TEN, SAG_T1, 4, nfn, ["L4/L5"], "Sagittal T1", [LEFT_NFN]),
        expected_row(TEN, SAG_T1, 5, nfn, ["L5/S1"], "Sagittal T1", [LEFT_NFN]),
        expected_row(TEN, SAG_T1, 12, nfn, ["L4/L5", "L5/S1"], "Sagittal T1", [RIGHT_NFN]),
        expected_row(TEN, AXIAL, 7, sub, ["L3/L4"], "Axial T2", [LEFT_SS, RIGHT_SS]),
        expected_row(TEN, AXIAL, 10, sub, ["L4/L5"], "Axial T2", [LEFT_SS]),
        expected_row(TEN, AXIAL_REPEAT, 4, sub, ["L4/L5"], "Axial T2", [RIGHT_SS]),
        expected_row(TEN, AXIAL, 13, sub, ["L5/S1"], "Axial T2", [LEFT_SS]),
        expected_row(TEN, AXIAL, 14, sub, ["L5/S1"], "Axial T2", [RIGHT_SS]),
        expected_row(SEVEN, B_SAG_T2, 8, scs, ["L1/L2", "L2/L3"], "Sagittal T2/STIR", [SCS]),
        # most_points: two foraminal points beat one canal point; levels are the chosen condition's.
        expected_row(SEVEN, B_SAG_T1, 5, nfn, ["L3/L4", "L4/L5"], "Sagittal T1", [LEFT_NFN, SCS]),
    ]
    assert kept == {row["image_id"]: row for row in rows}
    assert rejected == BAD_ROW


def test_standardize_handmade_rsna_middle_slice(handmade_rsna):
    kept, rejected = run("rsna", handmade_rsna, {**RSNA_DEFAULTS, "slice_policy": "middle_slice"})
    sub, nfn, scs = "Subarticular stenosis", "Foraminal stenosis", "Spinal canal stenosis"
    rows = [
        expected_row(TEN, SAG_T2, 8, scs, ["L4/L5", "L5/S1"], "Sagittal T2/STIR", [SCS]),
        expected_row(TEN, SAG_T1, 4, nfn, ["L3/L4", "L4/L5", "L5/S1"], "Sagittal T1", [LEFT_NFN, RIGHT_NFN]),
        expected_row(TEN, AXIAL, 10, sub, ["L3/L4", "L4/L5", "L5/S1"], "Axial T2", [LEFT_SS, RIGHT_SS]),
        expected_row(TEN, AXIAL_REPEAT, 4, sub, ["L4/L5"], "Axial T2", [RIGHT_SS]),
        expected_row(SEVEN, B_SAG_T2, 8, scs, ["L1/L2", "L2/L3"], "Sagittal T2/STIR", [SCS]),
        expected_row(SEVEN, B_SAG_T1, 5, nfn, ["L3/L4", "L4/L5"], "Sagittal T1", [LEFT_NFN, SCS]),
    ]
    assert kept == {row["image_id"]: row for row in rows}
    assert rejected == BAD_ROW


def test_standardize_reads_the_last_crlf_column_exactly(handmade_rsna):
    """The Severe grade in train.csv's last column still counts, and no '\\r' reaches a relation."""
    kept, rejected = run("rsna", handmade_rsna, {**RSNA_DEFAULTS, "min_severity": "Severe"})
    assert list(kept) == [f"rsna-{TEN}-{AXIAL}-14"]
    assert set(rejected.values()) == {"no finding at or above min_severity Severe", "unknown level: L6/S1"}

    con = duckdb.connect(":memory:")
    with open_source("rsna", handmade_rsna) as archive:
        label_map = load_label_map("rsna", ROOT / "resources" / "label_maps" / "rsna.csv")
        ingest_source(con, "rsna", archive, RSNA_DEFAULTS, label_map)
    for relation in ("train", "coordinates", "series_descriptions"):
        frame = con.sql(f"SELECT * FROM {relation}").df()
        assert not any("\r" in column for column in frame.columns), relation
        cells = [value for column in frame.columns for value in frame[column] if isinstance(value, str)]
        assert cells and not any("\r" in value for value in cells), relation
    assert con.sql("SELECT max(line) FROM coordinates").fetchall() == [(BAD_ROW_LINE,)]
    # Coordinates stay the exact text of the file and parse to the same double in DuckDB.
    parsed = con.sql("SELECT DISTINCT x, y, CAST(x AS DOUBLE), CAST(y AS DOUBLE) FROM coordinates").fetchall()
    assert parsed == [(X, Y, float(X), float(Y))]
    assert significant_digits(Y) == 17


def test_ten_digit_ids_stay_exact_end_to_end(handmade_rsna, tmp_path):
    table, _ = standardize_source(
        "rsna",
        handmade_rsna,
        ROOT / "sql/standardize/rsna.sql",
        ROOT / "resources/label_maps/rsna.csv",
        RSNA_DEFAULTS,
    )
    path = tmp_path / "rsna.parquet"
    write_table(table, path, schema=STANDARDIZED_SCHEMA)
    back = read_table(path)
    assert set(back["study_id"]) == {TEN, SEVEN}
    assert f"rsna-{TEN}-{AXIAL_REPEAT}-4" in set(back["image_id"])
    con = duckdb.connect(":memory:")
    described = con.sql(
        "DESCRIBE SELECT study_id, series_id FROM read_parquet(?)", params=[str(path)]
    ).fetchall()
    assert {name: kind for name, kind, *_ in described} == {"study_id": "VARCHAR", "series_id": "VARCHAR"}
    found = con.sql(
        "SELECT count(*) FROM read_parquet(?) WHERE study_id = ?", params=[str(path), TEN]
    ).fetchall()
    assert found == [(10,)]  # the ten images of study TEN


# --------------------------------------------------------------------------------------------------
# Standardization of the synthetic RSNA archive
# --------------------------------------------------------------------------------------------------
def test_standardize_synthetic_rsna_keeps_every_fact(rsna_folder, rsna_archive):
    kept, rejected = run("rsna", rsna_folder, RSNA_DEFAULTS)
    assert len(kept) == RSNA_COUNT
    assert sorted(rejected.values()) == ["missing image", "unknown condition: Facet Arthropathy"]
    by_instance = defaultdict(list)
    for row in rsna_archive.valid_points():
        by_instance[f"rsna-{row['study_id']}-{row['series_id']}-{row['instance_number']}"].append(row)
    assert set(kept) == set(by_instance)
    descriptions = {
        (row["study_id"], row["series_id"]): row["series_description"] for row in rsna_archive.series
    }
    for image_id, points in by_instance.items():
        row = kept[image_id]
        first = points[0]
        assert (row["study_id"], row["series_id"], row["instance_number"]) == (
            first["study_id"],
            first["series_id"],
            first["instance_number"],
        )
        assert row["view"] == descriptions[(first["study_id"], first["series_id"])]
        assert row["source_labels"] == sorted({point["condition"] for point in points})
        if len({DISEASE[point["condition"]] for point in points}) == 1:
            assert row["disease"] == DISEASE[first["condition"]]
            assert row["levels"] == sorted({point["level"] for point in points}, key=LEVELS.index)
    assert any(int(row["study_id"]) > INT32_MAX for row in kept.values())
    assert {len(row["study_id"]) for row in kept.values()} >= {7, 10}
    # Split subarticular sides (on two series or on neighbouring instances) are two images of one level.
    for left, right in rsna_archive.subarticular_pairs():
        if (left["series_id"], left["instance_number"]) == (right["series_id"], right["instance_number"]):
            continue
        for side, point in ((LEFT_SS, left), (RIGHT_SS, right)):
            row = kept[f"rsna-{point['study_id']}-{point['series_id']}-{point['instance_number']}"]
            assert (row["disease"], row["levels"], row["source_labels"]) == (
                "Subarticular stenosis",
                [point["level"]],
                [side],
            )


def test_standardize_synthetic_rsna_middle_slice_of_a_series_with_two_shapes(rsna_folder, rsna_archive):
    kept, _ = run("rsna", rsna_folder, {**RSNA_DEFAULTS, "slice_policy": "middle_slice"})
    # Every series with a point of a known condition and DICOM files (the decoy point whose own instance
    # is missing included: its series has files, so middle_slice finds an image).
    labelled = {
        (row["study_id"], row["series_id"])
        for row in rsna_archive.coordinates
        if row["condition"] in CONDITIONS and rsna_archive.files_of(row["study_id"], row["series_id"])
    }
    expected = {
        f"rsna-{study}-{series}-{natural_middle(rsna_archive.files_of(study, series))}"
        for study, series in labelled
    }
    assert set(kept) == expected
    two_shapes = []
    for row in kept.values():
        members = [
            f"train_images/{row['study_id']}/{row['series_id']}/{n}.dcm"
            for n in rsna_archive.files_of(row["study_id"], row["series_id"])
        ]
        if len({rsna_archive.shapes[member] for member in members}) > 1:
            two_shapes.append(row)
    assert two_shapes, "a series whose slices differ in shape yields its middle slice"


# --------------------------------------------------------------------------------------------------
# CSXA: LabelMe imageData
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def csxa_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("real-layouts") / "csxa"
    synth.write_source("csxa", folder, {"csxa_images": CSXA_COUNT}, SEED, decoys=False)
    return folder


def test_synthetic_labelme_files_embed_the_image_or_null(csxa_folder):
    with (
        zipfile.ZipFile(csxa_folder / "datasets-PNG.zip") as pngs,
        zipfile.ZipFile(csxa_folder / "datasets-JSON.zip") as jsons,
    ):
        png = {Path(name).stem: pngs.read(name) for name in pngs.namelist() if name.endswith(".png")}
        labelme = {
            Path(name).stem: json.loads(jsons.read(name))
            for name in jsons.namelist()
            if name.endswith(".json")
        }
    embedded, null = [], []
    for stem, document in labelme.items():
        assert "imageData" in document
        if document["imageData"] is None:
            null.append(stem)
            continue
        data = base64.b64decode(document["imageData"], validate=True)
        assert data == png[stem]
        assert Image.open(io.BytesIO(data)).size == (document["imageWidth"], document["imageHeight"])
        embedded.append(stem)
    assert len(embedded) > len(null) >= 1


def csxa_handmade(tmp_path: Path) -> Path:
    """Two cases: 0001035's JSON embeds its PNG, 0002040's has imageData null."""
    root = tmp_path / "csxa"
    root.mkdir()
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = "Sheet1"
    for row in (
        ["Cervical Spine X-ray Atlas"],
        ["Number", "Gender", CSXA_CURVATURE],
        [1, "F", 1],
        [2, "M", 5],
    ):
        sheet.append(row)
    book.save(root / "datasets.xlsx")
    pngs, jsons = {}, {}
    for stem, embed in (("0001035", True), ("0002040", False)):
        buffer = io.BytesIO()
        Image.new("L", (40, 50), 128).save(buffer, format="PNG")
        pngs[f"datasets-PNG/{stem}.png"] = buffer.getvalue()
        shapes = [{"label": label, "points": [[1.5, 2.5]], "shape_type": "point"} for label in CSXA_LABELS]
        document = {
            "version": "5.2.1",
            "flags": {},
            "shapes": shapes,
            "imagePath": f"{stem}.png",
            "imageData": base64.b64encode(buffer.getvalue()).decode("ascii") if embed else None,
            "imageHeight": 50,
            "imageWidth": 40,
        }
        jsons[f"datasets-JSON/{stem}.json"] = json.dumps(document)
    for name, files in (("datasets-PNG.zip", pngs), ("datasets-JSON.zip", jsons)):
        with zipfile.ZipFile(root / name, "w") as bundle:
            for member, data in files.items():
                bundle.writestr(member, data)
    return root


@pytest.mark.parametrize("require_landmarks", [False, True])
def test_standardize_labelme_with_embedded_image(tmp_path, require_landmarks):
    kept, rejected = run(
        "csxa", csxa_handmade(tmp_path), {**CSXA_DEFAULTS, "require_landmarks": require_landmarks}
    )
    assert rejected == {}
    assert kept == {
        "csxa-0001035": {
            "image_id": "csxa-0001035",
            "source": "csxa",
            "modality": "X-ray",
            "region": "cervical",
            "disease": "Cervical lordosis",
            "levels": [],
            "member": "datasets-PNG/0001035.png",
            "view": "lateral",
            "study_id": "0001",
            "series_id": None,
            "instance_number": None,
            "source_labels": ["1"],
        },
        "csxa-0002040": {
            "image_id": "csxa-0002040",
            "source": "csxa",
            "modality": "X-ray",
            "region": "cervical",
            "disease": "Cervical kyphosis",
            "levels": [],
            "member": "datasets-PNG/0002040.png",
            "view": "lateral",
            "study_id": "0002",
            "series_id": None,
            "instance_number": None,
            "source_labels": ["5"],
        },
    }


def test_standardize_synthetic_csxa_keeps_embedded_image_cases_with_landmarks(csxa_folder):
    kept, rejected = run("csxa", csxa_folder, {**CSXA_DEFAULTS, "require_landmarks": True})
    # Every case but the one whose JSON repeats a label (case 2) has 23 landmarks, embedded image or not.
    assert len(kept) == CSXA_COUNT - 1
    assert list(rejected.values()) == ["LabelMe JSON lacks landmarks: 22 distinct of 23"]
