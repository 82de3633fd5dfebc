# Per-model scores (DuckDB SQL + bootstrap by image) and the leaderboard (and its `dvc metrics` files).


rule score:
    input:
        predictions=expand("results/predictions/{{model}}/{task}.parquet", task=TASKS),
        questions=expand("results/benchmark/{task}.parquet", task=TASKS),
        catalog="results/benchmark/images.parquet",
        subset="results/benchmark/subset.parquet",
        sql=METRICS_SQL,
        code=package("metrics"),
    output:
        summary="results/metrics/models/{model}.json",
        breakdown="results/metrics/models/{model}.breakdown.csv",
        questions="results/metrics/models/{model}.questions.parquet",
    log:
        "logs/score/{model}.log",
    conda:
        "../envs/evaluate.yaml"
    params:
        split=config["evaluate"]["split"],
        bootstrap_samples=config["metrics"]["bootstrap_samples"],
        confidence=config["metrics"]["confidence"],
        seed=config["seeds"]["bootstrap"],
    script:
        "../scripts/score.py"


rule leaderboard:
    input:
        summaries=expand("results/metrics/models/{model}.json", model=MODELS),
        code=package("metrics"),
    output:
        csv="results/metrics/leaderboard.csv",
        json="results/metrics/leaderboard.json",
        # One flat file per model: `dvc metrics show` prints a row per file (dvc.yaml).
        scores=directory("results/metrics/scores"),
    log:
        "logs/leaderboard.log",
    conda:
        "../envs/evaluate.yaml"
    script:
        "../scripts/leaderboard.py"
