"""The resumable prediction runner: kill-and-resume, errors retried next run, fingerprints, the judge cache.

The kill test runs the runner in a subprocess (this module's `drive`, started with `python -c`) against the
fault server with a fixed latency, SIGKILLs it mid-run and runs it again.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from spinebench.backends import make_backend
from spinebench.benchmark_images import MissingImageError, ShardImages
from spinebench.finalize import Judge, finalize, write_predictions
from spinebench.io import read_table, write_table
from spinebench.journal import (
    PredictionError,
    compact,
    current_records,
    jsonl_path_for,
    judge_cache_path_for,
    read_records,
)
from spinebench.predict import (
    model_fingerprint,
    plan_items,
    run_predictions,
)
from spinebench.splits import SplitError, select_questions
from tests import fault_server
from tests.fault_server import FaultServer

REPO = Path(__file__).resolve().parents[1]
OPTIONS = ["Healthy", "Osteophytes", "Spondylolisthesis", "Vertebral collapse", "Cervical kyphosis"]


def png_bytes(index: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (6, 4), (index % 256, 40, 80)).save(buffer, format="PNG")
    return buffer.getvalue()


def make_benchmark(root: Path, count: int) -> dict:
    """Questions, catalog and two image shards under `root`; returns the paths (JSON-serialisable)."""
    image_ids = [f"rsna-img{i:03d}" for i in range(count)]
    questions = pd.DataFrame(
        {
            "question_id": [f"dx-{image_id}" for image_id in image_ids],
            "image_id": image_ids,
            # The fault server matches requests to items by the [[marker]] in the prompt.
            "question": [f"Which disease does [[dx-{image_id}]] show" for image_id in image_ids],
            **{f"option_{letter}": [option] * count for letter, option in zip("abcde", OPTIONS, strict=True)},
        }
    )
    half = count // 2
    shards = {"000": image_ids[:half], "001": image_ids[half:]}
    catalog = pd.DataFrame(
        {
            "image_id": image_ids,
            "source": "rsna",
            "shard": ["000"] * half + ["001"] * (count - half),
            "png_sha256": [hashlib.sha256(png_bytes(i)).hexdigest() for i in range(count)],
        }
    )
    paths = {
        "questions": str(root / "diagnosis.parquet"),
        "catalog": str(root / "images.parquet"),
        "shards": [],
    }
    write_table(questions, paths["questions"])
    write_table(catalog, paths["catalog"])
    for shard, ids in shards.items():
        path = root / "images" / "rsna" / f"{shard}.parquet"
        write_table(
            pd.DataFrame({"image_id": ids, "png": [png_bytes(image_ids.index(i)) for i in ids]}), path
        )
        paths["shards"].append(str(path))
    return paths


def openai_settings(server: FaultServer, **overrides) -> dict:
    settings = {
        "backend": "openai",
        "base_url": server.base_url,
        "model": "test-vlm",
        "concurrency": 4,
        "timeout_s": 5,
        "max_retries": 1,
        "backoff_base_s": 0.01,
        "backoff_max_s": 0.02,
    }
    settings.update(overrides)
    return settings


def predict_once(paths: dict, settings: dict, output: Path, judge: dict | None = None) -> pd.DataFrame:
    """What scripts/predict.py does, for one model and the diagnosis task: run, finalize, write."""
    questions = read_table(paths["questions"])
    catalog = read_table(paths["catalog"])
    backend = make_backend("test-model", settings)
    fingerprint = model_fingerprint(backend)
    run_predictions(
        questions,
        ShardImages(catalog, paths["shards"]),
        backend,
        jsonl_path_for(output),
        fingerprint,
        task="diagnosis",
        definitions=False,
    )
    judge_config = None
    if judge is not None:
        judge_backend = make_backend("judge-model", judge)
        judge_config = Judge(judge_backend, model_fingerprint(judge_backend), judge_cache_path_for(output))
    frame = finalize(
        questions,
        jsonl_path_for(output),
        fingerprint,
        task="diagnosis",
        definitions=False,
        judge=judge_config,
    )
    write_predictions(frame, output)
    return frame


def drive(config_path: str) -> None:
    """Subprocess entry point: one prediction run from a JSON config (paths, settings, output)."""
    config = json.loads(Path(config_path).read_text())
    predict_once(config["paths"], config["settings"], Path(config["output"]))


def start_driver(config: Path) -> subprocess.Popen:
    code = "import sys; from tests.test_predict_resume import drive; drive(sys.argv[1])"
    return subprocess.Popen(
        [sys.executable, "-c", code, str(config)], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )


def jsonl_lines(path: Path) -> list[bytes]:
    return path.read_bytes().split(b"\n") if path.exists() else []


def successful_ids(path: Path) -> set[str]:
    return {record["question_id"] for record in read_records(path, repair=False) if record["error"] is None}


def test_kill_and_resume_finishes_each_item_exactly_once(tmp_path):
    count, concurrency = 40, 4
    paths = make_benchmark(tmp_path, count)
    output = tmp_path / "predictions" / "test-model" / "diagnosis.parquet"
    jsonl = jsonl_path_for(output)
    with FaultServer(latency_s=0.15) as server:
        config = tmp_path / "config.json"
        settings = openai_settings(server, concurrency=concurrency)
        config.write_text(json.dumps({"paths": paths, "settings": settings, "output": str(output)}))

        first = start_driver(config)
        deadline = time.monotonic() + 60
        while len(successful_ids(jsonl) if jsonl.exists() else ()) < 12:
            assert first.poll() is None, first.stdout.read().decode()
            assert time.monotonic() < deadline, "the first run made no progress"
            time.sleep(0.02)
        first.send_signal(signal.SIGKILL)
        first.wait()
        assert first.returncode == -signal.SIGKILL
        assert not output.exists()

        # A kill can tear the last line; make sure the resumed run meets one.
        with open(jsonl, "ab") as handle:
            handle.write(b'{"question_id": "dx-rsna-img0')
        done_before = successful_ids(jsonl)
        assert 12 <= len(done_before) < count
        requests_first_run = server.request_counts()
        server.reset_counters()

        second = start_driver(config)
        assert second.wait(timeout=60) == 0, second.stdout.read().decode()
        requests_second_run = server.request_counts()

    all_ids = {f"dx-rsna-img{i:03d}" for i in range(count)}
    frame = read_table(output)
    assert list(frame["question_id"]) == sorted(all_ids)  # every question exactly once, in order
    assert frame["error"].isna().all() and (frame["answer"] == "A").all()
    assert set(frame["extraction"]) == {"final_phrase"}
    # No finished item was asked again; every other item exactly once in the second run.
    assert not done_before & set(requests_second_run)
    assert requests_second_run == dict.fromkeys(all_ids - done_before, 1)
    # Only the items in flight at the kill were requested twice overall.
    assert sum(requests_first_run.values()) - len(done_before) <= concurrency
    # The torn line is gone and every question has exactly one record.
    lines = jsonl_lines(jsonl)
    assert lines[-1] == b"" and all(json.loads(line) for line in lines[:-1])
    assert sorted(json.loads(line)["question_id"] for line in lines[:-1]) == sorted(all_ids)


def test_failed_items_are_recorded_then_retried_on_the_next_run(tmp_path):
    paths = make_benchmark(tmp_path, 10)
    output = tmp_path / "out" / "diagnosis.parquet"
    with FaultServer() as server:
        # max_retries 1: two 500s exhaust an item's attempts.
        server.plan("dx-rsna-img003", fault_server.status(500), fault_server.status(500))
        server.plan("dx-rsna-img007", fault_server.status(503), fault_server.status(503))
        frame = predict_once(paths, openai_settings(server), output)
        failed = frame[frame["extraction"] == "error"]
        assert list(failed["question_id"]) == ["dx-rsna-img003", "dx-rsna-img007"]
        assert failed["error"].str.contains("HTTP 50").all() and failed["response"].isna().all()
        assert failed["answer"].isna().all() and (failed["attempts"] == 2).all()
        assert len(frame) == 10 and frame["question_id"].is_unique

        server.reset_counters()
        frame = predict_once(paths, openai_settings(server), output)
        assert server.request_counts() == {"dx-rsna-img003": 1, "dx-rsna-img007": 1}
        assert frame["error"].isna().all() and len(frame) == 10 and frame["question_id"].is_unique
        assert (frame["attempts"] == 1).all()

        # A third run asks nothing and compacts the superseded error records away.
        server.reset_counters()
        predict_once(paths, openai_settings(server), output)
        assert server.request_counts() == {}
    assert len(read_records(jsonl_path_for(output))) == 10


def test_a_run_where_every_item_fails_is_an_error(tmp_path):
    paths = make_benchmark(tmp_path, 4)
    output = tmp_path / "out" / "diagnosis.parquet"
    with FaultServer() as server:
        server.plan_every_request(*[fault_server.status(500)] * 8)
        with pytest.raises(
            PredictionError, match="all 4 items failed; first error: dx-rsna-img00.: HTTP 500"
        ):
            predict_once(paths, openai_settings(server), output)
    assert len(read_records(jsonl_path_for(output))) == 4  # the errors are recorded for the next run


def test_fingerprints_rerun_exactly_what_changed(tmp_path):
    paths = make_benchmark(tmp_path, 6)
    output = tmp_path / "out" / "diagnosis.parquet"
    with FaultServer() as server:
        predict_once(paths, openai_settings(server), output)
        assert len(server.requests()) == 6

        server.reset_counters()  # operational settings do not change answers: nothing reruns
        predict_once(paths, openai_settings(server, concurrency=1, timeout_s=9, max_retries=5), output)
        assert server.request_counts() == {}

        questions = read_table(paths["questions"])  # one question's text changes: only it reruns
        questions.loc[2, "question"] = "Which single disease does [[dx-rsna-img002]] show"
        write_table(questions, paths["questions"])
        predict_once(paths, openai_settings(server), output)
        assert server.request_counts() == {"dx-rsna-img002": 1}

        server.reset_counters()  # a setting that changes answers reruns everything
        predict_once(paths, openai_settings(server, temperature=0.5), output)
        assert len(server.requests()) == 6


def test_judge_reads_unextractable_responses_and_is_cached(tmp_path):
    paths = make_benchmark(tmp_path, 4)
    output = tmp_path / "out" / "diagnosis.parquet"

    def reply(marker, body):
        if body.get("model") == "judge-llm":
            return "My final option: [C]"
        if marker == "dx-rsna-img001":
            return "The findings are subtle and I would rather not commit."
        return fault_server.default_reply(marker)

    with FaultServer(reply=reply) as server:
        judge = openai_settings(server, model="judge-llm")
        frame = predict_once(paths, openai_settings(server), output, judge=judge)
        judged = frame.set_index("question_id").loc["dx-rsna-img001"]
        assert judged["extraction"] == "judge" and judged["answer"] == "C"
        assert judged["response"].startswith("The findings are subtle")
        assert set(frame["extraction"]) == {"final_phrase", "judge"}
        judge_requests = [r for r in server.requests() if r.model == "judge-llm"]
        assert len(judge_requests) == 1 and not judge_requests[0].has_png_data_url

        server.reset_counters()  # finalizing again asks neither model
        again = predict_once(paths, openai_settings(server), output, judge=judge)
        assert server.requests() == []
        pd.testing.assert_frame_equal(again.drop(columns="latency_s"), frame.drop(columns="latency_s"))


def test_read_records_truncates_a_torn_tail_and_rejects_corruption(tmp_path):
    path = tmp_path / "diagnosis.jsonl"
    good = [
        {
            "question_id": "q1",
            "fingerprint": "f",
            "response": "x",
            "error": None,
            "latency_s": 0.1,
            "attempts": 1,
        },
        {
            "question_id": "q2",
            "fingerprint": "f",
            "response": None,
            "error": "HTTP 500",
            "latency_s": 0.1,
            "attempts": 3,
        },
    ]
    text = "".join(json.dumps(record) + "\n" for record in good)
    path.write_text(text + '{"question_id": "q3", "fing')
    assert read_records(path) == good
    assert path.read_text() == text

    path.write_text(text + "not json\n" + text)
    with pytest.raises(PredictionError, match=r"diagnosis.jsonl:3: corrupt record"):
        read_records(path)
    path.write_text(json.dumps({**good[0], "error": "both"}) + "\n")
    with pytest.raises(PredictionError, match="exactly one of response, error"):
        read_records(path)


def record(question_id, fingerprint, response=None, error=None):
    """A working-file record with just the fields that decide which record counts."""
    return {"question_id": question_id, "fingerprint": fingerprint, "response": response, "error": error}


def test_current_records_prefers_success_then_latest_and_ignores_stale_fingerprints():
    records = [
        record("q1", "new", response="first"),
        record("q1", "new", error="later failure"),
        record("q2", "old", response="stale"),
        record("q2", "new", error="failure"),
        record("q3", "new", response="one"),
        record("q3", "new", response="two"),
    ]
    chosen = current_records(records, {"q1": "new", "q2": "new", "q3": "new"})
    assert chosen["q1"]["response"] == "first"
    assert chosen["q2"]["error"] == "failure"
    assert chosen["q3"]["response"] == "two"


def test_compaction_keeps_answers_of_other_fingerprints_for_a_flip_back(tmp_path):
    """Render settings A -> B -> A change every fingerprint and back: A's answers must survive B's run."""

    records = [
        record("q1", "A", response="answer under A"),
        record("q1", "A", error="a retried failure"),
        record("q1", "B", error="failure under B"),
        record("q1", "B", response="answer under B"),
        record("q2", "A", error="failure under A, never retried"),
        record("q2", "B", response="answer under B"),
        record("q9", "X", error="not planned: kept"),
    ]
    path = tmp_path / "diagnosis.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    compact(path, records, {"q1": "B", "q2": "B"})
    kept = [json.loads(line) for line in path.read_text().splitlines()]
    assert kept == [records[0], records[3], records[5], records[6]]
    assert current_records(kept, {"q1": "A", "q2": "A"}) == {"q1": records[0]}


def test_images_come_from_the_catalog_shards(tmp_path):
    paths = make_benchmark(tmp_path, 6)
    catalog = read_table(paths["catalog"])
    images = ShardImages(catalog, paths["shards"])
    loaded = images.load(["rsna-img001", "rsna-img005"])
    assert loaded == {"rsna-img001": png_bytes(1), "rsna-img005": png_bytes(5)}
    with pytest.raises(MissingImageError, match="image rsna-img999 is not in the catalog"):
        images.load(["rsna-img999"])
    with pytest.raises(MissingImageError, match="image rsna-img004 is in shard rsna/001, which is not among"):
        ShardImages(catalog, paths["shards"][:1]).load(["rsna-img004"])


def test_select_questions_by_split():
    questions = pd.DataFrame({"question_id": ["dx-b", "dx-a", "dx-c"], "image_id": ["b", "a", "c"]})
    subset = pd.DataFrame(
        {"question_id": ["dx-c", "dx-a", "loc-a"], "task": ["diagnosis", "diagnosis", "localization"]}
    )
    assert list(select_questions(questions, subset, "diagnosis", "subset")["question_id"]) == ["dx-a", "dx-c"]
    assert list(select_questions(questions, subset, "diagnosis", "full")["question_id"]) == [
        "dx-a",
        "dx-b",
        "dx-c",
    ]
    bad_subset = pd.DataFrame({"question_id": ["dx-z"], "task": ["diagnosis"]})
    with pytest.raises(SplitError, match="subset question dx-z"):
        select_questions(questions, bad_subset, "diagnosis", "subset")
    with pytest.raises(SplitError, match="dx-a appears more than once"):
        select_questions(pd.concat([questions, questions.iloc[[1]]]), subset, "diagnosis", "full")


def test_baselines_run_without_loading_images(tmp_path):
    paths = make_benchmark(tmp_path, 5)
    questions = read_table(paths["questions"])
    backend = make_backend("healthy", {"backend": "always_healthy"})
    fingerprint = model_fingerprint(backend)
    jsonl = tmp_path / "healthy.jsonl"
    # No image shard is given: a backend that does not look at pixels must not ask for any.
    images = ShardImages(read_table(paths["catalog"]), [])
    summary = run_predictions(
        questions, images, backend, jsonl, fingerprint, task="diagnosis", definitions=True
    )
    assert (summary.planned, summary.attempted, summary.succeeded) == (5, 5, 5)
    frame = finalize(questions, jsonl, fingerprint, task="diagnosis", definitions=True)
    assert (frame["answer"] == "A").all() and os.path.getsize(jsonl) > 0
    # The definitions switch changes the prompt, hence the fingerprint: the other setting reruns them.
    assert (
        run_predictions(
            questions, images, backend, jsonl, fingerprint, task="diagnosis", definitions=False
        ).attempted
        == 5
    )


class _Namespace(list):
    """What Snakemake hands a script for input/output/log: a list whose entries are also attributes."""

    def __init__(self, items=(), **named):
        super().__init__([*items, *named.values()])
        self.__dict__.update(named)


def script_inputs(tmp_path: Path, paths: dict) -> _Namespace:
    """The inputs of scripts/predict.py for a `make_benchmark` benchmark: the catalog gains diseases and
    levels, and a library, embeddings and a subset (dx-rsna-img001, dx-rsna-img006) are written."""
    import numpy as np

    catalog = read_table(paths["catalog"])
    count = len(catalog)
    catalog["disease"] = ["Osteophytes", "Healthy"] * (count // 2) + ["Healthy"] * (count % 2)
    catalog["levels"] = [["L4/L5"], []] * (count // 2) + [[]] * (count % 2)
    write_table(catalog, paths["catalog"])
    library = catalog[["disease", "image_id"]].iloc[:6]
    write_table(library, tmp_path / "library.parquet")
    vectors = np.random.default_rng(0).normal(size=(count, 4)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    embedding = pd.DataFrame({"image_id": catalog["image_id"], "embedding": list(vectors)})
    write_table(embedding, tmp_path / "embeddings" / "000.parquet")
    subset = pd.DataFrame(
        {"question_id": ["dx-rsna-img001", "dx-rsna-img006"], "task": "diagnosis", "rank": [0, 1]}
    )
    write_table(subset, tmp_path / "subset.parquet")
    return _Namespace(
        questions=paths["questions"],
        subset=str(tmp_path / "subset.parquet"),
        catalog=paths["catalog"],
        library=str(tmp_path / "library.parquet"),
        images=paths["shards"],
        embeddings=[str(tmp_path / "embeddings" / "000.parquet")],
        template=str(REPO / "templates" / "prompts" / "diagnosis.j2"),
        definitions=str(REPO / "resources" / "disease_definitions.yaml"),
    )


def run_predict_script(
    tmp_path: Path,
    inputs: _Namespace,
    model: str,
    settings: dict,
    *,
    split: str = "subset",
    judge: dict | None = None,
    max_failed_items: int = 0,
) -> Path:
    """Run scripts/predict.py as Snakemake would for `model` on the diagnosis task; returns its output."""
    import logging
    import runpy
    import types

    output = tmp_path / "predictions" / model / "diagnosis.parquet"
    log_path = tmp_path / "logs" / f"{model}.log"
    log_path.parent.mkdir(exist_ok=True)
    snakemake = types.SimpleNamespace(
        input=inputs,
        output=_Namespace([str(output)]),
        log=_Namespace([str(log_path)]),
        params=types.SimpleNamespace(
            model=settings,
            judge=judge,
            judge_name=None if judge is None else "judge-model",
            split=split,
            definitions=False,
            seed=11,
            max_failed_items=max_failed_items,
        ),
        wildcards=types.SimpleNamespace(model=model, task="diagnosis"),
    )
    try:
        runpy.run_path(str(REPO / "scripts" / "predict.py"), init_globals={"snakemake": snakemake})
    finally:
        # The script points the root logger at the job log; leave no open file handler to later tests.
        for handler in list(logging.getLogger().handlers):
            if isinstance(handler, logging.FileHandler) and Path(handler.baseFilename) == log_path:
                logging.getLogger().removeHandler(handler)
                handler.close()
    return output


def test_predict_script_runs_every_baseline_end_to_end(tmp_path):
    paths = make_benchmark(tmp_path, 8)
    inputs = script_inputs(tmp_path, paths)
    for model, settings in {
        "random": {"backend": "random"},
        "always-healthy": {"backend": "always_healthy"},
        "nearest-neighbour": {"backend": "nearest_neighbour", "k": 3},
    }.items():
        output = run_predict_script(tmp_path, inputs, model, settings)
        frame = read_table(output)
        assert list(frame["question_id"]) == ["dx-rsna-img001", "dx-rsna-img006"], model
        assert frame["answer"].notna().all() and set(frame["extraction"]) == {"final_phrase"}, model
        assert jsonl_path_for(output).exists()
        if model == "always-healthy":
            assert list(frame["answer"]) == ["A", "A"]  # option_a is Healthy


def test_items_failing_for_good_do_not_fail_a_later_run(tmp_path):
    paths = make_benchmark(tmp_path, 3)
    output = tmp_path / "out" / "diagnosis.parquet"
    with FaultServer() as server:
        server.plan("dx-rsna-img001", *[fault_server.status(400)] * 2)
        predict_once(paths, openai_settings(server), output)
        frame = predict_once(paths, openai_settings(server), output)  # only the refused item runs, and fails
    assert list(frame["extraction"]) == ["final_phrase", "error", "final_phrase"]
    assert "HTTP 400" in frame["error"].iloc[1]


def test_a_re_rendered_image_changes_only_its_items_fingerprint(tmp_path):
    """Predictions made on an image's previous rendering are not reused once its PNG digest changes."""
    paths = make_benchmark(tmp_path, 4)
    catalog = read_table(paths["catalog"])
    questions = read_table(paths["questions"]).merge(catalog[["image_id", "png_sha256"]], on="image_id")
    before = {item.question_id: item.fingerprint for item in plan_items(questions, "diagnosis", False, "m")}
    questions.loc[questions["image_id"] == "rsna-img002", "png_sha256"] = "0" * 64
    after = {item.question_id: item.fingerprint for item in plan_items(questions, "diagnosis", False, "m")}
    changed = sorted(qid for qid in before if before[qid] != after[qid])
    assert changed == ["dx-rsna-img002"]


def test_more_failures_than_allowed_fail_the_job_and_the_next_run_retries_them(tmp_path):
    paths = make_benchmark(tmp_path, 6)
    output = tmp_path / "out" / "diagnosis.parquet"
    questions, catalog = read_table(paths["questions"]), read_table(paths["catalog"])

    def run(server, max_failed):
        backend = make_backend("test-model", openai_settings(server))
        return run_predictions(
            questions,
            ShardImages(catalog, paths["shards"]),
            backend,
            jsonl_path_for(output),
            model_fingerprint(backend),
            task="diagnosis",
            definitions=False,
            max_failed=max_failed,
        )

    with FaultServer() as server:
        server.plan("dx-rsna-img001", fault_server.status(500), fault_server.status(500))
        with pytest.raises(PredictionError, match=r"1 items failed after all retries .* rerun to retry"):
            run(server, max_failed=0)
        server.reset_counters()
        summary = run(server, max_failed=0)
        assert server.request_counts() == {"dx-rsna-img001": 1}
        assert (summary.reused, summary.succeeded, summary.failed) == (5, 1, 0)

        server.reset_counters()  # a tolerated failure does not fail the job
        server.plan("dx-rsna-img004", fault_server.status(500), fault_server.status(500))
        output = tmp_path / "other" / "diagnosis.parquet"
        assert run(server, max_failed=1).failed == 1
