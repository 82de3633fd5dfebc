# Self-contained HTML and Markdown report.
from spinebench.provenance import benchmark_params, describe_code


rule report:
    input:
        leaderboard="results/metrics/leaderboard.json",
        summaries=expand("results/metrics/models/{model}.json", model=MODELS),
        breakdowns=expand("results/metrics/models/{model}.breakdown.csv", model=MODELS),
        scored=expand("results/metrics/models/{model}.questions.parquet", model=MODELS),
        # Model by model, tasks in vocab.TASKS order (scripts/report.py relies on it).
        predictions=expand(
            "results/predictions/{model}/{task}.parquet", model=MODELS, task=TASKS
        ),
        catalog="results/benchmark/images.parquet",
        subset="results/benchmark/subset.parquet",
        questions=expand("results/benchmark/{task}.parquet", task=TASKS),
        manifest="results/benchmark/manifest.json",
        # The example questions' images are read from these (only the shards that hold them).
        images=image_shards(),
        rejected=rejected_tables(),
        paper="resources/paper_table2.csv",
        html_template="templates/report/report.html.j2",
        md_template="templates/report/report.md.j2",
        code=package("report", "answers", "figures", "benchmark_images"),
    output:
        html="results/report/report.html",
        markdown="results/report/report.md",
    log:
        "logs/report.log",
    conda:
        "../envs/evaluate.yaml"
    params:
        seeds=config["seeds"],
        split=config["evaluate"]["split"],
        evaluation=config["evaluate"],
        mode=config["mode"],
        # In release mode the benchmark was built elsewhere: its manifest names it, not this params.yaml.
        benchmark=benchmark_params(config) if BUILD else None,
        # The checkout's `git describe` (or the package version): a new commit reruns the report.
        code_version=describe_code(workflow.basedir),
    script:
        "../scripts/report.py"
