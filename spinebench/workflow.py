"""Run the Snakemake workflow in a scratch copy of the repository (workflow tests, bench/build.py)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import yaml

# The checkout this package lives in (an editable install).
REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))

# What a checkout needs to run the workflow (results and synthetic archives are built).
WORKFLOW_PATHS = (
    "Snakefile",
    "params.yaml",
    "rules",
    "scripts",
    "sql",
    "schemas",
    "templates",
    "resources",
    "envs",
    "profiles",
    "spinebench",
)


def copy_workflow(destination: Path, overwrite: bool = False) -> Path:
    """Copy the workflow files into `destination` (no results, no synthetic archives, no caches).
    `overwrite` replaces the files of an earlier copy there (files since deleted here stay)."""
    ignore = shutil.ignore_patterns("__pycache__", "synthetic", "*.pyc")
    for name in WORKFLOW_PATHS:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, destination / name, ignore=ignore, dirs_exist_ok=overwrite)
        else:
            shutil.copy2(source, destination / name)
    return destination


class WorkflowError(RuntimeError):
    """A snakemake run that failed; the message holds the command and its output."""


def snakemake_command(workdir: Path, *args: str, cores: int = 2) -> list[str]:
    """The snakemake command line that runs the copy in `workdir`."""
    return [
        SNAKEMAKE,
        "--cores",
        str(cores),
        "--directory",
        str(workdir),
        "--snakefile",
        str(workdir / "Snakefile"),
        *args,
    ]


def snakemake_environment(workdir: Path, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment plus `env`, with the copy's own package first on PYTHONPATH: its jobs
    then run (and version) the copy's code, not the editable install's."""
    python_path = os.pathsep.join(filter(None, [str(workdir), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": python_path, **(env or {})}


def run_snakemake(
    workdir: Path, *args: str, cores: int = 2, check: bool = True, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run snakemake in `workdir`; with `check`, a failure raises WorkflowError carrying the output.

    `env` adds environment variables (say, SPINEBENCH_CACHE to share a store between copies).
    """
    command = snakemake_command(workdir, *args, cores=cores)
    environment = snakemake_environment(workdir, env)
    result = subprocess.run(command, cwd=workdir, capture_output=True, text=True, env=environment)
    if check and result.returncode != 0:
        raise WorkflowError(
            f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        )
    return result


def planned_jobs(workdir: Path, *args: str, env: Mapping[str, str] | None = None) -> dict[str, int]:
    """Jobs a dry run would execute, as rule -> count, read from snakemake's "Job stats" table."""
    result = run_snakemake(workdir, "--dry-run", *args, env=env)
    output = result.stdout + result.stderr
    if "Nothing to be done" in output:
        return {}
    counts: dict[str, int] = {}
    in_table = False
    for line in output.splitlines():
        if line.startswith("Job stats:"):
            in_table, counts = True, {}
            continue
        if not in_table:
            continue
        match = re.fullmatch(r"(\S+)\s+(\d+)", line.strip())
        if match and match.group(1) != "total":
            counts[match.group(1)] = int(match.group(2))
        elif match and match.group(1) == "total":
            in_table = False
    if not counts:
        raise WorkflowError(f"no job stats in dry-run output:\n{output}")
    return counts


def set_scale(workdir: Path, scale: str, full_scale_shards: Mapping[str, int]) -> None:
    """Set the copy's synthetic scale; at full scale also the shard counts and the paper's subset sizes."""

    def edit(params: dict) -> None:
        params["synthetic"]["scale"] = scale
        if scale == "full":
            for source, shards in full_scale_shards.items():
                params["sources"][source]["shards"] = shards
            # Paper subset sizes (DESIGN 1.5).
            params["subset"].update(diagnosis_size=1000, localization_size=1128)

    edit_params(workdir, edit)


def edit_params(workdir: Path, edit) -> None:
    """Apply `edit(params_dict)` to the copy's params.yaml."""
    path = workdir / "params.yaml"
    params = yaml.safe_load(path.read_text())
    edit(params)
    path.write_text(yaml.safe_dump(params, sort_keys=False))
