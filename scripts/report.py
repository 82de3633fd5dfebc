"""Snakemake entry: render the self-contained HTML and the Markdown report."""

import json
import logging
from pathlib import Path

import pandas as pd

from spinebench.answers import answer_table, pick_examples, read_images, read_responses, responses_to_read
from spinebench.io import read_table, run_job
from spinebench.report import (
    DEFAULT_TITLE,
    build_report_context,
    load_rejected,
    manifest_digest,
    release_context,
    render_report,
    write_text,
)
from spinebench.vocab import TASKS


def read_json(path):
    return json.loads(Path(path).read_text(encoding="utf-8"))


def predictions_by_model(models, paths):
    """model -> task -> predictions path; the rule lists them model by model, tasks in vocab.TASKS order."""
    paths = list(paths)
    if len(paths) != len(models) * len(TASKS):
        raise ValueError(f"expected {len(models) * len(TASKS)} prediction tables, got {len(paths)}")
    return {
        model: {task: paths[index * len(TASKS) + offset] for offset, task in enumerate(TASKS)}
        for index, model in enumerate(models)
    }


def main(snakemake):
    summaries = [read_json(path) for path in snakemake.input.summaries]
    # The rule lists summaries, scored questions and predictions in the same model order.
    models = [summary["model"] for summary in summaries]
    breakdowns = [
        pd.read_csv(path, keep_default_na=False, na_values=[""]) for path in snakemake.input.breakdowns
    ]
    catalog = read_table(
        snakemake.input.catalog, columns=["image_id", "source", "modality", "disease", "levels", "shard"]
    )
    subset = read_table(snakemake.input.subset)
    # The rule lists the question tables in vocab.TASKS order.
    questions = {task: read_table(path) for task, path in zip(TASKS, snakemake.input.questions, strict=True)}
    answers = answer_table(
        {model: read_table(path) for model, path in zip(models, snakemake.input.scored, strict=True)},
        questions,
    )
    examples = pick_examples(subset, seed=snakemake.params.seeds["subset"])
    responses = read_responses(
        predictions_by_model(models, snakemake.input.predictions),
        responses_to_read(answers, examples, models),
    )
    image_ids = [
        questions[task].set_index("question_id").at[question_id, "image_id"] for task, question_id in examples
    ]
    release = release_context(
        manifest=read_json(snakemake.input.manifest),
        manifest_sha256=manifest_digest(snakemake.input.manifest),
        code_version=snakemake.params.code_version,
        mode=snakemake.params.mode,
        benchmark_params=snakemake.params.benchmark,
        evaluation=dict(snakemake.params.evaluation),
    )
    context = build_report_context(
        title=getattr(snakemake.params, "title", DEFAULT_TITLE),
        seeds=dict(snakemake.params.seeds),
        split=snakemake.params.split,
        leaderboard=read_json(snakemake.input.leaderboard),
        summaries=summaries,
        breakdowns=pd.concat(breakdowns, ignore_index=True),
        catalog=catalog,
        subset=subset,
        questions=questions,
        rejected=load_rejected(snakemake.input.rejected),
        paper=pd.read_csv(snakemake.input.paper),
        release=release,
        answers=answers,
        responses=responses,
        examples=examples,
        example_images=read_images(catalog, snakemake.input.images, image_ids),
    )
    html, markdown = render_report(context, snakemake.input.html_template, snakemake.input.md_template)
    logging.info(
        "report: %d models, %d examples, %d rejected items, release %s",
        len(context["leaderboard"]),
        len(context["examples"]),
        context["dataset"]["rejected_total"],
        release["manifest_sha256"],
    )
    write_text(html, snakemake.output.html)
    write_text(markdown, snakemake.output.markdown)


run_job(main, snakemake)  # noqa: F821
