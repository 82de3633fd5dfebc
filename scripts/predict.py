"""Snakemake entry: run one model on one task (resumable JSONL beside the output), then finalize."""

import logging

from spinebench.backends import BackendContext, make_backend
from spinebench.benchmark_images import ShardImages
from spinebench.finalize import Judge, finalize, write_predictions
from spinebench.io import read_table, run_job
from spinebench.journal import jsonl_path_for, judge_cache_path_for
from spinebench.predict import model_fingerprint, run_predictions
from spinebench.splits import select_questions


def embeddings_loader(paths):
    """Load the benchmark's image embeddings only if a backend asks (the nearest-neighbour baseline)."""

    def load():
        from spinebench.embeddings import load_embeddings

        return load_embeddings(list(paths))

    return load


def main(snakemake):
    task, model_name = snakemake.wildcards.task, snakemake.wildcards.model
    params = snakemake.params
    templates_dir = str(snakemake.input.template).rsplit("/", 1)[0]
    catalog = read_table(
        snakemake.input.catalog, columns=["image_id", "source", "shard", "disease", "levels", "png_sha256"]
    )
    benchmark_questions = read_table(snakemake.input.questions)
    questions = select_questions(benchmark_questions, read_table(snakemake.input.subset), task, params.split)
    # Each item's fingerprint covers its image's content, so re-rendered images are asked again.
    questions = questions.merge(
        catalog[["image_id", "png_sha256"]], on="image_id", how="left", validate="m:1"
    )
    context = BackendContext(
        model_name=model_name,
        seed=params.seed,
        catalog=catalog,
        library=read_table(snakemake.input.library),
        embeddings=embeddings_loader(snakemake.input.embeddings),
        task=task,
        questions=benchmark_questions,
    )
    prompt_files = {"templates_dir": templates_dir, "definitions_path": snakemake.input.definitions}
    output = snakemake.output[0]
    with make_backend(model_name, dict(params.model), context) as backend:
        fingerprint = model_fingerprint(backend)
        run_predictions(
            questions,
            ShardImages(catalog, list(snakemake.input.images)),
            backend,
            jsonl_path_for(output),
            fingerprint,
            task=task,
            definitions=params.definitions,
            max_failed=params.max_failed_items,
            **prompt_files,
        )
    judge = None
    if params.judge is not None:
        judge_context = BackendContext(
            model_name=params.judge_name, seed=params.seed, catalog=catalog, library=context.library
        )
        judge_backend = make_backend(params.judge_name, dict(params.judge), judge_context)
        judge = Judge(judge_backend, model_fingerprint(judge_backend), judge_cache_path_for(output))
    try:
        frame = finalize(
            questions,
            jsonl_path_for(output),
            fingerprint,
            task=task,
            definitions=params.definitions,
            judge=judge,
            **prompt_files,
        )
    finally:
        if judge is not None:
            judge.backend.close()
    counts = frame["extraction"].value_counts().to_dict()
    logging.info("%s/%s: %d predictions; extraction paths %s", model_name, task, len(frame), counts)
    write_predictions(frame, output)


run_job(main, snakemake)  # noqa: F821
