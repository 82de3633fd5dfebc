# The benchmark for other harnesses (docs/exports.md): a Hugging Face dataset, an lmms-eval task folder,
# VLMEvalKit TSVs and the original SpineBench release's JSON layout. Each export reads the benchmark tables
# and images only, so it reruns when the benchmark changes and never for a new model. The image-heavy exports
# are written one part per split (export_part) and linked into the export folder: a subset edit rewrites the
# subset's parts and relinks, and the full split's parts stay.


rule export_part:
    input:
        unpack(export_part_inputs),
        code=lambda wildcards: EXPORT_CODE
        + package(f"exports/{wildcards.format}", "prompts"),
    output:
        directory("results/export_parts/{format}/{split}"),
    log:
        "logs/export/parts/{format}/{split}.log",
    benchmark:
        "benchmarks/export/parts/{format}/{split}.tsv"
    wildcard_constraints:
        format="hf|vlmevalkit|spinebench_json",
        split="|".join(EXPORT_SPLITS),
    conda:
        "../envs/build.yaml"
    params:
        # Only the Hugging Face parts use it: the other formats' parts do not rerun when it changes.
        rows_per_file=lambda wildcards: (
            config["export"]["hf"]["rows_per_file"]
            if wildcards.format == "hf"
            else None
        ),
    script:
        "../scripts/export_part.py"


rule export_hf:
    input:
        parts=export_parts("hf"),
        catalog="results/benchmark/images.parquet",
        manifest="results/benchmark/manifest.json",
        card="templates/exports/hf_card.md.j2",
        sources="resources/exports/sources.yaml",
        code=EXPORT_CODE + package("exports/hf"),
    output:
        directory("results/exports/hf"),
    log:
        "logs/export/hf.log",
    benchmark:
        "benchmarks/export/hf.tsv"
    conda:
        "../envs/build.yaml"
    script:
        "../scripts/export_hf.py"


rule export_lmms_eval:
    input:
        **export_inputs(),
        hf="results/exports/hf",
        templates=expand("templates/prompts/{task}.j2", task=TASKS),
        code=EXPORT_CODE + package("exports/lmms_eval", "harness/lmms_eval", "prompts"),
    output:
        directory("results/exports/lmms_eval"),
    log:
        "logs/export/lmms_eval.log",
    conda:
        "../envs/build.yaml"
    params:
        max_new_tokens=config["export"]["lmms_eval"]["max_new_tokens"],
    script:
        "../scripts/export_lmms_eval.py"


rule export_vlmevalkit:
    input:
        parts=export_parts("vlmevalkit"),
        manifest="results/benchmark/manifest.json",
        code=EXPORT_CODE + package("exports/vlmevalkit"),
    output:
        directory("results/exports/vlmevalkit"),
    log:
        "logs/export/vlmevalkit.log",
    benchmark:
        "benchmarks/export/vlmevalkit.tsv"
    conda:
        "../envs/build.yaml"
    script:
        "../scripts/export_vlmevalkit.py"


rule export_spinebench_json:
    input:
        parts=export_parts("spinebench_json"),
        code=EXPORT_CODE + package("exports/spinebench_json"),
    output:
        directory("results/exports/spinebench_json"),
    log:
        "logs/export/spinebench_json.log",
    benchmark:
        "benchmarks/export/spinebench_json.tsv"
    conda:
        "../envs/build.yaml"
    script:
        "../scripts/export_spinebench_json.py"
