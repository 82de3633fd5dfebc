"""What a rerun costs: compute work and wall time of incremental-build scenarios against a clean build.

    .venv/bin/python bench/incremental.py --scale demo     # a few minutes
    .venv/bin/python bench/incremental.py --scale full     # the paper's 40,263 images: hours on 2 cores

Builds clone A from scratch with an empty store (the clean build), then runs each scenario on it and
prints, per scenario, the items computed (synthetic archives, images rendered, images embedded, model
requests), the wall time, both as a ratio to the clean build, and whether the benchmark tables are
byte-identical to the clean build's. Work is counted from the jobs' logs (spinebench.incremental).

Scenarios (issue: content-addressed caching):
  touch           every input and intermediate file touched, content unchanged
  comment edit    a comment in every spinebench/ module, docstrings of render and encoder code reworded
  shard counts    every source's shard count changed
  moved archive   VinDr read from a copy of its archive at another path (real-path source)
  1% changed      1% of that archive's films changed and 1% added (only these are new work)
  subset flip     subset sizes A -> B -> A (the second flip is measured)
  render flip     render.max_side 512 -> 256 -> 512 (the second flip is measured)
  second clone    a fresh clone with the clean build's params, pointed at the same store
Everything lives in --workdir (default bench/out/incremental-{scale}), which is emptied first.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

from spinebench.incremental import (
    WORK_COLUMNS,
    change_vindr_films,
    clear_logs,
    edit_comments,
    keep_reference,
    kept_members,
    params_snapshot,
    run_work,
    same_benchmark,
    set_param,
    touch_everything,
)
from spinebench.store import STORE_ENV
from spinebench.workflow import copy_workflow, edit_params, run_snakemake, set_scale

# Shards per source at full scale: about 1,000 images per shard (render and embed jobs each start a Python
# process; with the store a rerun shard is cheap, so fewer, larger shards cost less overall).
FULL_SCALE_SHARDS = {"rsna": 24, "vindr": 10, "buu": 1, "csxa": 5}


class Bench:
    """Clone A, its store and the clean build's figures."""

    def __init__(self, root: Path, cores: int) -> None:
        self.root, self.cores = root, cores
        self.env = {STORE_ENV: str(root / "store")}
        self.clone = root / "a"
        self.reference = root / "reference"
        self.rows: list[tuple[str, dict, float, bool]] = []
        self.clean: tuple[dict, float] | None = None

    def build(self, workdir: Path) -> tuple[dict, float]:
        """Run the whole workflow in `workdir`: (work, wall seconds)."""
        clear_logs(workdir)
        started = time.perf_counter()
        run_snakemake(workdir, cores=self.cores, env=self.env)
        return run_work(workdir), time.perf_counter() - started

    def measure(
        self,
        name: str,
        change: Callable[[], object],
        *,
        workdir: Path | None = None,
        reference: Path | None = None,
        compare: bool = True,
        ignore_shard: bool = False,
    ) -> None:
        """Apply `change`, rebuild, record the work and whether the tables match `reference`'s (default:
        the clean build's); `compare=False` for a change that rightly changes the tables."""
        workdir = workdir or self.clone
        change()
        work, seconds = self.build(workdir)
        reference = reference or self.reference
        identical = same_benchmark(workdir, reference, ignore_shard) if compare else None
        self.rows.append((name, work, seconds, identical))
        self.print_row(name, work, seconds, identical)

    def print_row(self, name: str, work: dict, seconds: float, identical: bool | None) -> None:
        clean_work, clean_seconds = self.clean
        total = sum(work[c] for c in ("rendered", "embedded", "requests"))
        clean_total = sum(clean_work[c] for c in ("rendered", "embedded", "requests"))
        cells = "".join(f"{work[column]:>12}" for column in WORK_COLUMNS)
        tables = {None: "changed, as it should", True: "identical", False: "DIFFERENT"}[identical]
        print(
            f"{name:<16}{cells}{seconds:>9.1f}{total / clean_total:>8.3f}{seconds / clean_seconds:>8.3f}"
            f"  {tables}",
            flush=True,
        )


def prepare(root: Path, scale: str) -> Path:
    """An empty work folder with clone A at the requested scale."""
    shutil.rmtree(root, ignore_errors=True)
    (root / "a").mkdir(parents=True)
    clone = copy_workflow(root / "a")
    set_scale(clone, scale, FULL_SCALE_SHARDS)
    return clone


def flip(workdir: Path, cores: int, env: dict, section: str, key: str, other) -> Callable[[], None]:
    """A change that sets params[section][key] to `other`, builds, and sets it back (measured after)."""

    def change() -> None:
        original = set_param(workdir, section, key, other)
        run_snakemake(workdir, cores=cores, env=env)
        set_param(workdir, section, key, original)

    return change


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scale", choices=("demo", "full"), default="demo")
    parser.add_argument("--workdir", type=Path, default=None, help="default: bench/out/incremental-{scale}")
    parser.add_argument("--cores", type=int, default=2)
    args = parser.parse_args(argv)
    root = (args.workdir or Path("bench/out") / f"incremental-{args.scale}").resolve()
    clone = prepare(root, args.scale)
    bench = Bench(root, args.cores)
    original_params = params_snapshot(clone)

    print(f"scale={args.scale} workdir={root} cores={args.cores} store={bench.env[STORE_ENV]}")
    header = "".join(f"{column:>12}" for column in WORK_COLUMNS)
    print(f"{'scenario':<16}{header}{'wall s':>9}{'work x':>8}{'wall x':>8}  tables")
    bench.clean = bench.build(clone)
    keep_reference(clone, bench.reference)
    bench.print_row("clean build", *bench.clean, True)

    bench.measure("touch", lambda: touch_everything(clone))
    bench.measure("comment edit", lambda: edit_comments(clone))

    def more_shards(params: dict) -> None:
        for settings in params["sources"].values():
            settings["shards"] += 3 if args.scale == "full" else 1

    bench.measure("shard counts", lambda: edit_params(clone, more_shards), ignore_shard=True)

    archive = root / "raw" / "vindr"

    def move_archive() -> None:
        shutil.copytree(clone / "resources" / "synthetic" / "vindr", archive)
        edit_params(clone, lambda p: p["sources"]["vindr"].update(path=str(archive)))

    bench.measure("moved archive", move_archive, ignore_shard=True)
    changed: list[tuple[int, int]] = []

    def change_films() -> None:
        changed.append(change_vindr_films(archive, 0.01, kept_members(clone, "vindr")))

    bench.measure("1% changed", change_films, compare=False)
    print(f"  (VinDr films changed, added: {changed[0]})")
    # The flips are compared with the tables just before them.
    before_flips = keep_reference(clone, root / "before-flips")
    for name, section, key, other in (
        ("subset flip", "subset", "diagnosis_size", 90),
        ("render flip", "render", "max_side", 256),
    ):
        bench.measure(name, flip(clone, args.cores, bench.env, section, key, other), reference=before_flips)

    (root / "b").mkdir()
    second = copy_workflow(root / "b")
    (second / "params.yaml").write_text(original_params, encoding="utf-8")
    bench.measure("second clone", lambda: None, workdir=second)


if __name__ == "__main__":
    main(sys.argv[1:])
