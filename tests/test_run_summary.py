"""The summary `snakemake` prints at the end: requests, failures and wall time per model and task."""

from __future__ import annotations

import pandas as pd

from spinebench.io import write_table
from spinebench.run_summary import format_summary, summary_rows


def test_summary_counts_requests_failures_and_reads_the_wall_time(tmp_path):
    predictions = tmp_path / "results" / "predictions" / "gpt" / "diagnosis.parquet"
    frame = pd.DataFrame(
        {"question_id": ["q1", "q2", "q3"], "error": [None, "HTTP 500", None], "attempts": [1, 3, 2]}
    )
    write_table(frame, predictions)
    benchmark = tmp_path / "benchmarks" / "predict" / "gpt" / "diagnosis.tsv"
    benchmark.parent.mkdir(parents=True)
    benchmark.write_text("s\th:m:s\tmax_rss\n12.5\t0:00:12\t100\n")
    rows = summary_rows(["gpt", "absent"], ["diagnosis", "localization"], tmp_path)
    assert rows == [
        {"model": "gpt", "task": "diagnosis", "questions": 3, "requests": 6, "failed": 1, "wall_s": 12.5}
    ]
    text = format_summary(rows)
    assert text.splitlines()[0] == "predictions:"
    assert text.splitlines()[2].split() == ["gpt", "diagnosis", "3", "6", "1", "12.5"]
    assert format_summary([]) == ""
