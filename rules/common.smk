# Shared set-up: params validation, wildcard constraints and input functions.
import functools
import glob
import os

from snakemake.utils import validate

from spinebench.backends import data_read_by
from spinebench.cleanup import remove_stale_temporaries
from spinebench.config_checks import check_config
from spinebench.run_summary import format_summary, summary_rows
from spinebench.inventory import write_inventory
from spinebench.release import check_workspace
from spinebench.shards import shard_names
from spinebench.vocab import TASKS

validate(config, schema="../schemas/params.schema.json")


def needs_predictions(model):
    """Whether some prediction table of `model` is still to be written (its key is then needed)."""
    return not all(
        os.path.exists(f"results/predictions/{model}/{task}.parquet") for task in TASKS
    )


check_config(config, needs_predictions)
# A release fetched with `dvc pull` is evaluated as built, never rebuilt over (spinebench/release.py).
check_workspace(config)

BUILD = config["mode"] == "build"
# Folders whose writers leave `.{name}.*.tmp` temporaries when a run is killed (spinebench/cleanup.py).
TEMPORARY_ROOTS = ("results", "resources/synthetic", "logs")
SOURCES = list(config["sources"])
MODELS = list(config["models"])
ENCODER = config["embed"]["encoder"]


wildcard_constraints:
    source="|".join(SOURCES),
    shard=r"\d{3}",
    task="|".join(TASKS),
    model="|".join(MODELS),
    encoder=ENCODER,


def package(*modules):
    """Package modules a job imports: declared as inputs so that a code change reruns the job."""
    return [f"spinebench/{module}.py" for module in modules] + [
        "spinebench/io.py",
        "spinebench/vocab.py",
    ]


def package_dir(name):
    """Every module of a subpackage, declared as inputs like `package`."""
    return sorted(glob.glob(f"spinebench/{name}/*.py")) + [
        "spinebench/io.py",
        "spinebench/vocab.py",
    ]


METRICS_SQL = sorted(glob.glob("sql/metrics/*.sql"))


def source_archive(wildcards):
    """The raw archive of a source: the configured path, else the synthetic archive folder."""
    return (
        config["sources"][wildcards.source]["path"]
        or f"resources/synthetic/{wildcards.source}"
    )


@functools.cache
def folder_inventory(source):
    """For a source read from an extracted folder, its inventory file (spinebench/inventory.py): Snakemake
    sees only a folder's own mtime, which a file edited inside it does not change. None for a zip or a
    synthetic archive (a file, or a rule output with a timestamp)."""
    path = config["sources"][source]["path"]
    if not path or not os.path.isdir(path):
        return None
    return write_inventory(path, f"results/sources/{source}.inventory.tsv")


def source_inventory(wildcards):
    """The inventory input of a source's jobs (empty for a source that needs none)."""
    inventory = folder_inventory(wildcards.source)
    return [inventory] if inventory else []


def source_settings(wildcards):
    """A source's standardization settings: everything but where it lives and how it is sharded."""
    settings = config["sources"][wildcards.source]
    return {
        key: value for key, value in settings.items() if key not in ("path", "shards")
    }


def source_shards(source):
    """Shard names of one source (their number is a param, so the DAG is known up front)."""
    return shard_names(config["sources"][source]["shards"])


def image_shards(wildcards=None):
    """Every rendered image shard of every source."""
    return [
        f"results/images/{source}/{shard}.parquet"
        for source in SOURCES
        for shard in source_shards(source)
    ]


def render_rejected_shards(wildcards=None):
    """Every render-stage rejected table."""
    return [
        f"results/rejected/render/{source}/{shard}.parquet"
        for source in SOURCES
        for shard in source_shards(source)
    ]


def embedding_shards(wildcards=None):
    """Every embedding shard of the configured encoder."""
    return [
        f"results/embeddings/{ENCODER}/{source}/{shard}.parquet"
        for source in SOURCES
        for shard in source_shards(source)
    ]


def predict_data(kind):
    """Input function: the `kind` shards (images or embeddings) a predict job reads, which are those its
    model's backend reads (spinebench.backends.DATA_READ); none for a model that never opens them.
    """
    shards = {"images": image_shards, "embeddings": embedding_shards}[kind]

    def data_of_model(wildcards):
        model = wildcards.model
        return shards() if kind in data_read_by(model, config["models"][model]) else []

    return data_of_model


def encoder_files(wildcards=None):
    """Files the encoder is built from: its config (for a local architecture) and checkpoint."""
    files = []
    local_config = f"resources/encoders/{config['embed']['architecture']}.json"
    if os.path.exists(local_config):
        files.append(local_config)
    if config["embed"]["checkpoint"]:
        files.append(config["embed"]["checkpoint"])
    return files


def embed_settings():
    """Encoder settings that change embeddings (the encoder name is in the output path)."""
    return {key: value for key, value in config["embed"].items() if key != "encoder"}


def judge_settings():
    """Settings of the judge model (a key of `models`), or None without a judge."""
    judge = config["evaluate"]["judge"]
    if judge is None:
        return None
    if judge not in config["models"]:
        raise ValueError(
            f"params.yaml: evaluate.judge names '{judge}', which is not a key of models"
        )
    return config["models"][judge]


def runs_on_gpu(settings):
    """Whether a model's settings run it locally on a GPU: a transformers backend not pinned to the CPU."""
    return (
        settings["backend"] == "transformers"
        and settings.get("device", "auto") != "cpu"
    )


def predict_gpus(wildcards):
    """GPUs a predict job asks a cluster for (profiles/cluster): one when the model, or the judge that
    reads its unclear answers in the same job, is a local model on a GPU; else none."""
    judge = judge_settings()
    local = runs_on_gpu(config["models"][wildcards.model]) or (
        judge is not None and runs_on_gpu(judge)
    )
    return int(local)


BENCHMARK_TABLES = [
    "results/benchmark/images.parquet",
    "results/benchmark/library.parquet",
    "results/benchmark/distractors.parquet",
    "results/benchmark/diagnosis.parquet",
    "results/benchmark/localization.parquet",
    "results/benchmark/subset.parquet",
]


def benchmark_files():
    """The release: benchmark tables and their manifest."""
    return BENCHMARK_TABLES + ["results/benchmark/manifest.json"]


def rejected_tables(wildcards=None):
    """Every rejected-items table (standardization and rendering)."""
    return [
        f"results/rejected/{source}.parquet" for source in SOURCES
    ] + render_rejected_shards()


# The benchmark's exports for other harnesses (rules/export.smk).
def export_inputs():
    """The benchmark files every export reads (question tables in vocab.TASKS order)."""
    return {
        "catalog": "results/benchmark/images.parquet",
        "questions": expand("results/benchmark/{task}.parquet", task=TASKS),
        "subset": "results/benchmark/subset.parquet",
        "manifest": "results/benchmark/manifest.json",
        "images": image_shards(),
    }


# The splits every export holds (spinebench.splits.SPLITS); each export is written one part per split.
EXPORT_SPLITS = ["full", "subset"]


def export_part_inputs(wildcards):
    """What one split of an export reads: the subset table only for the subset split, never the manifest,
    so that a subset edit leaves the full split's part alone."""
    inputs = export_inputs()
    del inputs["manifest"]
    if wildcards.split != "subset":
        del inputs["subset"]
    return inputs


def export_parts(name):
    """The split parts an export's folder links together."""
    return expand("results/export_parts/{name}/{split}", name=name, split=EXPORT_SPLITS)


# The exports a build writes (`snakemake exports`, and `snakemake` in build mode), in export.formats.
EXPORTS = [f"results/exports/{name}" for name in config["export"]["formats"]]
EXPORT_CODE = package("exports/common", "benchmark_images", "splits")


def report_files():
    """Final products: metric tables and the report, and every model's scores. These are targets of their
    own: where Snakemake has no record of the leaderboard (a `dvc pull`ed one), an added model is only seen
    through its missing scores."""
    files = [
        "results/metrics/leaderboard.csv",
        "results/metrics/leaderboard.json",
        "results/report/report.html",
        "results/report/report.md",
    ] + [f"results/metrics/models/{model}.json" for model in MODELS]
    if BUILD:
        files.append("results/benchmark/manifest.json")
    return files


onstart:
    # Under the Snakemake lock: what a killed run left half-written is no run's work in progress.
    for path in remove_stale_temporaries(TEMPORARY_ROOTS):
        print(f"removed {path}, left behind by an interrupted run")


onsuccess:
    # Per model and task: questions, requests (retries included), failures, the predict job's wall time.
    print(format_summary(summary_rows(MODELS, TASKS)))
