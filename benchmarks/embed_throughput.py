"""Embedding throughput: plain timm eager inference (the baseline) against raregal's embedding paths.

Every way is timed in the same run on the same images, **decoding and preprocessing included**
(JPEG decode, scale to 0..1, antialiased resize to 224 px, model forward, copy to NumPy). The
baseline is what one writes first: a single process that decodes a batch with Pillow and
torchvision, then runs the timm model eagerly in float32. raregal's ways go through
:func:`raregal.embedding.local.embed_chunk` (a DataLoader with decoding workers) and one of the runtimes of
:mod:`raregal.encoder.runtime`. For each way the script reports images/s, the speed-up over
the baseline, and the smallest per-galaxy cosine similarity to the baseline's representation.
The baseline is run first and again last, so that a machine whose load changed shows it.

Weights are random (the speed and the agreement with the baseline do not depend on them).

    python benchmarks/embed_throughput.py --n-images 64                 # quick, CPU
    python benchmarks/embed_throughput.py --device cuda --n-images 8192  # GPU (benchmarks/gpu_check.sh)

Results go to ``benchmarks/results/embed_throughput_<device>.json`` (or ``--out``).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

CPU_WAYS = ["torch_cl", "onnx_w0", "onnx_w1", "onnx_w2", "onnx_w1_u8", "auto_w1"]
GPU_WAYS = ["torch_bf16_u8", "torch_fp16_u8", "torch_bf16"]


def make_images(folder: Path, n: int, size: int = 424, seed: int = 0, unique: int = 1024) -> pd.DataFrame:
    """A catalog of ``n`` JPEG cutouts of ``size`` px (DESI/DECaLS cutouts are 424 px JPEGs).

    At most ``unique`` files are drawn (raregal's probe galaxies: smooth blobs on a noisy sky) and
    the catalog cycles through them under distinct ids, so large GPU runs do not spend minutes
    drawing images; every row is still read and decoded from its file.
    """
    from PIL import Image

    from raregal.encoder.runtime import probe_images

    rows = []
    for i in range(min(n, unique)):
        img = probe_images(3, size, n=1, seed=seed + i)[0].transpose(1, 2, 0)  # one at a time: bounded memory
        path = folder / f"g{i:06d}.jpg"
        Image.fromarray((img * 255).round().astype(np.uint8)).save(path, quality=90)
        rows.append(str(path))
    return pd.DataFrame({"id_str": [f"g{i:07d}" for i in range(n)], "file_loc": [rows[i % len(rows)] for i in range(n)]})


class TimedRunner:
    """Wraps a runner to time the steady state: images per second after the first batch came out.

    The wall-clock rate includes starting the decoding workers (a few seconds, paid once per run,
    large against a short GPU benchmark); the steady rate does not.
    """

    def __init__(self, runner):
        self.runner, self.stamps = runner, []
        self.representation_dim = runner.representation_dim
        self.backend = runner.backend

    def __call__(self, x):
        out = self.runner(x)
        self.stamps.append((time.perf_counter(), len(x)))
        return out

    def steady_rate(self) -> float | None:
        if len(self.stamps) < 3:
            return None
        (t_first, _), (t_last, _) = self.stamps[0], self.stamps[-1]
        return sum(n for _, n in self.stamps[1:]) / (t_last - t_first)


def baseline(model, files: list[str], batch_size: int, device: str) -> np.ndarray:
    """Plain timm eager inference: Pillow decode + torchvision transforms in one process, float32."""
    from PIL import Image
    from torchvision.transforms import v2 as T

    size = model.config.input_size
    transform = T.Compose([T.PILToTensor(), T.ToDtype(torch.float32, scale=True), T.Resize([size, size], antialias=True)])
    out = []
    with torch.no_grad():
        for s in range(0, len(files), batch_size):
            x = torch.stack([transform(Image.open(f).convert("RGB")) for f in files[s:s + batch_size]])
            out.append(model.embed(x.to(device)).float().cpu().numpy())
    return np.concatenate(out)


def raregal_way(model, way: str, workers: int):
    """(runner, decoding workers, setup seconds) of raregal's path ``way``; setup = export/compile + warm-up.

    ``way`` is ``auto_w<K>`` (what ``raregal embed`` does by default on this device: backend and
    precision auto, K decoding workers), ``onnx_w<K>`` (ONNX Runtime fp32) or ``torch_<cl|bf16|fp16>``
    (PyTorch channels_last in fp32, or with autocast to bf16/fp16; ``workers`` decoding workers);
    a ``_u8`` suffix resizes the decoded pixels as uint8 (``ImageDataset(resize_uint8=True)``).
    """
    from raregal.encoder.runtime import make_runner

    way = way.removesuffix("_u8")
    backend, _, rest = way.partition("_")
    if backend == "auto":
        runner_args, n_workers = ("auto", "auto"), int(rest[1:])
    elif backend == "onnx":
        runner_args, n_workers = ("onnx", "fp32"), int(rest[1:])
    else:
        precision = {"cl": "fp32"}.get(rest, rest)
        runner_args, n_workers = ("torch", precision), workers
    t0 = time.perf_counter()
    runner = make_runner(model, *runner_args)
    runner(torch.rand(2, model.config.channels, model.config.input_size, model.config.input_size))  # warm
    setup = time.perf_counter() - t0
    return runner, n_workers, setup


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n-images", type=int, default=256)
    p.add_argument("--archs", nargs="+", default=["efficientnet_b0", "maxvit_tiny_rw_224"])
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=int, default=None, help="default 32 on CPU, 256 on CUDA")
    p.add_argument("--workers", type=int, default=None,
                   help="decoding processes for the torch ways (default: 2 on CPU, cores - 1 on CUDA)")
    p.add_argument("--baseline-images", type=int, default=None,
                   help="run the (slow) baseline on the first N images only (default: all); cosines use these")
    p.add_argument("--ways", nargs="+", default=None, help=f"CPU: {CPU_WAYS}; CUDA: {GPU_WAYS}")
    p.add_argument("--images", help="reuse this folder of generated JPEGs")
    p.add_argument("--out", help="result JSON (default benchmarks/results/embed_throughput_<device>.json)")
    args = p.parse_args(argv)

    from raregal.embedding.local import embed_chunk
    from raregal.encoder import EncoderConfig, GalaxyEncoder

    cuda = args.device.startswith("cuda")
    batch_size = args.batch_size or (256 if cuda else 32)
    workers = args.workers if args.workers is not None else (max(1, min(16, (os.cpu_count() or 2) - 1)) if cuda else 2)
    ways = args.ways or (GPU_WAYS if cuda else CPU_WAYS)
    if cuda:
        torch.backends.cudnn.benchmark = True
    tmp = None
    folder = Path(args.images) if args.images else Path(tmp := tempfile.mkdtemp(prefix="raregal_bench_"))
    t0 = time.perf_counter()
    existing = [str(f) for f in sorted(folder.glob("g*.jpg"))]
    catalog = make_images(folder, args.n_images) if not existing else pd.DataFrame(
        {"id_str": [f"g{i:07d}" for i in range(args.n_images)],
         "file_loc": [existing[i % len(existing)] for i in range(args.n_images)]})
    print(f"{len(catalog)} JPEG images (424 px; {catalog['file_loc'].nunique()} distinct files) in {folder}, "
          f"ready in {time.perf_counter() - t0:.1f} s; "
          f"{os.cpu_count()} CPU cores, torch {torch.__version__} with {torch.get_num_threads()} threads, "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)

    results = {"device": args.device, "n_images": len(catalog), "batch_size": batch_size, "cpu_count": os.cpu_count(),
               "torch_threads": torch.get_num_threads(), "load_average_start": os.getloadavg(), "python": sys.version,
               "torch": torch.__version__, "platform": platform.platform(),
               "gpu": torch.cuda.get_device_name() if cuda else None, "archs": {}}
    files = catalog["file_loc"].tolist()
    base_files = files[:args.baseline_images or len(files)]
    for arch in args.archs:
        torch.manual_seed(0)
        model = GalaxyEncoder(EncoderConfig(arch=arch, input_size=224)).eval().to(args.device)
        rows = []
        baseline(model, files[:batch_size], batch_size, args.device)  # warm-up (allocations, cuDNN choice)

        def timed_baseline(tag):
            if cuda:
                torch.cuda.synchronize()
            t = time.perf_counter()
            z = baseline(model, base_files, batch_size, args.device)
            if cuda:
                torch.cuda.synchronize()
            s = time.perf_counter() - t
            rows.append({"way": tag, "images_per_s": len(base_files) / s, "seconds": s, "setup_s": 0.0,
                         "workers": 0, "n_images": len(base_files)})
            print(f"  {arch:20s} {tag:14s} {len(base_files) / s:8.1f} img/s", flush=True)
            return z

        z_ref = timed_baseline("baseline")
        for way in ways:
            m = copy.deepcopy(model)
            runner, n_workers, setup = raregal_way(m, way, workers)
            runner = TimedRunner(runner)
            embed_chunk(m, catalog.head(batch_size), batch_size=batch_size, num_workers=0, runner=runner)  # warm-up
            runner.stamps.clear()
            t = time.perf_counter()
            table, skipped = embed_chunk(m, catalog, batch_size=batch_size, num_workers=n_workers, runner=runner,
                                         resize_uint8=way.endswith("_u8"))
            s = time.perf_counter() - t
            z = table[[c for c in table.columns if c.startswith("feat_")]].to_numpy(np.float64)[:len(base_files)]
            ref = z_ref.astype(np.float64)
            cos = (z * ref).sum(1) / (np.linalg.norm(z, axis=1) * np.linalg.norm(ref, axis=1))
            steady = runner.steady_rate()
            rows.append({"way": way, "images_per_s": len(files) / s, "steady_images_per_s": steady, "seconds": s,
                         "setup_s": setup, "workers": n_workers, "min_cosine": float(cos.min()),
                         "backend": runner.backend, "precision": getattr(runner.runner, "precision", None),
                         "n_images": len(files), "n_skipped": len(skipped)})
            print(f"  {arch:20s} {way:14s} {len(files) / s:8.1f} img/s  ({runner.backend} "
                  f"{getattr(runner.runner, 'precision', '')}, steady {steady or 0:.1f} img/s, setup "
                  f"{setup:.1f} s, {n_workers} decoding workers, min cosine {cos.min():.6f})", flush=True)
            del m, runner
        timed_baseline("baseline_again")
        base = np.mean([r["images_per_s"] for r in rows if r["way"].startswith("baseline")])
        for r in rows:
            r["speedup"] = r["images_per_s"] / base
        results["archs"][arch] = rows
    results["load_average_end"] = os.getloadavg()
    print("\nspeed-up over the mean of the two baseline runs:")
    for arch, rows in results["archs"].items():
        for r in rows:
            print(f"  {arch:20s} {r['way']:14s} {r['images_per_s']:8.1f} img/s  x{r['speedup']:.2f}"
                  + (f"  steady {r['steady_images_per_s']:.1f} img/s" if r.get("steady_images_per_s") else "")
                  + (f"  min cosine {r['min_cosine']:.6f}" if "min_cosine" in r else ""))
    out = Path(args.out or Path(__file__).parent / "results" / f"embed_throughput_{args.device.split(':')[0]}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=float) + "\n")
    print(f"results -> {out}")
    if tmp:
        import shutil

        shutil.rmtree(tmp)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
