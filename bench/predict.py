"""Throughput of the OpenAI-compatible backend against a local server with a fixed latency.

    .venv/bin/python bench/predict.py                          # 400 items at concurrency 16 and 64, 50 ms
    .venv/bin/python bench/predict.py --items 1000 --concurrency 8 32 128 --latency 0.1
    .venv/bin/python bench/predict.py --transformers           # also a tiny random LLaVA (GPU when present)
    .venv/bin/python bench/predict.py --transformers --torch-dtype bfloat16   # on a GPU

The fault server (tests/fault_server.py, no faults injected) runs in its own process so that its work does
not compete with the client for the GIL; every request carries a PNG of --image-side pixels as a base64
data URL. Two figures per concurrency C: the backend alone, and the full resumable runner (prompt
rendering, image loading from a shard, JSONL append + fsync). The ideal is C / latency items per second;
the ratio says how close the client gets to it (with N items the rounds bound it by (N/C) / ceil(N/C)).
"""

from __future__ import annotations

import argparse
import io
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # tests.fault_server and the tiny model builder live in the test helpers

from spinebench.backends import Item, make_backend  # noqa: E402
from spinebench.benchmark_images import ShardImages  # noqa: E402
from spinebench.io import write_table  # noqa: E402
from spinebench.predict import model_fingerprint, run_predictions  # noqa: E402

OPTIONS = ["Healthy", "Osteophytes", "Spondylolisthesis", "Vertebral collapse", "Cervical kyphosis"]


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--items", type=int, default=400)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--latency", type=float, default=0.05, help="server latency per request, seconds")
    parser.add_argument("--image-side", type=int, default=128, help="side of the (noise) PNG sent per item")
    parser.add_argument("--transformers", action="store_true", help="also time a tiny random local LLaVA")
    parser.add_argument("--skip-openai", action="store_true", help="time the transformers backend alone")
    parser.add_argument(
        "--torch-dtype",
        default="float32",
        choices=("auto", "float32", "float16", "bfloat16"),
        help="the transformers model's dtype (bfloat16 on a GPU)",
    )
    return parser.parse_args(argv)


def noise_png(side: int, seed: int = 0) -> bytes:
    """A PNG that does not compress away, like a real radiograph."""
    pixels = np.random.default_rng(seed).integers(0, 256, size=(side, side, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def start_server(latency: float) -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.fault_server", "--latency", str(latency)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    base_url = process.stdout.readline().strip()
    if not base_url.startswith("http://127.0.0.1:"):
        process.kill()
        raise RuntimeError(f"fault server did not start: {base_url!r}")
    return process, base_url


def backend_for(base_url: str, concurrency: int, latency: float):
    return make_backend(
        "bench",
        {
            "backend": "openai",
            "base_url": base_url,
            "model": "bench-vlm",
            "concurrency": concurrency,
            "timeout_s": max(10.0, 20 * latency),
            "max_retries": 0,  # a failure must show, not be hidden by a retry
        },
    )


def time_backend(base_url: str, concurrency: int, latency: float, count: int, png: bytes) -> float:
    """Seconds for the backend alone to answer `count` items."""
    options = dict(zip("ABCDE", OPTIONS, strict=True))
    batch = [
        Item(f"q{i:05d}", f"img{i:05d}", "diagnosis", f"Question [[q{i:05d}]]", options, png)
        for i in range(count)
    ]
    results = []
    started = time.perf_counter()
    backend_for(base_url, concurrency, latency).run(batch, results.append)
    elapsed = time.perf_counter() - started
    failed = [r for r in results if not r.ok]
    if len(results) != count or failed:
        raise RuntimeError(f"{len(failed)} of {len(results)} requests failed, e.g. {failed[:1]}")
    return elapsed


def write_benchmark(folder: Path, count: int, png: bytes) -> tuple[pd.DataFrame, ShardImages]:
    """Questions and one image shard in the benchmark's table layout."""
    image_ids = [f"rsna-img{i:05d}" for i in range(count)]
    questions = pd.DataFrame(
        {
            "question_id": [f"dx-{image_id}" for image_id in image_ids],
            "image_id": image_ids,
            "question": [f"Which disease does [[dx-{image_id}]] show" for image_id in image_ids],
            **{f"option_{letter}": [option] * count for letter, option in zip("abcde", OPTIONS, strict=True)},
        }
    )
    shard = folder / "images" / "rsna" / "000.parquet"
    write_table(pd.DataFrame({"image_id": image_ids, "png": [png] * count}), shard)
    catalog = pd.DataFrame({"image_id": image_ids, "source": "rsna", "shard": "000"})
    return questions, ShardImages(catalog, [shard])


def time_runner(base_url: str, concurrency: int, latency: float, questions, images, folder: Path) -> float:
    """Seconds for run_predictions (prompts, images, JSONL) on a fresh working file."""
    backend = backend_for(base_url, concurrency, latency)
    jsonl = folder / f"runner-{concurrency}.jsonl"
    jsonl.unlink(missing_ok=True)
    started = time.perf_counter()
    summary = run_predictions(
        questions, images, backend, jsonl, model_fingerprint(backend), task="diagnosis", definitions=False
    )
    elapsed = time.perf_counter() - started
    if summary.succeeded != len(questions):
        raise RuntimeError(f"runner: {summary}")
    return elapsed


def report(label: str, count: int, elapsed: float, concurrency: int, latency: float) -> None:
    ideal = concurrency / latency
    rate = count / elapsed
    rounds_bound = (count / concurrency) / math.ceil(count / concurrency)
    print(
        f"{label:<8} C={concurrency:<4} {count} items in {elapsed:6.3f} s: {rate:8.1f} items/s; "
        f"ideal {ideal:7.1f}/s; ratio {rate / ideal:5.3f} (round-limited bound {rounds_bound:.3f})"
    )


def bench_openai(args: argparse.Namespace) -> None:
    png = noise_png(args.image_side)
    print(f"server latency {args.latency * 1000:.0f} ms; PNG of {len(png) / 1024:.1f} KiB per request")
    server, base_url = start_server(args.latency)
    try:
        time_backend(base_url, 4, args.latency, 8, png)  # warm-up: imports, first connections
        with tempfile.TemporaryDirectory() as tmp:
            questions, images = write_benchmark(Path(tmp), args.items, png)
            for concurrency in args.concurrency:
                elapsed = time_backend(base_url, concurrency, args.latency, args.items, png)
                report("backend", args.items, elapsed, concurrency, args.latency)
                elapsed = time_runner(base_url, concurrency, args.latency, questions, images, Path(tmp))
                report("runner", args.items, elapsed, concurrency, args.latency)
    finally:
        server.terminate()
        server.wait()


def bench_transformers(args: argparse.Namespace) -> None:
    """Items/s of the transformers backend (prompt, image decoding, generation, decoding) against the
    model-only rate (generate() on inputs prepared beforehand) measured in the same run."""
    import torch

    from tests.test_transformers_backend import build_tiny_llava

    options = dict(zip("ABCDE", OPTIONS, strict=True))
    png = noise_png(args.image_side)
    with tempfile.TemporaryDirectory() as tmp:
        build_tiny_llava(tmp)
        for batch_size in (1, 8, 32):
            backend = make_backend(
                "tiny-llava",
                {
                    "backend": "transformers",
                    "path": tmp,
                    "batch_size": batch_size,
                    "max_new_tokens": 32,
                    "torch_dtype": args.torch_dtype,
                },
            )
            backend.load()
            count = min(args.items, 128)
            batch = [
                Item(f"q{i}", f"img{i}", "diagnosis", f"Question {i}", options, png) for i in range(count)
            ]
            results = []
            started = time.perf_counter()
            backend.run(batch[:batch_size], results.append)  # warm-up: first kernels of these shapes
            first_batch_s = time.perf_counter() - started
            started = time.perf_counter()
            backend.run(batch, results.append)
            elapsed = time.perf_counter() - started
            prepare_s, model_only, decode_s = model_only_rate(backend, batch, batch_size)
            device = torch.cuda.get_device_name() if backend.device.startswith("cuda") else "CPU"
            print(
                f"transformers tiny LLaVA on {device} ({args.torch_dtype}), batch {batch_size:>2}, 32 new "
                f"tokens: {count / elapsed:.1f} items/s through the backend, {model_only:.1f} items/s "
                f"model only ({count / elapsed / model_only:.0%}); preparing the inputs (chat template, "
                f"PNG decoding, {type(backend._processor.image_processor).__name__}) took {prepare_s:.2f} s "
                f"and decoding the answers {decode_s:.2f} s of the backend's {elapsed:.2f} s (first, warm-up "
                f"batch: {first_batch_s:.2f} s)"
            )
            backend.close()


def model_only_rate(backend, items: list, batch_size: int) -> tuple[float, float, float]:
    """(seconds to prepare the processor's inputs for `items`, items/s of generate() alone on them, seconds
    to decode the generated tokens to text): the backend's three steps, timed apart."""
    import torch

    from spinebench.backends.transformers_local import _decode_image, chat_messages

    processor, model = backend._processor, backend._model
    prepared = []
    started = time.perf_counter()
    for first in range(0, len(items), batch_size):
        chunk = items[first : first + batch_size]
        texts = [
            processor.apply_chat_template(chat_messages(item), add_generation_prompt=True, tokenize=False)
            for item in chunk
        ]
        images = [[_decode_image(item)] for item in chunk]
        inputs = processor(text=texts, images=images, return_tensors="pt", padding=True).to(backend.device)
        for key, value in inputs.items():
            if torch.is_floating_point(value):
                inputs[key] = value.to(model.dtype)
        prepared.append(inputs)
    if backend.device.startswith("cuda"):
        torch.cuda.synchronize()
    prepare_s = time.perf_counter() - started
    outputs = []
    started = time.perf_counter()
    with torch.inference_mode():
        for inputs in prepared:
            outputs.append(model.generate(**inputs, max_new_tokens=backend.max_new_tokens, do_sample=False))
        for output in outputs:
            output.cpu()  # the backend reads every answer back; so does this
    generate_s = time.perf_counter() - started
    started = time.perf_counter()
    for inputs, output in zip(prepared, outputs, strict=True):
        processor.batch_decode(output[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    return prepare_s, len(items) / generate_s, time.perf_counter() - started


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    if not args.skip_openai:
        bench_openai(args)
    if args.transformers:
        bench_transformers(args)


if __name__ == "__main__":
    main(sys.argv[1:])
