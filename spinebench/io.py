"""Deterministic table I/O.

Benchmark tables must be byte-identical for the same inputs and params, so Parquet files are written
without pandas/pyarrow schema metadata (which embeds library versions and index layout), with fixed
compression and row-group size.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

ROW_GROUP_SIZE = 4096


def to_arrow(frame: pd.DataFrame, schema: pa.Schema | None = None) -> pa.Table:
    """Convert a DataFrame to an Arrow table with no index and no schema metadata.

    A frame with no rows becomes the schema's empty table: pandas gives an empty column built from Python
    lists the dtype float64, which Arrow cannot convert to a list type, and with no values the schema alone
    says everything (a stage whose input kept nothing still writes its table with the contract's columns).
    """
    if schema is not None and len(frame) == 0:
        missing = [name for name in schema.names if name not in frame.columns]
        if missing:
            raise KeyError(f"the table lacks column(s) {', '.join(missing)} of its schema")
        return schema.empty_table()
    table = pa.Table.from_pandas(frame, schema=schema, preserve_index=False)
    return table.replace_schema_metadata(None)


def create_temporary(path: str | os.PathLike) -> tuple[int, str]:
    """Create a new temporary file beside `path` for a writer to fill and rename onto `path`; return its
    open (write-only) descriptor and its name, `.{name}.{random}.tmp` (the pattern spinebench.cleanup
    removes after a killed run).

    Unlike tempfile.mkstemp, which always creates mode 0600, the file gets the mode a plain `open()` gives
    (0666 less the umask): once renamed into place it is an ordinary output, readable by whoever the user's
    umask lets read their files (a group sharing results, a web server showing the report).
    """
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    # O_EXCL: never open a file (or follow a link) that is already there.
    return os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), str(temporary)


def write_table(
    table: pd.DataFrame | pa.Table, path: str | os.PathLike, schema: pa.Schema | None = None
) -> None:
    """Write a table to Parquet deterministically and atomically (temp file + rename).

    A crash mid-write never leaves a truncated file at `path`.
    """
    if isinstance(table, pd.DataFrame):
        table = to_arrow(table, schema)
    else:
        table = table.replace_schema_metadata(None)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = create_temporary(path)
    os.close(fd)
    try:
        pq.write_table(
            table,
            tmp,
            compression="zstd",
            row_group_size=ROW_GROUP_SIZE,
            write_statistics=False,
            store_schema=False,
        )
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@contextmanager
def staged_directory(out_dir: Path) -> Iterator[Path]:
    """Yield an empty staging directory that replaces `out_dir` only when the block completes.

    On an exception the staging directory is removed and `out_dir` is left as it was.
    """
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.", suffix=".tmp"))
    try:
        yield staging
        os.chmod(staging, 0o755)  # mkdtemp creates 0700; the archive folder should be readable like any other
        if out_dir.exists():
            # A previous output: move it aside first (rename cannot replace a non-empty directory).
            retired = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.", suffix=".old"))
            os.replace(out_dir, retired / out_dir.name)
            os.replace(staging, out_dir)
            shutil.rmtree(retired)
        else:
            os.replace(staging, out_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging)


def read_table(path: str | os.PathLike, columns: list[str] | None = None) -> pd.DataFrame:
    """Read a Parquet file (optionally only some columns) into a DataFrame."""
    return pq.read_table(path, columns=columns).to_pandas()


def json_text(obj) -> str:
    """The text write_json writes: indented JSON with sorted keys and a trailing newline."""
    return json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write_json(obj, path: str | os.PathLike) -> None:
    """Write JSON with sorted keys and a trailing newline (json_text), atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json_text(obj), encoding="utf-8")
    os.replace(tmp, path)


def rejected_frame(rows: list[dict] | None = None) -> pd.DataFrame:
    """A rejected-items table: what was rejected (`item`), where it came from (`file`) and why (`reason`).

    Every stage that drops an input writes one of these, so nothing is lost silently.
    """
    columns = ["source", "item", "file", "reason"]
    return pd.DataFrame(rows or [], columns=columns).astype("string")


# `extra=` of a log record that the person running the workflow should see on the console as well
# (a warning that changes the benchmark, such as a smaller subset than asked for), not only in the log.
CONSOLE = {"console": True}


def configure_job_logging(log_path: str | os.PathLike) -> None:
    """Send the `logging` records of a Snakemake job to its `log:` file (one format for every rule), and
    the records logged with `extra=CONSOLE` also to stderr, which Snakemake shows on the console."""
    logging.basicConfig(
        filename=log_path,
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        force=True,
    )
    console = logging.StreamHandler(sys.stderr)
    console.addFilter(lambda record: getattr(record, "console", False))
    console.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(console)


# How many files of one input or output name a failure report lists (a rule may take hundreds of shards).
_FILES_LISTED = 5


def run_job(main: Callable[[Any], None], snakemake: Any) -> None:
    """Run the `main(snakemake)` of a Snakemake `script:` with its logging sent to the job's `log:` file.

    Every scripts/*.py ends with this call. When the job fails, Snakemake says "check log file(s) for error
    details", but the traceback only reaches the job's stderr, which a cluster executor may discard. So
    any exception is written to the log file with its traceback and the job's wildcards, inputs and
    outputs (the files it concerns), then re-raised: the job still fails.
    """
    configure_job_logging(snakemake.log[0])
    try:
        main(snakemake)
    except BaseException as error:  # KeyboardInterrupt too: an interrupted job says so in its log
        logging.getLogger("spinebench.job").critical(
            "job failed: %s: %s\n%s", type(error).__name__, error, job_context(snakemake), exc_info=error
        )
        raise


def job_context(snakemake: Any) -> str:
    """The wildcards, input and output files of a job, one kind a line (what a failure concerns)."""
    lines = []
    for kind in ("wildcards", "input", "output"):
        try:
            described = _describe_files(getattr(snakemake, kind, None))
        except Exception as error:  # the failure report must not fail: say what could not be listed
            described = f"(cannot be listed: {type(error).__name__}: {error})"
        if described:
            lines.append(f"  {kind}: {described}")
    return "\n".join(lines)


def _describe_files(files: Any) -> str:
    """`name=value` pairs of a Snakemake Namedlist or a namespace, else its values; long lists shortened."""
    if files is None:
        return ""
    if hasattr(files, "items"):
        pairs = list(files.items())  # a Namedlist lists only its named entries here
    elif hasattr(files, "__dict__"):
        pairs = list(vars(files).items())
    else:
        pairs = []
    if pairs:
        return ", ".join(f"{name}={_shortened(value)}" for name, value in pairs)
    return _shortened(files)


def _shortened(value: Any) -> str:
    """A file name as is; a list of them as its first few names and how many there are."""
    if isinstance(value, str | os.PathLike) or not isinstance(value, Iterable):
        return str(value)
    values = [str(item) for item in value]
    if len(values) > _FILES_LISTED:
        return f"[{', '.join(values[:_FILES_LISTED])}, ... ({len(values)} files)]"
    return f"[{', '.join(values)}]"
