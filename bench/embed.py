"""Print rendering and embedding throughput (images/s) on this machine.

    .venv/bin/python bench/embed.py                                   # params.yaml settings (tiny encoder)
    .venv/bin/python bench/embed.py --architecture ViT-B-16-SigLIP2   # the real architecture, random init
    .venv/bin/python bench/embed.py --images 50 --threads 1
    .venv/bin/python bench/embed.py --architecture ViT-B-16-SigLIP2 --dtype bfloat16   # on a GPU

Rendering is timed on in-memory source images of typical size, one format at a time (decode, window,
downscale, quality metrics, PNG encoding): MR slices as uncompressed 16-bit DICOM, radiographs as JPEG 2000
lossless DICOM (VinDr's transfer syntax) and as 8-bit JPEG (BUU). Embedding is timed on the rendered PNGs
(PNG decoding and preprocessing included), after one warm-up batch. A random-init model runs exactly as
fast as a trained one, so `--architecture ViT-B-16-SigLIP2` measures the production encoder without weights.
"""

from __future__ import annotations

import argparse
import copy
import io
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless, generate_uid

from spinebench.embed import load_encoder, native_image_size
from spinebench.render import render_rows

REPO = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--params", type=Path, default=REPO / "params.yaml")
    parser.add_argument("--architecture", help="open_clip architecture (default: params embed.architecture)")
    parser.add_argument("--image-size", type=int, help="default: the architecture's native input size")
    parser.add_argument("--batch-size", type=int, help="default: params embed.batch_size")
    parser.add_argument(
        "--images", type=int, default=100, help="images per rendering format and for embedding"
    )
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch CPU threads")
    parser.add_argument(
        "--dtype",
        default="bfloat16",
        choices=("float32", "bfloat16", "float16"),
        help="autocast dtype of the extra encoder-only timing (bf16 is the GPU path)",
    )
    parser.add_argument("--skip-render", action="store_true")
    parser.add_argument("--skip-embed", action="store_true")
    return parser.parse_args(argv)


def synthetic_slice(height: int, width: int, seed: int, top: int) -> np.ndarray:
    """A smooth anatomy-like pattern with sensor noise, values 0..top (realistic PNG/JPEG compressibility)."""
    rows, columns = np.mgrid[0:height, 0:width]
    pattern = np.sin(columns / (width / 9.0)) * np.cos(rows / (height / 7.0)) + 0.5 * np.sin(
        (rows + columns) / 23.0
    )
    noise = np.random.default_rng(seed).normal(0.0, 0.08, size=(height, width))
    return np.clip((pattern + noise + 1.6) / 3.2 * top, 0, top)


def dicom(pixels: np.ndarray, syntax: str) -> bytes:
    """A 16-bit grey DICOM file of `pixels` in the given transfer syntax."""
    dataset = Dataset()
    dataset.file_meta = FileMetaDataset()
    dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.4"
    dataset.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    dataset.SOPClassUID = dataset.file_meta.MediaStorageSOPClassUID
    dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID
    dataset.Rows, dataset.Columns = pixels.shape
    dataset.SamplesPerPixel, dataset.PhotometricInterpretation = 1, "MONOCHROME2"
    dataset.BitsAllocated, dataset.BitsStored, dataset.HighBit, dataset.PixelRepresentation = 16, 12, 11, 0
    dataset.PixelData = pixels.astype(np.uint16).tobytes()
    if syntax != ExplicitVRLittleEndian:
        dataset.compress(syntax, pixels.astype(np.uint16))
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def jpeg(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


# Formats to time: (label, modality, member suffix, encoder of one seeded image).
RENDER_CASES = (
    (
        "MR DICOM 512x512, uncompressed",
        "MRI",
        ".dcm",
        lambda s: dicom(synthetic_slice(512, 512, s, 4095), ExplicitVRLittleEndian),
    ),
    (
        "X-ray DICOM 512x640, JPEG 2000 lossless",
        "X-ray",
        ".dicom",
        lambda s: dicom(synthetic_slice(640, 512, s, 4095), JPEG2000Lossless),
    ),
    ("X-ray JPEG 640x480, 8-bit", "X-ray", ".jpg", lambda s: jpeg(synthetic_slice(480, 640, s, 255))),
)


def bench_render(count: int, settings: dict, report: bool = True) -> list[bytes]:
    """Print rendering images/s per format (if `report`); return the PNGs (input for the embedding bench)."""
    pngs: list[bytes] = []
    for label, modality, suffix, make in RENDER_CASES:
        members = {f"image{index:05d}{suffix}": make(index) for index in range(count)}
        rows = pd.DataFrame({"image_id": list(members), "member": list(members), "modality": modality})
        reader = type("MemoryArchive", (), {"read": staticmethod(members.__getitem__)})
        start = time.perf_counter()
        images, rejected = render_rows(rows, reader, "bench", settings)
        elapsed = time.perf_counter() - start
        assert rejected.empty, rejected
        size = f"{images['width'].iloc[0]}x{images['height'].iloc[0]}"
        if report:
            print(f"render  {label:<42} {count / elapsed:8.1f} images/s  (1 process, PNG {size})")
        pngs.extend(images["png"])
    return pngs


def bench_embed(pngs: list[bytes], settings: dict, seed: int, threads: int, dtype: str = "float32") -> None:
    """Print embedding images/s for the configured encoder (random init when no checkpoint), then the
    encoder-only rates (forward passes on tensors prepared beforehand) in float32 and in `dtype`."""
    start = time.perf_counter()
    encoder = load_encoder(settings, seed, threads=threads)
    loaded = time.perf_counter() - start
    encoder.embed_pngs(pngs[: settings["batch_size"]])  # warm-up: first-call allocations and kernel choice
    start = time.perf_counter()
    encoder.embed_pngs(pngs)
    elapsed = time.perf_counter() - start
    weights = settings["checkpoint"] or "random init"
    setup = f"{weights}, {settings['image_size']} px, batch {settings['batch_size']}, {encoder.device}"
    print(
        f"embed   {settings['architecture']} ({setup}, {threads} thread(s)): "
        f"{len(pngs) / elapsed:8.1f} images/s (model load {loaded:.1f} s)"
    )
    batched = batched_forward_rate(encoder, pngs)
    print(
        f"embed   the same images in batched forward passes: {batched:8.1f} images/s (what running each "
        f"image alone, for store-invariant embeddings, costs against it; docs/caching.md)"
    )
    print_embedding_stability(encoder, pngs)
    for name in dict.fromkeys(("float32", dtype)):
        alone, together = encoder_only_rates(encoder, len(pngs), getattr(torch, name))
        print(
            f"embed   encoder only ({name}, no PNG decoding or preprocessing): {alone:8.1f} images/s one "
            f"at a time, {together:8.1f} images/s batched; the pipeline reaches "
            f"{len(pngs) / elapsed / alone:.0%} of the one-at-a-time rate"
        )


def print_embedding_stability(encoder, pngs: list[bytes], cpu_sample: int = 32) -> None:
    """Print whether the pipeline's embeddings are bit-identical when the same images come in another order
    (what lets the store serve an image's embedding to any shard), and on a GPU how far they are from the
    CPU's (why store keys carry the device kind)."""
    first = encoder.embed_pngs(pngs)
    reordered = encoder.embed_pngs(pngs[::-1])[::-1]
    print(f"embed   same images in reverse order on {encoder.device}: {difference(first, reordered)}")
    if encoder.device.type != "cpu":
        on_cpu = replace(encoder, visual=copy.deepcopy(encoder.visual).cpu(), device=torch.device("cpu"))
        sample = pngs[:cpu_sample]
        against = difference(first[: len(sample)], on_cpu.embed_pngs(sample))
        print(f"embed   {len(sample)} images, {encoder.device} against cpu: {against}")
    batched = fixed_batch_embeddings(encoder, pngs, order=np.arange(len(pngs)))
    shuffled = fixed_batch_embeddings(encoder, pngs, order=np.random.default_rng(0).permutation(len(pngs)))
    print(
        f"embed   batches of exactly {encoder.batch_size} (last one padded), shuffled against in order: "
        f"{difference(batched, shuffled)}; against one image per pass: {difference(batched, first)}"
    )


def fixed_batch_embeddings(encoder, pngs: list[bytes], order: np.ndarray) -> np.ndarray:
    """Embeddings of `pngs` (in their own order) computed in forward passes of exactly `batch_size` images
    taken in `order`: would a padded fixed-shape batch give each image the same bits wherever it sits?"""
    size = encoder.batch_size
    tensors = [encoder.preprocess(Image.open(io.BytesIO(pngs[index])).convert("RGB")) for index in order]
    tensors += tensors[:1] * (-len(tensors) % size)
    rows = []
    with torch.inference_mode():
        for first in range(0, len(tensors), size):
            features = encoder.visual(torch.stack(tensors[first : first + size]).to(encoder.device))
            rows.append(torch.nn.functional.normalize(features.float(), dim=-1).cpu().numpy())
    embeddings = np.concatenate(rows)[: len(order)]
    result = np.empty_like(embeddings)
    result[order] = embeddings
    return result


def difference(left: np.ndarray, right: np.ndarray) -> str:
    """'bit-identical', or the largest absolute difference and the lowest cosine similarity of two sets of
    L2-normalised embeddings."""
    if np.array_equal(left, right):
        return "bit-identical"
    cosine = np.sum(left.astype(np.float64) * right, axis=1).min()
    return f"differ: max |difference| {np.abs(left - right).max():.2e}, lowest cosine {cosine:.8f}"


def batched_forward_rate(encoder, pngs: list[bytes]) -> float:
    """Images/s when whole batches go through the encoder at once (decoding and preprocessing included)."""
    start = time.perf_counter()
    for first in range(0, len(pngs), encoder.batch_size):
        batch = [
            encoder.preprocess(Image.open(io.BytesIO(png)).convert("RGB"))
            for png in pngs[first : first + encoder.batch_size]
        ]
        with torch.inference_mode():
            encoder.visual(torch.stack(batch).to(encoder.device))
    return len(pngs) / (time.perf_counter() - start)


def encoder_only_rates(encoder, count: int, dtype: torch.dtype) -> tuple[float, float]:
    """(images/s one image per forward pass, images/s in batches) of the visual encoder alone, on random
    inputs of its size prepared beforehand, under autocast to `dtype` (float32: no autocast)."""
    shape = encoder.preprocess(Image.new("RGB", (64, 64))).shape  # (3, side, side) of this encoder
    inputs = torch.randn(count, *shape).to(encoder.device)
    autocast = torch.autocast(encoder.device.type, dtype=dtype, enabled=dtype != torch.float32)
    rates = []
    for step in (1, encoder.batch_size):
        with torch.inference_mode(), autocast:
            encoder.visual(inputs[:step])  # warm-up of this shape
            started = time.perf_counter()
            for first in range(0, count, step):
                encoder.visual(inputs[first : first + step])
            if encoder.device.type == "cuda":
                torch.cuda.synchronize()
        rates.append(count / (time.perf_counter() - started))
    return rates[0], rates[1]


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    params = yaml.safe_load(args.params.read_text())
    pngs = bench_render(args.images, params["render"]) if not args.skip_render else []
    if args.skip_embed:
        return
    settings = {key: value for key, value in params["embed"].items() if key != "encoder"}
    if args.architecture:
        settings["architecture"], settings["checkpoint"] = args.architecture, None
        settings["image_size"] = args.image_size or native_image_size(args.architecture)
    elif args.image_size:
        settings["image_size"] = args.image_size
    if args.batch_size:
        settings["batch_size"] = args.batch_size
    if not pngs:
        pngs = bench_render(max(1, -(-args.images // len(RENDER_CASES))), params["render"], report=False)
    bench_embed(pngs[: args.images], settings, int(params["seeds"]["encoder"]), args.threads, args.dtype)


if __name__ == "__main__":
    main(sys.argv[1:])
