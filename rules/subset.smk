# SpineBench-Sub: quality thresholds, then balance-driven iterative selection.


rule subset:
    input:
        catalog="results/benchmark/images.parquet",
        diagnosis="results/benchmark/diagnosis.parquet",
        localization="results/benchmark/localization.parquet",
        code=package("subset", "seeding"),
    output:
        "results/benchmark/subset.parquet",
    log:
        "logs/subset.log",
    conda:
        "../envs/build.yaml"
    params:
        settings=config["subset"],
        seed=config["seeds"]["subset"],
    script:
        "../scripts/subset.py"
