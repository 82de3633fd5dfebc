# The release manifest: what `dvc push` publishes, with the content hash of every file, for checks
# (`spinebench-verify`) and for the workflow to recognise a release it did not build.
from spinebench.provenance import benchmark_params


rule manifest:
    input:
        tables=BENCHMARK_TABLES,
        released=image_shards() + embedding_shards() + rejected_tables(),
        pool=config["questions"]["pool"],
        code=package("release", "provenance"),
    output:
        "results/benchmark/manifest.json",
    log:
        "logs/manifest.log",
    conda:
        "../envs/build.yaml"
    params:
        # The params that define the benchmark, seeds included: what release mode compares params.yaml
        # with (spinebench.release.check_workspace).
        benchmark=benchmark_params(config),
        encoder=ENCODER,
    script:
        "../scripts/manifest.py"
