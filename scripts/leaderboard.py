"""Snakemake entry: the leaderboard (CSV) and its `dvc metrics` view (JSON) from every model's summary."""

import json
import logging
from pathlib import Path

from spinebench.io import run_job, write_json
from spinebench.metrics import leaderboard_metrics, leaderboard_table, write_csv


def main(snakemake):
    summaries = [json.loads(Path(path).read_text(encoding="utf-8")) for path in snakemake.input.summaries]
    table = leaderboard_table(summaries)
    for row in table.itertuples():
        logging.info("%d. %s: overall accuracy %s", row.rank, row.model, row.overall_accuracy)
    write_csv(table, snakemake.output.csv)
    write_json(leaderboard_metrics(table), snakemake.output.json)


run_job(main, snakemake)  # noqa: F821
