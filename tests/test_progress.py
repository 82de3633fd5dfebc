"""Long jobs log their progress (done/total, rate, ETA, failures so far) at a steady interval."""

from __future__ import annotations

import logging
import re

from spinebench.progress import INTERVAL_VARIABLE, LogProgress, progress_interval
from spinebench.render import render_shard
from tests import fault_server
from tests.fault_server import FaultServer
from tests.test_predict_resume import make_benchmark, openai_settings, predict_once
from tests.test_render import SETTINGS, rsna_folder, rsna_rows

LINE = re.compile(r"(\d+)/(\d+) done, .* ETA .*, failures so far: (\d+)$")


def progress_lines(caplog, label: str) -> list[tuple[int, int, int]]:
    """(done, total, failures) of every progress line of `label`."""
    found = []
    for record in caplog.records:
        message = record.getMessage()
        if message.startswith(f"{label}: ") and (match := LINE.search(message)):
            found.append(tuple(int(group) for group in match.groups()))
    return found


def test_progress_counts_items_and_failures(caplog):
    logger = logging.getLogger("spinebench.test")
    with caplog.at_level(logging.INFO, logger="spinebench.test"):
        with LogProgress(logger, "job", 5, interval_s=0) as progress:
            for index in range(5):
                progress.advance(failed=index in (1, 3))
    lines = progress_lines(caplog, "job")
    assert lines[0] == (0, 5, 0) and lines[-1] == (5, 5, 2)
    assert [done for done, _, _ in lines] == sorted(done for done, _, _ in lines)


def test_a_long_interval_logs_only_the_start_and_the_totals(caplog):
    logger = logging.getLogger("spinebench.test")
    with caplog.at_level(logging.INFO, logger="spinebench.test"):
        with LogProgress(logger, "job", 1000, interval_s=3600) as progress:
            for _ in range(1000):
                progress.advance()
    assert {line for line in progress_lines(caplog, "job")} == {(0, 1000, 0), (1000, 1000, 0)}


def test_interval_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv(INTERVAL_VARIABLE, "2.5")
    assert progress_interval() == 2.5
    monkeypatch.delenv(INTERVAL_VARIABLE)
    assert progress_interval() == 30.0


def test_render_logs_its_progress_with_rejections_as_failures(tmp_path, caplog, monkeypatch):
    monkeypatch.setenv(INTERVAL_VARIABLE, "0")
    with caplog.at_level(logging.INFO, logger="spinebench.render"):
        images, rejected = render_shard(rsna_rows(), rsna_folder(tmp_path), "rsna", SETTINGS)
    lines = progress_lines(caplog, "rsna render")
    assert lines[-1] == (len(rsna_rows()), len(rsna_rows()), len(rejected))


def test_predict_logs_its_progress_with_failed_items(tmp_path, caplog, monkeypatch):
    monkeypatch.setenv(INTERVAL_VARIABLE, "0")
    paths = make_benchmark(tmp_path, 10)
    with FaultServer() as server:
        server.plan("dx-rsna-img003", fault_server.status(500), fault_server.status(500))
        with caplog.at_level(logging.INFO, logger="spinebench.predict"):
            predict_once(paths, openai_settings(server), tmp_path / "out" / "diagnosis.parquet")
    assert progress_lines(caplog, "test-model/diagnosis")[-1] == (10, 10, 1)
