"""Synthetic stand-ins for the four raw sources, with the real archive layouts (shared/SOURCES.md 6).

`write_source(source, out_dir, counts, seed, decoys)` writes one source's archive into `out_dir`:

| source | files in out_dir |
|---|---|
| rsna  | rsna-2024-lumbar-spine-degenerative-classification.zip |
| vindr | vindr-spinexr-...-1.0.0/{annotations/{train,test}.csv, train_images/, test_images/} |
| buu   | BUU-LSPINE_400.zip |
| csxa  | datasets-PNG.zip, datasets-JSON.zip, datasets.xlsx |

`counts` is params `synthetic.demo` or `synthetic.full`. Each source yields exactly the counted number
of *valid* images under the default standardization settings; the full setting gives the paper's
40,263 images (24,415 RSNA + 10,086 VinDr + 800 BUU + 4,962 CSXA), of which 24,615 carry lumbar levels
(every RSNA image, plus the 200 BUU films with a flagged endplate).
- rsna_images: distinct labelled (study, series, instance) triples (an instance with several merged
  conditions counts once);
- vindr_images: films with at least one kept finding or "No finding";
- buu_cases: cases, each with an AP and a LA film (2 images per case);
- csxa_images: films with a curvature label.

Images are procedural phantoms (`phantoms`) whose geometry follows the labels. Everything is derived
from `seed` (per item, via blake2b), so the same arguments give byte-identical files whatever the number
of worker processes. The archive is built in a staging directory next to `out_dir` and renamed into
place at the end: an interrupted run leaves no partial `out_dir`.

Decoys (`decoys=True`): deliberately bad inputs on top of the counted valid images, which the
standardize or render stage must reject with a reason. `decoys=False` writes none of them.

| source | decoy | expected outcome |
|---|---|---|
| rsna  | coordinate row (Spinal Canal Stenosis, L1/L2) whose instance has no .dcm | missing image |
| rsna  | row with condition "Facet Arthropathy" (L3/L4) alone on an instance (.dcm exists) | unknown label |
| vindr | film whose only row has lesion_type "Scoliosis" (.dicom exists) | unknown label |
| vindr | "Osteophytes" film whose .dicom is missing | missing image |
| vindr | "Disc space narrowing" film, .dicom truncated to 60% (JPEG 2000 data cut) | corrupt DICOM |
| vindr | film whose only rows are "Other lesions" | only dropped findings |
| vindr | film whose only rows are "Surgical implant" | only dropped findings |
| buu   | AP/{case N+1}Y0.jpg with a 9-row CSV (an AP CSV has 10 rows), no LA files | bad CSV |
| buu   | LA/{case N+2}Y1.jpg without a CSV, no AP files | unlabelled image |
| csxa  | xlsx row N+1 without PNG or JSON | missing image |
| csxa  | PNG + JSON N+2 without an xlsx row | unlabelled image |
| csxa  | counted case 4 (or the last when fewer) without its JSON | kept unless require_landmarks |

The two RSNA decoy rows live in one extra study (train.csv row with only spinal_canal_stenosis_l1_l2 set,
one Sagittal T2/STIR series); every decoy film/case has its own ids. The modules' docstrings describe
the non-decoy quirks each archive reproduces (gapped instance numbers, two-stack axial series, canal +
foraminal points on one instance, MONOCHROME1, duplicated LabelMe label, file-name age mismatch, ...).
"""

from __future__ import annotations

from pathlib import Path

from spinebench.io import staged_directory
from spinebench.synth import buu, csxa, rsna, vindr

# Which counts key each source needs.
COUNT_KEYS = {"rsna": "rsna_images", "vindr": "vindr_images", "buu": "buu_cases", "csxa": "csxa_images"}
WRITERS = {"rsna": rsna.write, "vindr": vindr.write, "buu": buu.write, "csxa": csxa.write}


# Sources whose film size can be chosen (`film_size`): the radiograph archives. RSNA's MR slices and
# CSXA's PNGs keep their sizes.
FILM_SIZE_SOURCES = ("vindr", "buu")
FILM_SIZES = ("compact", "realistic")


def write_source(
    source: str,
    out_dir: Path,
    counts: dict,
    seed: int,
    decoys: bool,
    workers: int | None = None,
    film_size: str = "compact",
) -> None:
    """Write the synthetic archive of `source` into `out_dir` (replacing it atomically).

    `workers` > 1 renders images on that many forked processes; the output does not depend on it.
    `film_size` (compact or realistic) sets the radiographs' pixel size (FILM_SIZE_SOURCES only).
    """
    if source not in WRITERS:
        raise ValueError(f"unknown source {source!r}; expected one of {sorted(WRITERS)}")
    if film_size not in FILM_SIZES:
        raise ValueError(f"film_size must be one of {FILM_SIZES}, got {film_size!r}")
    key = COUNT_KEYS[source]
    if key not in counts:
        raise ValueError(f"counts for {source} need key {key!r}, got {sorted(counts)}")
    count = counts[key]
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise ValueError(f"counts[{key!r}] must be a non-negative integer, got {count!r}")
    sized = {"film_size": film_size} if source in FILM_SIZE_SOURCES else {}
    with staged_directory(Path(out_dir)) as staging:
        WRITERS[source](staging, counts, int(seed), bool(decoys), workers=workers, **sized)


__all__ = ["write_source", "COUNT_KEYS", "FILM_SIZE_SOURCES", "FILM_SIZES"]
