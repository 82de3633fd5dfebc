"""Print how fast films of the real sizes and codecs render, decoded at a reduced resolution or in full.

    .venv/bin/python bench/render.py                      # 12 VinDr + 12 BUU films, params.yaml settings
    .venv/bin/python bench/render.py --films 4 --repeat 1 # a quick look

Films come from the synthetic generator at `film_size: realistic`: VinDr-like JPEG 2000 lossless 12-bit
DICOMs 1,485-2,949 pixels high, BUU-like 8-bit JPEGs 1,823x2,147 to 2,704x3,036. Each is rendered (decode,
window, resample, quality metrics, PNG) with `render.decode_resolution: full` and `reduced`; a film's time
is the best of `--repeat` runs. Printed per codec:
- films/s both ways and the speed-up (target: at least 5x);
- the rendered PNGs' max and mean absolute grey-level difference, reduced against full;
- each quality metric's median relative change, and how many films cross a `subset` threshold of
  params.yaml because of it (pass with one path, fail with the other);
- for the DICOM films, RMS contrast under `xray_windowing: dicom` and `percentile` (the evidence for the
  default windowing, docs/rendering.md).
Then the peak resident memory of rendering one 3,000 x 3,000 16-bit film (uncompressed and JPEG 2000), each
in a fresh process, above that process's footprint after imports. Figures also go to bench/out/render.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from spinebench.decode import RenderSettings
from spinebench.quality import QUALITY_COLUMNS
from spinebench.render import RenderedImage, render_image
from spinebench.synth import buu, vindr
from spinebench.synth.dicom import DX_IMAGE_STORAGE_FOR_PRESENTATION, XrayImage, xray_bytes

REPO = Path(__file__).resolve().parents[1]
SEED = 20251014
# Quality metric name -> the subset threshold key that applies to it.
THRESHOLDS = {
    "variance": "min_variance",
    "laplacian_variance": "min_laplacian_variance",
    "contrast": "min_contrast",
}


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--params", type=Path, default=REPO / "params.yaml")
    parser.add_argument("--films", type=int, default=12, help="films per codec")
    parser.add_argument("--repeat", type=int, default=2, help="runs per film and path (best is kept)")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "out" / "render.json")
    parser.add_argument("--skip-memory", action="store_true", help="skip the 3,000-pixel memory runs")
    return parser.parse_args(argv)


def vindr_films(count: int) -> list[tuple[str, bytes]]:
    """(member name, DICOM bytes) of `count` VinDr-like films past the fixed recipes (JPEG 2000)."""
    plans = vindr.plan_films(SEED, len(vindr.FIXED_FILMS) + count)[len(vindr.FIXED_FILMS) :]
    return [(f"{plan.image_id}.dicom", vindr.render_film(SEED, plan, "realistic").dicom) for plan in plans]


def buu_films(count: int) -> list[tuple[str, bytes]]:
    """(member name, JPEG bytes) of `count` BUU-like films (AP and LA views alternate)."""
    cases = buu.plan_cases(SEED, (count + 1) // 2)
    films = []
    for case in cases:
        for view, suffix in (("AP", "Y0"), ("LA", "Y1")):
            jpeg, _ = buu.render_view(SEED, case, view, "realistic")
            films.append((f"{case.stem}{suffix}.jpg", jpeg))
    return films[:count]


def best_render(
    data: bytes, member: str, settings: RenderSettings, repeat: int
) -> tuple[RenderedImage, float]:
    """The rendered image and the best wall time of `repeat` renders."""
    times, rendered = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        rendered = render_image(data, member, "X-ray", settings)
        times.append(time.perf_counter() - started)
    return rendered, min(times)


def grey_levels(image: RenderedImage) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(image.png)).convert("L"), dtype=np.int16)


def compare_paths(films, settings: RenderSettings, thresholds: dict, repeat: int) -> dict:
    """Speed and fidelity of reduced against full decoding over `films`."""
    full_settings = dataclasses.replace(settings, decode_resolution="full")
    reduced_settings = dataclasses.replace(settings, decode_resolution="reduced")
    full_time = reduced_time = 0.0
    max_diff, tail_diffs, mean_diffs = 0, [], []
    changes, crossings = {m: [] for m in QUALITY_COLUMNS}, dict.fromkeys(THRESHOLDS, 0)
    for member, data in films:
        full, seconds = best_render(data, member, full_settings, repeat)
        full_time += seconds
        reduced, seconds = best_render(data, member, reduced_settings, repeat)
        reduced_time += seconds
        difference = np.abs(grey_levels(full) - grey_levels(reduced))
        max_diff = max(max_diff, int(difference.max()))
        tail_diffs.append(float(np.percentile(difference, 99.9)))
        mean_diffs.append(float(difference.mean()))
        for metric, key in THRESHOLDS.items():
            before, after = full.quality[metric], reduced.quality[metric]
            changes[metric].append((after - before) / before if before else 0.0)
            crossings[metric] += (before >= thresholds[key]) != (after >= thresholds[key])
    return {
        "films": len(films),
        "full_films_per_s": len(films) / full_time,
        "reduced_films_per_s": len(films) / reduced_time,
        "speedup": full_time / reduced_time,
        "max_abs_grey_difference": max_diff,
        "worst_film_p999_abs_grey_difference": max(tail_diffs),
        "mean_abs_grey_difference": statistics.fmean(mean_diffs),
        "worst_film_mean_abs_grey_difference": max(mean_diffs),
        "median_relative_change": {metric: statistics.median(values) for metric, values in changes.items()},
        "films_crossing_a_threshold": crossings,
    }


def windowing_contrast(films, settings: RenderSettings) -> dict:
    """RMS contrast of the DICOM films under each X-ray windowing (reduced decoding)."""
    contrast = {}
    for windowing in ("dicom", "percentile"):
        chosen = dataclasses.replace(settings, xray_windowing=windowing, decode_resolution="reduced")
        values = [render_image(data, member, "X-ray", chosen).quality["contrast"] for member, data in films]
        contrast[windowing] = {"min": min(values), "median": statistics.median(values), "max": max(values)}
    return contrast


MEMORY_PROBE = """
import sys
from pathlib import Path
from spinebench.decode import RenderSettings
from spinebench.render import render_image
def status(field):
    return int(next(line for line in open("/proc/self/status") if line.startswith(field)).split()[1])
data, warm_up = Path(sys.argv[1]).read_bytes(), Path(sys.argv[3]).read_bytes()
settings = RenderSettings(512, (1.0, 99.0), "percentile", (0.5, 99.5), sys.argv[2])
render_image(warm_up, "small.dicom", "X-ray", settings)  # lazy imports of the decoders happen here
open("/proc/self/clear_refs", "w").write("5")  # reset the peak (VmHWM) to the current RSS
current = status("VmRSS:")
render_image(data, "film.dicom", "X-ray", settings)
print(current, status("VmHWM:"))
"""


def ramp_film(side: int, jpeg2000: bool) -> bytes:
    """A side x side 12-bit MONOCHROME2 radiograph (a noisy ramp), uncompressed or JPEG 2000 lossless."""
    rows = np.linspace(0.0, 1.0, side, dtype=np.float32)[:, None]
    noise = np.random.default_rng(0).normal(0.0, 0.01, (side, side)).astype(np.float32)
    pixels = np.rint(np.clip(0.2 + 0.6 * rows + noise, 0.0, 1.0) * 4095).astype(np.uint16)
    header = XrayImage(
        "1.2.3",
        "1.2.3.1",
        "1.2.3.2",
        DX_IMAGE_STORAGE_FOR_PRESENTATION,
        "MONOCHROME2",
        0.14,
        2047.5,
        4095,
        "F",
    )
    return xray_bytes(pixels, header, jpeg2000=jpeg2000)


def render_memory() -> dict:
    """Peak RSS (MiB) of a fresh process rendering a 3,000 x 3,000 16-bit film, and that peak's growth over
    the RSS just before rendering (imports, the file's bytes, a warm-up render of a 1,100-pixel film of the
    same codec), per codec and decoding path (Linux)."""
    figures = {}
    with tempfile.TemporaryDirectory() as folder:
        for codec in ("uncompressed", "jpeg2000"):
            path, small = Path(folder) / f"{codec}.dicom", Path(folder) / f"{codec}-small.dicom"
            path.write_bytes(ramp_film(3000, jpeg2000=codec == "jpeg2000"))
            small.write_bytes(ramp_film(1100, jpeg2000=codec == "jpeg2000"))
            for resolution in ("full", "reduced"):
                result = subprocess.run(
                    [sys.executable, "-c", MEMORY_PROBE, str(path), resolution, str(small)],
                    capture_output=True,
                    text=True,
                    check=True,
                    cwd=REPO,
                )
                before, after = (int(value) for value in result.stdout.split())
                figures[f"{codec}/{resolution}"] = {
                    "peak_rss_mib": after / 1024,
                    "growth_mib": (after - before) / 1024,
                }
    return figures


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    params = yaml.safe_load(args.params.read_text())
    settings = RenderSettings.from_params(params["render"])
    thresholds = params["subset"]
    started = time.perf_counter()
    films = {"VinDr JPEG 2000": vindr_films(args.films), "BUU JPEG": buu_films(args.films)}
    print(
        f"generated {sum(map(len, films.values()))} realistic films in {time.perf_counter() - started:.0f} s"
    )
    report = {"settings": dataclasses.asdict(settings), "codecs": {}}
    for codec, codec_films in films.items():
        figures = compare_paths(codec_films, settings, thresholds, args.repeat)
        report["codecs"][codec] = figures
        print(
            f"{codec}: {figures['films']} films, full {figures['full_films_per_s']:.2f} films/s, "
            f"reduced {figures['reduced_films_per_s']:.2f} films/s, speed-up {figures['speedup']:.1f}x"
        )
        print(
            f"  reduced vs full PNG: max |diff| {figures['max_abs_grey_difference']} grey levels, "
            f"mean |diff| {figures['mean_abs_grey_difference']:.3f} "
            f"(worst film {figures['worst_film_mean_abs_grey_difference']:.3f})"
        )
        for metric, change in figures["median_relative_change"].items():
            print(
                f"  {metric}: median change {change:+.1%}, "
                f"{figures['films_crossing_a_threshold'][metric]} film(s) cross subset.{THRESHOLDS[metric]}"
            )
    report["windowing_contrast"] = windowing_contrast(films["VinDr JPEG 2000"], settings)
    for windowing, contrast in report["windowing_contrast"].items():
        print(
            f"VinDr RMS contrast, xray_windowing {windowing}: "
            f"{contrast['min']:.3f}-{contrast['max']:.3f} (median {contrast['median']:.3f})"
        )
    if not args.skip_memory:
        report["memory_3000px_16bit"] = render_memory()
        for case, memory in report["memory_3000px_16bit"].items():
            print(
                f"3000x3000 16-bit {case}: peak RSS {memory['peak_rss_mib']:.0f} MiB "
                f"(+{memory['growth_mib']:.0f} MiB while rendering)"
            )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out.relative_to(REPO) if args.out.is_relative_to(REPO) else args.out}")


if __name__ == "__main__":
    main(sys.argv[1:])
