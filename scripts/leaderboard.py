"""Snakemake entry: the leaderboard (CSV, JSON) and its `dvc metrics` view (a JSON per model) from every
model's summary."""

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
    metrics = leaderboard_metrics(table)
    write_json(metrics, snakemake.output.json)
    # The `dvc metrics` view: one file per model, so that `dvc metrics show` prints one row per model.
    for model, entry in metrics.items():
        write_json(entry, Path(snakemake.output.scores) / f"{model}.json")


run_job(main, snakemake)  # noqa: F821
