"""Snakemake entry: score one model's predictions (summary JSON, breakdown CSV, per-question Parquet)."""

import logging

from spinebench.io import run_job, write_json, write_table
from spinebench.metrics import score_model, write_csv
from spinebench.vocab import TASKS


def main(snakemake):
    model = snakemake.wildcards.model
    # The rule lists predictions and questions in vocab.TASKS order.
    predictions = dict(zip(TASKS, snakemake.input.predictions, strict=True))
    questions = dict(zip(TASKS, snakemake.input.questions, strict=True))
    scores = score_model(
        predictions,
        questions,
        snakemake.input.catalog,
        snakemake.input.subset,
        split=snakemake.params.split,
        bootstrap_samples=snakemake.params.bootstrap_samples,
        confidence=snakemake.params.confidence,
        seed=snakemake.params.seed,
    )
    summary = {"model": model, **scores.summary}
    logging.info("%s on %s: %s", model, summary["split"], summary["metrics"])
    logging.info("extraction paths: %s; errors: %s", summary["extraction"], summary["errors"])
    write_json(summary, snakemake.output.summary)
    write_csv(
        scores.breakdown.assign(model=model)[["model", *scores.breakdown.columns]], snakemake.output.breakdown
    )
    write_table(scores.questions, snakemake.output.questions)


run_job(main, snakemake)  # noqa: F821
