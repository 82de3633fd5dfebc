"""Compare the results/ of two builds of the workflow file by file (bench/slurm_demo.sh: SLURM vs local).

    .venv/bin/python bench/compare_builds.py BUILD_A BUILD_B

Every file under results/ must be byte-identical in both builds, except what legitimately differs between
two runs: prediction tables time each request (`latency_s`), so they are compared without that column,
and their journals (`*.jsonl`, the resumable working files) record those times and the order answers
arrived in, so they are left out. Prints one line per folder of results/ and the differing files; exits
with 1 when a file differs or is missing from one build, 2 when a folder cannot be compared.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from collections import Counter
from pathlib import Path

import pandas as pd

# Prediction tables: the column that times each request, different in every run.
TIMING_COLUMN = "latency_s"


class BuildFolderError(ValueError):
    """A build folder that cannot be compared (no results/, a prediction table without its timing)."""


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("build_a", type=Path, help="a workflow folder holding results/")
    parser.add_argument("build_b", type=Path, help="the other workflow folder")
    return parser.parse_args(argv)


def is_journal(relative: str) -> bool:
    """Prediction journals: working files whose request times and arrival order differ between runs."""
    return relative.startswith("results/predictions/") and relative.endswith(".jsonl")


def file_digest(root: Path, relative: str) -> str:
    """SHA-256 of a result file; of a prediction table, its content without the timing column."""
    path = root / relative
    if relative.startswith("results/predictions/") and relative.endswith(".parquet"):
        frame = pd.read_parquet(path)
        if TIMING_COLUMN not in frame.columns:
            raise BuildFolderError(f"{path}: prediction table without a {TIMING_COLUMN} column")
        untimed = frame.drop(columns=[TIMING_COLUMN]).to_csv(index=False)
        return "untimed:" + hashlib.sha256(untimed.encode("utf-8")).hexdigest()
    return hashlib.sha256(path.read_bytes()).hexdigest()


def result_files(root: Path) -> set[str]:
    """Paths (relative to `root`) of every compared file under root/results."""
    results = root / "results"
    if not results.is_dir():
        raise BuildFolderError(f"{root}: no results/ folder to compare")
    found = (path.relative_to(root).as_posix() for path in results.rglob("*") if path.is_file())
    return {relative for relative in found if not is_journal(relative)}


def folder_of(relative: str) -> str:
    """The results/ subfolder a file is reported under (results/benchmark, results/metrics, ...)."""
    parts = relative.split("/")
    return "/".join(parts[:2]) if len(parts) > 2 else "results"


def compare(build_a: Path, build_b: Path) -> tuple[Counter, list[tuple[str, str]], list[str]]:
    """(files per folder, (what is wrong, path) of each file that differs or exists in one build only,
    prediction tables equal only without their timing column)."""
    files_a, files_b = result_files(build_a), result_files(build_b)
    problems = [(f"only in {build_a}", relative) for relative in sorted(files_a - files_b)]
    problems += [(f"only in {build_b}", relative) for relative in sorted(files_b - files_a)]
    timed_apart = []
    for relative in sorted(files_a & files_b):
        if file_digest(build_a, relative) != file_digest(build_b, relative):
            problems.append(("differs", relative))
        elif (build_a / relative).read_bytes() != (build_b / relative).read_bytes():
            timed_apart.append(relative)
    return Counter(folder_of(relative) for relative in files_a | files_b), problems, timed_apart


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    try:
        files, problems, timed_apart = compare(args.build_a, args.build_b)
    except BuildFolderError as error:
        print(f"compare_builds: {error}", file=sys.stderr)
        return 2
    failing = Counter(folder_of(relative) for _, relative in problems)
    for folder, count in sorted(files.items()):
        verdict = f"{failing[folder]} differ" if failing[folder] else "equal"
        print(f"{folder:<28}{count:>5} files  {verdict}")
    print(
        f"legitimately different: {len(timed_apart)} prediction tables in their {TIMING_COLUMN} column only"
        " (equal without it); prediction journals (*.jsonl) not compared"
    )
    for what, relative in problems:
        print(f"{what}: {relative}")
    print("builds are equal" if not problems else f"builds differ: {len(problems)} files")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
