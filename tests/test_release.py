"""Release manifest: hashes and row counts of the benchmark tables."""

from __future__ import annotations

import configparser
import subprocess
import sys
from pathlib import Path

import pandas as pd

from spinebench.io import write_table
from spinebench.release import build_manifest, verify_manifest


def write_tables(directory):
    paths = []
    for name, rows in (("diagnosis.parquet", 3), ("subset.parquet", 2)):
        path = directory / name
        write_table(pd.DataFrame({"question_id": [f"q{i}" for i in range(rows)]}), path)
        paths.append(str(path))
    return paths


def test_manifest_counts_rows_and_is_deterministic(tmp_path):
    first = build_manifest(write_tables(tmp_path / "a"), seeds={"subset": 1}, encoder="t", pool_version=1)
    second = build_manifest(write_tables(tmp_path / "b"), seeds={"subset": 1}, encoder="t", pool_version=1)
    assert first == second
    assert first["tables"]["diagnosis.parquet"]["rows"] == 3
    assert first["question_pool_version"] == 1
    assert first["tables"]["subset.parquet"]["columns"] == ["question_id"]


def test_verify_manifest_names_changed_and_missing_tables(tmp_path):
    manifest = build_manifest(write_tables(tmp_path), seeds={"subset": 1}, encoder="t", pool_version=1)
    assert verify_manifest(manifest, tmp_path) == []
    write_table(pd.DataFrame({"question_id": ["other"]}), tmp_path / "diagnosis.parquet")
    (tmp_path / "subset.parquet").unlink()
    assert verify_manifest(manifest, tmp_path) == ["diagnosis.parquet", "subset.parquet"]


def test_dvc_pipeline_parses_and_telemetry_is_off():
    """dvc.yaml is a valid pipeline with the two stages, and the repo config disables analytics/updates."""
    repo = Path(__file__).resolve().parents[1]
    result = subprocess.run(
        [str(Path(sys.executable).with_name("dvc")), "stage", "list"],
        cwd=repo,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert {line.split()[0] for line in result.stdout.splitlines() if line.strip()} == {
        "benchmark",
        "evaluate",
    }
    config = configparser.ConfigParser()
    config.read(repo / ".dvc/config")
    assert config["core"]["analytics"] == "false"
    assert config["core"]["check_update"] == "false"
