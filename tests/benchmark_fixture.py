"""A tiny benchmark on disk with the real tables' columns: both tasks, three sources, a subset, two image
shards for one source, a manifest. For tests of code that reads a built benchmark (exports, imports) without
running the workflow.

    paths = write_tiny_benchmark(tmp_path)      # results/benchmark/..., results/images/... under tmp_path
"""

from __future__ import annotations

import hashlib
import io
import runpy
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from spinebench.exports.common import ExportInputs, load_export_inputs
from spinebench.io import write_json, write_table
from spinebench.release import build_manifest
from spinebench.vocab import LABELS, LETTERS, LEVELS

REPO = Path(__file__).resolve().parents[1]

# (image_id, source, modality, region, disease, levels, shard)
IMAGES: tuple[tuple, ...] = (
    ("buu-0001-AP", "buu", "X-ray", "lumbar", "Spondylolisthesis", ["L4/L5"], "000"),
    ("buu-0002-LA", "buu", "X-ray", "lumbar", "Healthy", [], "000"),
    ("csxa-0001", "csxa", "X-ray", "cervical", "Cervical lordosis", [], "000"),
    ("csxa-0002", "csxa", "X-ray", "cervical", "Sigmoid cervical vertebrae", [], "000"),
    ("rsna-1-2-3", "rsna", "MRI", "lumbar", "Foraminal stenosis", ["L3/L4", "L4/L5"], "000"),
    ("rsna-1-2-7", "rsna", "MRI", "lumbar", "Subarticular stenosis", ["L5/S1"], "000"),
    ("rsna-4-5-1", "rsna", "MRI", "lumbar", "Spinal canal stenosis", ["L1/L2", "L2/L3", "L3/L4"], "001"),
    ("rsna-4-5-9", "rsna", "MRI", "lumbar", "Disc space narrowing", ["L2/L3"], "001"),
    ("vindr-aa01", "vindr", "X-ray", "spine", "Osteophytes", [], "000"),
    ("vindr-bb02", "vindr", "X-ray", "spine", "Vertebral collapse", [], "000"),
)
DIAGNOSIS_QUESTION = "Which spinal disorder is this patient suffering from?"
LOCALIZATION_QUESTION = "What is the site of the disease in the spine?"


def image_png(index: int, width: int = 24, height: int = 16) -> bytes:
    """A small RGB PNG, distinct per index."""
    pixels = np.full((height, width, 3), (index * 23) % 256, dtype=np.uint8)
    pixels[: height // 2, : width // 2, 1] = 200 - index
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def catalog_frame() -> pd.DataFrame:
    """The catalog's columns (docs/contracts.md) for IMAGES."""
    rows = []
    for index, (image_id, source, modality, region, disease, levels, shard) in enumerate(IMAGES):
        png = image_png(index)
        rows.append(
            {
                "image_id": image_id,
                "source": source,
                "modality": modality,
                "region": region,
                "disease": disease,
                "levels": list(levels),
                "member": f"{source}/{image_id}",
                "view": None,
                "study_id": None,
                "series_id": None,
                "instance_number": None,
                "source_labels": [disease],
                "shard": shard,
                "png_sha256": hashlib.sha256(png).hexdigest(),
                "width": 24,
                "height": 16,
                "variance": 0.01,
                "laplacian_variance": 0.001,
                "contrast": 0.2,
            }
        )
    return pd.DataFrame(rows)


def diagnosis_frame(catalog: pd.DataFrame, seed: int = 7) -> pd.DataFrame:
    """One diagnosis question per image: truth, three other diseases and Healthy, shuffled."""
    rng = np.random.default_rng(seed)
    rows = []
    for image in catalog.to_dict("records"):
        wrong = [label for label in LABELS if label not in (image["disease"], "Healthy")]
        picked = [
            wrong[i]
            for i in rng.choice(len(wrong), size=3 if image["disease"] != "Healthy" else 4, replace=False)
        ]
        options = ([image["disease"]] if image["disease"] != "Healthy" else []) + picked + ["Healthy"]
        options = [options[i] for i in rng.permutation(5)]
        rows.append(
            _question_row(
                "dx", image, DIAGNOSIS_QUESTION, options, [LETTERS[options.index(image["disease"])]]
            )
        )
    return pd.DataFrame(rows)


def localization_frame(catalog: pd.DataFrame, seed: int = 8) -> pd.DataFrame:
    """One localization question per image with levels: the five levels shuffled, every true level correct."""
    rng = np.random.default_rng(seed)
    rows = []
    for image in catalog.to_dict("records"):
        if not image["levels"]:
            continue
        options = [LEVELS[i] for i in rng.permutation(5)]
        letters = sorted(LETTERS[options.index(level)] for level in image["levels"])
        rows.append(_question_row("loc", image, LOCALIZATION_QUESTION, options, letters))
    return pd.DataFrame(rows)


def _question_row(prefix: str, image: dict, question: str, options: list[str], letters: list[str]) -> dict:
    return {
        "question_id": f"{prefix}-{image['image_id']}",
        "image_id": image["image_id"],
        "source": image["source"],
        "modality": image["modality"],
        "region": image["region"],
        "disease": image["disease"],
        "question": question,
        **{f"option_{letter.lower()}": text for letter, text in zip(LETTERS, options, strict=True)},
        "answer": ",".join(letters),
        "paraphrase": 0,
    }


def subset_frame(diagnosis: pd.DataFrame, localization: pd.DataFrame) -> pd.DataFrame:
    """Every other question of each task, in question_id order, ranked."""
    rows = []
    for task, frame in (("diagnosis", diagnosis), ("localization", localization)):
        chosen = sorted(frame["question_id"])[::2]
        rows += [{"question_id": qid, "task": task, "rank": rank} for rank, qid in enumerate(chosen)]
    return pd.DataFrame(rows)


def write_tiny_benchmark(root: str | Path) -> dict:
    """Write the benchmark under `root` (results/benchmark/*, results/images/{source}/{shard}.parquet) and
    return its paths: catalog, questions (list, vocab.TASKS order), subset, manifest, images (list), plus the
    frames themselves under `frames` and the PNG bytes per image_id under `pngs`."""
    root = Path(root)
    benchmark = root / "results" / "benchmark"
    catalog = catalog_frame()
    diagnosis, localization = diagnosis_frame(catalog), localization_frame(catalog)
    subset = subset_frame(diagnosis, localization)
    paths = {
        "catalog": str(benchmark / "images.parquet"),
        "questions": [str(benchmark / "diagnosis.parquet"), str(benchmark / "localization.parquet")],
        "subset": str(benchmark / "subset.parquet"),
        "manifest": str(benchmark / "manifest.json"),
        "images": [],
    }
    write_table(catalog, paths["catalog"])
    write_table(diagnosis, paths["questions"][0])
    write_table(localization, paths["questions"][1])
    write_table(subset, paths["subset"])
    pngs = {image[0]: image_png(index) for index, image in enumerate(IMAGES)}
    for (source, shard), group in catalog.groupby(["source", "shard"], sort=True):
        path = root / "results" / "images" / source / f"{shard}.parquet"
        write_table(
            pd.DataFrame({"image_id": list(group["image_id"]), "png": [pngs[i] for i in group["image_id"]]}),
            path,
        )
        paths["images"].append(str(path))
    tables = [paths["catalog"], *paths["questions"], paths["subset"]]
    write_json(build_manifest(tables, {"questions": 7, "subset": 9}, "tiny-siglip", 1), paths["manifest"])
    paths["frames"] = {
        "catalog": catalog,
        "diagnosis": diagnosis,
        "localization": localization,
        "subset": subset,
    }
    paths["pngs"] = pngs
    return paths


def export_inputs_of(paths: dict) -> ExportInputs:
    """The export jobs' view (spinebench.exports.common) of a benchmark written by write_tiny_benchmark."""
    return load_export_inputs(
        paths["catalog"], paths["questions"], paths["subset"], paths["manifest"], paths["images"]
    )


def run_export_scripts(
    paths: dict, root: Path, export: str, output: Path, rows_per_file: int = 1000, **assembly_input
) -> list[str]:
    """Run an export's Snakemake scripts as rules/export.smk does: scripts/export_part.py for each split
    (the subset table for the subset split only, never the manifest), then scripts/export_{export}.py over
    the parts, with `assembly_input` beside them; return the part folders."""
    from tests.test_metrics import fake_snakemake

    parts = []
    for split in ("full", "subset"):
        names = ("catalog", "questions", "images") + (("subset",) if split == "subset" else ())
        part = fake_snakemake(
            root / split,
            input={name: paths[name] for name in names},
            params={"rows_per_file": rows_per_file if export == "hf" else None},
            wildcards={"format": export, "split": split},
        )
        part.output = [str(root / "parts" / export / split)]
        runpy.run_path(str(REPO / "scripts" / "export_part.py"), init_globals={"snakemake": part})
        parts.append(part.output[0])
    assembly = fake_snakemake(root / "assembly", input={"parts": parts, **assembly_input})
    assembly.output = [str(output)]
    runpy.run_path(str(REPO / "scripts" / f"export_{export}.py"), init_globals={"snakemake": assembly})
    return parts
