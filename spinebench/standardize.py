"""Standardize one source: raw archive -> DuckDB relations -> sql/standardize/{source}.sql -> two tables.

The SQL file is a single SELECT that yields every candidate row (an image, or a raw row that cannot become
one) with a `reject_reason` that is NULL when the row is kept. This module binds the source's settings as
named parameters (never formatted into the SQL), runs it, and splits the result into the standardized
table (docs/contracts.md "standardized", sorted by image_id) and the rejected table (source, item, file,
reason). It also checks the SQL's kept rows against the vocabulary, so a wrong label map or SQL bug fails
loudly here instead of reaching the benchmark.

Missing images: a source most of whose labelled images are absent from the archive is almost always
misconfigured (`path` at the wrong folder, images not downloaded or not extracted, a renamed folder), and
building on would quietly publish a benchmark without it. So when more than the source's
`max_missing_image_share` of its labelled images are missing, standardization fails (MissingImagesError)
naming the source, the count, example label lines and the likely causes. A user who really has only the
labels (or a partial download) accepts that with `max_missing_image_share: 1`; the source then keeps what it
has, or contributes nothing with a warning.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa

from spinebench import vocab
from spinebench.archive import open_source
from spinebench.ingest import INGESTERS, ingest_source, load_label_map
from spinebench.io import CONSOLE, rejected_frame

log = logging.getLogger(__name__)

STANDARDIZED_SCHEMA = pa.schema(
    [
        ("image_id", pa.string()),
        ("source", pa.string()),
        ("modality", pa.string()),
        ("region", pa.string()),
        ("disease", pa.string()),
        ("levels", pa.list_(pa.string())),
        ("member", pa.string()),
        ("view", pa.string()),
        ("study_id", pa.string()),
        ("series_id", pa.string()),
        ("instance_number", pa.string()),
        ("source_labels", pa.list_(pa.string())),
    ]
)
STANDARDIZED_COLUMNS = tuple(STANDARDIZED_SCHEMA.names)
REJECTED_SCHEMA = pa.schema([(column, pa.string()) for column in ("source", "item", "file", "reason")])
REJECT_COLUMNS = ("item", "file", "reject_reason")
MODALITIES = ("MRI", "X-ray")
REGIONS = ("lumbar", "cervical", "spine")
# Settings that locate the archive or cut it into shards; they do not affect standardization.
PLACEMENT_SETTINGS = ("path", "shards")
# Settings this module reads itself (neither the SQL nor ingestion).
CHECK_SETTINGS = ("max_missing_image_share",)
# Used when the settings do not say: the check is on unless a configuration turns it off explicitly.
DEFAULT_MAX_MISSING_IMAGE_SHARE = 0.5
# How each SQL words "a label points at an image file the archive lacks" (the start of the reason). The
# missing-image check counts these; tests/test_source_faults.py keeps them in step with the SQL.
MISSING_IMAGE_REASONS = {
    "rsna": "missing image",
    "vindr": "missing image",
    "buu": "annotation CSV without image",
    "csxa": "datasets.xlsx row without PNG",
}
# Missing images quoted in the error message.
MISSING_IMAGE_EXAMPLES = 3

# `$name` placeholders; `--` comments are removed first so prose in comments is not mistaken for one.
_PARAMETER = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")
_LINE_COMMENT = re.compile(r"--[^\n]*")


class StandardizeError(Exception):
    """The SQL, its settings or its output break the standardization contract."""


class MissingImagesError(StandardizeError):
    """More of a source's labelled images are missing than its max_missing_image_share allows."""


def sql_parameters(sql: str) -> list[str]:
    """Names of the `$name` placeholders in `sql`, sorted and unique (comments ignored)."""
    return sorted(set(_PARAMETER.findall(_LINE_COMMENT.sub("", sql))))


def bind_parameters(source: str, sql: str, sql_path: str | Path, settings: Mapping) -> dict:
    """The settings the SQL refers to, as DuckDB named parameters.

    Every placeholder must be a setting, and every setting must be read by the SQL or the ingester:
    a setting that nothing reads would silently do nothing.
    """
    names = sql_parameters(sql)
    missing = [name for name in names if name not in settings]
    if missing:
        raise StandardizeError(f"{sql_path} uses ${', $'.join(missing)}, not among the {source} settings")
    _, ingest_settings = INGESTERS[source]
    unused = sorted(
        set(settings) - set(names) - set(ingest_settings) - set(PLACEMENT_SETTINGS) - set(CHECK_SETTINGS)
    )
    if unused:
        raise StandardizeError(f"{source} setting(s) {unused} are read by neither {sql_path} nor ingestion")
    missing_ingest = [name for name in ingest_settings if name not in settings]
    if missing_ingest:
        raise StandardizeError(f"{source} settings lack {missing_ingest}, needed to read the raw tables")
    return {name: _parameter_value(settings[name]) for name in names}


def _parameter_value(value):
    # DuckDB binds Python lists as LIST parameters; tuples from frozen configs become lists too.
    return list(value) if isinstance(value, tuple) else value


def run_standardization_sql(
    source: str, archive_path: str | Path, sql_path: str | Path, label_map_path: str | Path, settings: Mapping
) -> pa.Table:
    """Ingest the archive into an in-memory DuckDB and return the SQL's candidate rows."""
    sql = Path(sql_path).read_text(encoding="utf-8")
    label_map = load_label_map(source, label_map_path)
    parameters = bind_parameters(source, sql, sql_path, settings)
    con = duckdb.connect(":memory:")
    try:
        with open_source(source, archive_path) as archive:
            ingest_source(con, source, archive, settings, label_map)
        try:
            # con.sql binds the same named parameters as con.execute and returns Arrow without a copy.
            return con.sql(sql, params=parameters).to_arrow_table()
        except duckdb.Error as error:
            raise StandardizeError(f"{sql_path} failed for {source}: {error}") from error
    finally:
        con.close()


def split_candidates(
    source: str, candidates: pa.Table, sql_path: str | Path
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Kept rows -> standardized table (sorted by image_id); the rest -> rejected table (sorted)."""
    missing = [c for c in STANDARDIZED_COLUMNS + REJECT_COLUMNS if c not in candidates.column_names]
    if missing:
        raise StandardizeError(f"{sql_path} does not select column(s) {missing}")
    rows = candidates.to_pylist()
    kept = [row for row in rows if row["reject_reason"] is None]
    dropped = [row for row in rows if row["reject_reason"] is not None]
    standardized = standardized_frame(kept)
    check_standardized(source, standardized, sql_path)
    rejected = rejected_frame(
        [
            {"source": source, "item": row["item"], "file": row["file"], "reason": row["reject_reason"]}
            for row in dropped
        ]
    )
    if rejected[["item", "file"]].isna().any().any():
        raise StandardizeError(f"{sql_path}: a rejected row has no item or file")
    rejected = rejected.sort_values(["item", "file", "reason"], kind="mergesort").reset_index(drop=True)
    return standardized, rejected


def max_missing_image_share(source: str, settings: Mapping) -> float:
    """The source's `max_missing_image_share` (DEFAULT_MAX_MISSING_IMAGE_SHARE when unset), checked."""
    value = settings.get("max_missing_image_share", DEFAULT_MAX_MISSING_IMAGE_SHARE)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise StandardizeError(
            f"{source}: max_missing_image_share must be a number from 0 to 1, not {value!r}"
        )
    return float(value)


def missing_image_rows(source: str, rejected: pd.DataFrame) -> pd.DataFrame:
    """The rejected rows whose label points at an image file the archive lacks."""
    return rejected[rejected["reason"].str.startswith(MISSING_IMAGE_REASONS[source])]


def check_missing_images(
    source: str,
    standardized: pd.DataFrame,
    rejected: pd.DataFrame,
    max_share: float,
    archive_path: str | Path,
) -> None:
    """Fail when more than `max_share` of the source's labelled images are missing; warn when accepted.

    The share is missing / (kept + missing) images: the images whose file was looked for. Images rejected
    for other reasons are left out, as some are rejected before their file is looked for.
    """
    missing = missing_image_rows(source, rejected)
    if missing.empty:  # includes a source with no labelled image at all: nothing was looked for
        return
    looked_for = len(standardized) + len(missing)
    share = len(missing) / looked_for
    summary = (
        f"{len(missing)} of {looked_for} labelled image(s) ({share:.0%}) are missing from {archive_path}"
    )
    if share <= max_share:
        # Accepted; still say so when the default would have stopped the build, so the log shows why the
        # source is thin. A handful of missing files (the usual case) is left to the rejected table.
        if share > DEFAULT_MAX_MISSING_IMAGE_SHARE:
            log.warning(
                "%s: %s (accepted: max_missing_image_share is %g)", source, summary, max_share, extra=CONSOLE
            )
        return
    examples = "; ".join(
        f"{row.item} ({row.file})" for row in missing.head(MISSING_IMAGE_EXAMPLES).itertuples(index=False)
    )
    raise MissingImagesError(
        f"{source}: {summary}, more than max_missing_image_share {max_share:g} allows. "
        f"For example: {examples}. Likely causes: `sources.{source}.path` points at the wrong folder or a "
        f"copy without the images; the images are not downloaded or not extracted yet (a zip left packed "
        f"beside the labels); the image folder was moved or renamed. To build with the images that are "
        f"there, set sources.{source}.max_missing_image_share: 1 in params.yaml."
    )


def warn_empty_source(source: str, rejected: pd.DataFrame) -> None:
    """Log that `source` kept no image, with the rejection reasons: the build goes on without it, so the
    log must say why the benchmark has none of its images."""
    reasons = ", ".join(f"{count} {reason}" for reason, count in rejection_counts(rejected).items())
    log.warning(
        "%s: no image kept, the source contributes nothing to the benchmark (%d row(s) rejected%s)",
        source,
        len(rejected),
        f": {reasons}" if reasons else "",
        extra=CONSOLE,
    )


def standardized_frame(rows: list[dict]) -> pd.DataFrame:
    """The standardized table from kept candidate rows: contract columns only, sorted by image_id."""
    table = pa.Table.from_pylist(
        [{column: row[column] for column in STANDARDIZED_COLUMNS} for row in rows], schema=STANDARDIZED_SCHEMA
    )
    frame = table.to_pandas()
    # Lists come back as numpy arrays; plain lists compare and serialize predictably. The object dtype is
    # explicit: assigning an empty Python list would give float64, which Arrow cannot write as list<string>.
    for column in ("levels", "source_labels"):
        frame[column] = pd.Series([list(value) for value in frame[column]], index=frame.index, dtype=object)
    return frame.sort_values("image_id", kind="mergesort").reset_index(drop=True)


def check_standardized(source: str, frame: pd.DataFrame, sql_path: str | Path) -> None:
    """Raise StandardizeError on any kept row that breaks the contract (names the image)."""
    duplicated = frame["image_id"][frame["image_id"].duplicated()].tolist()
    if duplicated:
        raise StandardizeError(f"{sql_path}: image_id(s) kept more than once: {duplicated[:5]}")
    for row in frame.itertuples(index=False):
        problems = []
        if not isinstance(row.image_id, str) or not row.image_id.startswith(f"{source}-"):
            problems.append(f"image_id not prefixed {source}-")
        if row.source != source:
            problems.append(f"source {row.source!r}")
        if row.modality not in MODALITIES:
            problems.append(f"modality {row.modality!r}")
        if row.region not in REGIONS:
            problems.append(f"region {row.region!r}")
        if row.disease not in vocab.LABELS:
            problems.append(f"disease {row.disease!r} not in vocab.LABELS")
        if any(level not in vocab.LEVELS for level in row.levels):
            problems.append(f"levels {row.levels} not all in vocab.LEVELS")
        elif list(row.levels) != sorted(set(row.levels), key=vocab.LEVELS.index):
            problems.append(f"levels {row.levels} not unique in cranial-to-caudal order")
        if not row.member:
            problems.append("no member")
        if problems:
            raise StandardizeError(f"{sql_path}: kept row {row.image_id!r}: {'; '.join(problems)}")


def standardize_source(
    source: str, archive_path: str | Path, sql_path: str | Path, label_map_path: str | Path, settings: Mapping
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(standardized, rejected) tables of one source; see the module docstring and docs/contracts.md."""
    if source not in vocab.SOURCES:
        raise StandardizeError(f"unknown source {source!r}; expected one of {vocab.SOURCES}")
    max_share = max_missing_image_share(source, settings)
    candidates = run_standardization_sql(source, archive_path, sql_path, label_map_path, settings)
    standardized, rejected = split_candidates(source, candidates, sql_path)
    check_missing_images(source, standardized, rejected, max_share, archive_path)
    if standardized.empty:
        warn_empty_source(source, rejected)
    return standardized, rejected


def rejection_counts(rejected: pd.DataFrame) -> dict[str, int]:
    """Rejected rows per reason, reasons in sorted order (for the log)."""
    return {
        str(reason): int(count) for reason, count in rejected["reason"].value_counts().sort_index().items()
    }
