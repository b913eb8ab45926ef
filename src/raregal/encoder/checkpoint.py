"""raregal's own model format: safetensors weights plus a JSON description.

A raregal model is a folder holding

* ``model.safetensors``: every tensor of :class:`~raregal.encoder.model.GalaxyEncoder`'s state
  dict (``encoder.*``, ``bottleneck.*``, ``head.1.0.*``); its safetensors metadata also carries
  the JSON below under the key ``raregal_config``, so the file alone is self-describing;
* ``config.json``: ``{"format": "raregal-encoder", "format_version": 1, "model": {arch,
  bottleneck, input_size, channels, dropout, head, timm_kwargs}, "representation_dim",
  "encoder_dim", "schema": {"name", "questions", "dependencies", "answers"} (the Galaxy Zoo tree
  the head predicts, see :mod:`raregal.inputs.gz_trees`; null without a head), "raregal_version",
  "training": {...} (how it was trained, when known)}``.

Safetensors cannot execute code when read, so such a folder is safe to load from anyone.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from raregal.inputs import gz_trees as schema
from raregal.atomic import atomic_path, write_json
from raregal.errors import InputError
from raregal.encoder.model import EncoderConfig, GalaxyEncoder

FORMAT = "raregal-encoder"
FORMAT_VERSION = 1
WEIGHTS = "model.safetensors"
CONFIG = "config.json"
METADATA_KEY = "raregal_config"


def schema_description(tree=None) -> dict:
    """The Galaxy Zoo tree ``tree`` (a name or :class:`~raregal.inputs.gz_trees.Schema`; None: GZ DESI) as a
    checkpoint stores it: its name, questions, dependencies and answers (loading checks the answers)."""
    return schema.get(tree).describe()


def describe(model: GalaxyEncoder, training: dict | None = None) -> dict:
    """The JSON description of ``model`` (see the module docstring)."""
    from raregal import __version__

    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": model.config.to_dict(),
        "representation_dim": model.representation_dim,
        "encoder_dim": model.encoder_dim,
        "schema": schema_description(model.schema) if model.head is not None else None,
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


def stored_schema(description: dict, where: str) -> schema.Schema | None:
    """The tree a description's head predicts, read from its ``schema`` entry (None: it records none).

    The answers decide (a description written before raregal knew several trees calls GZ DESI
    ``gz-desi``); a name that disagrees with them, or answers of no known tree, is an InputError.
    """
    stored = description.get("schema") or {}
    answers = stored.get("answers")
    if answers is None:
        return schema.get(stored["name"], param="schema") if stored.get("name") else None
    found = schema.by_answers(answers)
    if found is None:
        extra = sorted(set(answers) - set(schema.ANSWERS))[:5]
        lacking = sorted(set(schema.ANSWERS) - set(answers))[:5]
        raise InputError(f"{where}: the head predicts another decision tree ({len(answers)} answers; not in GZ DESI: "
                         f"{extra}; missing: {lacking}), none of raregal's: {', '.join(schema.SCHEMAS)}")
    named = stored.get("name")
    if named and schema.ALIASES.get(named, named) in schema.SCHEMAS and schema.get(named) is not found:
        raise InputError(f"{where}: the description names the tree {named!r} but its answers are those of "
                         f"{found.name!r}")
    return found


def check_description(description: dict, where: str, tree=None) -> EncoderConfig:
    """Validate a checkpoint description and return its :class:`EncoderConfig`, schema included.

    The schema is the one the description records (:func:`stored_schema`); ``tree`` (a name, e.g.
    from ``--schema``) is used where it records none, and must agree with it where it does.
    Raises InputError naming ``where`` when the format is unknown or the trees disagree.
    """
    if description.get("format") != FORMAT:
        raise InputError(f"{where}: not a raregal model description (format {description.get('format')!r})")
    if int(description.get("format_version", 0)) > FORMAT_VERSION:
        raise InputError(f"{where}: written by a newer raregal (format_version {description['format_version']}); upgrade raregal")
    if "model" not in description or "arch" not in description["model"]:
        raise InputError(f"{where}: description has no 'model.arch'")
    model = {k: v for k, v in description["model"].items() if k != "schema"}
    config = EncoderConfig.from_dict(model)
    found = stored_schema(description, where) if config.head else None
    asked = schema.get(tree, param="schema") if tree is not None else None
    if found is not None and asked is not None and found is not asked:
        raise InputError(f"{where}: the model's head predicts the {found.name} tree ({len(found.answers)} answers), "
                         f"not schema={asked.name}; leave schema out to use the model's own", param="schema")
    config.schema = (found or asked or schema.DEFAULT).name
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
