"""Load a galaxy encoder from any of the weight formats raregal accepts.

``load_model(spec)`` understands

* ``"demo"``: the small encoder shipped inside the package (``raregal/data/demo_encoder``);
* ``"hf_hub:<owner>/<repo>"``, e.g. ``hf_hub:mwalmsley/zoobot-encoder-efficientnet_b0``: a timm
  encoder on the Hugging Face hub (needs the network; no Dirichlet head);
* a raregal model folder, its ``config.json``, or its self-describing ``model.safetensors``;
* a Zoobot Lightning checkpoint (``.ckpt``) whose ``state_dict`` holds ``encoder.*`` and the
  Dirichlet head ``head.1.0.*``;
* a plain timm state dict (``.safetensors``, ``.bin``, ``.pth``, ``.pt``); the architecture must
  then be given (``arch=`` / ``--arch``).

Files are read without executing code: safetensors, or ``torch.load(weights_only=True)``. A
checkpoint that needs arbitrary unpickling is refused with an explanation unless the caller
passes ``trust_checkpoint=True``. Missing, unexpected or wrongly shaped keys are errors that name
the keys.
"""

from __future__ import annotations

import logging
import os
import pickle
from pathlib import Path

import torch

from raregal.inputs import gz_trees as schema
from raregal.errors import InputError
from raregal.encoder import checkpoint
from raregal.encoder.model import EncoderConfig, GalaxyEncoder, create_backbone

log = logging.getLogger("raregal")

TORCH_SUFFIXES = (".bin", ".pth", ".pt", ".ckpt")
HUB_PREFIX = "hf_hub:"
_WRAPPER_KEYS = ("state_dict", "model", "state_dict_ema", "model_state_dict")
_STRIP_PREFIXES = ("module.", "model.", "_orig_mod.")
_PARTS = ("encoder.", "bottleneck.", "head.")


def demo_model_path() -> Path:
    """Folder of the demo encoder shipped in the package."""
    from importlib.resources import files

    return Path(str(files("raregal") / "data" / "demo_encoder"))


def _safe_torch_load(path: Path, trust: bool):
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if trust:
            log.warning("%s: loading with full unpickling (--trust-checkpoint): this can run code in the file", path)
            return torch.load(path, map_location="cpu", weights_only=False)
        first = str(err).strip().splitlines()
        detail = next((line for line in first if "Unsupported global" in line or "GLOBAL" in line), first[0] if first else "")
        raise InputError(
            f"{path}: holds Python objects besides tensors ({detail.strip()}), and unpickling them could run "
            "arbitrary code, so raregal does not load it by default. If you trust where it came from, pass "
            "--trust-checkpoint (trust_checkpoint=True); or re-save just its weights elsewhere with "
            "torch.save(torch.load(f, weights_only=False)['state_dict'], 'weights.pth')") from err
    except Exception as err:  # a truncated or foreign file
        raise InputError(f"{path}: cannot read as a torch checkpoint: {type(err).__name__}: {err}") from err


def read_state_dict(path: str | os.PathLike, trust_checkpoint: bool = False) -> tuple[dict, dict]:
    """Read the tensors of a weights file: (state dict, extra info).

    ``.safetensors`` are read with safetensors; ``.bin/.pth/.pt/.ckpt`` with
    ``torch.load(weights_only=True)``. A wrapper dict (Lightning's ``{"state_dict": …,
    "hyper_parameters": …}``, timm's ``{"state_dict_ema": …}``) is unwrapped; the extra info holds
    ``hyper_parameters`` when present.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such weights file")
    name = path.name.lower()
    if name.endswith(".safetensors"):
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu"), {}
        except Exception as err:
            raise InputError(f"{path}: not a readable safetensors file: {err}") from err
    if not name.endswith(TORCH_SUFFIXES):
        raise InputError(f"{path}: unknown weights format; use .safetensors, .bin, .pth, .pt or a Lightning .ckpt")
    obj = _safe_torch_load(path, trust_checkpoint)
    extra = {}
    if isinstance(obj, dict):
        if isinstance(obj.get("hyper_parameters"), dict):
            extra["hyper_parameters"] = obj["hyper_parameters"]
        for key in _WRAPPER_KEYS:
            if isinstance(obj.get(key), dict) and obj[key] and all(isinstance(v, torch.Tensor) for v in obj[key].values()):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise InputError(f"{path}: holds no state dict (a mapping of names to tensors); top-level keys: "
                         f"{list(obj)[:10] if isinstance(obj, dict) else type(obj).__name__}")
    return dict(obj), extra


def _normalise_keys(state: dict, model: GalaxyEncoder | None = None) -> dict:
    """Map a state dict's keys onto GalaxyEncoder's: strip wrappers, prefix bare timm keys with ``encoder.``."""
    out = {}
    for key, value in state.items():
        changed = True
        while changed:
            changed = False
            for prefix in _STRIP_PREFIXES:
                if key.startswith(prefix):
                    key, changed = key[len(prefix):], True
        out[key] = value
    if not any(k.startswith("encoder.") for k in out):  # a bare timm backbone
        classifier = None
        if model is not None:
            classifier = (getattr(model.encoder, "pretrained_cfg", None) or {}).get("classifier")
        dropped = [k for k in out if classifier and (k == classifier or k.startswith(f"{classifier}."))]
        if dropped:
            log.info("ignoring the timm classifier weights %s (the encoder is used with num_classes=0)", dropped)
        out = {f"encoder.{k}": v for k, v in out.items() if k not in dropped}
    return out


def _describe_keys(keys, n: int = 8) -> str:
    keys = sorted(keys)
    return ", ".join(keys[:n]) + (f" … ({len(keys)} in all)" if len(keys) > n else "")


def load_weights(model: GalaxyEncoder, state: dict, source: str, parts=("encoder", "bottleneck", "head"),
                 strict: bool = True) -> dict:
    """Copy ``state`` into ``model`` for the given parts, checking every key and shape.

    With ``strict`` any missing, unexpected or wrongly shaped key of those parts raises InputError
    naming the keys and ``source``. Without it (used for ``--init``), tensors that fit are copied and
    the rest are reported. Returns ``{"loaded": [...], "missing": [...], "unexpected": [...],
    "mismatched": [...]}``.
    """
    state = _normalise_keys(state, model)
    prefixes = tuple(f"{p}." for p in parts)
    want = {k: v for k, v in model.state_dict().items() if k.startswith(prefixes)}
    have = {k: v for k, v in state.items() if k.startswith(prefixes)}
    foreign = [k for k in state if not k.startswith(_PARTS)]
    missing = [k for k in want if k not in have]
    unexpected = [k for k in have if k not in want] + foreign
    mismatched = [f"{k} {tuple(have[k].shape)} vs model {tuple(want[k].shape)}"
                  for k in want if k in have and have[k].shape != want[k].shape]
    if strict and (missing or unexpected or mismatched):
        lines = [f"{source}: weights do not fit {model.config.arch}"
                 f" (bottleneck {model.config.bottleneck}, head {'yes' if model.head is not None else 'no'})"]
        if missing:
            lines.append(f"missing keys: {_describe_keys(missing)}")
        if unexpected:
            lines.append(f"unexpected keys: {_describe_keys(unexpected)}")
        if mismatched:
            lines.append(f"shape mismatches: {_describe_keys(mismatched, 5)}")
        lines.append("check --arch, --bottleneck and --input-size, or that the file is the model you meant")
        raise InputError("; ".join(lines))
    fitting = {k: v for k, v in have.items() if k in want and v.shape == want[k].shape}
    model.load_state_dict(fitting, strict=False)
    return {"loaded": sorted(fitting), "missing": missing, "unexpected": unexpected, "mismatched": mismatched}


def _arch_from_hparams(hparams: dict) -> str | None:
    arch = hparams.get("architecture_name")
    if isinstance(arch, str):
        return "efficientnet_b0" if arch == "efficientnet" else arch  # Zoobot's own alias
    name = hparams.get("name")
    if isinstance(name, str) and name.startswith(HUB_PREFIX) and "zoobot-encoder-" in name:
        # FinetuneableZoobot* records the hub encoder it started from; the repo is named after the timm arch
        return name.split("zoobot-encoder-", 1)[1]
    return None


def _zoobot_answers(hparams: dict) -> list[str] | None:
    """The answer columns a Zoobot checkpoint's ``question_answer_pairs`` name (``q + a``), or None."""
    pairs = hparams.get("question_answer_pairs")
    if not isinstance(pairs, dict) or not pairs:
        return None
    return [f"{q}{a}" if str(a).startswith("_") else f"{q}_{a}" for q, answers in pairs.items() for a in answers]


def head_schema(width: int, hparams: dict | None = None, tree=None, where: str = "checkpoint") -> schema.Schema:
    """The Galaxy Zoo tree of a head with ``width`` outputs.

    ``tree`` (``--schema``) decides when given and must have ``width`` answers; else the tree the
    checkpoint's Zoobot ``hyper_parameters`` name (``question_answer_pairs``), else the one tree of
    that width (:func:`raregal.inputs.gz_trees.by_width`: 34 is GZ DESI's, whose questions GZ DECaLS DR5 and
    DR8 share; 30, DR1/2's or GZ2's, is ambiguous and an error naming ``--schema``).
    """
    if tree is not None:
        chosen = schema.get(tree, param="schema")
        if len(chosen.answers) != width:
            raise InputError(f"{where}: the head predicts {width} answers, but schema={chosen.name} has "
                             f"{len(chosen.answers)}", param="schema")
        return chosen
    answers = _zoobot_answers(hparams or {})
    if answers is not None:
        named = schema.by_answers(answers)
        if named is not None and len(named.answers) == width:
            return named
        log.warning("%s: its question_answer_pairs (%d answers) are no tree raregal knows; matching the head "
                    "by its width", where, len(answers))
    try:
        chosen = schema.by_width(width, param="schema")
    except InputError as err:
        raise InputError(f"{where}: {err}", param="schema") from err
    log.info("%s: a head of %d answers, read as the %s tree (another with schema=NAME)", where, width, chosen.name)
    return chosen


def _config_from_state(state: dict, arch: str, input_size: int | None, channels: int, hparams: dict | None = None,
                       tree=None, where: str = "checkpoint") -> EncoderConfig:
    keys = _normalise_keys(state)
    bottleneck = keys["bottleneck.weight"].shape[0] if "bottleneck.weight" in keys else None
    head_w = keys.get("head.1.0.weight")
    chosen = head_schema(int(head_w.shape[0]), hparams, tree, where) if head_w is not None else schema.get(tree)
    return EncoderConfig(arch=arch, bottleneck=bottleneck, input_size=input_size or 224, channels=channels,
                         head=head_w is not None, schema=chosen.name)


def _default_input_size(model: GalaxyEncoder) -> int:
    size = (getattr(model.encoder, "pretrained_cfg", None) or {}).get("input_size")
    return int(size[-1]) if size else 224


def _hub_error(spec: str, reason: str) -> InputError:
    repo = spec[len(HUB_PREFIX):]
    return InputError(
        f"cannot fetch {spec!r} from the Hugging Face hub ({reason}). "
        f"Download it on a machine with network access (e.g. `hf download {repo}` or the 'Files' tab of "
        f"https://huggingface.co/{repo}) and pass the local weights file instead: "
        f"--model path/to/model.safetensors --arch <timm architecture>")


def _hub_unreachable(spec: str) -> str | None:
    """Why the hub cannot be reached (its host name does not resolve) when the model is not cached, else None.

    huggingface_hub retries for ~20 s before giving up; a failed name lookup settles it at once.
    """
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants, try_to_load_from_cache

    if constants.HF_HUB_OFFLINE:
        return None  # huggingface_hub itself answers from the cache, without the network
    host = urlparse(constants.ENDPOINT).hostname or "huggingface.co"
    try:
        socket.getaddrinfo(host, 443)
        return None
    except OSError as err:
        if isinstance(try_to_load_from_cache(spec[len(HUB_PREFIX):], "config.json"), str):
            return None  # cached earlier: let huggingface_hub fall back to its cache
        return f"no network: cannot resolve {host}: {err}"


def _load_hub(spec: str, input_size: int | None, channels: int, tree=None) -> GalaxyEncoder:
    reason = _hub_unreachable(spec)
    if reason:
        raise _hub_error(spec, reason)
    try:
        backbone = create_backbone(spec, channels=channels, pretrained=True)
    except InputError:
        raise
    except Exception as err:  # huggingface_hub / requests raise many kinds when offline
        raise _hub_error(spec, f"{type(err).__name__}: {str(err).splitlines()[0][:200]}") from err
    arch = (getattr(backbone, "pretrained_cfg", None) or {}).get("architecture") or spec
    config = EncoderConfig(arch=arch, bottleneck=None, input_size=input_size or 224, channels=channels, head=False,
                           schema=schema.get(tree).name)
    model = GalaxyEncoder(config, backbone=backbone)
    if input_size is None:
        model.config.input_size = _default_input_size(model)
    return model


def _load_raregal(path: Path, tree=None) -> GalaxyEncoder:
    weights = path / checkpoint.WEIGHTS if path.is_dir() else path
    if path.suffix == ".json":
        weights = path.with_name(checkpoint.WEIGHTS)
    description = checkpoint.read_description(path)
    config = checkpoint.check_description(description, str(path), tree)
    model = GalaxyEncoder(config)
    state, _ = read_state_dict(weights)
    load_weights(model, state, str(weights))
    return model


def load_model(spec: str | os.PathLike, arch: str | None = None, device: str | torch.device = "cpu", *,
               input_size: int | None = None, channels: int = 3, trust_checkpoint: bool = False,
               schema: str | None = None) -> GalaxyEncoder:
    """Load a :class:`GalaxyEncoder` from ``spec`` (see the module docstring), in eval mode on ``device``.

    ``arch`` names the timm architecture where the file does not (plain state dicts, Lightning
    checkpoints without ``architecture_name``); ``input_size`` (pixels) overrides the model's input
    size, which otherwise comes from the raregal description or timm's default for ``arch``.
    ``schema`` names the Galaxy Zoo tree the head predicts where the file does not say it: a
    raregal model records it (and ``schema`` must then agree); a Zoobot checkpoint's head is
    matched by its ``question_answer_pairs`` or its width (:func:`head_schema`).
    """
    spec_str = os.fspath(spec)
    if spec_str == "demo":
        path = demo_model_path()
        if not checkpoint.is_raregal_folder(path):
            raise InputError(f"the demo encoder is missing from this installation ({path})")
        model = _load_raregal(path, schema)
    elif spec_str.startswith(HUB_PREFIX):
        model = _load_hub(spec_str, input_size, channels, schema)
    else:
        path = Path(spec_str).expanduser()
        if not path.exists():
            raise InputError(f"{path}: no such model; MODEL is 'demo', a hub id 'hf_hub:owner/repo', a raregal "
                             "model folder, or a weights file (.safetensors, .ckpt, .pth, .bin)")
        if path.is_dir():
            if not checkpoint.is_raregal_folder(path):
                found = sorted(p.name for p in path.iterdir())[:10]
                raise InputError(f"{path}: folder is not a raregal model (needs {checkpoint.CONFIG} and "
                                 f"{checkpoint.WEIGHTS}; found {found})")
            model = _load_raregal(path, schema)
        elif path.suffix == ".json" or (path.suffix == ".safetensors" and checkpoint.safetensors_description(path)):
            model = _load_raregal(path, schema)
        else:
            state, extra = read_state_dict(path, trust_checkpoint)
            hparams = extra.get("hyper_parameters", {})
            arch = arch or _arch_from_hparams(hparams)
            if not arch:
                raise InputError(f"{path}: the file does not say its architecture; pass --arch "
                                 "(e.g. efficientnet_b0 or maxvit_tiny_rw_224)")
            config = _config_from_state(state, arch, input_size, channels, hparams, schema, str(path))
            model = GalaxyEncoder(config)
            if input_size is None:
                model.config.input_size = _default_input_size(model)
            load_weights(model, state, str(path))
    if input_size is not None:
        model.config.input_size = int(input_size)
    log.info("model %s: %s, representation %d-d, %s, input %d px", spec_str, model.config.arch,
             model.representation_dim, f"{model.schema.name} tree ({len(model.schema.answers)} answers)"
             if model.head is not None else "no Dirichlet head", model.config.input_size)
    return model.to(device).eval()
