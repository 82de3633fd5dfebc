"""Load a source's raw tables into DuckDB, unchanged: parsing only, no decisions.

Every raw table is registered as a relation whose data columns are all strings, exactly as written in the
file (empty cells are NULL), plus the position of each row in its file so that a rejected row can be
found again. The decisions (what is kept, what is rejected and why) live in sql/standardize/{source}.sql.

Relations registered for every source:
- `members(path, size)`: every file of the archive (see spinebench.archive).
- `label_map`: resources/label_maps/{source}.csv, all strings, plus `map_order` (0-based row).
- `levels(level, level_order)`: vocab.LEVELS with their 0-based cranial-to-caudal position.

Per source (line = line number in the CSV as an editor shows it, header = line 1):
- rsna: `train(line, study_id, <25 severity columns>)`, `coordinates(line, study_id, series_id,
  instance_number, condition, level, x, y)`, `series_descriptions(line, study_id, series_id,
  series_description)`.
- vindr: `annotations(split, line, study_id, series_id, image_id, rad_id, lesion_type, xmin, ymin, xmax,
  ymax)` over the configured splits.
- buu: `endplates(member, row_index, line, x1, y1, x2, y2, label)` for every CSV of the configured views
  (row_index = 0-based endplate order, blank lines skipped) and `csv_errors(member, error)` for CSVs that
  do not parse.
- csxa: `sheet(row, number, curvature)` from datasets.xlsx (row = Excel row number), `labelme(member,
  landmarks, duplicate_labels)` and `json_errors(member, error)` per LabelMe JSON.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Mapping
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa

from spinebench import vocab
from spinebench.archive import ArchiveError, SourceArchive, read_csv_member

# Columns each raw table must have; anything else in the file is carried along untouched.
RSNA_COLUMNS = {
    "train.csv": ("study_id",),
    "train_label_coordinates.csv": ("study_id", "series_id", "instance_number", "condition", "level"),
    "train_series_descriptions.csv": ("study_id", "series_id", "series_description"),
}
# rad_id and the box are required too: an exact duplicate row (same reader, same box) is counted once.
VINDR_COLUMNS = ("study_id", "series_id", "image_id", "rad_id", "lesion_type", "xmin", "ymin", "xmax", "ymax")
BUU_COLUMNS = ("x1", "y1", "x2", "y2", "label")
CSXA_CASE_COLUMN = "Number"
CSXA_SHEET_NAME = "Sheet1"
# datasets.xlsx has a title row above the header (SOURCES.md 4.2: header on the 2nd row).
CSXA_HEADER_ROW = 1

LABEL_MAP_COLUMNS = {
    "rsna": ("condition", "train_column", "disease"),
    "vindr": ("source_label", "disease", "action"),
    "buu": ("label", "meaning", "listhesis"),
    "csxa": ("curvature", "meaning", "disease"),
}
VINDR_ACTIONS = ("keep", "drop", "healthy")


class IngestError(Exception):
    """A raw table or label map lacks what the standardization needs (message names file and column)."""


def string_table(frame: pd.DataFrame, integer_columns: tuple[str, ...] = ()) -> pa.Table:
    """Arrow table with every column a string (NULL for missing), except the named integer columns."""
    arrays, fields = [], []
    for column in frame.columns:
        values = frame[column]
        if column in integer_columns:
            arrays.append(pa.array(values.tolist(), type=pa.int64()))
            fields.append(pa.field(column, pa.int64()))
        else:
            arrays.append(pa.array([None if pd.isna(v) else str(v) for v in values], type=pa.string()))
            fields.append(pa.field(column, pa.string()))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def register(con: duckdb.DuckDBPyConnection, name: str, table: pa.Table) -> None:
    """Expose an Arrow table to the SQL under `name`."""
    con.register(name, table)


def require_columns(frame: pd.DataFrame, required: tuple[str, ...], where: str) -> None:
    """Raise IngestError naming `where` and the missing columns if any required column is absent."""
    missing = [column for column in required if column not in frame.columns]
    if missing:
        raise IngestError(f"{where}: missing column(s) {missing}; found {list(frame.columns)}")


def read_member_csv(archive: SourceArchive, member: str, required: tuple[str, ...]) -> pd.DataFrame:
    """A CSV member with a header as all-string columns, plus `line` (1-based line, header = line 1)."""
    frame = read_csv_member(archive, member, line_column="line")
    require_columns(frame, required, f"{archive.label}: {member}")
    return frame


def members_table(archive: SourceArchive) -> pa.Table:
    """`members(path, size)` for every file of the archive."""
    listing = archive.sizes()
    return pa.table(
        {
            "path": pa.array([member for member, _ in listing], type=pa.string()),
            "size": pa.array([size for _, size in listing], type=pa.int64()),
        }
    )


def levels_table() -> pa.Table:
    """`levels(level, level_order)`: the lumbar levels with their cranial-to-caudal position."""
    return pa.table(
        {
            "level": pa.array(vocab.LEVELS, type=pa.string()),
            "level_order": pa.array(range(len(vocab.LEVELS)), type=pa.int64()),
        }
    )


def load_label_map(source: str, path: str | Path) -> pa.Table:
    """Read and check resources/label_maps/{source}.csv: required columns, target labels in the vocabulary.

    A bad label map is a configuration error, so it raises IngestError naming the file and line.
    """
    frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    require_columns(frame, LABEL_MAP_COLUMNS[source], str(path))
    for index, row in frame.iterrows():
        where = f"{path} line {index + 2}"
        disease = row.get("disease")
        if source == "vindr":
            _check_vindr_map_row(where, row)
        elif source in ("rsna", "csxa") and disease not in vocab.LABELS:
            raise IngestError(f"{where}: disease {disease!r} is not a vocab.LABELS string")
        if source == "buu" and row["listhesis"] not in ("true", "false"):
            raise IngestError(f"{where}: listhesis must be true or false, not {row['listhesis']!r}")
    key = LABEL_MAP_COLUMNS[source][0]
    duplicated = frame[key][frame[key].duplicated()].tolist()
    if duplicated:
        raise IngestError(f"{path}: {key} value(s) {duplicated} appear more than once")
    frame["map_order"] = range(len(frame))
    return string_table(frame, integer_columns=("map_order",))


def _check_vindr_map_row(where: str, row: pd.Series) -> None:
    if row["action"] not in VINDR_ACTIONS:
        raise IngestError(f"{where}: action {row['action']!r} is not one of {VINDR_ACTIONS}")
    expected = {"keep": vocab.DISEASES, "healthy": (vocab.HEALTHY,), "drop": (None,)}[row["action"]]
    disease = None if pd.isna(row["disease"]) else row["disease"]
    if disease not in expected:
        raise IngestError(f"{where}: action {row['action']} needs disease in {expected}, got {disease!r}")


def rsna_grade_columns(label_map: pa.Table) -> tuple[str, ...]:
    """train.csv severity columns, `{train_column}_{level}` (e.g. spinal_canal_stenosis_l1_l2)."""
    stems = label_map.column("train_column").to_pylist()
    return tuple(f"{stem}_{level.lower().replace('/', '_')}" for stem in stems for level in vocab.LEVELS)


def ingest_rsna(
    con: duckdb.DuckDBPyConnection, archive: SourceArchive, settings: Mapping, label_map: pa.Table
) -> None:
    """Register train, coordinates and series_descriptions from the RSNA root CSVs."""
    required = {**RSNA_COLUMNS, "train.csv": RSNA_COLUMNS["train.csv"] + rsna_grade_columns(label_map)}
    relations = {
        "train.csv": "train",
        "train_label_coordinates.csv": "coordinates",
        "train_series_descriptions.csv": "series_descriptions",
    }
    for member, relation in relations.items():
        frame = read_member_csv(archive, member, required[member])
        register(con, relation, string_table(frame, integer_columns=("line",)))


def ingest_vindr(
    con: duckdb.DuckDBPyConnection, archive: SourceArchive, settings: Mapping, label_map: pa.Table
) -> None:
    """Register `annotations`: the rows of annotations/{split}.csv for every configured split."""
    frames = []
    for split in settings["splits"]:
        frame = read_member_csv(archive, f"annotations/{split}.csv", VINDR_COLUMNS)
        frame.insert(0, "split", split)
        frames.append(frame)
    annotations = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    register(con, "annotations", string_table(annotations, integer_columns=("line",)))


def buu_csv_members(archive: SourceArchive, views: list[str]) -> list[str]:
    """Annotation CSVs directly inside the configured view folders."""
    return [
        member
        for member in archive.members()
        if member.count("/") == 1 and member.split("/")[0] in views and member.lower().endswith(".csv")
    ]


def parse_headerless_csv(data: bytes, columns: tuple[str, ...]) -> list[dict]:
    """Rows of a headerless CSV as dicts of stripped strings; ValueError on a bad encoding or field count.

    Blank lines are skipped (they carry no endplate) but the line numbers of later rows stay true.
    """
    text = data.decode("utf-8-sig")
    rows = []
    for line_number, fields in enumerate(csv.reader(io.StringIO(text)), start=1):
        if not fields or all(not field.strip() for field in fields):
            continue
        if len(fields) != len(columns):
            raise ValueError(f"line {line_number} has {len(fields)} fields, expected {len(columns)}")
        row = {"row_index": len(rows), "line": line_number}
        row.update({column: field.strip() or None for column, field in zip(columns, fields, strict=True)})
        rows.append(row)
    return rows


def ingest_buu(
    con: duckdb.DuckDBPyConnection, archive: SourceArchive, settings: Mapping, label_map: pa.Table
) -> None:
    """Register `endplates` (one row per CSV line) and `csv_errors` for the configured views."""
    endplates, errors = [], []
    for member in buu_csv_members(archive, list(settings["views"])):
        try:
            rows = parse_headerless_csv(archive.read(member), BUU_COLUMNS)
        except (ValueError, csv.Error, ArchiveError) as error:  # one bad file rejects one film, not the run
            errors.append({"member": member, "error": str(error)})
            continue
        endplates.extend({"member": member, **row} for row in rows)
    columns = ["member", "row_index", "line", *BUU_COLUMNS]
    register(
        con,
        "endplates",
        string_table(pd.DataFrame(endplates, columns=columns), integer_columns=("row_index", "line")),
    )
    register(con, "csv_errors", string_table(pd.DataFrame(errors, columns=["member", "error"])))


def read_csxa_sheet(archive: SourceArchive, curvature_column: str) -> pd.DataFrame:
    """`row, number, curvature` from datasets.xlsx (Sheet1, header on the 2nd row), cells as strings."""
    data = archive.read("datasets.xlsx")
    try:
        frame = pd.read_excel(io.BytesIO(data), sheet_name=CSXA_SHEET_NAME, header=CSXA_HEADER_ROW, dtype=str)
    except (ValueError, KeyError, OSError) as error:
        raise IngestError(
            f"{archive.label}: datasets.xlsx: cannot read {CSXA_SHEET_NAME} ({error})"
        ) from error
    require_columns(frame, (CSXA_CASE_COLUMN, curvature_column), f"{archive.label}: datasets.xlsx")
    sheet = pd.DataFrame(
        {
            # Excel row number: the title row and the header row come first.
            "row": range(CSXA_HEADER_ROW + 2, CSXA_HEADER_ROW + 2 + len(frame)),
            "number": frame[CSXA_CASE_COLUMN].to_numpy(),
            "curvature": frame[curvature_column].to_numpy(),
        }
    )
    # Rows with no value in any column carry no case (Excel keeps formatted empty rows).
    return sheet[~frame.isna().all(axis=1).to_numpy()].reset_index(drop=True)


def count_labelme_landmarks(data: bytes) -> tuple[int, int]:
    """(shapes, duplicated labels) of a LabelMe JSON; ValueError if it is not LabelMe-shaped."""
    document = json.loads(data.decode("utf-8-sig"))
    if not isinstance(document, dict) or not isinstance(document.get("shapes"), list):
        raise ValueError("no 'shapes' list at the top level")
    labels = []
    for index, shape in enumerate(document["shapes"]):
        if not isinstance(shape, dict) or not isinstance(shape.get("label"), str):
            raise ValueError(f"shape {index} has no string 'label'")
        labels.append(shape["label"])
    return len(labels), len(labels) - len(set(labels))


def ingest_csxa(
    con: duckdb.DuckDBPyConnection, archive: SourceArchive, settings: Mapping, label_map: pa.Table
) -> None:
    """Register `sheet`, `labelme` and `json_errors` (every JSON is parsed; see count_labelme_landmarks)."""
    sheet = read_csxa_sheet(archive, settings["curvature_column"])
    register(con, "sheet", string_table(sheet, integer_columns=("row",)))
    counts, errors = [], []
    for member in archive.members():
        if not (member.startswith("datasets-JSON/") and member.lower().endswith(".json")):
            continue
        try:
            landmarks, duplicates = count_labelme_landmarks(archive.read(member))
        except (ValueError, UnicodeDecodeError, ArchiveError) as error:
            errors.append({"member": member, "error": str(error)})
            continue
        counts.append({"member": member, "landmarks": landmarks, "duplicate_labels": duplicates})
    register(
        con,
        "labelme",
        string_table(
            pd.DataFrame(counts, columns=["member", "landmarks", "duplicate_labels"]),
            integer_columns=("landmarks", "duplicate_labels"),
        ),
    )
    register(con, "json_errors", string_table(pd.DataFrame(errors, columns=["member", "error"])))


# Settings each ingester reads (the rest are SQL parameters).
INGESTERS: dict[str, tuple[Callable, tuple[str, ...]]] = {
    "rsna": (ingest_rsna, ()),
    "vindr": (ingest_vindr, ("splits",)),
    "buu": (ingest_buu, ("views",)),
    "csxa": (ingest_csxa, ("curvature_column",)),
}


def ingest_source(
    con: duckdb.DuckDBPyConnection,
    source: str,
    archive: SourceArchive,
    settings: Mapping,
    label_map: pa.Table,
) -> None:
    """Register members, label_map, levels and the source's raw tables on `con`."""
    ingester, _ = INGESTERS[source]
    register(con, "members", members_table(archive))
    register(con, "label_map", label_map)
    register(con, "levels", levels_table())
    ingester(con, archive, settings, label_map)
