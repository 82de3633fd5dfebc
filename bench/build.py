"""Build the full-scale synthetic benchmark and print wall time per stage, dry-run time and no-op time.

    .venv/bin/python bench/build.py                 # full scale (40,263 images) in bench/out/full
    .venv/bin/python bench/build.py --scale demo    # the demo, for a quick look
    .venv/bin/python bench/build.py --film-size realistic   # radiographs at the real films' sizes

The workflow is copied into the work folder (results and archives are kept there between runs, so an
interrupted benchmark resumes: finished stages are not rebuilt and report ~0 s). Each stage is run with
`snakemake --until RULE`, so a stage's time includes one snakemake start-up (the dry-run time below).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from spinebench.workflow import copy_workflow, edit_params, planned_jobs, run_snakemake, set_scale

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
    return parser.parse_args(argv)


def prepare_workdir(workdir: Path, scale: str, film_size: str) -> None:
    """Copy the workflow (first run only); set the scale, shard counts and film size in its params.yaml."""
    if not (workdir / "Snakefile").exists():
        workdir.mkdir(parents=True, exist_ok=True)
        copy_workflow(workdir)
    set_scale(workdir, scale, FULL_SCALE_SHARDS)
    edit_params(workdir, lambda params: params["synthetic"].update(film_size=film_size))


def timed(action) -> tuple[float, object]:
    """Wall seconds of `action()` and its result."""
    start = time.perf_counter()
    result = action()
    return time.perf_counter() - start, result


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    default_name = args.scale if args.film_size == "compact" else f"{args.scale}-{args.film_size}"
    workdir = (args.workdir or Path("bench/out") / default_name).resolve()
    prepare_workdir(workdir, args.scale, args.film_size)

    dry_seconds, jobs = timed(lambda: planned_jobs(workdir))
    print(f"scale={args.scale} film_size={args.film_size} workdir={workdir} cores={args.cores}")
    print(f"snakemake -n (full DAG, {sum(jobs.values())} jobs to run): {dry_seconds:.1f} s")

    print(f"{'stage':<20}{'jobs':>6}{'wall s':>10}")
    total = 0.0
    for stage in STAGES[: STAGES.index(args.until) + 1]:
        seconds, _ = timed(lambda stage=stage: run_snakemake(workdir, "--until", stage, cores=args.cores))
        total += seconds
        print(f"{stage:<20}{jobs.get(stage, 0):>6}{seconds:>10.1f}", flush=True)
    print(f"{'total':<20}{sum(jobs.values()):>6}{total:>10.1f}")

    target = () if args.until == STAGES[-1] else ("--until", args.until)
    dry_seconds, remaining = timed(lambda: planned_jobs(workdir, *target))
    noop_seconds, _ = timed(lambda: run_snakemake(workdir, *target, cores=args.cores))
    print(f"snakemake -n after the build ({sum(remaining.values())} jobs left): {dry_seconds:.1f} s")
    print(f"no-op snakemake run: {noop_seconds:.1f} s")


if __name__ == "__main__":
    main(sys.argv[1:])
