"""raregal's own model format: safetensors weights plus a JSON description.

A raregal model is a folder holding

* ``model.safetensors``: every tensor of :class:`~raregal.encoder.model.GalaxyEncoder`'s state
  dict (``encoder.*``, ``bottleneck.*``, ``head.1.0.*``); its safetensors metadata also carries
  the JSON below under the key ``raregal_config``, so the file alone is self-describing;
* ``config.json``: ``{"format": "raregal-encoder", "format_version": 1, "model": {arch,
  bottleneck, input_size, channels, dropout, head, timm_kwargs}, "representation_dim",
  "encoder_dim", "schema": {"name", "questions", "dependencies", "answers"}, "raregal_version",
  "training": {...} (how it was trained, when known)}``.

Safetensors cannot execute code when read, so such a folder is safe to load from anyone.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from .. import schema
from ..atomic import atomic_path, write_json
from ..errors import InputError
from .model import EncoderConfig, GalaxyEncoder

FORMAT = "raregal-encoder"
FORMAT_VERSION = 1
WEIGHTS = "model.safetensors"
CONFIG = "config.json"
METADATA_KEY = "raregal_config"


def schema_description() -> dict:
    """The GZ DESI tree as stored in a checkpoint (to check a loaded head predicts our answers)."""
    return {
        "name": "gz-desi",
        "questions": {k: list(v) for k, v in schema.QUESTIONS.items()},
        "dependencies": dict(schema.DEPENDENCIES),
        "answers": list(schema.ANSWERS),
    }


def describe(model: GalaxyEncoder, training: dict | None = None) -> dict:
    """The JSON description of ``model`` (see the module docstring)."""
    from .. import __version__

    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": model.config.to_dict(),
        "representation_dim": model.representation_dim,
        "encoder_dim": model.encoder_dim,
        "schema": schema_description() if model.head is not None else None,
        "raregal_version": __version__,
        "training": training or {},
    }


def save_model(model: GalaxyEncoder, folder: str | os.PathLike, training: dict | None = None,
               dtype: torch.dtype | None = None) -> Path:
    """Write ``model`` to ``folder`` as ``model.safetensors`` + ``config.json`` (each atomically).

    ``dtype`` (e.g. torch.float16) stores floating-point tensors at that precision to make the
    file smaller; they are cast back to the model's precision when loaded. Returns ``folder``.
    """
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    description = describe(model, training)
    tensors = {}
    for key, value in model.state_dict().items():
        value = value.detach().cpu().contiguous()
        if dtype is not None and value.is_floating_point():
            value = value.to(dtype)
        tensors[key] = value
    with atomic_path(folder / WEIGHTS) as tmp:
        save_file(tensors, str(tmp), metadata={METADATA_KEY: json.dumps(description)})
    write_json(folder / CONFIG, description)
    return folder


def is_raregal_folder(path: str | os.PathLike) -> bool:
    """True when ``path`` is a folder holding a raregal ``config.json`` and ``model.safetensors``."""
    path = Path(path)
    return path.is_dir() and (path / CONFIG).is_file() and (path / WEIGHTS).is_file()


def safetensors_description(path: str | os.PathLike) -> dict | None:
    """The raregal description stored in a ``.safetensors`` file's metadata, or None if absent."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as err:  # safetensors raises its own error types for malformed headers
        raise InputError(f"{path}: not a readable safetensors file: {err}") from err
    text = meta.get(METADATA_KEY)
    return json.loads(text) if text else None


def check_description(description: dict, where: str) -> EncoderConfig:
    """Validate a checkpoint description and return its :class:`EncoderConfig`.

    Raises InputError naming ``where`` when the format is unknown or the stored schema's answers
    differ from :data:`raregal.schema.ANSWERS` (a head for another tree cannot be used).
    """
    if description.get("format") != FORMAT:
        raise InputError(f"{where}: not a raregal model description (format {description.get('format')!r})")
    if int(description.get("format_version", 0)) > FORMAT_VERSION:
        raise InputError(f"{where}: written by a newer raregal (format_version {description['format_version']}); upgrade raregal")
    if "model" not in description or "arch" not in description["model"]:
        raise InputError(f"{where}: description has no 'model.arch'")
    config = EncoderConfig.from_dict(description["model"])
    stored = (description.get("schema") or {}).get("answers")
    if config.head and stored is not None and list(stored) != list(schema.ANSWERS):
        extra = sorted(set(stored) - set(schema.ANSWERS))[:5]
        lacking = sorted(set(schema.ANSWERS) - set(stored))[:5]
        raise InputError(f"{where}: the head predicts another decision tree ({len(stored)} answers; "
                         f"not in GZ DESI: {extra}; missing: {lacking})")
    return config


def read_description(path: str | os.PathLike) -> dict:
    """The description of a raregal model folder, ``config.json`` or self-describing ``.safetensors``."""
    path = Path(path)
    if path.is_dir():
        path = path / CONFIG
    if path.suffix == ".safetensors":
        found = safetensors_description(path)
        if found is None:
            raise InputError(f"{path}: safetensors file without a raregal description")
        return found
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise InputError(f"{path}: cannot read model description: {err}") from err


def save_train_state(folder: str | os.PathLike, state: dict) -> Path:
    """Write the optimizer/epoch state needed to resume training, as a weights-only torch file."""
    path = Path(folder) / "train_state.pt"
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return path


def load_train_state(folder: str | os.PathLike) -> dict | None:
    """Read :func:`save_train_state`'s file (safely, ``weights_only=True``), or None if absent."""
    path = Path(folder) / "train_state.pt"
    if not path.is_file():
        return None
    return torch.load(path, map_location="cpu", weights_only=True)
