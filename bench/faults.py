"""Kill a build and a predict run at random points, and check that the resumed runs write what an
uninterrupted run writes, with each prediction asked once.

    .venv/bin/python bench/faults.py                                 # 20 build kills, 20 predict kills
    .venv/bin/python bench/faults.py --build-kills 5 --predict-kills 10 --seed 3

Build kills: the demo workflow is copied into --workdir and built once without interruption (the
reference). Then, each round, `results/` and `resources/synthetic/` are removed, `snakemake` is started and
its whole process group is sent SIGKILL after a random share of the reference build time; the next run
unlocks (`snakemake --unlock`, as README says) and resumes to the end. Every file under `results/` must then
equal the reference byte for byte (prediction tables without their `latency_s` column, which times the
model), and no writer temporary may be left.

Predict kills: a model served by a loopback chat-completions server (tests/fault_server.py, 20 ms latency,
answers derived from each request) is added to the copy. Each round removes its predictions, starts its
prediction jobs and kills them once the server has received a random number of their requests, then
resumes (unlock, rerun) to the end. Its predictions must equal an uninterrupted run's, every question must
be answered once in the journal, and the round must have asked the server at most once per question plus
the requests in flight at the kill (concurrency x jobs running at once).
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # tests.fault_server lives with the test helpers

from spinebench.cleanup import stale_temporaries  # noqa: E402
from spinebench.workflow import (  # noqa: E402
    copy_workflow,
    edit_params,
    run_snakemake,
    snakemake_command,
    snakemake_environment,
)
from tests.fault_server import FaultServer  # noqa: E402

TEMPORARY_ROOTS = ("results", "resources/synthetic", "logs")
FAULTY_MODEL = "api-under-faults"
CONCURRENCY = 4


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workdir", type=Path, default=REPO / "bench" / "out" / "faults")
    parser.add_argument("--build-kills", type=int, default=20)
    parser.add_argument("--predict-kills", type=int, default=20)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def digests(workdir: Path) -> dict[str, str]:
    """SHA-256 of every file under results/ (prediction tables without latency_s; journals skipped)."""
    found = {}
    for path in sorted((workdir / "results").rglob("*")):
        if not path.is_file() or path.suffix == ".jsonl":
            continue
        relative = path.relative_to(workdir).as_posix()
        if relative.startswith("results/predictions/") and path.suffix == ".parquet":
            frame = pd.read_parquet(path).drop(columns=["latency_s"])
            found[relative] = hashlib.sha256(frame.to_csv(index=False).encode()).hexdigest()
        else:
            found[relative] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def differences(expected: dict[str, str], actual: dict[str, str]) -> list[str]:
    """Paths missing, extra or different in `actual`."""
    return sorted(path for path in expected.keys() | actual.keys() if expected.get(path) != actual.get(path))


def kill_after(workdir: Path, seconds: float, cores: int, *targets: str) -> bool:
    """Start snakemake and SIGKILL its process group after `seconds`; False if it finished first."""
    deadline = time.monotonic() + seconds
    return kill_when(workdir, cores, list(targets), lambda: time.monotonic() >= deadline, timeout_s=math.inf)


def resume(workdir: Path, cores: int, *targets: str) -> None:
    """What README says to do after a kill: unlock, then run again."""
    run_snakemake(workdir, "--unlock", cores=cores)
    run_snakemake(workdir, *targets, cores=cores)


def build_kills(args: argparse.Namespace, rng: random.Random) -> dict:
    workdir = args.workdir / "build"
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    copy_workflow(workdir)
    started = time.perf_counter()
    run_snakemake(workdir, cores=args.cores)
    reference_s = time.perf_counter() - started
    reference = digests(workdir)
    print(f"build: reference build {reference_s:.0f} s, {len(reference)} files under results/")
    rounds = []
    for round_index in range(args.build_kills):
        for folder in ("results", "resources/synthetic"):
            shutil.rmtree(workdir / folder, ignore_errors=True)
        after = rng.uniform(0.05, 0.95) * reference_s
        killed = kill_after(workdir, after, args.cores)
        resume(workdir, args.cores)
        different = differences(reference, digests(workdir))
        left = stale_temporaries(workdir / root for root in TEMPORARY_ROOTS)
        rounds.append(
            {"kill_after_s": round(after, 1), "killed": killed, "different": different, "left": len(left)}
        )
        print(
            f"build round {round_index + 1}: killed after {after:.0f} s: "
            f"{'identical' if not different else f'{len(different)} file(s) differ: {different[:3]}'}"
            f", {len(left)} temporaries left"
        )
    return {"reference_s": reference_s, "rounds": rounds}


def letter_reply(marker: str | None, body: dict) -> str:
    """A deterministic answer derived from the request's text, so that answers differ across questions."""
    text = json.dumps(body.get("messages", ""), sort_keys=True)
    letters = "ABCDE"
    digest = hashlib.sha256(text.encode()).digest()
    return f"Looking at the film.\nMy final option: [{letters[digest[0] % 5]}]"


def kill_when(workdir: Path, cores: int, targets: list[str], condition, timeout_s: float = 300) -> bool:
    """Start snakemake and SIGKILL its process group as soon as `condition()` holds; False if it finished
    first."""
    process = subprocess.Popen(
        snakemake_command(workdir, *targets, cores=cores),
        cwd=workdir,
        env=snakemake_environment(workdir),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + timeout_s
    while process.poll() is None and time.monotonic() < deadline:
        if condition():
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            return True
        time.sleep(0.005)
    process.wait()
    return False


def same_predictions(workdir: Path, model: str, reference: str) -> bool:
    """Whether `model`'s prediction tables equal `reference`'s (latency aside)."""
    folder = workdir / "results" / "predictions"
    return all(
        pd.read_parquet(folder / model / f"{task}.parquet")
        .drop(columns=["latency_s"])
        .equals(pd.read_parquet(folder / reference / f"{task}.parquet").drop(columns=["latency_s"]))
        for task in ("diagnosis", "localization")
    )


def answered_twice(workdir: Path, model: str) -> int:
    """Questions with more than one successful record in `model`'s journals."""
    count = 0
    for task in ("diagnosis", "localization"):
        journal = workdir / "results" / "predictions" / model / f"{task}.jsonl"
        answered = pd.Series([r["question_id"] for r in journal_records(journal) if not r["error"]])
        count += int(answered.duplicated().sum())
    return count


def requests_reached(server: FaultServer, count: int) -> bool:
    """Whether the server has received `count` requests since it started."""
    return len(server.state.requests) >= count


def predict_kills(args: argparse.Namespace, rng: random.Random) -> dict:
    """Each round: the model's predictions are removed, its run is killed once the server has received a
    random number of its requests, then resumed to the end and checked."""
    workdir = args.workdir / "build"  # the built demo from the build rounds (or built here)
    if not (workdir / "results" / "report").exists():
        workdir.mkdir(parents=True, exist_ok=True)
        copy_workflow(workdir)
        run_snakemake(workdir, cores=args.cores)
    with FaultServer(latency_s=0.02, reply=letter_reply) as server:
        settings = {
            "backend": "openai",
            "base_url": server.base_url,
            "model": "m",
            "concurrency": CONCURRENCY,
        }
        tasks = ("diagnosis", "localization")
        faulty = [f"results/predictions/{FAULTY_MODEL}/{task}.parquet" for task in tasks]
        reference = [f"results/predictions/uninterrupted/{task}.parquet" for task in tasks]
        edit_params(
            workdir,
            lambda params: params["models"].update({FAULTY_MODEL: settings, "uninterrupted": settings}),
        )
        shutil.rmtree(workdir / "results" / "predictions" / "uninterrupted", ignore_errors=True)
        run_snakemake(workdir, *reference, cores=args.cores)
        items = len(server.state.requests)
        # Requests in flight when the kill lands are asked again: up to `concurrency` per predict job, and
        # one job per core runs at a time (a task each).
        bound = items + args.cores * CONCURRENCY
        print(f"predict: uninterrupted run, {items} requests")
        rounds = []
        for round_index in range(args.predict_kills):
            shutil.rmtree(workdir / "results" / "predictions" / FAULTY_MODEL, ignore_errors=True)
            before = len(server.state.requests)
            kill_at = rng.randint(1, items - 1)
            reached = functools.partial(requests_reached, server, before + kill_at)
            killed = kill_when(workdir, args.cores, faulty, reached)
            resume(workdir, args.cores, *faulty)
            requests = len(server.state.requests) - before
            result = {
                "kill_after_requests": kill_at,
                "killed": killed,
                "requests": requests,
                "identical": same_predictions(workdir, FAULTY_MODEL, "uninterrupted"),
                "answered_twice": answered_twice(workdir, FAULTY_MODEL),
            }
            rounds.append(result)
            print(
                f"predict round {round_index + 1}: killed after {kill_at} requests: {requests} requests "
                f"in all (bound {bound}), predictions "
                f"{'identical' if result['identical'] else 'DIFFERENT'}, "
                f"{result['answered_twice']} answered twice"
            )
    return {"items": items, "request_bound": bound, "rounds": rounds}


def journal_records(path: Path) -> list[dict]:
    """The journal's records; a line torn by a kill (no closing brace) is skipped, as the runner does."""
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    rng = random.Random(args.seed)
    report = {}
    if args.build_kills:
        report["build"] = build_kills(args, rng)
    if args.predict_kills:
        report["predict"] = predict_kills(args, rng)
    out = args.workdir / "faults.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main(sys.argv[1:])
