# One prediction file per model and task; the JSONL working file beside it makes runs resumable.
from spinebench.imports.locations import workflow_inputs


rule predict:
    input:
        questions="results/benchmark/{task}.parquet",
        subset="results/benchmark/subset.parquet",
        catalog="results/benchmark/images.parquet",
        library="results/benchmark/library.parquet",
        # Only what the model reads: a baseline that never opens an image does not depend on them.
        images=predict_data("images"),
        embeddings=predict_data("embeddings"),
        template="templates/prompts/{task}.j2",
        definitions="resources/disease_definitions.yaml",
        # An imported model's predictions file(s): an edited file reruns that model alone.
        imported=lambda wildcards: workflow_inputs(
            wildcards.model, config["models"][wildcards.model], wildcards.task
        ),
        code=package(
            "predict",
            "splits",
            "benchmark_images",
            "journal",
            "progress",
            "finalize",
            "prompts",
            "extract",
            "seeding",
            "embeddings",
            "store",
            "codeversion",
        )
        + package_dir("backends")
        + package_dir("extraction"),
    output:
        "results/predictions/{model}/{task}.parquet",
    log:
        "logs/predict/{model}/{task}.log",
    benchmark:
        "benchmarks/predict/{model}/{task}.tsv"
    conda:
        "../envs/evaluate.yaml"
    resources:
        # A cluster job of a local model asks for a GPU (docs/cluster.md); elsewhere nothing limits it.
        gpu=predict_gpus,
    params:
        model=lambda wildcards: config["models"][wildcards.model],
        judge=judge_settings(),
        judge_name=config["evaluate"]["judge"],
        split=config["evaluate"]["split"],
        definitions=config["evaluate"]["disease_definitions"],
        max_failed_items=config["evaluate"]["max_failed_items"],
        seed=config["seeds"]["baselines"],
    script:
        "../scripts/predict.py"
