"""Fast inference for a :class:`~raregal.encoder.GalaxyEncoder`: ONNX Runtime on CPU, mixed precision on GPU.

:func:`make_runner` turns a model into a callable ``images (B, C, H, W) -> (representation (B, D),
fractions (B, 34) or None)`` as float32 NumPy arrays, using one of two backends:

* ``"onnx"``: the model exported once to ONNX (``torch.onnx.export``) and run by ONNX Runtime's
  CPU provider. On CPU this is the one that pays: measured 3-4× PyTorch eager for
  efficientnet_b0 on two cores, with representations equal to PyTorch's (cosine ≥ 0.9999;
  ``benchmarks/README.md``). ONNX Runtime is a core dependency; without it the torch path runs.
* ``"torch"``: PyTorch eager in ``inference_mode``, the model and images in ``channels_last``
  memory format (faster convolutions in oneDNN and cuDNN), and on CUDA an autocast to bf16 or
  fp16 (``precision``).

``backend="auto"`` picks ONNX Runtime for a CPU model when onnxruntime is installed and the
export succeeds, else PyTorch; ``precision="auto"`` is bf16 on CUDA and fp32 on CPU (bf16 on a
CPU without AMX was slower than fp32 here). The Dirichlet head's fractions are computed from
the concentrations outside the exported graph, with :func:`fractions_from_concentrations`.
"""

from __future__ import annotations

import io
import logging
import time

import numpy as np
import torch

from .dirichlet import fractions_from_concentrations

log = logging.getLogger("raregal")

BACKENDS = ("auto", "torch", "onnx")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


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


class OnnxRunner:
    """ONNX Runtime session of an exported encoder; call it on a (B, C, H, W) float tensor."""

    backend = "onnx"

    def __init__(self, model, threads: int | None = None):
        import onnxruntime as ort

        t0 = time.perf_counter()
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(export_onnx(model.cpu()), options, providers=["CPUExecutionProvider"])
        self.has_head = model.head is not None
        self.representation_dim = model.representation_dim
        log.info("ONNX Runtime session for %s ready in %.1f s (%d threads)", model.config.arch,
                 time.perf_counter() - t0, options.intra_op_num_threads)

    def __call__(self, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray | None]:
        out = self.session.run(None, {"images": np.ascontiguousarray(x.numpy(), dtype=np.float32)})
        z = out[0].astype(np.float32, copy=False)
        frac = fractions_from_concentrations(out[1]).astype(np.float32) if self.has_head else None
        return z, frac


class TorchRunner:
    """PyTorch inference: ``inference_mode``, ``channels_last``, autocast on CUDA (see module docstring).

    Converting the model to ``channels_last`` changes its memory layout in place, not its values.
    """

    backend = "torch"

    def __init__(self, model, precision: str = "fp32"):
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
        frac = None if conc is None else fractions_from_concentrations(conc).cpu().numpy()
        return z.float().cpu().numpy(), frac


def make_runner(model, backend: str = "auto", precision: str = "auto"):
    """A callable ``x (B, C, H, W) float32 in 0..1 -> (z (B, D) float32, fractions (B, 34) float32 or None)``.

    See the module docstring for ``backend`` (auto, torch, onnx) and ``precision`` (auto, fp32,
    bf16, fp16). ``onnx`` needs a CPU model and fp32. Raises ValueError for an unknown choice.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown inference backend {backend!r}; choose from {BACKENDS}")
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose from {PRECISIONS}")
    device = next(model.parameters()).device
    if precision == "auto":
        precision = "bf16" if device.type == "cuda" else "fp32"
    if backend == "onnx" and (device.type != "cpu" or precision != "fp32"):
        raise ValueError("the onnx backend runs on CPU in fp32; use --backend torch for GPU or bf16/fp16")
    if backend == "onnx" or (backend == "auto" and device.type == "cpu" and precision == "fp32" and onnx_available()):
        try:
            return OnnxRunner(model)
        except Exception as err:  # an architecture the exporter cannot trace: PyTorch still works
            if backend == "onnx":
                raise
            log.warning("ONNX export of %s failed (%s: %s); running it with PyTorch instead", model.config.arch,
                        type(err).__name__, str(err)[:200])
    return TorchRunner(model, precision)
