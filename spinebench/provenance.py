"""What a report was made from: the code version and the params that define the benchmark.

Imported by rules/report.smk when the workflow is parsed, so both values are Snakemake params of the report
job (a new commit or a changed benchmark param reruns it) and the job itself runs no git command. Light on
purpose: the standard library only.
"""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
from collections.abc import Mapping

# Sections of params.yaml that decide the benchmark's content (the `benchmark` stage of dvc.yaml).
BENCHMARK_SECTIONS: tuple[str, ...] = (
    "sources",
    "synthetic",
    "render",
    "embed",
    "distractors",
    "questions",
    "subset",
)

# Seeds the benchmark tables are drawn with (the others draw predictions and intervals).
BENCHMARK_SEEDS: tuple[str, ...] = ("synthetic", "encoder", "library", "questions", "subset")

# Keys of a source's settings that say where its data lives or how the work is split, not what it holds:
# a path is machine-local (and would put a local folder name into a shared report).
SOURCE_LOCATION_KEYS: frozenset[str] = frozenset({"path", "shards"})

GIT_TIMEOUT_S = 10


def describe_code(directory: str | os.PathLike) -> str:
    """The code version: `git describe --tags --always --dirty` of the checkout holding `directory`, else
    `spinebench <package version>` (a copy without git history, or no git at all)."""
    try:
        result = subprocess.run(
            ["git", "-C", str(directory), "describe", "--tags", "--always", "--dirty"],
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        result = None
    if result is not None and result.returncode == 0 and result.stdout.strip():
        return f"git {result.stdout.strip()}"
    return f"spinebench {package_version()}"


def package_version() -> str:
    """The installed spinebench distribution's version ('unknown' when it is not installed)."""
    try:
        return importlib.metadata.version("spinebench")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def benchmark_params(config: Mapping) -> dict:
    """The params that define the benchmark's content: the benchmark seeds and the build sections, with
    each source's location keys (path, shards) left out."""
    params = {"seeds": {name: config["seeds"][name] for name in BENCHMARK_SEEDS if name in config["seeds"]}}
    for section in BENCHMARK_SECTIONS:
        if section not in config:
            continue
        value = config[section]
        if section == "sources":
            value = {
                source: {key: setting for key, setting in settings.items() if key not in SOURCE_LOCATION_KEYS}
                for source, settings in value.items()
            }
        params[section] = value
    return params
