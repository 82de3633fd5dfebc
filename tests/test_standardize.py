"""Standardization SQL of each source on small hand-built archives: every param value, every reject reason."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import openpyxl
import pandas as pd
import pytest
import yaml

from spinebench import vocab
from spinebench.archive import ArchiveError
from spinebench.ingest import IngestError, count_labelme_landmarks, parse_headerless_csv
from spinebench.io import read_table, write_table
from spinebench.standardize import (
    REJECTED_SCHEMA,
    STANDARDIZED_COLUMNS,
    STANDARDIZED_SCHEMA,
    StandardizeError,
    rejection_counts,
    sql_parameters,
    standardize_source,
)

ROOT = Path(__file__).resolve().parents[1]


def run(source: str, path: Path, settings: dict, label_map: Path | None = None):
    """Standardize with the repository's SQL and label map; returns (kept by image_id, rejected rows)."""
    table, rejected = standardize_source(
        source,
        path,
        ROOT / "sql" / "standardize" / f"{source}.sql",
        label_map or ROOT / "resources" / "label_maps" / f"{source}.csv",
        settings,
    )
    assert list(table.columns) == list(STANDARDIZED_COLUMNS)
    assert table["image_id"].tolist() == sorted(table["image_id"])
    assert list(rejected.columns) == ["source", "item", "file", "reason"]
    assert (rejected["source"] == source).all()
    records = [
        {key: None if not isinstance(value, list) and pd.isna(value) else value for key, value in row.items()}
        for row in table.to_dict("records")
    ]
    return {row["image_id"]: row for row in records}, rejected


def reasons(rejected) -> dict[str, str]:
    """item -> reason (each test item is rejected at most once)."""
    assert not rejected["item"].duplicated().any(), rejected
    return dict(zip(rejected["item"], rejected["reason"], strict=True))


def write_zip(path: Path, files: dict[str, bytes | str]) -> Path:
    with zipfile.ZipFile(path, "w") as bundle:
        for name, data in files.items():
            bundle.writestr(name, data)
    return path


# --------------------------------------------------------------------------------------------- RSNA
RSNA_CONDITIONS = (
    "spinal_canal_stenosis",
    "left_neural_foraminal_narrowing",
    "right_neural_foraminal_narrowing",
    "left_subarticular_stenosis",
    "right_subarticular_stenosis",
)
RSNA_LEVELS = ("l1_l2", "l2_l3", "l3_l4", "l4_l5", "l5_s1")
RSNA_DEFAULTS = {"slice_policy": "labeled_instance", "min_severity": None, "multi_condition": "most_points"}


def rsna_archive(tmp_path, points, grades=None, series=None, instances=(), extra_train_rows=()):
    """A Kaggle-layout RSNA zip.

    points: (study, series, instance, condition, level); grades: {study: {column: severity}};
    series: (study, series, description); instances: DICOM paths 'study/series/n'.
    """
    columns = ["study_id"] + [f"{c}_{lv}" for c in RSNA_CONDITIONS for lv in RSNA_LEVELS]
    train = [",".join(columns)]
    for study, study_grades in (grades or {}).items():
        train.append(",".join([str(study)] + [study_grades.get(column, "") for column in columns[1:]]))
    train.extend(extra_train_rows)
    coordinates = ["study_id,series_id,instance_number,condition,level,x,y"]
    coordinates += [f"{s},{r},{n},{c},{lv},10.5,20.25" for s, r, n, c, lv in points]
    descriptions = ["study_id,series_id,series_description"] + [f"{s},{r},{d}" for s, r, d in series or []]
    files = {
        "train.csv": "\n".join(train) + "\n",
        "train_label_coordinates.csv": "\n".join(coordinates) + "\n",
        "train_series_descriptions.csv": "\n".join(descriptions) + "\n",
    }
    files.update({f"train_images/{path}.dcm": b"DICM" for path in instances})
    return write_zip(tmp_path / "rsna-2024-lumbar-spine-degenerative-classification.zip", files)


def test_rsna_labeled_instances_merge_sides_and_collect_levels(tmp_path):
    points = [
        (1, 10, 8, "Spinal Canal Stenosis", "L4/L5"),
        (1, 10, 8, "Spinal Canal Stenosis", "L1/L2"),
        (1, 11, 3, "Left Subarticular Stenosis", "L3/L4"),
        (1, 11, 3, "Right Subarticular Stenosis", "L3/L4"),
        (1, 12, 5, "Left Neural Foraminal Narrowing", "L5/S1"),
        (1, 12, 6, "Right Neural Foraminal Narrowing", "L2/L3"),
    ]
    series = [(1, 10, "Sagittal T2/STIR"), (1, 11, "Axial T2"), (1, 11, "Axial T2"), (1, 12, "Sagittal T1")]
    path = rsna_archive(tmp_path, points, series=series, instances=["1/10/8", "1/11/3", "1/12/5", "1/12/6"])
    kept, rejected = run("rsna", path, RSNA_DEFAULTS)
    assert rejected.empty
    assert set(kept) == {"rsna-1-10-8", "rsna-1-11-3", "rsna-1-12-5", "rsna-1-12-6"}
    canal = kept["rsna-1-10-8"]
    assert canal["disease"] == "Spinal canal stenosis"
    assert canal["levels"] == ["L1/L2", "L4/L5"]  # cranial to caudal, not CSV order
    assert canal["member"] == "train_images/1/10/8.dcm"
    assert (canal["view"], canal["study_id"], canal["series_id"], canal["instance_number"]) == (
        "Sagittal T2/STIR",
        "1",
        "10",
        "8",
    )
    assert (canal["source"], canal["modality"], canal["region"]) == ("rsna", "MRI", "lumbar")
    axial = kept["rsna-1-11-3"]
    assert axial["disease"] == "Subarticular stenosis" and axial["levels"] == ["L3/L4"]
    assert axial["source_labels"] == ["Left Subarticular Stenosis", "Right Subarticular Stenosis"]
    assert kept["rsna-1-12-5"]["disease"] == kept["rsna-1-12-6"]["disease"] == "Foraminal stenosis"


def test_rsna_middle_slice_uses_natural_order_of_the_series_members(tmp_path):
    points = [(1, 10, 2, "Spinal Canal Stenosis", "L1/L2"), (1, 10, 11, "Spinal Canal Stenosis", "L3/L4")]
    points += [(2, 20, 1, "Spinal Canal Stenosis", "L2/L3")]
    # Series 10: instances 1 2 3 10 11 (gapped; lexical order would put 10 and 11 before 2).
    instances = ["1/10/1", "1/10/2", "1/10/3", "1/10/10", "1/10/11"] + [
        "2/20/1",
        "2/20/2",
        "2/20/3",
        "2/20/4",
    ]
    path = rsna_archive(tmp_path, points, instances=instances)
    kept, rejected = run("rsna", path, {**RSNA_DEFAULTS, "slice_policy": "middle_slice"})
    assert rejected.empty
    assert set(kept) == {"rsna-1-10-3", "rsna-2-20-2"}  # even count: the lower middle
    assert kept["rsna-1-10-3"]["levels"] == ["L1/L2", "L3/L4"]
    assert kept["rsna-1-10-3"]["view"] is None


def test_rsna_middle_slice_of_a_series_without_dicoms_is_rejected(tmp_path):
    points = [(1, 10, 2, "Spinal Canal Stenosis", "L1/L2"), (1, 10, 3, "Spinal Canal Stenosis", "L2/L3")]
    path = rsna_archive(tmp_path, points, instances=["1/11/1"])
    # Every labelled image is missing: accepted explicitly (tests/test_source_faults.py: the default fails).
    settings = {**RSNA_DEFAULTS, "slice_policy": "middle_slice", "max_missing_image_share": 1}
    kept, rejected = run("rsna", path, settings)
    assert kept == {}
    assert reasons(rejected) == {"rsna-1-10": "missing image: no DICOM instances in the series"}
    assert rejected["file"].tolist() == ["train_label_coordinates.csv lines 2, 3 -> train_images/1/10/"]


SEVERITY_POINTS = [
    (1, 10, 1, "Spinal Canal Stenosis", "L1/L2"),  # Normal/Mild
    (1, 10, 1, "Spinal Canal Stenosis", "L2/L3"),  # Moderate
    (1, 10, 2, "Spinal Canal Stenosis", "L3/L4"),  # Severe
    (1, 10, 3, "Spinal Canal Stenosis", "L4/L5"),  # no grade in train.csv
]
SEVERITY_GRADES = {
    1: {
        "spinal_canal_stenosis_l1_l2": "Normal/Mild",
        "spinal_canal_stenosis_l2_l3": "Moderate",
        "spinal_canal_stenosis_l3_l4": "Severe",
    }
}


@pytest.mark.parametrize(
    ("min_severity", "expected_levels", "below"),
    [
        (None, {"rsna-1-10-1": ["L1/L2", "L2/L3"], "rsna-1-10-2": ["L3/L4"], "rsna-1-10-3": ["L4/L5"]}, []),
        ("Normal/Mild", {"rsna-1-10-1": ["L1/L2", "L2/L3"], "rsna-1-10-2": ["L3/L4"]}, ["rsna-1-10-3"]),
        ("Moderate", {"rsna-1-10-1": ["L2/L3"], "rsna-1-10-2": ["L3/L4"]}, ["rsna-1-10-3"]),
        ("Severe", {"rsna-1-10-2": ["L3/L4"]}, ["rsna-1-10-1", "rsna-1-10-3"]),
    ],
)
def test_rsna_min_severity_filters_points_and_rejects_emptied_instances(
    tmp_path, min_severity, expected_levels, below
):
    instances = ["1/10/1", "1/10/2", "1/10/3"]
    path = rsna_archive(tmp_path, SEVERITY_POINTS, grades=SEVERITY_GRADES, instances=instances)
    kept, rejected = run("rsna", path, {**RSNA_DEFAULTS, "min_severity": min_severity})
    assert {image_id: row["levels"] for image_id, row in kept.items()} == expected_levels
    assert reasons(rejected) == {
        image_id: f"no finding at or above min_severity {min_severity}" for image_id in below
    }
    # The raw labels of the image stay visible even when a point fell below the threshold.
    if "rsna-1-10-1" in kept:
        assert kept["rsna-1-10-1"]["source_labels"] == ["Spinal Canal Stenosis"]


MULTI_POINTS = [
    # Instance 1: canal at 1 level (Severe) vs foraminal at 2 levels (Moderate).
    (1, 10, 1, "Spinal Canal Stenosis", "L1/L2"),
    (1, 10, 1, "Left Neural Foraminal Narrowing", "L2/L3"),
    (1, 10, 1, "Right Neural Foraminal Narrowing", "L3/L4"),
    # Instance 2: canal vs subarticular, one Moderate point each: a full tie, broken by name.
    (1, 10, 2, "Spinal Canal Stenosis", "L4/L5"),
    (1, 10, 2, "Left Subarticular Stenosis", "L5/S1"),
]
MULTI_GRADES = {
    1: {
        "spinal_canal_stenosis_l1_l2": "Severe",
        "left_neural_foraminal_narrowing_l2_l3": "Moderate",
        "right_neural_foraminal_narrowing_l3_l4": "Moderate",
        "spinal_canal_stenosis_l4_l5": "Moderate",
        "left_subarticular_stenosis_l5_s1": "Moderate",
    }
}


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        (
            "most_points",
            {
                "rsna-1-10-1": ("Foraminal stenosis", ["L2/L3", "L3/L4"]),
                "rsna-1-10-2": ("Spinal canal stenosis", ["L4/L5"]),
            },
        ),
        (
            "highest_severity",
            {
                "rsna-1-10-1": ("Spinal canal stenosis", ["L1/L2"]),
                "rsna-1-10-2": ("Spinal canal stenosis", ["L4/L5"]),
            },
        ),
        ("drop", {}),
    ],
)
def test_rsna_multi_condition_policies(tmp_path, policy, expected):
    path = rsna_archive(tmp_path, MULTI_POINTS, grades=MULTI_GRADES, instances=["1/10/1", "1/10/2"])
    kept, rejected = run("rsna", path, {**RSNA_DEFAULTS, "multi_condition": policy})
    assert {image_id: (row["disease"], row["levels"]) for image_id, row in kept.items()} == expected
    if policy == "drop":
        prefix = "several conditions (multi_condition: drop): "
        assert reasons(rejected) == {
            "rsna-1-10-1": prefix + "Foraminal stenosis; Spinal canal stenosis",
            "rsna-1-10-2": prefix + "Spinal canal stenosis; Subarticular stenosis",
        }
        assert sorted(kept) == []
    else:
        assert rejected.empty
    assert all(row["source_labels"] for row in kept.values())


def test_rsna_bad_rows_are_rejected_with_reasons(tmp_path):
    points = [
        (1, 10, 1, "Spinal Canal Stenosis", "L1/L2"),  # fine
        ("x1", 10, 1, "Spinal Canal Stenosis", "L2/L3"),  # malformed study
        (1, "", 1, "Spinal Canal Stenosis", "L3/L4"),  # malformed series
        (1, 10, "1.5", "Spinal Canal Stenosis", "L4/L5"),  # malformed instance
        (1, 10, 1, "Central Stenosis", "L1/L2"),  # unknown condition
        (1, 10, 1, "Spinal Canal Stenosis", "L6/S1"),  # unknown level
        (1, 10, 2, "Left Subarticular Stenosis", "L3/L4"),  # duplicate ...
        (1, 10, 3, "Left Subarticular Stenosis", "L3/L4"),  # ... of this one
        (1, 10, 4, "Right Subarticular Stenosis", "L3/L4"),  # unknown severity
        (2, 20, 1, "Spinal Canal Stenosis", "L1/L2"),  # no DICOM
        (3, 30, 1, "Spinal Canal Stenosis", "L1/L2"),  # conflicting series descriptions
        (4, 40, 1, "Spinal Canal Stenosis", "L1/L2"),  # study graded twice in train.csv: grade unknown
    ]
    grades = {1: {"right_subarticular_stenosis_l3_l4": "Very bad", "spinal_canal_stenosis_l1_l2": "Severe"}}
    series = [(3, 30, "Sagittal T1"), (3, 30, "Sagittal T2/STIR")]
    duplicated_study = ["4," + ",".join(["Severe"] * 25), "4," + ",".join(["Moderate"] * 25)]
    instances = ["1/10/1", "1/10/2", "1/10/3", "1/10/4", "3/30/1", "4/40/1"]
    path = rsna_archive(tmp_path, points, grades, series, instances, extra_train_rows=duplicated_study)
    kept, rejected = run("rsna", path, RSNA_DEFAULTS)
    assert set(kept) == {"rsna-1-10-1", "rsna-4-40-1"}
    assert kept["rsna-1-10-1"]["levels"] == ["L1/L2"]
    by_file = dict(zip(rejected["file"], rejected["reason"], strict=True))
    assert by_file == {
        "train_label_coordinates.csv line 3": "malformed study_id: x1",
        "train_label_coordinates.csv line 4": "malformed series_id: (empty)",
        "train_label_coordinates.csv line 5": "malformed instance_number: 1.5",
        "train_label_coordinates.csv line 6": "unknown condition: Central Stenosis",
        "train_label_coordinates.csv line 7": "unknown level: L6/S1",
        "train_label_coordinates.csv line 8": "duplicate point for (study, condition, level)",
        "train_label_coordinates.csv line 9": "duplicate point for (study, condition, level)",
        "train_label_coordinates.csv line 10": "unknown severity: Very bad",
        "train_label_coordinates.csv line 11 -> train_images/2/20/1.dcm": "missing image",
        "train_images/3/30/1.dcm": "conflicting series descriptions: Sagittal T1; Sagittal T2/STIR",
        "train.csv line 3": "duplicate study_id in train.csv (its grades are not used)",
        "train.csv line 4": "duplicate study_id in train.csv (its grades are not used)",
    }
    assert set(rejected.loc[rejected["file"].str.contains("train_images"), "item"]) == {
        "rsna-2-20-1",
        "rsna-3-30-1",
    }
    # With a threshold, the study whose grades are ambiguous has no finding left.
    _, thresholded = run("rsna", path, {**RSNA_DEFAULTS, "min_severity": "Moderate"})
    emptied = thresholded[thresholded["item"] == "rsna-4-40-1"]
    assert emptied["reason"].tolist() == ["no finding at or above min_severity Moderate"]


@pytest.mark.parametrize(
    ("key", "value"),
    [("slice_policy", "all_slices"), ("min_severity", "Mild"), ("multi_condition", "vote")],
)
def test_rsna_unknown_policy_values_fail_loudly(tmp_path, key, value):
    path = rsna_archive(tmp_path, [(1, 10, 1, "Spinal Canal Stenosis", "L1/L2")], instances=["1/10/1"])
    with pytest.raises(StandardizeError, match=value):
        run("rsna", path, {**RSNA_DEFAULTS, key: value})


def test_rsna_missing_columns_name_the_file(tmp_path):
    good = rsna_archive(tmp_path, [], instances=[])
    with zipfile.ZipFile(good) as bundle:
        files = {name: bundle.read(name) for name in bundle.namelist()}
    header, *rest = files["train.csv"].decode().split("\n")
    broken_train = ",".join(c for c in header.split(",") if c != "spinal_canal_stenosis_l3_l4")
    path = write_zip(tmp_path / "train.zip", {**files, "train.csv": broken_train + "\n"})
    with pytest.raises(
        IngestError, match=r"train.csv: missing column\(s\) \['spinal_canal_stenosis_l3_l4'\]"
    ):
        run("rsna", path, RSNA_DEFAULTS)
    coordinates = "study_id,series_id,condition,level\n"
    path = write_zip(tmp_path / "coords.zip", {**files, "train_label_coordinates.csv": coordinates})
    with pytest.raises(
        IngestError, match=r"train_label_coordinates.csv: missing column\(s\) \['instance_number'\]"
    ):
        run("rsna", path, RSNA_DEFAULTS)


# -------------------------------------------------------------------------------------------- VinDr
VINDR_HEADER = "study_id,series_id,image_id,rad_id,lesion_type,xmin,ymin,xmax,ymax"
VINDR_DEFAULTS = {"splits": ["train", "test"], "multi_lesion": "most_boxes"}


def vindr_folder(tmp_path, rows_by_split, images):
    """A PhysioNet-layout VinDr folder; rows are (image_id, lesion_type[, study_id]), each a box of its own
    (rows differ in xmin, so none is an exact duplicate of another)."""
    root = tmp_path / "vindr" / "vindr-spinexr-1.0.0"
    (root / "annotations").mkdir(parents=True)
    for split, rows in rows_by_split.items():
        lines = [VINDR_HEADER]
        for index, row in enumerate(rows):
            image_id, lesion = row[0], row[1]
            study = row[2] if len(row) > 2 else f"st{image_id}"
            box = ",,," if lesion == "No finding" else f"{1.5 + index},2.5,30.0,40.0"
            lines.append(f"{study},se{image_id},{image_id},rad1,{lesion},{box}")
        (root / "annotations" / f"{split}.csv").write_text("\n".join(lines) + "\n")
    for member in images:
        (root / member).parent.mkdir(parents=True, exist_ok=True)
        (root / member).write_bytes(b"DICM")
    return root.parent


def test_vindr_groups_rows_maps_labels_and_rejects(tmp_path):
    train = [
        ("a1", "Osteophytes"),
        ("a1", "Osteophytes"),
        ("a1", "Disc space narrowing"),  # fewer boxes than osteophytes
        ("a2", "No finding"),
        ("a3", "Other lesions"),
        ("a3", "Surgical implant"),
        ("a4", "Spondylolysthesis"),
        ("a4", "No finding"),  # another reader saw nothing: the lesion wins
        ("a5", "Fracture"),  # unknown
        ("a5", "Osteophytes"),
        ("zz", "Osteophytes"),  # malformed id
        ("a7", "Osteophytes"),  # no DICOM
        ("a8", "Osteophytes"),  # also in test
        ("a9", "Vertebral collapse", "st1"),
        ("a9", "Vertebral collapse", "st2"),  # conflicting study ids
        ("b1", "Surgical implant"),
        ("b1", "Foraminal stenosis"),  # dropped label beside a kept one
        ("b2", "Disc space narrowing"),
        ("b2", "Osteophytes"),  # one box each: label-map order (Osteophytes first)
    ]
    test = [("a8", "Osteophytes"), ("c1", "No finding")]
    images = [f"train_images/{i}.dicom" for i in ("a1", "a2", "a3", "a4", "a5", "a8", "a9", "b1", "b2")]
    images += ["test_images/c1.dicom", "test_images/a8.dicom"]
    root = vindr_folder(tmp_path, {"train": train, "test": test}, images)
    kept, rejected = run("vindr", root, VINDR_DEFAULTS)
    assert {image_id: row["disease"] for image_id, row in kept.items()} == {
        "vindr-a1": "Osteophytes",
        "vindr-a2": "Healthy",
        "vindr-a4": "Spondylolisthesis",
        "vindr-b1": "Foraminal stenosis",
        "vindr-b2": "Osteophytes",
        "vindr-c1": "Healthy",
    }
    a1 = kept["vindr-a1"]
    assert a1["member"] == "train_images/a1.dicom" and kept["vindr-c1"]["member"] == "test_images/c1.dicom"
    assert (a1["source"], a1["modality"], a1["region"], a1["levels"]) == ("vindr", "X-ray", "spine", [])
    assert (a1["study_id"], a1["series_id"], a1["view"], a1["instance_number"]) == (
        "sta1",
        "sea1",
        None,
        None,
    )
    assert a1["source_labels"] == ["Disc space narrowing", "Osteophytes"]
    assert kept["vindr-a4"]["source_labels"] == ["No finding", "Spondylolysthesis"]
    assert reasons(rejected) == {
        "vindr-a3": "only dropped findings: Other lesions, Surgical implant",
        "vindr-a5": "unknown lesion_type: Fracture",
        "zz": "malformed image_id: zz",
        "vindr-a7": "missing image",
        "vindr-a8": "image_id in several splits: test, train",
        "vindr-a9": "conflicting study_id/series_id across rows",
    }
    assert rejected.set_index("item").loc["zz", "file"] == "annotations/train.csv line 12"
    # A missing image names the CSV line pointing at it and the file looked for.
    assert (
        rejected.set_index("item").loc["vindr-a7", "file"]
        == "annotations/train.csv line 13 -> train_images/a7.dicom"
    )


def write_vindr_csv(root: Path, split: str, rows: list[str]) -> None:
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    (root / "annotations" / f"{split}.csv").write_text("\n".join([VINDR_HEADER, *rows]) + "\n")


def test_vindr_exact_duplicate_rows_count_once_and_are_reported(tmp_path):
    root = tmp_path / "vindr-spinexr-1.0.0"
    osteophyte = "st1,se1,a1,rad1,Osteophytes,1.5,2.5,30.0,40.0"
    write_vindr_csv(
        root,
        "train",
        [
            osteophyte,  # line 2
            osteophyte,  # line 3: the same box written twice
            "st1,se1,a1,rad1,Disc space narrowing,5,5,9,9",
            "st1,se1,a1,rad2,Disc space narrowing,5,5,9,9",  # the same box by another reader: a box
            osteophyte,  # line 6: and a third time
        ],
    )
    (root / "train_images").mkdir()
    (root / "train_images" / "a1.dicom").write_bytes(b"DICM")
    kept, rejected = run("vindr", root, {"splits": ["train"], "multi_lesion": "most_boxes"})
    # Counted raw, 3 osteophyte rows would beat 2 disc space narrowing boxes; deduplicated, 1 does not.
    assert kept["vindr-a1"]["disease"] == "Disc space narrowing"
    assert kept["vindr-a1"]["source_labels"] == ["Disc space narrowing", "Osteophytes"]
    assert rejected[["item", "file", "reason"]].values.tolist() == [
        [
            "vindr-a1 rad1 Osteophytes",
            f"annotations/train.csv line {line} (same as line 2)",
            "exact duplicate annotation row (counted once)",
        ]
        for line in (3, 6)
    ]


def test_vindr_missing_image_lists_its_first_five_lines(tmp_path):
    root = tmp_path / "vindr-spinexr-1.0.0"
    rows = [f"st1,se1,a1,rad1,Osteophytes,{x},2,30,40" for x in range(7)] + ["st2,se2,b2,rad1,No finding,,,,"]
    write_vindr_csv(root, "train", rows)
    (root / "train_images").mkdir()
    (root / "train_images" / "b2.dicom").write_bytes(b"DICM")
    kept, rejected = run("vindr", root, {"splits": ["train"], "multi_lesion": "most_boxes"})
    assert list(kept) == ["vindr-b2"]
    assert reasons(rejected) == {"vindr-a1": "missing image"}
    assert rejected["file"].tolist() == [
        "annotations/train.csv lines 2, 3, 4, 5, 6 and 2 more -> train_images/a1.dicom"
    ]


def test_vindr_multi_lesion_drop_and_split_selection(tmp_path):
    train = [
        ("a1", "Osteophytes"),
        ("a1", "Disc space narrowing"),
        ("a2", "Osteophytes"),
        ("a2", "Osteophytes"),
    ]
    test = [("c1", "No finding")]
    images = ["train_images/a1.dicom", "train_images/a2.dicom", "test_images/c1.dicom"]
    root = vindr_folder(tmp_path, {"train": train, "test": test}, images)
    kept, rejected = run("vindr", root, {"splits": ["train"], "multi_lesion": "drop"})
    assert list(kept) == ["vindr-a2"]  # test split not read
    assert reasons(rejected) == {
        "vindr-a1": "several lesion types (multi_lesion: drop): Osteophytes; Disc space narrowing"
    }
    kept, _ = run("vindr", root, {"splits": ["test"], "multi_lesion": "drop"})
    assert list(kept) == ["vindr-c1"]


def test_vindr_without_the_box_columns_names_the_file(tmp_path):
    root = tmp_path / "vindr-spinexr-1.0.0"
    (root / "annotations").mkdir(parents=True)
    (root / "annotations" / "train.csv").write_text(
        "study_id,series_id,image_id,lesion_type\ns,s,a1,No finding\n"
    )
    with pytest.raises(IngestError, match=r"annotations/train.csv: missing column\(s\) \['rad_id', 'xmin'"):
        run("vindr", root, {"splits": ["train"], "multi_lesion": "most_boxes"})


def test_vindr_missing_split_file_and_bad_policy_fail_loudly(tmp_path):
    root = vindr_folder(tmp_path, {"train": [("a1", "Osteophytes")]}, ["train_images/a1.dicom"])
    with pytest.raises(ArchiveError, match="annotations/test.csv"):
        run("vindr", root, VINDR_DEFAULTS)
    with pytest.raises(StandardizeError, match="multi_lesion"):
        run("vindr", root, {"splits": ["train"], "multi_lesion": "vote"})


# ---------------------------------------------------------------------------------------------- BUU
BUU_DEFAULTS = {"views": ["AP", "LA"], "flag_level_rule": "adjacent_disc", "zero_label_is_healthy": True}


def endplate_csv(labels) -> str:
    return "".join(
        f"{100 + i}.25,{200 + 40 * i}.5,{300 + i}.75,{201 + 40 * i},{label}\n"
        for i, label in enumerate(labels)
    )


def flagged(count: int, row: int, code: int = 3) -> list:
    return [code if index == row else 0 for index in range(count)]


def buu_zip(tmp_path, files: dict[str, str | bytes], top="BUU-LSPINE_400/"):
    return write_zip(tmp_path / "BUU-LSPINE_400.zip", {top + name: data for name, data in files.items()})


# Row index -> expected level under each rule (SOURCES.md 3.3: rows are L1 sup, L1 inf, ..., L5 inf, S1 sup).
ADJACENT = [None, "L1/L2", "L1/L2", "L2/L3", "L2/L3", "L3/L4", "L3/L4", "L4/L5", "L4/L5", "L5/S1", "L5/S1"]
CAUDAL = ["L1/L2", "L1/L2", "L2/L3", "L2/L3", "L3/L4", "L3/L4", "L4/L5", "L4/L5", "L5/S1", "L5/S1", "L5/S1"]


@pytest.mark.parametrize(
    ("rule", "expected"), [("adjacent_disc", ADJACENT), ("vertebra_caudal_disc", CAUDAL)]
)
def test_buu_flag_level_rules_map_every_endplate_row(tmp_path, rule, expected):
    files = {}
    for row in range(11):
        case = f"{row:04d}-F-040"
        files[f"LA/{case}Y1.jpg"] = b"jpg"
        files[f"LA/{case}Y1.csv"] = endplate_csv(flagged(11, row, code=3 + row % 2))
    kept, rejected = run("buu", buu_zip(tmp_path, files), {**BUU_DEFAULTS, "flag_level_rule": rule})
    assert rejected.empty
    for row in range(11):
        record = kept[f"buu-{row:04d}-F-040-LA"]
        assert record["disease"] == "Spondylolisthesis"
        assert record["levels"] == ([] if expected[row] is None else [expected[row]]), row
        assert record["source_labels"] == ["0", str(3 + row % 2)]


def test_buu_films_healthy_flagged_and_rejected(tmp_path):
    files = {
        "AP/0001-F-037Y0.jpg": b"j",
        "AP/0001-F-037Y0.csv": endplate_csv([0] * 10),
        "LA/0001-F-037Y1.jpg": b"j",
        "LA/0001-F-037Y1.csv": endplate_csv([0] * 8 + [3, 3, 0]),  # L5 sup + L5 inf
        "AP/0002-M-050Y0.jpg": b"j",
        "AP/0002-M-050Y0.csv": endplate_csv(flagged(10, 4, code=1)).replace(",0\n", ",0.0\n"),
        "AP/0003-M-041Y0.jpg": b"j",
        "AP/0003-M-041Y0.csv": endplate_csv([0] * 9),  # 9 rows
        "LA/0003-M-041Y1.jpg": b"j",
        "LA/0003-M-041Y1.csv": endplate_csv([0] * 12),  # 12 rows
        "AP/0004-F-050Y0.jpg": b"j",
        "AP/0004-F-050Y0.csv": endplate_csv([0] * 9 + [7]),  # unknown code
        "AP/0005-F-050Y0.jpg": b"j",  # no CSV
        "LA/0006-F-050Y1.csv": endplate_csv([0] * 11),  # no JPEG
        "AP/0007-F-050Y1.jpg": b"j",  # LA suffix in the AP folder
        "AP/0007-F-050Y1.csv": endplate_csv([0] * 10),
        "AP/0008-F-050Y0.jpg": b"j",
        "AP/0008-F-050Y0.csv": "1,2,3\n",  # 3 fields
        "AP/0009-F-050Y0.jpg": b"j",
        "AP/0009-F-050Y0.csv": endplate_csv([0] * 10).replace("100.25", "abc"),
        "AP/0010-F-050Y0.jpg": b"j",
        "AP/0010-F-050Y0.csv": b"\xff\xfe\x00",  # not UTF-8
        "AP/0011-F-050Y0.jpg": b"j",
        "AP/0011-F-050Y0.jpeg": b"j",  # two images for one film
        "AP/0011-F-050Y0.csv": endplate_csv([0] * 10),
        "AP/0012-F-050Y0.jpg": b"j",
        "AP/0012-F-050Y0.csv": "\n" + endplate_csv([0] * 10) + "\n\n",  # blank lines are not endplates
        "AP/0014-F-050Y0.jpg": b"j",
        "AP/0014-F-050Y0.csv": endplate_csv([0] * 10),
        "AP/0014-F-050Y0.CSV": endplate_csv([0] * 10),  # two CSVs for one film
        "AP/notes.txt": b"x",
        "LA/sub/0013-F-050Y1.jpg": b"j",
        "README.md": b"not in a view folder: not a candidate",
    }
    kept, rejected = run("buu", buu_zip(tmp_path, files, top="BUU-LSPINE_400/BUU-LSPINE_400/"), BUU_DEFAULTS)
    assert {image_id: (row["disease"], row["levels"]) for image_id, row in kept.items()} == {
        "buu-0001-F-037-AP": ("Healthy", []),
        "buu-0001-F-037-LA": ("Spondylolisthesis", ["L4/L5", "L5/S1"]),
        "buu-0002-M-050-AP": ("Spondylolisthesis", ["L2/L3"]),
        "buu-0012-F-050-AP": ("Healthy", []),
    }
    film = kept["buu-0001-F-037-LA"]
    assert (film["member"], film["view"], film["study_id"], film["region"], film["modality"]) == (
        "LA/0001-F-037Y1.jpg",
        "LA",
        "0001-F-037",
        "lumbar",
        "X-ray",
    )
    assert kept["buu-0002-M-050-AP"]["source_labels"] == ["0", "1"]
    assert reasons(rejected) == {
        "buu-0003-M-041-AP": "expected 10 endplate rows (AP), found 9",
        "buu-0003-M-041-LA": "expected 11 endplate rows (LA), found 12",
        "buu-0004-F-050-AP": "unknown label 7 on line 10",
        "buu-0005-F-050-AP": "image without annotation CSV",
        "buu-0006-F-050-LA": "annotation CSV without image",
        "buu-0007-F-050-AP": "file name does not end in Y0 (view AP)",
        "buu-0008-F-050-AP": "unreadable annotation CSV: line 1 has 3 fields, expected 5",
        "buu-0009-F-050-AP": "non-numeric coordinate on line 1",
        "buu-0010-F-050-AP": rejected.set_index("item").loc["buu-0010-F-050-AP", "reason"],
        "buu-0011-F-050-AP": "several images for one film: 0011-F-050Y0",
        "buu-0014-F-050-AP": "several annotation CSVs for one film: 0014-F-050Y0",
        "AP/notes.txt": "unexpected file in view folder",
        "LA/sub/0013-F-050Y1.jpg": "unexpected file in view folder",
    }
    assert reasons(rejected)["buu-0010-F-050-AP"].startswith("unreadable annotation CSV: ")
    assert rejected.set_index("item").loc["buu-0005-F-050-AP", "file"] == "AP/0005-F-050Y0.jpg"
    # A film whose image is missing is named by its annotation CSV: the whole file is the label.
    assert rejected.set_index("item").loc["buu-0006-F-050-LA", "file"] == "LA/0006-F-050Y1.csv"


def test_buu_zero_labels_and_view_selection(tmp_path):
    files = {
        "AP/0001-F-037Y0.jpg": b"j",
        "AP/0001-F-037Y0.csv": endplate_csv([0] * 10),
        "LA/0001-F-037Y1.jpg": b"j",
        "LA/0001-F-037Y1.csv": endplate_csv([0] * 11),
        "LA/0002-F-037Y1.jpg": b"j",
        "LA/0002-F-037Y1.csv": endplate_csv(flagged(11, 9)),
        "AP/0003-F-037Y0.csv": "broken,\n",  # outside the selected view: never read
    }
    settings = {**BUU_DEFAULTS, "views": ["LA"], "zero_label_is_healthy": False}
    kept, rejected = run("buu", buu_zip(tmp_path, files), settings)
    assert list(kept) == ["buu-0002-F-037-LA"]
    assert reasons(rejected) == {"buu-0001-F-037-LA": "all labels zero (zero_label_is_healthy: false)"}
    kept, rejected = run("buu", buu_zip(tmp_path, files), {**BUU_DEFAULTS, "views": ["LA"]})
    assert set(kept) == {"buu-0001-F-037-LA", "buu-0002-F-037-LA"} and rejected.empty


def test_buu_corrupt_csv_member_rejects_only_its_film(tmp_path):
    files = {"AP/0001-F-037Y0.jpg": b"j", "AP/0001-F-037Y0.csv": endplate_csv([0] * 10)}
    files |= {"AP/0002-F-037Y0.jpg": b"j", "AP/0002-F-037Y0.csv": endplate_csv([0] * 10)}
    path = tmp_path / "BUU-LSPINE_400.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as bundle:
        for name, data in files.items():
            bundle.writestr("BUU-LSPINE_400/" + name, data)
    raw = path.read_bytes()
    payload = endplate_csv([0] * 10).encode()
    second = raw.index(payload, raw.index(b"0002-F-037Y0.csv"))  # the stored bytes of film 2's CSV
    path.write_bytes(raw[:second] + b"9" + raw[second + 1 :])  # same length, wrong CRC
    kept, rejected = run("buu", path, BUU_DEFAULTS)
    assert list(kept) == ["buu-0001-F-037-AP"]
    assert reasons(rejected)["buu-0002-F-037-AP"].startswith("unreadable annotation CSV: ")
    assert "corrupt" in reasons(rejected)["buu-0002-F-037-AP"]


def test_buu_unknown_rule_fails_loudly(tmp_path):
    files = {"AP/0001-F-037Y0.jpg": b"j", "AP/0001-F-037Y0.csv": endplate_csv([0] * 10)}
    with pytest.raises(StandardizeError, match="flag_level_rule"):
        run("buu", buu_zip(tmp_path, files), {**BUU_DEFAULTS, "flag_level_rule": "nearest"})


def test_parse_headerless_csv_keeps_line_numbers():
    rows = parse_headerless_csv(b"\xef\xbb\xbf1, 2,3,4,0\n\n5,6,7,8, 3 \n", ("a", "b", "c", "d", "e"))
    assert rows == [
        {"row_index": 0, "line": 1, "a": "1", "b": "2", "c": "3", "d": "4", "e": "0"},
        {"row_index": 1, "line": 3, "a": "5", "b": "6", "c": "7", "d": "8", "e": "3"},
    ]
    with pytest.raises(ValueError, match="line 2 has 6 fields"):
        parse_headerless_csv(b"1,2,3,4,0\n1,2,3,4,0,9\n", ("a", "b", "c", "d", "e"))


# --------------------------------------------------------------------------------------------- CSXA
CURVATURE = "Curvature: 1.Lordotic, 2.Straight, 3.Sigmoid1, 4.Sigmoid2, 5.Kyphotic"
CSXA_DEFAULTS = {"curvature_column": CURVATURE, "require_landmarks": False}


def xlsx_bytes(rows, header=("Number", "Gender", CURVATURE)) -> bytes:
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = "Sheet1"
    sheet.append(["Cervical Spine X-ray Atlas"])  # title row above the header
    sheet.append(list(header))
    for row in rows:
        sheet.append(list(row))
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def labelme(count: int = 23, duplicates: int = 0) -> str:
    labels = [f"C{i // 4 + 3} corner {i % 4}" for i in range(count)]
    for index in range(duplicates):
        labels[index] = labels[-1]
    shapes = [{"label": label, "points": [[1.0, 2.0]], "shape_type": "point"} for label in labels]
    return json.dumps({"version": "5.0", "shapes": shapes, "imageWidth": 64, "imageHeight": 64})


def csxa_folder(tmp_path, sheet_rows, pngs, jsons):
    root = tmp_path / "csxa"
    root.mkdir()
    (root / "datasets.xlsx").write_bytes(xlsx_bytes(sheet_rows))
    write_zip(root / "datasets-PNG.zip", {f"datasets-PNG/{stem}.png": b"PNG" for stem in pngs})
    write_zip(root / "datasets-JSON.zip", {f"{stem}.json": text for stem, text in jsons.items()})
    return root


CSXA_SHEET = [
    (1, "F", 1),
    (2, "M", 2),
    ("3", "M", "3"),
    (4, "F", 4.0),
    (5, "M", 5),
    (6, "M", 9),  # unknown code
    (7, "M", 2),
    (7, "M", 3),  # conflicting
    (8, "F", None),  # empty code
    (9, "F", 1),  # no PNG
    ("x", "F", 1),  # malformed number
    (10, "F", 1),
    (11, "F", 2),
    (12, "F", 3),
    (13, "F", 4),
    (14, "F", 4),
    (14, "F", 4),  # listed twice, same code: fine
]
CSXA_PNGS = ["0001035", "0002040", "0003045", "0004050", "0005055", "0006060", "0007070", "0008080"]
CSXA_PNGS += ["0015050", "x0123", "0010010", "0011011", "0012012", "0013013", "0014014"]
CSXA_JSONS = {
    "0001035": labelme(),
    "0002040": labelme(),
    "0003045": labelme(),
    "0004050": labelme(),
    "0005055": labelme(),
    "0010010": labelme(23, duplicates=1),  # one landmark repeated, so one is missing
    "0011011": "{not json",
    "0012012": json.dumps({"shapes": "none"}),
    # 0013013 has no JSON; 0014014 has 20 landmarks
    "0014014": labelme(20),
    "0099099": labelme(),  # no PNG
}


def test_csxa_links_pngs_to_the_sheet_by_case_number(tmp_path):
    root = csxa_folder(tmp_path, CSXA_SHEET, CSXA_PNGS, CSXA_JSONS)
    kept, rejected = run("csxa", root, CSXA_DEFAULTS)
    assert {image_id: row["disease"] for image_id, row in kept.items()} == {
        "csxa-0001035": "Cervical lordosis",
        "csxa-0002040": "Straight cervical vertebrae",
        "csxa-0003045": "Sigmoid cervical vertebrae",
        "csxa-0004050": "Sigmoid cervical vertebrae",
        "csxa-0005055": "Cervical kyphosis",
        "csxa-0010010": "Cervical lordosis",
        "csxa-0011011": "Straight cervical vertebrae",
        "csxa-0012012": "Sigmoid cervical vertebrae",
        "csxa-0013013": "Sigmoid cervical vertebrae",
        "csxa-0014014": "Sigmoid cervical vertebrae",
    }
    image = kept["csxa-0004050"]
    assert (image["member"], image["view"], image["region"], image["study_id"], image["source_labels"]) == (
        "datasets-PNG/0004050.png",
        "lateral",
        "cervical",
        "0004",
        ["4"],
    )
    assert reasons(rejected) == {
        "csxa-0006060": "unknown curvature code: 9",
        "csxa-0007070": "conflicting curvature codes for case 0007: 2, 3",
        "csxa-0008080": "unknown curvature code: (empty)",
        "csxa-0015050": "no datasets.xlsx row for case 0015",
        "csxa-x0123": "file name does not start with a 4-digit case number",
        "case 9": "datasets.xlsx row without PNG",
        "case x": "malformed case number: x",
        "csxa-0099099": "LabelMe JSON without PNG",
        "datasets-JSON/0011011.json": rejected.set_index("item").loc["datasets-JSON/0011011.json", "reason"],
        "datasets-JSON/0012012.json": "malformed LabelMe JSON: no 'shapes' list at the top level",
    }
    assert reasons(rejected)["datasets-JSON/0011011.json"].startswith("malformed LabelMe JSON: ")
    assert rejected.set_index("item").loc["case 9", "file"] == "datasets.xlsx row 12"


def test_csxa_require_landmarks_rejects_images_without_usable_json(tmp_path):
    root = csxa_folder(tmp_path, CSXA_SHEET, CSXA_PNGS, CSXA_JSONS)
    kept, rejected = run("csxa", root, {**CSXA_DEFAULTS, "require_landmarks": True})
    assert set(kept) == {"csxa-0001035", "csxa-0002040", "csxa-0003045", "csxa-0004050", "csxa-0005055"}
    found = reasons(rejected)
    assert found["csxa-0010010"] == "LabelMe JSON lacks landmarks: 22 distinct of 23"
    assert found["csxa-0011011"].startswith("malformed LabelMe JSON: ")
    assert found["csxa-0012012"] == "malformed LabelMe JSON: no 'shapes' list at the top level"
    assert found["csxa-0013013"] == "no LabelMe JSON (require_landmarks)"
    assert found["csxa-0014014"] == "LabelMe JSON lacks landmarks: 20 distinct of 23"
    assert rejected.set_index("item").loc["csxa-0010010", "file"] == "datasets-JSON/0010010.json"
    assert "datasets-JSON/0011011.json" not in found  # reported once, on the image


def test_csxa_unexpected_files_and_missing_column(tmp_path):
    root = csxa_folder(tmp_path, [(1, "F", 1)], ["0001035"], {"0001035": labelme()})
    write_zip(root / "datasets-PNG.zip", {"0001035.png": b"PNG", "Thumbs.db": b"x"})
    kept, rejected = run("csxa", root, CSXA_DEFAULTS)
    assert list(kept) == ["csxa-0001035"]
    assert reasons(rejected) == {"datasets-PNG/Thumbs.db": "unexpected file in the PNG or JSON archive"}
    with pytest.raises(IngestError, match="Curvature: wrong"):
        run("csxa", root, {**CSXA_DEFAULTS, "curvature_column": "Curvature: wrong"})


def test_count_labelme_landmarks():
    assert count_labelme_landmarks(labelme().encode()) == (23, 0)
    assert count_labelme_landmarks(labelme(23, duplicates=2).encode()) == (23, 2)
    with pytest.raises(ValueError, match="shape 0"):
        count_labelme_landmarks(json.dumps({"shapes": [{"points": []}]}).encode())


# ----------------------------------------------------------------------------------- shared plumbing
def test_sql_parameters_are_the_documented_settings():
    sql = "-- $commented is prose\nSELECT $a, $b, $a WHERE x = 1"
    assert sql_parameters(sql) == ["a", "b"]
    expected = {
        "rsna": ["min_severity", "multi_condition", "slice_policy"],
        "vindr": ["multi_lesion"],
        "buu": ["flag_level_rule", "views", "zero_label_is_healthy"],
        "csxa": ["require_landmarks"],
    }
    for source, names in expected.items():
        assert sql_parameters((ROOT / "sql" / "standardize" / f"{source}.sql").read_text()) == names


def test_settings_that_nothing_reads_or_that_are_missing_fail(tmp_path):
    path = rsna_archive(tmp_path, [(1, 10, 1, "Spinal Canal Stenosis", "L1/L2")], instances=["1/10/1"])
    with pytest.raises(StandardizeError, match="typo_key"):
        run("rsna", path, {**RSNA_DEFAULTS, "typo_key": 1})
    with pytest.raises(StandardizeError, match="multi_condition"):
        run("rsna", path, {"slice_policy": "labeled_instance", "min_severity": None})
    kept, _ = run("rsna", path, {**RSNA_DEFAULTS, "path": None, "shards": 2})
    assert list(kept) == ["rsna-1-10-1"]
    with pytest.raises(StandardizeError, match="unknown source"):
        standardize_source("mimic", path, "x.sql", "x.csv", {})


@pytest.mark.parametrize(
    ("source", "text", "match"),
    [
        ("rsna", "condition,train_column,disease\nX,x,Spinal Canal Stenosis\n", "vocab.LABELS"),
        ("vindr", "source_label,disease,action\nX,Osteophytes,maybe\n", "action"),
        ("vindr", "source_label,disease,action\nX,Healthy,keep\n", "needs disease"),
        ("vindr", "source_label,disease,action\nX,,keep\nX,,drop\n", "needs disease"),
        ("buu", "label,meaning,listhesis\n0,normal,no\n", "listhesis"),
        (
            "csxa",
            "curvature,meaning,disease\n1,a,Cervical lordosis\n1,b,Cervical kyphosis\n",
            "more than once",
        ),
        ("csxa", "curvature,disease\n1,Cervical lordosis\n", "meaning"),
    ],
)
def test_bad_label_maps_name_the_file(tmp_path, source, text, match):
    label_map = tmp_path / f"{source}.csv"
    label_map.write_text(text)
    with pytest.raises(IngestError, match=match) as error:
        run(source, tmp_path, DEFAULTS[source], label_map=label_map)
    assert str(label_map) in str(error.value)


DEFAULTS = {"rsna": RSNA_DEFAULTS, "vindr": VINDR_DEFAULTS, "buu": BUU_DEFAULTS, "csxa": CSXA_DEFAULTS}


def test_label_maps_target_the_vocabulary():
    for source in vocab.SOURCES:
        text = (ROOT / "resources" / "label_maps" / f"{source}.csv").read_text()
        assert text.endswith("\n") and "\r" not in text
    vindr = (ROOT / "resources" / "label_maps" / "vindr.csv").read_text()
    assert "Spondylolysthesis,Spondylolisthesis,keep" in vindr
    assert "Other lesions,,drop" in vindr and "Surgical implant,,drop" in vindr


def test_tables_are_written_byte_identically(tmp_path):
    path = rsna_archive(
        tmp_path,
        MULTI_POINTS + [(2, 20, 1, "Spinal Canal Stenosis", "L1/L2")],
        grades=MULTI_GRADES,
        series=[(1, 10, "Sagittal T2/STIR")],
        instances=["1/10/1", "1/10/2"],
    )
    outputs = []
    for attempt in range(2):
        table, rejected = standardize_source(
            "rsna",
            path,
            ROOT / "sql/standardize/rsna.sql",
            ROOT / "resources/label_maps/rsna.csv",
            RSNA_DEFAULTS,
        )
        write_table(table, tmp_path / f"t{attempt}.parquet", schema=STANDARDIZED_SCHEMA)
        write_table(rejected, tmp_path / f"r{attempt}.parquet", schema=REJECTED_SCHEMA)
        outputs.append(
            ((tmp_path / f"t{attempt}.parquet").read_bytes(), (tmp_path / f"r{attempt}.parquet").read_bytes())
        )
    assert outputs[0] == outputs[1]
    back = read_table(tmp_path / "t0.parquet")
    assert list(back["levels"][0]) == ["L2/L3", "L3/L4"] and back["view"].tolist()[0] == "Sagittal T2/STIR"
    assert rejection_counts(read_table(tmp_path / "r0.parquet")) == {"missing image": 1}


# ------------------------------------------------------------------------------- synthetic archives
def params_settings(source: str) -> dict:
    """The source's settings from params.yaml, as the workflow passes them (no path, no shards)."""
    config = yaml.safe_load((ROOT / "params.yaml").read_text())
    return {k: v for k, v in config["sources"][source].items() if k not in ("path", "shards")}


# Decoys of spinebench.synth (its module docstring) and the reason each gets here. The truncated VinDr
# DICOM is a render-stage decoy: standardization cannot see it and keeps the film.
SYNTHETIC_DECOY_REASONS = {
    "rsna": ["missing image", "unknown condition: Facet Arthropathy"],
    "vindr": [
        "missing image",
        "only dropped findings: Other lesions",
        "only dropped findings: Surgical implant",
        "unknown lesion_type: Scoliosis",
    ],
    "buu": ["expected 10 endplate rows (AP), found 9", "image without annotation CSV"],
    "csxa": ["datasets.xlsx row without PNG", "no datasets.xlsx row for case 0008"],
}
RENDER_STAGE_DECOYS = {"vindr": 1}


@pytest.mark.parametrize("source", vocab.SOURCES)
def test_synthetic_archives_yield_their_counts_and_reject_every_decoy(
    synthetic_archives, tiny_counts, source
):
    kept, rejected = run(source, synthetic_archives[source], params_settings(source))
    expected = {
        "rsna": tiny_counts["rsna_images"],
        "vindr": tiny_counts["vindr_images"],
        "buu": 2 * tiny_counts["buu_cases"],  # an AP and a LA film per case
        "csxa": tiny_counts["csxa_images"],
    }[source]
    assert len(kept) == expected + RENDER_STAGE_DECOYS.get(source, 0)
    assert sorted(rejected["reason"]) == SYNTHETIC_DECOY_REASONS[source]
    assert not set(rejected["item"]) & set(kept)
    assert all(row["member"] for row in kept.values())


def test_synthetic_archives_exercise_the_policies(synthetic_archives, tiny_counts):
    buu, _ = run("buu", synthetic_archives["buu"], params_settings("buu"))
    flagged = [row for row in buu.values() if row["disease"] == "Spondylolisthesis"]
    assert flagged and all(row["levels"] for row in flagged)
    rsna, _ = run("rsna", synthetic_archives["rsna"], params_settings("rsna"))
    assert all(row["levels"] for row in rsna.values())  # every RSNA image carries levels
    _, rejected = run(
        "rsna", synthetic_archives["rsna"], {**params_settings("rsna"), "multi_condition": "drop"}
    )
    assert rejected["reason"].str.startswith("several conditions").any()
    csxa, rejected = run(
        "csxa", synthetic_archives["csxa"], {**params_settings("csxa"), "require_landmarks": True}
    )
    assert len(csxa) == tiny_counts["csxa_images"] - 2
    assert {"no LabelMe JSON (require_landmarks)", "LabelMe JSON lacks landmarks: 22 distinct of 23"} <= set(
        rejected["reason"]
    )
