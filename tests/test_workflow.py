"""End-to-end workflow tests on the demo: build, incremental reruns, no-op, determinism."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from spinebench.workflow import copy_workflow, edit_params, planned_jobs, run_snakemake

pytestmark = pytest.mark.workflow

# Rules downstream of the subset: everything that must rerun when a subset param changes.
EXPORT_RULES = {"export_hf", "export_lmms_eval", "export_vlmevalkit", "export_spinebench_json"}
AFTER_SUBSET = {
    "subset",
    "predict",
    "score",
    "leaderboard",
    "report",
    "manifest",
    "all",
    "export_part",
} | EXPORT_RULES


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """A scratch copy of the repository with the demo built once."""
    workdir = copy_workflow(tmp_path_factory.mktemp("demo"))
    run_snakemake(workdir)
    return workdir


def test_demo_builds_every_product(demo):
    for path in (
        "results/report/report.html",
        "results/report/report.md",
        "results/metrics/leaderboard.csv",
        "results/metrics/leaderboard.json",
        "results/benchmark/manifest.json",
        "results/exports/hf/README.md",
        "results/exports/lmms_eval/spinebench/utils.py",
        "results/exports/vlmevalkit/datasets.json",
        "results/exports/spinebench_json/evaluation/test.json",
    ):
        assert (demo / path).stat().st_size > 0, path
    leaderboard = json.loads((demo / "results/metrics/leaderboard.json").read_text())
    assert set(leaderboard) >= {"random", "always-healthy", "nearest-neighbour"}
    diagnosis = pd.read_parquet(demo / "results/benchmark/diagnosis.parquet")
    localization = pd.read_parquet(demo / "results/benchmark/localization.parquet")
    assert len(diagnosis) > 200 and len(localization) > 100
    subset = pd.read_parquet(demo / "results/benchmark/subset.parquet")
    assert subset.groupby("task").size().to_dict() == {"diagnosis": 100, "localization": 50}


def test_rejected_inputs_are_recorded(demo):
    rejected = pd.concat(
        pd.read_parquet(path) for path in sorted((demo / "results/rejected").rglob("*.parquet"))
    )
    assert len(rejected) > 0
    assert rejected["reason"].notna().all() and (rejected["reason"].str.len() > 0).all()
    assert set(rejected["source"]) >= {"rsna", "vindr", "buu", "csxa"}


def test_noop_run_does_nothing(demo):
    assert planned_jobs(demo) == {}


def test_subset_param_reruns_only_subset_and_downstream(demo):
    edit_params(demo, lambda params: params["subset"].update(diagnosis_size=90))
    jobs = planned_jobs(demo)
    assert set(jobs) <= AFTER_SUBSET, jobs
    assert jobs["subset"] == 1
    assert jobs["predict"] == 2 * 3  # every model, both tasks
    assert set(jobs) & EXPORT_RULES == EXPORT_RULES  # the exports hold the subset
    assert (
        jobs["export_part"] == 3
    )  # the subset's parts of hf, vlmevalkit and spinebench_json; not the full's
    edit_params(demo, lambda params: params["subset"].update(diagnosis_size=100))


@pytest.mark.parametrize(
    ("seed", "first_rule"),
    [
        ("subset", "subset"),
        ("questions", "questions"),
        ("library", "distractors"),
        ("encoder", "embed_shard"),
    ],
)
def test_each_seed_redraws_only_what_depends_on_it(demo, seed, first_rule):
    edit_params(demo, lambda params: params["seeds"].update({seed: 7}))
    jobs = planned_jobs(demo)
    assert first_rule in jobs, jobs
    assert not {"synthesize_source", "standardize", "render_shard"} & set(jobs), jobs
    if seed == "subset":
        assert set(jobs) <= AFTER_SUBSET, jobs
    edit_params(demo, lambda params: params["seeds"].update({seed: 20251014}))
    assert planned_jobs(demo) == {}


def test_adding_a_model_runs_only_that_model(demo):
    edit_params(demo, lambda params: params["models"].update({"random-2": {"backend": "random"}}))
    jobs = planned_jobs(demo)
    assert jobs.get("predict") == 2 and jobs.get("score") == 1, jobs
    assert set(jobs) <= {"predict", "score", "leaderboard", "report", "all"}, jobs
    edit_params(demo, lambda params: params["models"].pop("random-2"))


def predict_upstream_rules(workdir: Path) -> dict[tuple[str, str], set[str]]:
    """(model, task) -> rules of the jobs a predict job takes inputs from, from the DOT of `snakemake --dag`
    (the whole DAG, jobs already done included; `--detailed-summary` would show recorded inputs instead)."""
    dot = run_snakemake(workdir, "--dag").stdout
    labels = dict(re.findall(r'^\s*(\d+)\[label = "([^"]*)"', dot, flags=re.MULTILINE))
    upstream: dict[tuple[str, str], set[str]] = {}
    for node, label in labels.items():
        rule, *wildcards = label.split("\\n")
        if rule == "predict":
            values = dict(wildcard.split(": ", 1) for wildcard in wildcards)
            upstream[values["model"], values["task"]] = {
                labels[source].split("\\n")[0]
                for source in re.findall(rf"^\s*(\d+) -> {node}$", dot, flags=re.MULTILINE)
            }
    return upstream


def test_predict_jobs_depend_on_the_shards_their_model_reads(demo):
    # A served model (never asked here: `--dag` runs nothing) looks at the images.
    served = {"backend": "openai", "base_url": "http://127.0.0.1:9/v1", "model": "m"}
    edit_params(demo, lambda params: params["models"].update(served=served))
    upstream = predict_upstream_rules(demo)
    edit_params(demo, lambda params: params["models"].pop("served"))
    shard_rules = {"render_shard": "images", "embed_shard": "embeddings"}
    expected = {
        "random": set(),
        "always-healthy": set(),
        "nearest-neighbour": {"embeddings"},
        "served": {"images"},
    }
    for model, shards in expected.items():
        for task in ("diagnosis", "localization"):
            rules = upstream[model, task]
            assert "questions" in rules, rules  # the edges were read
            assert {shard_rules[rule] for rule in rules & set(shard_rules)} == shards, (model, task, rules)


def test_export_formats_choose_the_exports_a_build_writes(demo):
    edit_params(demo, lambda params: params["export"].update(formats=["vlmevalkit"]))
    shutil.rmtree(demo / "results/exports/vlmevalkit")
    shutil.rmtree(demo / "results/exports/hf")
    assert planned_jobs(demo) == {"export_vlmevalkit": 1, "all": 1}
    run_snakemake(demo)
    edit_params(demo, lambda params: params["export"].update(formats=["lmms_eval"]))
    shutil.rmtree(demo / "results/exports/lmms_eval")
    # The lmms-eval tasks read the HF Parquet: asking for them writes it too.
    assert planned_jobs(demo) == {"export_hf": 1, "export_lmms_eval": 1, "all": 1}
    edit_params(
        demo,
        lambda params: params["export"].update(formats=["hf", "lmms_eval", "vlmevalkit", "spinebench_json"]),
    )
    run_snakemake(demo)
    assert planned_jobs(demo) == {}


def test_changing_one_model_reruns_only_it(demo):
    edit_params(demo, lambda params: params["models"]["nearest-neighbour"].update(k=3))
    jobs = planned_jobs(demo)
    assert jobs.get("predict") == 2 and jobs.get("score") == 1, jobs
    edit_params(demo, lambda params: params["models"]["nearest-neighbour"].update(k=5))


def test_two_builds_are_byte_identical(demo, tmp_path):
    second = copy_workflow(tmp_path)
    run_snakemake(second, "benchmark")
    first_manifest = json.loads((demo / "results/benchmark/manifest.json").read_text())
    second_manifest = json.loads((second / "results/benchmark/manifest.json").read_text())
    assert first_manifest == second_manifest


def test_release_mode_evaluates_without_raw_data(demo, tmp_path):
    """A `dvc pull` user has the released tables but no archives: mode=release evaluates on them."""
    user = copy_workflow(tmp_path)
    for released in ("benchmark", "images", "embeddings", "rejected"):
        shutil.copytree(demo / "results" / released, user / "results" / released)
    jobs = planned_jobs(user, "--config", "mode=release")
    assert set(jobs) == {"predict", "score", "leaderboard", "report", "all"}, jobs
    run_snakemake(user, "--config", "mode=release")
    assert not (user / "resources/synthetic").exists()
    assert (user / "results/report/report.html").stat().st_size > 0
    ours = (demo / "results/metrics/leaderboard.json").read_text()
    assert (user / "results/metrics/leaderboard.json").read_text() == ours


def export_responses(workdir: Path, model: str, path: Path) -> None:
    """Every finalized response of `model`, both tasks, as the plain jsonl format."""
    records = []
    for task in ("diagnosis", "localization"):
        table = pd.read_parquet(workdir / f"results/predictions/{model}/{task}.parquet")
        records += [
            {"question_id": row.question_id, "response": row.response, "task": task}
            for row in table.itertuples()
        ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(record) + "\n" for record in records))


def test_imported_responses_score_as_the_model_that_wrote_them(demo):
    """Last in this module: it leaves a model more in the demo's params."""
    workdir = demo
    export_responses(workdir, "random", workdir / "imports" / "random.jsonl")
    imported = {"backend": "imported", "format": "jsonl", "path": "imports/random.jsonl"}
    edit_params(workdir, lambda params: params["models"].update({"imported-random": imported}))
    jobs = planned_jobs(workdir)
    assert jobs.get("predict") == 2 and jobs.get("score") == 1, jobs  # only the new model's jobs
    run_snakemake(workdir)

    models = workdir / "results/metrics/models"
    ours = json.loads((models / "imported-random.json").read_text())
    theirs = json.loads((models / "random.json").read_text())
    assert ours.pop("model") == "imported-random" and theirs.pop("model") == "random"
    assert ours == theirs
    breakdowns = [
        pd.read_csv(models / f"{name}.breakdown.csv").drop(columns="model")
        for name in ("imported-random", "random")
    ]
    pd.testing.assert_frame_equal(*breakdowns)
    assert (models / "imported-random.questions.parquet").read_bytes() == (
        models / "random.questions.parquet"
    ).read_bytes()
    assert "imported-random" in json.loads((workdir / "results/metrics/leaderboard.json").read_text())
    assert "imported-random" in (workdir / "results/report/report.md").read_text()
    assert "imported-random" in (workdir / "results/report/report.html").read_text()

    # An edited predictions file reruns the imported model's jobs, and no other model's.
    text = (workdir / "imports/random.jsonl").read_text()
    (workdir / "imports/random.jsonl").write_text(text.replace("Random baseline", "Imported", 1))
    jobs = planned_jobs(workdir)
    assert jobs.get("predict") == 2 and jobs.get("score") == 1, jobs
