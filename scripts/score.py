"""Snakemake entry: score one model's predictions (summary JSON, breakdown CSV, per-question Parquet)."""

import logging

from spinebench.io import run_job
from spinebench.metrics import score_model, write_model_scores
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
    write_model_scores(
        scores, model, snakemake.output.summary, snakemake.output.breakdown, snakemake.output.questions
    )


run_job(main, snakemake)  # noqa: F821
