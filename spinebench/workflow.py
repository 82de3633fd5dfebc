"""Run the Snakemake workflow in a scratch copy of the repository (workflow tests, bench/build.py)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
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
    "spinebench",
)


def copy_workflow(destination: Path) -> Path:
    """Copy the workflow files into `destination` (no results, no synthetic archives, no caches)."""
    ignore = shutil.ignore_patterns("__pycache__", "synthetic", "*.pyc")
    for name in WORKFLOW_PATHS:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, destination / name, ignore=ignore)
        else:
            shutil.copy2(source, destination / name)
    return destination


class WorkflowError(RuntimeError):
    """A snakemake run that failed; the message holds the command and its output."""


def run_snakemake(
    workdir: Path, *args: str, cores: int = 2, check: bool = True
) -> subprocess.CompletedProcess:
    """Run snakemake in `workdir`; with `check`, a failure raises WorkflowError carrying the output."""
    command = [
        SNAKEMAKE,
        "--cores",
        str(cores),
        "--directory",
        str(workdir),
        "--snakefile",
        str(workdir / "Snakefile"),
        *args,
    ]
    result = subprocess.run(command, cwd=workdir, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise WorkflowError(
            f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        )
    return result


def planned_jobs(workdir: Path, *args: str) -> dict[str, int]:
    """Jobs a dry run would execute, as rule -> count, read from snakemake's "Job stats" table."""
    result = run_snakemake(workdir, "--dry-run", *args)
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


def edit_params(workdir: Path, edit) -> None:
    """Apply `edit(params_dict)` to the copy's params.yaml."""
    path = workdir / "params.yaml"
    params = yaml.safe_load(path.read_text())
    edit(params)
    path.write_text(yaml.safe_dump(params, sort_keys=False))
