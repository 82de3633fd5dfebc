# SpineBench: raw source archives -> standardized tables -> image and embedding shards -> distractors
# -> questions -> subset -> per-model predictions -> metrics -> report.
#
# `snakemake -j8` builds the demo benchmark from synthetic archives, evaluates the baseline models and
# renders the report. With `mode: release` (params.yaml or --config mode=release) only the evaluation
# rules are loaded and the benchmark comes from `dvc pull`.


configfile: "params.yaml"


include: "rules/common.smk"


if BUILD:

    include: "rules/sources.smk"
    include: "rules/standardize.smk"
    include: "rules/render.smk"
    include: "rules/embed.smk"
    include: "rules/distractors.smk"
    include: "rules/questions.smk"
    include: "rules/subset.smk"
    include: "rules/release.smk"


include: "rules/export.smk"
include: "rules/predict.smk"
include: "rules/metrics.smk"
include: "rules/report.smk"


rule all:
    default_target: True
    input:
        report_files(),
        # A build also writes the exports; release mode evaluates without them (`snakemake exports`).
        EXPORTS if BUILD else [],


rule exports:
    input:
        EXPORTS,


rule benchmark:
    input:
        benchmark_files(),
