"""Fast inference for a :class:`~raregal.encoder.GalaxyEncoder`: ONNX Runtime on CPU, mixed precision on GPU.

:func:`make_runner` turns a model into a callable ``images (B, C, H, W) -> (representation (B, D),
fractions (B, A) or None)`` as float32 NumPy arrays, using one of two backends:

* ``"onnx"``: the model exported once to ONNX (``torch.onnx.export``) and run by ONNX Runtime's
  CPU provider. On CPU this is the one that pays: on one quiet core, with decoding, 2.7× PyTorch
  eager for efficientnet_b0 and 1.5× for MaxViT Tiny, with representations equal to PyTorch's
  (cosine ≥ 0.999999; ``benchmarks/README.md``). ONNX Runtime is a core dependency; without it the torch path runs.
* ``"torch"``: PyTorch eager in ``inference_mode``, the model and images in ``channels_last``
  memory format (faster convolutions in oneDNN and cuDNN), and on CUDA an autocast to bf16 or
  fp16 (``precision``).

``backend="auto"`` picks ONNX Runtime for a CPU model when onnxruntime is installed and the
export succeeds, else PyTorch. ``precision="auto"`` is bf16 on CUDA (on a CPU without AMX bf16
was slower than fp32 here). On CPU it is ``int8`` for transformers and fp32 for CNNs:

* ``"int8"`` quantizes the weights of the graph's matrix products (MatMul/Gemm) to int8 with
  ONNX Runtime's dynamic quantization (activations are quantized per batch at run time). It
  pays where matrix products hold most of the weights, as in MaxViT (1.3× over fp32 ONNX,
  ``benchmarks/README.md``); a CNN's work is in convolutions, which it leaves in fp32. Before
  use, the quantized graph is checked against the fp32 graph on a fixed probe batch
  (:func:`probe_images`); if any probe galaxy's representation has cosine similarity below
  :data:`INT8_MIN_COSINE`, an explicit ``int8`` raises and ``auto`` stays in fp32. The probe is
  the same everywhere, so every Dask worker and every resumed run makes the same choice.

The Dirichlet head's fractions are computed from the concentrations outside the exported
graph, with :func:`fractions_from_concentrations`.
"""

from __future__ import annotations

import io
import logging
import time

import numpy as np
import torch

from raregal.encoder.dirichlet import fractions_from_concentrations

log = logging.getLogger("raregal")

BACKENDS = ("auto", "torch", "onnx")
PRECISIONS = ("auto", "fp32", "bf16", "fp16", "int8")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}

#: Smallest per-galaxy cosine similarity between int8 and fp32 representations that is accepted.
INT8_MIN_COSINE = 0.999
#: ``precision="auto"`` on CPU quantizes when at least this fraction of the weights feed MatMul/Gemm.
INT8_AUTO_MIN_MATMUL_FRACTION = 0.5


def onnx_available() -> bool:
    """True when ONNX Runtime can be imported."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


class _Outputs(torch.nn.Module):
    """The graph that is exported: images -> (representation, concentrations) (or representation alone)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        z = self.model.embed(x)
        if self.model.head is None:
            return (z,)
        return z, self.model.head(z)


def export_onnx(model, batch: int = 2) -> bytes:
    """``model`` (on CPU, eval mode) as ONNX bytes, batch dimension dynamic.

    Uses the TorchScript-based exporter (``dynamo=False``), which needs no extra packages and
    handles timm's CNNs and MaxViT.
    """
    import warnings

    size, channels = model.config.input_size, model.config.channels
    x = torch.rand(batch, channels, size, size)
    names = ["representation"] + (["concentrations"] if model.head is not None else [])
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the exporter's deprecation and tracer warnings
        torch.onnx.export(_Outputs(model).eval(), (x,), buf, input_names=["images"], output_names=names,
                          dynamic_axes={"images": {0: "batch"}, **{n: {0: "batch"} for n in names}},
                          opset_version=17, dynamo=False)
    return buf.getvalue()


def matmul_weight_fraction(graph: bytes) -> float:
    """Fraction of an ONNX graph's weight elements (initializers) that are inputs of MatMul/Gemm nodes."""
    import onnx

    proto = onnx.load_from_string(graph)
    sizes = {t.name: int(np.prod(t.dims)) for t in proto.graph.initializer}
    used = {name for node in proto.graph.node if node.op_type in ("MatMul", "Gemm") for name in node.input}
    total = sum(sizes.values())
    return sum(v for k, v in sizes.items() if k in used) / total if total else 0.0


def quantize_int8(graph: bytes) -> bytes:
    """``graph`` with its MatMul/Gemm weights quantized to int8 (ONNX Runtime dynamic quantization).

    Convolutions stay in fp32: dynamic int8 convolution (ConvInteger) was slower than fp32 here.
    """
    import tempfile
    from pathlib import Path

    from onnxruntime.quantization import QuantType, quantize_dynamic

    root, level = logging.getLogger(), logging.getLogger().level
    root.setLevel(max(level, logging.ERROR))  # it logs "consider pre-processing" advice on the root logger
    try:
        with tempfile.TemporaryDirectory(prefix="raregal_int8_") as tmp:
            src, dst = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
            src.write_bytes(graph)
            # reduce_range: 7-bit weights, so u8 x s8 products cannot saturate the 16-bit sums of
            # AVX2/AVX-512 kernels; with full 8-bit weights onnxruntime 1.32 kept test_maxvit's
            # representation only to cosine 0.859 on the probe batch, with 7 bits to 0.99987
            quantize_dynamic(src, dst, op_types_to_quantize=["MatMul", "Gemm"], weight_type=QuantType.QInt8,
                             reduce_range=True)
            return dst.read_bytes()
    finally:
        root.setLevel(level)


def probe_images(channels: int, size: int, n: int = 8, seed: int = 0) -> np.ndarray:
    """A fixed batch (n, channels, size, size) float32 in 0..1 of galaxy-like blobs on a noisy sky.

    Used to check a quantized graph against the fp32 one: the same everywhere, so the check's
    outcome depends only on the model.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / size - 0.5
    out = np.empty((n, channels, size, size), np.float32)
    for i in range(n):
        angle, q = rng.uniform(0, np.pi), rng.uniform(0.3, 1.0)
        u = (xx - rng.normal(0, 0.05)) * np.cos(angle) + (yy - rng.normal(0, 0.05)) * np.sin(angle)
        v = (yy * np.cos(angle) - xx * np.sin(angle)) / q
        blob = np.exp(-np.sqrt(u ** 2 + v ** 2) / rng.uniform(0.02, 0.12))
        colour = rng.uniform(0.4, 1.0, (channels, 1, 1))
        out[i] = np.clip(blob * colour + rng.normal(0.05, 0.03, (channels, size, size)), 0, 1)
    return out


def _min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64), b.astype(np.float64)
    return float(((a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-30)).min())


class OnnxRunner:
    """ONNX Runtime session of an exported encoder; call it on a (B, C, H, W) float tensor.

    ``precision`` is ``"fp32"``, ``"int8"`` or ``"auto"`` (see the module docstring);
    :attr:`precision` holds what was chosen and :attr:`int8_min_cosine` the probe's result.
    """

    backend = "onnx"

    def __init__(self, model, threads: int | None = None, precision: str = "fp32"):
        import onnxruntime as ort

        if precision not in ("fp32", "int8", "auto"):
            raise ValueError(f"the onnx backend runs fp32 or int8, not {precision!r}")
        t0 = time.perf_counter()
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        graph = export_onnx(model.cpu())
        self.session = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
        self.has_head = model.head is not None
        self.schema = model.schema
        self.representation_dim = model.representation_dim
        self.precision, self.int8_min_cosine = "fp32", None
        fraction = matmul_weight_fraction(graph) if precision == "auto" else None
        if precision == "int8" or (fraction is not None and fraction >= INT8_AUTO_MIN_MATMUL_FRACTION):
            quantized = ort.InferenceSession(quantize_int8(graph), options, providers=["CPUExecutionProvider"])
            probe = probe_images(model.config.channels, model.config.input_size)
            cosine = _min_cosine(quantized.run(None, {"images": probe})[0],
                                 self.session.run(None, {"images": probe})[0])
            self.int8_min_cosine = cosine
            if cosine >= INT8_MIN_COSINE:
                self.session, self.precision = quantized, "int8"
            elif precision == "int8":
                raise ValueError(f"int8 quantization changes {model.config.arch}'s representation too much: "
                                 f"smallest cosine similarity to fp32 on the probe batch {cosine:.5f} < "
                                 f"{INT8_MIN_COSINE}; use precision fp32")
            else:
                log.info("int8 kept %s's representation only to cosine %.5f (< %s); staying in fp32",
                         model.config.arch, cosine, INT8_MIN_COSINE)
        log.info("ONNX Runtime session for %s ready in %.1f s (%s, %d threads%s)", model.config.arch,
                 time.perf_counter() - t0, self.precision, options.intra_op_num_threads,
                 "" if self.int8_min_cosine is None else f", int8 probe cosine >= {self.int8_min_cosine:.5f}")

    def __call__(self, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray | None]:
        out = self.session.run(None, {"images": np.ascontiguousarray(x.numpy(), dtype=np.float32)})
        z = out[0].astype(np.float32, copy=False)
        frac = fractions_from_concentrations(out[1], self.schema).astype(np.float32) if self.has_head else None
        return z, frac


class TorchRunner:
    """PyTorch inference: ``inference_mode``, ``channels_last``, autocast on CUDA (see module docstring).

    Converting the model to ``channels_last`` changes its memory layout in place, not its values.
    """

    backend = "torch"

    def __init__(self, model, precision: str = "fp32"):
        if precision not in ("fp32", "bf16", "fp16"):
            raise ValueError(f"the torch backend runs fp32, bf16 or fp16, not {precision!r}; int8 needs onnx")
        self.precision = precision
        self.model = model.to(memory_format=torch.channels_last)
        self.device = next(model.parameters()).device
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # one input size throughout: let cuDNN pick its fastest kernels
        self.dtype = _DTYPES.get(precision)
        self.representation_dim = model.representation_dim

    def __call__(self, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray | None]:
        x = x.to(self.device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=self.dtype or torch.float32,
                                                    enabled=self.dtype is not None):
            z = self.model.embed(x)
            conc = self.model.head(z).float() if self.model.head is not None else None
        frac = None if conc is None else fractions_from_concentrations(conc, self.model.schema).cpu().numpy()
        return z.float().cpu().numpy(), frac


def make_runner(model, backend: str = "auto", precision: str = "auto"):
    """A callable ``x (B, C, H, W) float32 in 0..1 -> (z (B, D) float32, fractions (B, A) float32 or None)``,
    A the answers of ``model.schema``.

    See the module docstring for ``backend`` (auto, torch, onnx) and ``precision`` (auto, fp32,
    bf16, fp16, int8). ``onnx`` needs a CPU model in fp32 or int8, ``int8`` needs onnx. The
    runner's ``backend`` and ``precision`` attributes say what was chosen. Raises ValueError for
    an unknown or impossible choice.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown inference backend {backend!r}; choose from {BACKENDS}")
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose from {PRECISIONS}")
    device = next(model.parameters()).device
    if precision == "auto" and (device.type == "cuda" or backend == "torch"):
        precision = "bf16" if device.type == "cuda" else "fp32"
    if backend == "onnx" and (device.type != "cpu" or precision not in ("auto", "fp32", "int8")):
        raise ValueError("the onnx backend runs on CPU in fp32 or int8; use --backend torch for GPU or bf16/fp16")
    if precision == "int8" and (device.type != "cpu" or backend == "torch" or not onnx_available()):
        raise ValueError("int8 runs on CPU with ONNX Runtime (--backend onnx or auto)")
    if backend == "onnx" or (backend == "auto" and device.type == "cpu" and precision in ("auto", "fp32", "int8")
                             and onnx_available()):
        try:
            return OnnxRunner(model, precision=precision)
        except Exception as err:  # an architecture the exporter cannot trace: PyTorch still works
            if backend == "onnx" or precision == "int8":
                raise
            log.warning("ONNX export of %s failed (%s: %s); running it with PyTorch instead", model.config.arch,
                        type(err).__name__, str(err)[:200])
    return TorchRunner(model, "fp32" if precision == "auto" else precision)
