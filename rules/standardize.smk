# Source labels -> the 11 diseases + Healthy and lumbar levels, in DuckDB SQL; rejected rows kept with reasons.


rule standardize:
    input:
        archive=source_archive,
        inventory=source_inventory,
        sql="sql/standardize/{source}.sql",
        label_map="resources/label_maps/{source}.csv",
        code=package("archive", "ingest", "standardize"),
    output:
        table="results/standardized/{source}.parquet",
        rejected="results/rejected/{source}.parquet",
    log:
        "logs/standardize/{source}.log",
    benchmark:
        "benchmarks/standardize/{source}.tsv"
    conda:
        "../envs/build.yaml"
    params:
        settings=source_settings,
    script:
        "../scripts/standardize.py"
