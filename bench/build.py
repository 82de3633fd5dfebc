"""Build the full-scale synthetic benchmark and print, per stage, wall time and the peak RSS of any process
(snakemake or one of its jobs); then the dry-run and no-op times and what two everyday edits cost.

    .venv/bin/python bench/build.py                 # full scale (40,263 images) in bench/out/full
    .venv/bin/python bench/build.py --scale demo    # the demo, for a quick look
    .venv/bin/python bench/build.py --film-size realistic   # radiographs at the real films' sizes

The workflow is copied into the work folder (results and archives are kept there between runs, so an
interrupted benchmark resumes: finished stages are not rebuilt and report ~0 s). Each stage is run with
`snakemake --until RULE`, so a stage's time includes one snakemake start-up (the dry-run time below).

After the build:
  no-op          `snakemake` with nothing to do (target: under 2 s on 2 cores)
  subset edit    subset.diagnosis_size lowered by one, then the run that redraws the subset, re-scores
                 and re-reports (target: under 30 s); the edit is undone and rebuilt, unmeasured
  add model      a second `random` baseline under a new name, evaluated on the existing benchmark
                 (target: under 30 s); then removed again
Peak RSS is the largest resident set of any single process of the run (os.wait4 on snakemake reports the
maximum over the process and every descendant it waited for); target: under 4 GiB for any job.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from spinebench.workflow import (
    WorkflowError,
    copy_workflow,
    edit_params,
    planned_jobs,
    run_snakemake,
    set_scale,
    snakemake_command,
    snakemake_environment,
)

# Stages in DAG order; each is the last rule of its stage.
STAGES = (
    "synthesize_source",
    "standardize",
    "render_shard",
    "embed_shard",
    "catalog",
    "distractors",
    "questions",
    "subset",
    "manifest",
    "predict",
    "score",
    "leaderboard",
    "report",
    "export_part",
    "export_hf",
    "export_lmms_eval",
    "export_vlmevalkit",
    "export_spinebench_json",
)

# Shards per source at full scale: about 250 images per shard, ~320 render+embed jobs in all.
FULL_SCALE_SHARDS = {"rsna": 96, "vindr": 40, "buu": 4, "csxa": 20}


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scale", choices=("full", "demo"), default="full")
    parser.add_argument(
        "--film-size",
        choices=("compact", "realistic"),
        default="compact",
        help="synthetic.film_size: realistic draws VinDr and BUU films at the real films' sizes",
    )
    parser.add_argument(
        "--workdir", type=Path, default=None, help="default: bench/out/{scale}, or {scale}-realistic"
    )
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--until", choices=STAGES, default=STAGES[-1], help="last stage to build")
    parser.add_argument(
        "--refresh",
        action="store_true",
        help="copy this checkout's workflow over an existing work folder's (its results and archives stay; "
        "what the new code changes is rebuilt, from the store where it can be)",
    )
    return parser.parse_args(argv)


def prepare_workdir(workdir: Path, scale: str, film_size: str, refresh: bool = False) -> None:
    """Copy the workflow (first run, or `refresh`); set the scale, shard counts and film size in its
    params.yaml."""
    if refresh or not (workdir / "Snakefile").exists():
        workdir.mkdir(parents=True, exist_ok=True)
        copy_workflow(workdir, overwrite=refresh)
    set_scale(workdir, scale, FULL_SCALE_SHARDS)
    edit_params(workdir, lambda params: params["synthetic"].update(film_size=film_size))


def timed(action) -> tuple[float, object]:
    """Wall seconds of `action()` and its result."""
    start = time.perf_counter()
    result = action()
    return time.perf_counter() - start, result


def measured_run(workdir: Path, *args: str, cores: int) -> tuple[float, float]:
    """Run snakemake in `workdir`: (wall seconds, peak RSS in MiB of any process of the run).

    os.wait4 returns the child's resource usage with its waited-for descendants folded in; ru_maxrss is
    then the largest resident set among snakemake and every job it ran (KiB on Linux).
    """
    command = snakemake_command(workdir, *args, cores=cores)
    log_path = workdir / "bench-build.log"
    start = time.perf_counter()
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            command, cwd=workdir, stdout=log, stderr=subprocess.STDOUT, env=snakemake_environment(workdir)
        )
        _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise WorkflowError(f"{' '.join(command)} failed ({process.returncode}); see {log_path}")
    return seconds, usage.ru_maxrss / 1024


def print_row(name: str, jobs: int | str, seconds: float, peak_mib: float | None = None) -> None:
    peak = "" if peak_mib is None else f"{peak_mib:>12.0f}"
    print(f"{name:<22}{jobs:>6}{seconds:>10.1f}{peak}", flush=True)


def measure_edit(workdir: Path, name: str, edit, undo, cores: int) -> None:
    """Apply `edit` to params.yaml, count and time the run that follows, then undo it (rebuilt unmeasured)."""
    edit_params(workdir, edit)
    jobs = planned_jobs(workdir)
    seconds, peak = measured_run(workdir, cores=cores)
    print_row(name, sum(jobs.values()), seconds, peak)
    edit_params(workdir, undo)
    run_snakemake(workdir, cores=cores)


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    default_name = args.scale if args.film_size == "compact" else f"{args.scale}-{args.film_size}"
    workdir = (args.workdir or Path("bench/out") / default_name).resolve()
    prepare_workdir(workdir, args.scale, args.film_size, args.refresh)

    dry_seconds, jobs = timed(lambda: planned_jobs(workdir))
    print(f"scale={args.scale} film_size={args.film_size} workdir={workdir} cores={args.cores}")
    print(f"snakemake -n (full DAG, {sum(jobs.values())} jobs to run): {dry_seconds:.1f} s")

    print(f"{'stage':<22}{'jobs':>6}{'wall s':>10}{'peak MiB':>12}")
    total, overall_peak = 0.0, 0.0
    for stage in STAGES[: STAGES.index(args.until) + 1]:
        seconds, peak = measured_run(workdir, "--until", stage, cores=args.cores)
        total, overall_peak = total + seconds, max(overall_peak, peak)
        print_row(stage, jobs.get(stage, 0), seconds, peak)
    print_row("total", sum(jobs.values()), total, overall_peak)

    target = () if args.until == STAGES[-1] else ("--until", args.until)
    dry_seconds, remaining = timed(lambda: planned_jobs(workdir, *target))
    noop_seconds, _ = timed(lambda: run_snakemake(workdir, *target, cores=args.cores))
    print(f"snakemake -n after the build ({sum(remaining.values())} jobs left): {dry_seconds:.1f} s")
    print(f"no-op snakemake run: {noop_seconds:.1f} s")
    if args.until != STAGES[-1]:
        return

    print(f"{'edit':<22}{'jobs':>6}{'wall s':>10}{'peak MiB':>12}")
    size = {}

    def shrink_subset(params: dict) -> None:
        size["diagnosis"] = params["subset"]["diagnosis_size"]
        params["subset"]["diagnosis_size"] = size["diagnosis"] - 1

    def restore_subset(params: dict) -> None:
        params["subset"]["diagnosis_size"] = size["diagnosis"]

    measure_edit(workdir, "subset edit", shrink_subset, restore_subset, args.cores)
    measure_edit(
        workdir,
        "add model",
        lambda params: params["models"].update({"random-bench": {"backend": "random"}}),
        lambda params: params["models"].pop("random-bench"),
        args.cores,
    )


if __name__ == "__main__":
    main(sys.argv[1:])
