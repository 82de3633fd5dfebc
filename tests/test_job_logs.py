"""A failing Snakemake job writes its error, with traceback and the files it concerns, to its `log:` file."""

from __future__ import annotations

import logging
import runpy
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from spinebench.io import CONSOLE, configure_job_logging, write_table
from tests.test_render import rsna_folder

pytestmark = pytest.mark.faults  # the fault-injection suite (pytest -m faults)

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = sorted((REPO / "scripts").glob("*.py"))
RENDER_SETTINGS = {
    "max_side": 64,
    "mr_percentiles": [1, 99],
    "xray_windowing": "dicom",
    "xray_percentiles": [0.5, 99.5],
}


def test_a_failing_script_logs_its_error_and_still_fails(tmp_path):
    """render_shard on a standardized table without its `member` column: the job fails, and its log (not
    only the terminal) says why, where in the code, and which input file."""
    table = tmp_path / "standardized" / "rsna.parquet"
    write_table(pd.DataFrame({"image_id": ["rsna-1-2-3"], "modality": ["MRI"]}), table)
    log = tmp_path / "logs" / "render_rsna_000.log"
    log.parent.mkdir()
    snakemake = SimpleNamespace(
        input=SimpleNamespace(table=str(table), archive=str(rsna_folder(tmp_path))),
        output=SimpleNamespace(images=str(tmp_path / "images.parquet"), rejected=str(tmp_path / "r.parquet")),
        params=SimpleNamespace(shard_index=0, shard_count=1, settings=RENDER_SETTINGS),
        wildcards=SimpleNamespace(source="rsna", shard="000"),
        log=[str(log)],
        config={"cache": {"dir": str(tmp_path / "store")}},
        threads=1,
    )
    with pytest.raises(ValueError, match="lacks column"):
        runpy.run_path(str(REPO / "scripts/render_shard.py"), init_globals={"snakemake": snakemake})
    text = log.read_text()
    assert "INFO" in text and "rsna shard 0: 1 of 1 image(s)" in text  # the job's own lines stay
    failure = "CRITICAL spinebench.job: job failed: ValueError: standardized table lacks column(s) member"
    assert failure in text
    assert "Traceback (most recent call last)" in text and "in _check_rows" in text
    assert f"input: table={table}" in text and "wildcards: source=rsna, shard=000" in text


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: path.name)
def test_every_script_logs_its_failure(script, tmp_path):
    """Every scripts/*.py runs its main through spinebench.io.run_job: a job given nothing but its log
    fails on its first look at its inputs, and that error is in the log. A new script that calls its
    main directly fails here."""
    log = tmp_path / "job.log"
    with pytest.raises(AttributeError):
        runpy.run_path(str(script), init_globals={"snakemake": SimpleNamespace(log=[str(log)])})
    text = log.read_text() if log.exists() else ""
    assert "job failed: AttributeError: 'types.SimpleNamespace' object has no attribute" in text, script.name
    assert "Traceback (most recent call last)" in text


def test_console_records_reach_stderr_as_well_as_the_log(tmp_path, capfd):
    log = tmp_path / "job.log"
    configure_job_logging(log)
    try:
        logging.getLogger("spinebench.subset").warning("only 3 of 5 pass", extra=CONSOLE)
        logging.getLogger("spinebench.render").warning("rejected one image")
    finally:
        for handler in logging.getLogger().handlers[:]:
            logging.getLogger().removeHandler(handler)
            handler.close()
    stderr = capfd.readouterr().err
    assert "WARNING spinebench.subset: only 3 of 5 pass" in stderr
    assert "rejected one image" not in stderr
    assert "only 3 of 5 pass" in log.read_text() and "rejected one image" in log.read_text()
