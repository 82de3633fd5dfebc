"""The release: its manifest, the workspace checks, and the whole path a maintainer and a user take (build,
`dvc push` to a folder and to an S3 server, fresh clones, `dvc pull`, verify, evaluate a new model)."""

from __future__ import annotations

import configparser
import json
import os
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pandas as pd
import pyarrow as pa
import pytest
import yaml

from spinebench.io import write_json, write_table
from spinebench.provenance import BENCHMARK_SECTIONS, BENCHMARK_SEEDS, benchmark_params
from spinebench.release import (
    BUILD_RECORD,
    MANIFEST,
    RELEASE_FOLDERS,
    ReleaseError,
    build_manifest,
    check_workspace,
    file_sha256,
    record_build,
    verify_main,
    verify_release,
)
from spinebench.workflow import (
    copy_workflow,
    edit_params,
    planned_jobs,
    run_snakemake,
    snakemake_environment,
)

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CLEAN = "Data and pipelines are up to date."


def write_tables(directory):
    paths = []
    for name, rows in (("diagnosis.parquet", 3), ("subset.parquet", 2)):
        path = directory / name
        write_table(pd.DataFrame({"question_id": [f"q{i}" for i in range(rows)]}), path)
        paths.append(str(path))
    return paths


def repo_params() -> dict:
    return yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))


# --------------------------------------------------------------------------------------------- manifest


def test_manifest_counts_rows_and_is_deterministic(tmp_path):
    first = build_manifest(write_tables(tmp_path / "a"), seeds={"subset": 1}, encoder="t", pool_version=1)
    second = build_manifest(write_tables(tmp_path / "b"), seeds={"subset": 1}, encoder="t", pool_version=1)
    assert first == second
    assert first["tables"]["diagnosis.parquet"]["rows"] == 3
    assert first["question_pool_version"] == 1
    assert first["tables"]["subset.parquet"]["columns"] == ["question_id"]


def test_manifest_names_list_columns_by_their_own_name(tmp_path):
    """Parquet names a list column's leaf `element`; the manifest lists the column's name."""
    table = pa.table({"image_id": ["a"], "distractors": [["x", "y"]], "similarities": [[0.5, 0.25]]})
    write_table(table, tmp_path / "distractors.parquet")
    manifest = build_manifest([str(tmp_path / "distractors.parquet")], {}, "t", 1)
    assert manifest["tables"]["distractors.parquet"]["columns"] == ["image_id", "distractors", "similarities"]


def released_folder(root: Path) -> None:
    """A release under `root`: two benchmark tables, an image shard, a rejected table and the manifest."""
    tables = write_tables(root / "results/benchmark")
    write_table(pd.DataFrame({"image_id": ["a"]}), root / "results/images/rsna/000.parquet")
    write_table(pd.DataFrame({"item": ["b"]}), root / "results/rejected/rsna.parquet")
    files = ["results/images/rsna/000.parquet", "results/rejected/rsna.parquet"]
    write_json(build_manifest(tables, {"subset": 1}, "t", 1, files=files, root=root), root / MANIFEST)


def test_verify_names_each_file_that_differs_is_missing_or_unexpected(tmp_path, capsys):
    released_folder(tmp_path)
    assert verify_release(tmp_path) == []
    assert verify_main(["--root", str(tmp_path)]) == 0
    assert capsys.readouterr().out == f"ok: 4 files match {MANIFEST}\n"

    write_table(pd.DataFrame({"image_id": ["changed"]}), tmp_path / "results/images/rsna/000.parquet")
    (tmp_path / "results/benchmark/subset.parquet").unlink()
    write_table(pd.DataFrame({"x": [1]}), tmp_path / "results/embeddings/tiny/rsna/000.parquet")
    expected = [
        "missing: results/benchmark/subset.parquet",
        "differs: results/images/rsna/000.parquet",
        "unexpected: results/embeddings/tiny/rsna/000.parquet",
    ]
    assert verify_release(tmp_path) == expected
    assert verify_main(["--root", str(tmp_path)]) == 1
    assert capsys.readouterr().out.splitlines() == expected


# ----------------------------------------------------------------------------------- workspace checks


def test_build_mode_refuses_a_release_this_folder_did_not_build(tmp_path):
    config = repo_params()
    check_workspace(config, tmp_path)  # nothing there yet: a build may start
    released_folder(tmp_path)
    with pytest.raises(ReleaseError, match="mode=release") as refused:
        check_workspace(config, tmp_path)
    assert f"delete {MANIFEST}" in str(refused.value)
    digest = file_sha256(tmp_path / MANIFEST)
    record_build(digest, tmp_path)  # what the manifest job records before writing it
    record_build(digest, tmp_path)  # a rebuild with the same params
    assert (tmp_path / BUILD_RECORD).read_text(encoding="utf-8") == digest + "\n"
    check_workspace(config, tmp_path)


def test_release_mode_names_each_edited_benchmark_param(tmp_path):
    config = {**repo_params(), "mode": "release"}
    with pytest.raises(ReleaseError, match="dvc pull"):
        check_workspace(config, tmp_path)  # no release to evaluate
    write_json({"tables": {}, "params": benchmark_params(config)}, tmp_path / MANIFEST)
    check_workspace(config, tmp_path)
    config["subset"] = {**config["subset"], "diagnosis_size": 90}
    config["seeds"] = {**config["seeds"], "subset": 7, "bootstrap": 8}  # bootstrap is no benchmark seed
    with pytest.raises(ReleaseError) as refused:
        check_workspace(config, tmp_path)
    lines = str(refused.value).splitlines()
    assert "  seeds.subset: 7 in params.yaml, 20251014 in the release" in lines
    assert "  subset.diagnosis_size: 90 in params.yaml, 100 in the release" in lines
    assert not any("bootstrap" in line for line in lines)


def test_dvc_pipeline_matches_the_release_and_telemetry_is_off():
    """dvc.yaml is a valid pipeline whose `benchmark` stage outputs the release folders and depends on the
    params that define the benchmark; its commands use the project's environment; no telemetry."""
    result = subprocess.run([str(BIN / "dvc"), "stage", "list"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert {line.split()[0] for line in result.stdout.splitlines() if line.strip()} == {
        "benchmark",
        "evaluate",
        "export",
    }
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    benchmark = stages["benchmark"]
    assert [next(iter(out)) for out in benchmark["outs"]] == list(RELEASE_FOLDERS)
    assert benchmark["params"] == [f"seeds.{seed}" for seed in BENCHMARK_SEEDS] + list(BENCHMARK_SECTIONS)
    assert all(stage["cmd"].startswith(".venv/bin/snakemake ") for stage in stages.values())
    config = configparser.ConfigParser()
    config.read(REPO / ".dvc/config")
    assert config["core"]["analytics"] == "false"
    assert config["core"]["check_update"] == "false"


# ---------------------------------------------------------------------------------- the release path
# One small demo is built and published once; each test below works in fresh clones of it.

# Files of the project a clone has besides the workflow (spinebench.workflow.WORKFLOW_PATHS).
PROJECT_FILES = ("dvc.yaml", ".dvcignore", ".gitignore", ".dvc/config", ".dvc/.gitignore")
BUCKET = "spinebench-release"
# Credentials for the loopback S3 server; kept out of the repository, like real ones.
S3_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}
NEW_MODEL = "random-2"


def tiny_release(params: dict) -> None:
    """The smallest demo the workflow tests build (test_workflow_cache's tiny sources), one shard per source
    and two baselines: the release path needs a benchmark, not a large one."""
    params["synthetic"]["demo"].update(rsna_images=40, vindr_images=30, buu_cases=6, csxa_images=24)
    for settings in params["sources"].values():
        settings["shards"] = 1
    params["subset"].update(diagnosis_size=40, localization_size=20)
    params["models"] = {"random": {"backend": "random"}, "always-healthy": {"backend": "always_healthy"}}
    params["metrics"]["bootstrap_samples"] = 100


def run(command: list, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    """Run a command the way the README does in project folder `cwd`: its `.venv/bin/` tools see the
    folder's own package first (spinebench.workflow.snakemake_environment), and the S3 credentials."""
    result = subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=snakemake_environment(cwd, S3_ENV),
    )
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, command))} failed:\n{result.stdout}\n{result.stderr}")
    return result


def dvc(project: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return run([".venv/bin/dvc", *args], project, check)


def git(project: Path, *args: str) -> subprocess.CompletedProcess:
    return run(["git", "-c", "user.name=t", "-c", "user.email=t@example.org", *args], project)


def link_environment(project: Path) -> None:
    """`.venv` in the project, as the README's set-up makes it: this run's environment, left out of git."""
    (project / ".venv").symlink_to(BIN.parent)
    with open(project / ".git/info/exclude", "a", encoding="utf-8") as exclude:
        exclude.write("/.venv\n")


def clone(published: Path, destination: Path) -> Path:
    run(["git", "clone", "-q", published, destination], published.parent)
    link_environment(destination)
    return destination


@pytest.fixture(scope="module")
def s3_endpoint():
    """An S3-compatible server (moto's server mode) on loopback, with the release bucket."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=S3_ENV["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=S3_ENV["AWS_SECRET_ACCESS_KEY"],
        region_name=S3_ENV["AWS_DEFAULT_REGION"],
    )
    s3.create_bucket(Bucket=BUCKET)
    yield endpoint
    server.stop()


@pytest.fixture(scope="module")
def published(tmp_path_factory, s3_endpoint):
    """The maintainer's repository after the README's release commands: the demo built, `dvc repro`,
    `dvc push` to a folder (the default remote) and to S3, dvc.lock and .dvc/config committed."""
    root = tmp_path_factory.mktemp("release")
    (root / "maintainer").mkdir()
    maintainer = copy_workflow(root / "maintainer")
    for name in PROJECT_FILES:
        (maintainer / name).parent.mkdir(exist_ok=True)
        shutil.copy2(REPO / name, maintainer / name)
    edit_params(maintainer, tiny_release)
    git(maintainer, "init", "-q")
    link_environment(maintainer)
    git(maintainer, "add", "-A")
    git(maintainer, "commit", "-q", "-m", "spinebench")

    run_snakemake(maintainer)  # the README's first command: build and evaluate the demo
    dvc(maintainer, "remote", "add", "-d", "release", root / "remote")
    dvc(maintainer, "remote", "add", "s3", f"s3://{BUCKET}/spinebench")
    dvc(maintainer, "remote", "modify", "s3", "endpointurl", s3_endpoint)
    repro = dvc(maintainer, "repro")
    dvc(maintainer, "push")
    dvc(maintainer, "push", "-r", "s3")
    git(maintainer, "add", "dvc.lock", ".dvc/config")
    git(maintainer, "commit", "-q", "-m", "SpineBench release")
    assert dvc(maintainer, "status").stdout.strip() == CLEAN, repro.stdout
    return maintainer


@pytest.fixture(scope="module")
def pulled(published):
    """A fresh clone of the release commit after a plain `dvc pull` (from the folder remote)."""
    user = clone(published, published.parent / "user")
    result = dvc(user, "pull")
    assert "ERROR" not in result.stdout + result.stderr, result.stdout + result.stderr
    return user


@pytest.mark.workflow
def test_outputs_are_written_with_the_users_umask(published):
    umask = os.umask(0)
    os.umask(umask)
    for path in (
        "results/report/report.html",
        "results/metrics/leaderboard.csv",
        "results/metrics/leaderboard.json",
        "results/metrics/scores/random.json",
        "results/benchmark/diagnosis.parquet",
        "results/predictions/random/diagnosis.jsonl",
    ):
        assert stat.S_IMODE((published / path).stat().st_mode) == 0o666 & ~umask, path


@pytest.mark.workflow
def test_a_pulled_release_is_clean_and_verified(pulled):
    # Python has run in the clone (bytecode beside the stages' code): not a change of the pipeline.
    run([".venv/bin/python", "-m", "compileall", "-q", "spinebench", "scripts"], pulled)
    assert dvc(pulled, "status").stdout.strip() == CLEAN
    repro = dvc(pulled, "repro", "evaluate").stdout
    assert "Stage 'evaluate' didn't change, skipping" in repro and "Running stage" not in repro, repro
    assert run([".venv/bin/spinebench-verify"], pulled).stdout.startswith("ok: ")
    # The exports come with the release, built from the same benchmark.
    for export in ("hf/README.md", "lmms_eval/spinebench/utils.py", "vlmevalkit/datasets.json"):
        assert (pulled / "results/exports" / export).is_file(), export


@pytest.mark.workflow
def test_the_s3_remote_holds_the_same_release(published, tmp_path):
    user = clone(published, tmp_path / "user")
    dvc(user, "pull", "-r", "s3")
    assert run([".venv/bin/spinebench-verify"], user).stdout.startswith("ok: ")
    assert (user / "results/metrics/leaderboard.csv").read_bytes() == (
        published / "results/metrics/leaderboard.csv"
    ).read_bytes()


@pytest.mark.workflow
def test_metrics_show_a_row_per_model_and_plots_have_the_leaderboard(pulled):
    [workspace] = json.loads(dvc(pulled, "metrics", "show", "--json").stdout).values()
    files = workspace["data"]
    assert set(files) == {"results/metrics/scores/random.json", "results/metrics/scores/always-healthy.json"}
    assert all("overall_accuracy" in entry["data"] and "rank" in entry["data"] for entry in files.values())
    plots = json.loads(dvc(pulled, "plots", "show", "--json").stdout)["data"]
    assert len(plots) == 5
    for name, [plot] in plots.items():
        models = {row["model"] for row in plot["content"]["data"]["values"]}
        assert models == {"random", "always-healthy"}, name


@pytest.mark.workflow
def test_a_build_never_replaces_a_pulled_release(pulled):
    refused = run_snakemake(pulled, "--dry-run", check=False)
    assert refused.returncode != 0
    message = refused.stdout + refused.stderr
    assert "a build would replace it" in message and "--config mode=release" in message
    params = pulled / "params.yaml"
    original = params.read_text(encoding="utf-8")
    params.write_text(original.replace("diagnosis_size: 40", "diagnosis_size: 30"), encoding="utf-8")
    try:
        edited = run_snakemake(pulled, "--dry-run", "--config", "mode=release", check=False)
    finally:
        params.write_text(original, encoding="utf-8")
    assert edited.returncode != 0
    assert "subset.diagnosis_size: 30 in params.yaml, 40 in the release" in edited.stdout + edited.stderr


# What each stage of a release writes, in pipeline order.
PIPELINE_ORDER = (
    RELEASE_FOLDERS,
    ("results/predictions",),
    ("results/metrics/models",),
    ("results/metrics/leaderboard.csv", "results/metrics/leaderboard.json", "results/metrics/scores"),
    ("results/report",),
)


def date_in_pipeline_order(project: Path) -> None:
    """Give the pulled files the times a build would have: each stage's files newer than its inputs'. A
    pull dates them in no particular order; this order is the one in which Snakemake, which has no record
    of them, sees nothing to redo."""
    now = time.time()
    for step, paths in enumerate(PIPELINE_ORDER):
        for path in paths:
            for file in [project / path, *(project / path).rglob("*")]:
                os.utime(file, (now + step, now + step))


@pytest.mark.workflow
def test_a_new_model_is_evaluated_on_the_pulled_release(published, tmp_path):
    user = clone(published, tmp_path / "user")
    dvc(user, "pull")
    date_in_pipeline_order(user)  # the case where an added model is seen only through its missing scores
    params = user / "params.yaml"
    params.write_text(
        params.read_text(encoding="utf-8").replace(
            "models:\n", f"models:\n  {NEW_MODEL}:\n    backend: random\n"
        ),
        encoding="utf-8",
    )
    jobs = planned_jobs(user, "--config", "mode=release")
    assert jobs == {"predict": 2, "score": 1, "leaderboard": 1, "report": 1, "all": 1}, jobs
    run_snakemake(user, "--config", "mode=release")  # the README's evaluate command

    ours = json.loads((user / "results/metrics/leaderboard.json").read_text(encoding="utf-8"))
    theirs = json.loads((published / "results/metrics/leaderboard.json").read_text(encoding="utf-8"))
    assert set(ours) == set(theirs) | {NEW_MODEL}
    for model, entry in theirs.items():  # ranks may move with the new model; nothing else may
        assert {**ours[model], "rank": None} == {**entry, "rank": None}, model
    for model in theirs:  # the published models' answers were reused, not asked again
        for task in ("diagnosis", "localization"):
            path = f"results/predictions/{model}/{task}.jsonl"
            assert (user / path).read_bytes() == (published / path).read_bytes(), path
    assert run([".venv/bin/spinebench-verify"], user).stdout.startswith("ok: ")
