"""Snakemake entry: render the self-contained HTML and the Markdown report."""

import json
import logging
from pathlib import Path

import pandas as pd

from spinebench.io import read_table, run_job
from spinebench.report import DEFAULT_TITLE, build_report_context, load_rejected, render_report, write_text
from spinebench.vocab import TASKS


def read_json(path):
    return json.loads(Path(path).read_text(encoding="utf-8"))


def main(snakemake):
    breakdowns = [
        pd.read_csv(path, keep_default_na=False, na_values=[""]) for path in snakemake.input.breakdowns
    ]
    context = build_report_context(
        title=getattr(snakemake.params, "title", DEFAULT_TITLE),
        seeds=dict(snakemake.params.seeds),
        split=snakemake.params.split,
        leaderboard=read_json(snakemake.input.leaderboard),
        summaries=[read_json(path) for path in snakemake.input.summaries],
        breakdowns=pd.concat(breakdowns, ignore_index=True),
        catalog=read_table(
            snakemake.input.catalog, columns=["image_id", "source", "modality", "disease", "levels"]
        ),
        subset=read_table(snakemake.input.subset),
        # The rule lists the question tables in vocab.TASKS order.
        questions={
            task: read_table(path, columns=["question_id", "disease"])
            for task, path in zip(TASKS, snakemake.input.questions, strict=True)
        },
        rejected=load_rejected(snakemake.input.rejected),
        paper=pd.read_csv(snakemake.input.paper),
    )
    html, markdown = render_report(context, snakemake.input.html_template, snakemake.input.md_template)
    logging.info(
        "report: %d models, %d rejected items",
        len(context["leaderboard"]),
        context["dataset"]["rejected_total"],
    )
    write_text(html, snakemake.output.html)
    write_text(markdown, snakemake.output.markdown)


run_job(main, snakemake)  # noqa: F821
