"""Train (or retrain) a bottlenecked galaxy encoder: on volunteer votes, without them, or both.

``TrainConfig.objective`` chooses what the encoder learns from:

* ``dirichlet`` (default, Zoobot-style): the Dirichlet-multinomial negative log-likelihood of
  each galaxy's vote counts, summed over the questions of its Galaxy Zoo tree and averaged over
  the batch. The tree (``TrainConfig.schema``, ``--schema``) is otherwise inferred from the
  catalog's vote columns (:func:`train_schema`): GZ DESI's ``bar_strong``, GZ DECaLS DR8's
  ``bar-dr8_strong``, all DECaLS campaigns at once, … Missing counts count as 0 votes, and a
  question with no votes adds no loss, so a galaxy voted on in one campaign teaches only that
  campaign's questions. Images are augmented with random rotations and flips.
* ``contrastive``: no votes needed. Two augmented views of each galaxy
  (:func:`raregal.encoder.contrastive.paired_views`) pass through the encoder and a projection head,
  and a contrastive loss (``contrastive_method``: ``simclr`` or ``vicreg``) pulls the views of
  one galaxy together. The saved encoder has no Dirichlet head.
* ``hybrid``: the Dirichlet loss averaged over the galaxies of the batch that have votes, plus
  ``contrastive_weight`` x the contrastive loss on all of them; a catalog may mix galaxies with
  and without votes (one with none at all trains as ``contrastive`` does, without a head).

A seeded fraction of the catalog is held out for validation; the best epoch is kept, and
training stops early when the validation loss has not improved for ``patience`` epochs. The
validation loss is the objective's own: Dirichlet NLL on un-augmented images (logged per
question); the contrastive loss on two views per galaxy drawn with a fixed seed, the same views
every epoch; for ``hybrid`` the first plus ``contrastive_weight`` x the second.

Output folder ``out``:

* ``config.json`` + ``model.safetensors``: the best model so far (a raregal model folder,
  loadable with ``raregal embed --model out``): backbone, bottleneck and, unless contrastive,
  the Dirichlet head. The projection head is recorded in ``config.json``'s ``training`` but not
  saved there (it is no part of the representation);
* ``last/``: the latest epoch's model and ``train_state.pt`` (optimizer, projection head, epoch,
  RNG, history); a rerun with the same ``out`` resumes from there;
* ``history.json``: per epoch, train and validation loss (and their Dirichlet and contrastive
  parts), validation loss per question, images/s and seconds;
* ``skipped.csv``: images that could not be read (id, reason), left out of training.

Nothing is written to ``out`` before the catalog, the settings and the images' readability
have been checked.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from raregal.inputs import gz_trees as schema
from raregal.atomic import write_json, write_text
from raregal.inputs.tables import image_sources, source_columns
from raregal.encoder.contrastive import METHODS
from raregal.errors import InputError
from raregal.images.dataset import ImageDataset, collate_images, eval_transform, train_transform
from raregal.workers import default_threads, default_workers

log = logging.getLogger("raregal")


@dataclass
class TrainConfig:
    """Settings of one training run (all saved with the model).

    ``lr`` and ``weight_decay`` are AdamW's (Zoobot's defaults); ``lr_schedule`` is ``constant``
    (Zoobot's default) or ``cosine`` (annealed to lr/100 over ``epochs``); ``val_fraction`` the held-out share
    of galaxies; ``patience`` the epochs without validation improvement before stopping;
    ``init`` a weights spec to start from (see :func:`raregal.encoder.loading.load_model`).
    ``objective``: one of :data:`OBJECTIVES` (see the module docstring); ``contrastive_method``
    (``simclr`` or ``vicreg``), ``temperature`` (SimCLR's) and ``contrastive_weight`` (``hybrid``'s
    weight of the contrastive loss) matter to the contrastive objectives only. ``rarity_weight``
    (dirichlet, hybrid) weighs each galaxy's Dirichlet loss by how rare its answers are: by
    ``(1 + rarity_weight * s / mean s) / (1 + rarity_weight)``, with s its
    :func:`~raregal.encoder.dirichlet.vote_surprise` against the training split's average
    volunteer (0, the default, is Zoobot's unweighted loss; the validation loss stays unweighted,
    so runs compare, except with ``val_fraction`` 0, where the training loss, weighted, is
    monitored). ``batch_size``
    counts galaxies; the contrastive objectives pass two views of each through the encoder.
    ``schema``: the Galaxy Zoo tree whose vote columns are read and whose answers the head predicts
    (None: inferred from the catalog's vote columns; :func:`train` records the tree it used).
    """

    arch: str = "efficientnet_b0"
    bottleneck: int | None = 128
    input_size: int = 224
    channels: int = 3
    dropout: float = 0.2
    epochs: int = 30
    batch_size: int = 64
    lr: float = 1e-3
    lr_schedule: str = "constant"
    weight_decay: float = 0.01
    val_fraction: float = 0.1
    patience: int = 5
    seed: int = 0
    workers: int = field(default_factory=default_workers)
    threads: int | None = None  # torch threads; None: default_threads(workers)
    device: str = "cpu"
    init: str | None = None
    timm_kwargs: dict = field(default_factory=dict)
    objective: str = "dirichlet"
    contrastive_method: str = METHODS[0]
    contrastive_weight: float = 1.0
    temperature: float = 0.2
    rarity_weight: float = 0.0
    schema: str | None = None  # Galaxy Zoo tree of the votes (raregal.inputs.gz_trees name); None: inferred from the catalog

    def validate(self) -> None:
        """Raise InputError, naming the flag, for a setting no run can use."""
        if self.objective not in OBJECTIVES:
            raise InputError(f"--objective {self.objective}: unknown; choose one of {', '.join(OBJECTIVES)}")
        if self.contrastive_method not in METHODS:
            raise InputError(f"--contrastive-method {self.contrastive_method}: unknown; choose one of "
                             f"{', '.join(METHODS)}")
        if not (math.isfinite(self.contrastive_weight) and self.contrastive_weight >= 0):
            raise InputError(f"--contrastive-weight {self.contrastive_weight}: must be a number >= 0")
        if not (math.isfinite(self.rarity_weight) and self.rarity_weight >= 0):
            raise InputError(f"--rarity-weight {self.rarity_weight}: must be a number >= 0")
        if self.rarity_weight > 0 and self.objective == "contrastive":
            raise InputError("--rarity-weight weighs the Dirichlet loss by the votes; --objective contrastive "
                             "has neither (use dirichlet or hybrid, or leave --rarity-weight at 0)")
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise InputError(f"--temperature {self.temperature}: must be > 0")
        if self.lr_schedule not in ("constant", "cosine"):
            raise InputError(f"--lr-schedule must be constant or cosine, got {self.lr_schedule!r}")
        if self.batch_size < 2:
            raise InputError(f"--batch-size {self.batch_size}: must be at least 2 (batch norm, and a contrastive "
                             "loss, need two galaxies)")


#: What ``TrainConfig.objective`` may be, the default first.
OBJECTIVES = ("dirichlet", "contrastive", "hybrid")

#: Settings that must match for a rerun to resume an earlier run in the same folder.
_RESUME_KEYS = ("arch", "bottleneck", "input_size", "channels", "dropout", "batch_size", "lr", "lr_schedule",
                "weight_decay", "val_fraction", "seed", "init", "objective", "contrastive_method",
                "contrastive_weight", "temperature", "rarity_weight", "schema")

#: Seed of the validation views of the contrastive objectives (the same views every epoch).
VAL_VIEW_SEED = 1_000_003


#: Every vote-count column of some known tree.
_ALL_ANSWERS = frozenset(a for tree in schema.SCHEMAS.values() for a in tree.answers)


def _check_vote_columns(columns) -> None:
    """A vote column of a known question with an unknown campaign (``bar-dr9_strong``) is an InputError naming it."""
    bad = schema.unknown_campaign_columns([str(c) for c in columns])
    if bad:
        raise InputError(f"vote column(s) {', '.join(bad[:5])} name a Galaxy Zoo campaign raregal does not know; "
                         f"known campaigns: {', '.join(schema.CAMPAIGNS)}, or none (GZ DESI: "
                         f"{schema.ANSWERS[0]})", param="catalog")


def train_schema(columns, name: str | None = None) -> schema.Schema:
    """The Galaxy Zoo tree to train on: ``name`` (``--schema``) or the one the vote columns belong to.

    Inference (:func:`raregal.inputs.gz_trees.infer`): the tree whose every answer column is present (the
    all-campaigns tree when the columns of several DECaLS campaigns are), else the one with most
    columns present; a tie is an InputError listing the candidates and naming ``--schema``
    (param ``schema``). No vote column of any tree at all is an InputError too.
    """
    columns = [str(c) for c in columns]
    _check_vote_columns(columns)
    if name is not None:
        return schema.get(name, param="schema")
    if not any(c in _ALL_ANSWERS for c in columns):
        raise InputError("catalog has no vote-count columns; expected the answers of a Galaxy Zoo tree, e.g. "
                         f"{', '.join(schema.ANSWERS[:3])} … (GZ DESI, 34 in all) or "
                         f"{schema.DECALS_DR8.answers[0]} … (GZ DECaLS DR8); "
                         "to train without votes use --objective contrastive")
    try:
        tree = schema.infer(columns, param="schema")
    except InputError as err:
        raise InputError(f"catalog vote columns: {err}", param="schema") from err
    log.info("vote columns are those of the %s tree (%d answers); name another with --schema", tree.name,
             len(tree.answers))
    return tree


def vote_counts(catalog: pd.DataFrame, tree=None) -> np.ndarray:
    """The (N, A) float32 vote counts of ``tree``'s answers (None: inferred, :func:`train_schema`).

    Missing values count as 0 votes, so a galaxy without votes in a campaign adds no loss to that
    campaign's questions (:func:`raregal.encoder.dirichlet.dirichlet_multinomial_nll`). Answer
    columns the catalog lacks entirely are 0 votes too, with a warning naming them; vote columns of
    other trees are ignored, with a warning. Raises InputError when the catalog has none of the
    tree's columns, or negative counts.
    """
    if tree is None:
        tree = train_schema(catalog.columns)
    else:
        _check_vote_columns(catalog.columns)
        tree = schema.get(tree, param="schema")
    present = [a for a in tree.answers if a in catalog.columns]
    if not present:
        raise InputError(f"catalog has no vote-count columns of the {tree.title} tree; expected e.g. "
                         f"{', '.join(tree.answers[:3])} … ({len(tree.answers)} in all, see raregal.inputs.gz_trees); "
                         "to train without votes use --objective contrastive", param="schema")
    absent = [a for a in tree.answers if a not in catalog.columns]
    if absent:
        log.warning("catalog lacks %d answer columns of the %s tree, counted as 0 votes: %s", len(absent), tree.name,
                    ", ".join(absent[:10]))
    ignored = sorted(str(c) for c in catalog.columns if c in _ALL_ANSWERS and c not in set(tree.answers))
    if ignored:
        log.warning("vote columns of other trees are ignored (training the %s tree): %s", tree.name,
                    ", ".join(ignored[:10]))
    counts = np.zeros((len(catalog), len(tree.answers)), dtype=np.float32)
    fractional = []
    for j, a in enumerate(tree.answers):
        if a in catalog.columns:
            values = pd.to_numeric(catalog[a], errors="coerce").to_numpy(dtype=np.float64)
            if np.any(values[np.isfinite(values)] < 0) or np.isinf(values).any():
                raise InputError(f"column {a!r} holds negative or infinite vote counts; counts are whole numbers "
                                 ">= 0 (NaN: not asked)")
            if np.any(values[np.isfinite(values)] % 1 != 0):
                fractional.append(a)
            counts[:, j] = np.nan_to_num(values, nan=0.0)
    if fractional:  # Dirichlet-multinomial works with real counts; say so rather than round silently
        log.warning("vote counts that are not whole numbers in %d column(s) (%s): used as they are, as weights of the "
                    "Dirichlet-multinomial loss; if these are fractions, give the counts instead", len(fractional),
                    ", ".join(fractional[:5]))
    return counts


def split_indices(ids, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded train/validation split of row positions; independent of the catalog's row order."""
    ids = np.asarray(ids).astype(str)
    order = np.argsort(ids, kind="stable")
    perm = order[np.random.default_rng(seed).permutation(len(ids))]
    n_val = int(round(val_fraction * len(ids))) if val_fraction > 0 else 0
    if len(ids) > 1:
        n_val = min(max(n_val, 1 if val_fraction > 0 else 0), len(ids) - 1)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def _loader(dataset, batch_size: int, workers: int, shuffle: bool, seed: int):
    generator = torch.Generator().manual_seed(seed)
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=workers,
                                       collate_fn=collate_images, generator=generator,
                                       persistent_workers=False, drop_last=False)


def _init_weights(model, spec: str, device) -> None:
    """Copy every fitting tensor of ``spec`` into ``model``; all encoder tensors must fit."""
    from raregal.encoder.loading import load_model, load_weights

    source = load_model(spec, arch=model.config.arch, channels=model.config.channels,
                        input_size=model.config.input_size)
    report = load_weights(model, source.state_dict(), spec, strict=False)
    enc_missing = [k for k in report["missing"] + report["mismatched"] if k.startswith("encoder.")]
    if enc_missing:
        raise InputError(f"--init {spec}: its encoder does not fit {model.config.arch}: {enc_missing[:8]}")
    log.info("initialised from %s: %d tensors copied; left at random init: %s", spec, len(report["loaded"]),
             sorted({k.split(".")[0] for k in report["missing"] + report["mismatched"]}) or "none")


def readable_mask(file_locs) -> np.ndarray:
    """(N,) bool: whether each image exists and, for JPEG/PNG, whether Pillow recognises its header.

    Cheap (no pixels are decoded), so it can run over a whole catalog before anything is
    written; an image whose pixels turn out corrupt is still skipped (and listed) during training.
    """
    from PIL import Image

    from raregal.images.dataset import RASTER_SUFFIXES

    if not isinstance(file_locs, np.ndarray):  # images inside shards (catalog.image_sources): checked when read
        return np.ones(len(file_locs), dtype=bool)
    ok = np.zeros(len(file_locs), dtype=bool)
    for i, loc in enumerate(file_locs):
        path = Path(str(loc))
        if not path.is_file():
            continue
        if path.name.lower().endswith(RASTER_SUFFIXES):
            try:
                with Image.open(path):
                    pass
            except Exception:  # noqa: BLE001 - Pillow raises many kinds for a foreign file
                continue
        ok[i] = True
    return ok


@dataclass
class _Plan:
    """What the checked inputs say about one run: labels, split and whether there is a head."""

    counts: np.ndarray | None  # (N, A) vote counts of ``tree``'s answers; None for contrastive
    tr_idx: np.ndarray
    va_idx: np.ndarray
    locs: np.ndarray
    ids: np.ndarray
    head: bool
    n_labelled: int
    tree: schema.Schema | None = None  # the Galaxy Zoo tree of the votes and the head (None: contrastive)
    weighting: "RarityWeighting | None" = None  # per-galaxy Dirichlet loss weights (rarity_weight > 0)


class RarityWeighting:
    """Per-galaxy weights of the Dirichlet loss from the rarity of its votes (``TrainConfig.rarity_weight``).

    Fixed at the start of a run from the training split's vote counts (N, A): the average
    volunteer (:func:`~raregal.encoder.dirichlet.mean_fractions`) and the mean surprise of the
    galaxies with votes, so a batch's weights depend on its galaxies only. Weights average 1 over
    the voted training galaxies; a galaxy voted on as the average volunteer would gets
    ``1 / (1 + strength)``.
    """

    def __init__(self, counts: np.ndarray, tree, strength: float):
        from raregal.encoder.dirichlet import mean_fractions, vote_surprise

        self.tree, self.strength = tree, float(strength)
        self.mean = torch.as_tensor(mean_fractions(counts, tree))
        voted = counts.sum(1) > 0
        surprise = vote_surprise(torch.as_tensor(counts[voted]), self.mean, tree)
        self.scale = float(surprise.mean()) if len(surprise) else 0.0

    def __call__(self, counts: torch.Tensor) -> torch.Tensor:
        """(B,) float32 weights of the galaxies whose (B, A) vote counts these are."""
        from raregal.encoder.dirichlet import vote_surprise

        if self.scale <= 1e-12:  # every galaxy voted on as the average volunteer would: nothing is rare
            return torch.ones(len(counts), dtype=torch.float32, device=counts.device)
        s = vote_surprise(counts, self.mean, self.tree) / self.scale
        return ((1.0 + self.strength * s) / (1.0 + self.strength)).to(torch.float32)


def _labels(catalog: pd.DataFrame, objective: str, name: str | None = None
            ) -> tuple[np.ndarray | None, int, schema.Schema | None]:
    """(vote counts or None, galaxies with any vote, their tree) for ``objective``; InputError when unusable.

    ``name``: the tree (``--schema``); None: inferred from the vote columns (:func:`train_schema`).
    """
    if objective == "contrastive":
        return None, 0, None
    if objective == "hybrid" and not any(c in _ALL_ANSWERS for c in catalog.columns):
        tree = schema.get(name, param="schema")
        return np.zeros((len(catalog), len(tree.answers)), np.float32), 0, tree
    tree = train_schema(catalog.columns, name)
    counts = vote_counts(catalog, tree)
    n_labelled = int((counts.sum(1) > 0).sum())
    if objective == "dirichlet" and n_labelled == 0:
        raise InputError("no galaxy of the catalog has any votes (every vote count is 0 or missing); "
                         "to train without votes use --objective contrastive")
    return counts, n_labelled, tree


def plan_run(catalog: pd.DataFrame, config: TrainConfig) -> _Plan:
    """Check the settings and the catalog against each other before anything is written.

    Raises InputError naming the flag or column at fault: an unknown objective or method, a
    catalog without votes for ``dirichlet``, fewer readable images in the training split than
    ``--batch-size``.
    """
    config.validate()
    if "id_str" not in catalog.columns:
        raise InputError("catalog has no 'id_str' column")
    if not source_columns(catalog):
        raise InputError("catalog has no 'file_loc' column (nor images inside its Parquet shards)")
    if len(catalog) < 2:
        raise InputError(f"need at least 2 galaxies to train, catalog has {len(catalog)}")
    counts, n_labelled, tree = _labels(catalog, config.objective, config.schema)
    tr_idx, va_idx = split_indices(catalog["id_str"], config.val_fraction, config.seed)
    locs = image_sources(catalog)  # file paths, or the images inside the catalog's shards
    ok = readable_mask(locs)
    n_ok, n_train_ok = int(ok.sum()), int(ok[tr_idx].sum())
    if n_ok == 0:
        bad = catalog["id_str"].astype(str).head(3).tolist()
        raise InputError(f"none of the {len(catalog)} images of the catalog can be read (e.g. ids {', '.join(bad)}); "
                         "check the file_loc paths (relative paths are read from the catalog's folder)")
    if n_train_ok < config.batch_size:
        where = (f"the {n_ok} readable images of the catalog ({len(catalog)} rows)" if n_train_ok == n_ok else
                 f"the {n_train_ok} readable images of the training split ({n_ok} readable in the catalog, "
                 f"{n_ok - n_train_ok} of them held out by --val-fraction {config.val_fraction:g})")
        raise InputError(f"--batch-size {config.batch_size}: larger than {where}; use a smaller --batch-size"
                         + ("" if n_ok > 1 else " or a catalog whose file_loc paths exist"))
    head = config.objective == "dirichlet" or (config.objective == "hybrid" and n_labelled > 0)
    if config.objective == "hybrid":
        if n_labelled:
            log.info("hybrid: %d of %d galaxies have votes", n_labelled, len(catalog))
        else:
            log.warning("hybrid: no galaxy has votes, so this trains as --objective contrastive does, "
                        "and the encoder gets no Dirichlet head")
    weighting = None
    if head and config.rarity_weight > 0:
        weighting = RarityWeighting(counts[tr_idx], tree, config.rarity_weight)
        log.info("rarity weighting %g: mean vote surprise %.3f nats over the voted training galaxies",
                 config.rarity_weight, weighting.scale)
    return _Plan(counts, tr_idx, va_idx, locs, catalog["id_str"].astype(str).to_numpy(), head, n_labelled, tree,
                 weighting)


def train(catalog: pd.DataFrame, out: str | os.PathLike, config: TrainConfig, restart: bool = False,
          progress: bool = True) -> dict:
    """Train on ``catalog`` (``id_str``, absolute ``file_loc``, vote counts unless contrastive) into ``out``.

    Everything is checked (:func:`plan_run`) before ``out`` is created. Resumes from
    ``out/last`` when it exists and its settings match (else InputError), unless ``restart``.
    On CPU, torch runs ``config.threads`` threads (default :func:`default_threads`) for the
    duration. Returns the run summary (also in ``out/history.json``): best epoch and validation
    loss (nats per galaxy for dirichlet), epochs run, images/s, skipped images.
    """
    plan = plan_run(catalog, config)
    if plan.tree is not None:  # record the tree used, inferred or named, so a resume must use it too
        config = replace(config, schema=plan.tree.name)
    before = torch.get_num_threads()
    if torch.device(config.device).type == "cpu":
        torch.set_num_threads(config.threads or default_threads(config.workers))
    try:
        return _TrainingRun(catalog, Path(out), config, plan, restart, progress).run()
    finally:
        torch.set_num_threads(before)


def _images(x: torch.Tensor, device) -> torch.Tensor:
    """A batch of images (B, C, H, W) on ``device`` in channels_last (1.8x faster training on CPU)."""
    return x.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)


def _contrastive_part(model, projection, views: torch.Tensor, config: TrainConfig, device):
    """(loss, representations (B, 2, D)) of paired views (B, 2, C, H, W)."""
    from raregal.encoder.contrastive import contrastive_loss

    b = views.shape[0]
    z = model.embed(_images(views.flatten(0, 1), device))
    p = projection(z).view(b, 2, -1)
    loss = contrastive_loss(config.contrastive_method, p[:, 0], p[:, 1], config.temperature)
    return loss, z.view(b, 2, -1)


def _dirichlet_term(conc: torch.Tensor, counts: torch.Tensor, tree, weighting) -> torch.Tensor:
    """The batch's Dirichlet loss (:func:`~raregal.encoder.dirichlet.dirichlet_loss`), weighted by ``weighting``."""
    from raregal.encoder.dirichlet import dirichlet_loss

    return dirichlet_loss(conc, counts, tree, None if weighting is None else weighting(counts))


def _train_loss(model, projection, batch: dict, config: TrainConfig, device,
                weighting: RarityWeighting | None = None) -> tuple[torch.Tensor, dict]:
    """The objective's training loss of one batch (scalar) and its parts (floats)."""
    if config.objective == "dirichlet":
        loss = _dirichlet_term(model(_images(batch["image"], device)), batch["labels"].to(device), model.schema,
                               weighting)
        return loss, {}
    con, z = _contrastive_part(model, projection, batch["image"], config, device)
    if config.objective == "contrastive":
        return con, {"contrastive": con.item()}
    loss, parts = config.contrastive_weight * con, {"contrastive": con.item()}
    counts = batch["labels"].to(device)
    voted = counts.sum(1) > 0
    if model.head is not None and bool(voted.any()):  # the Dirichlet loss on both views of the voted galaxies
        conc = model.head(z[voted].flatten(0, 1))
        dirichlet = _dirichlet_term(conc, counts[voted].repeat_interleave(2, 0), model.schema, weighting)
        loss = dirichlet + loss
        parts["dirichlet"] = dirichlet.item()
    return loss, parts


def validation_loss(model, loader, device) -> dict:
    """Validation loss (nats): ``loss``, the mean over galaxies of the NLL summed over questions;
    ``per_question``, each question's mean NLL over the galaxies that were asked it; ``failed``,
    [(position, reason)] of unreadable images."""
    model.eval()
    acc = _DirichletTally(model.schema)
    failed = []
    with torch.no_grad():
        for batch in loader:
            failed.extend(batch["failed"])
            if len(batch["index"]):
                acc.add(model(_images(batch["image"], device)), batch["labels"].to(device))
    return {**acc.result(), "failed": failed}


class _DirichletTally:
    """Sums of the validation Dirichlet NLL, over galaxies and per question of ``tree``."""

    def __init__(self, tree=None):
        from raregal.encoder.dirichlet import question_matrix

        self.tree = schema.get(tree)
        self.member = question_matrix(self.tree)
        self.total, self.n = 0.0, 0
        self.q_sum = np.zeros(len(self.tree.tree))
        self.q_n = np.zeros(len(self.tree.tree))

    def add(self, concentrations: torch.Tensor, counts: torch.Tensor) -> None:
        from raregal.encoder.dirichlet import dirichlet_multinomial_nll

        nll = dirichlet_multinomial_nll(concentrations, counts, self.tree).cpu().numpy()
        self.total += float(nll.sum())
        self.n += len(nll)
        asked = (counts.cpu().numpy() @ self.member) > 0
        self.q_sum += (nll * asked).sum(0)
        self.q_n += asked.sum(0)

    def result(self) -> dict:
        per_q = {q.name: (float(self.q_sum[j] / self.q_n[j]) if self.q_n[j] else None)
                 for j, q in enumerate(self.tree.tree)}
        return {"loss": self.total / self.n if self.n else math.nan, "n": self.n, "per_question": per_q}


def validation_loss_views(model, projection, loader, config: TrainConfig, device) -> dict:
    """Validation loss of the contrastive objectives on views drawn with :data:`VAL_VIEW_SEED`.

    ``contrastive``: the mean over galaxies of each batch's contrastive loss; for ``hybrid``
    (items (3, C, H, W): plain image, two views) also ``dirichlet``, the NLL of the galaxies with
    votes on the plain image, and ``loss`` = dirichlet + ``contrastive_weight`` x contrastive.
    """
    model.eval()
    projection.eval()
    tally, con_sum, con_n, failed = _DirichletTally(model.schema), 0.0, 0, []
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(VAL_VIEW_SEED)  # the same views every epoch, without disturbing training's RNG
        for batch in loader:
            failed.extend(batch["failed"])
            x = batch["image"]
            if len(batch["index"]) < 2:
                continue
            con, z = _contrastive_part(model, projection, x[:, -2:], config, device)
            con_sum += con.item() * len(x)
            con_n += len(x)
            if config.objective == "hybrid" and model.head is not None:
                counts = batch["labels"].to(device)
                voted = counts.sum(1) > 0
                if bool(voted.any()):
                    tally.add(model(_images(x[:, 0][voted.cpu()], device)), counts[voted])
    dirichlet = tally.result()
    contrastive = con_sum / con_n if con_n else math.nan
    loss = contrastive if config.objective == "contrastive" else (
        (dirichlet["loss"] if dirichlet["n"] else 0.0) + config.contrastive_weight * contrastive)
    return {"loss": loss, "contrastive": contrastive, "dirichlet": dirichlet["loss"] if dirichlet["n"] else None,
            "per_question": dirichlet["per_question"] if dirichlet["n"] else {}, "failed": failed}


class _TrainingRun:
    """One training run: the model, its optimizer and the epoch loop (see :func:`train`)."""

    def __init__(self, catalog: pd.DataFrame, out: Path, config: TrainConfig, plan: _Plan, restart: bool,
                 progress: bool):
        self.out, self.config, self.plan, self.progress = out, config, plan, progress
        self.n_rows = len(catalog)
        self.device = torch.device(config.device)
        self._build()
        state = None if restart else self._resume()
        if state is None and config.init:
            _init_weights(self.model, config.init, self.device)
        self.model.to(self.device)
        if self.projection is not None:
            self.projection.to(self.device)
        for group in self.optimizer.state.values():  # optimizer state follows the model to the device
            for k, v in group.items():
                if isinstance(v, torch.Tensor):
                    group[k] = v.to(self.device)
        self.history = state["history"] if state else []
        self.best_loss = state["best_loss"] if state else math.inf
        self.bad_epochs = state["bad_epochs"] if state else 0
        self.start = state["epoch"] + 1 if state else 1
        self.skipped: dict[str, str] = dict(state.get("skipped", {})) if state else {}

    def _build(self) -> None:
        from raregal.encoder.contrastive import ProjectionHead, default_projection
        from raregal.encoder.model import EncoderConfig, GalaxyEncoder

        config = self.config
        torch.manual_seed(config.seed)
        self.model = GalaxyEncoder(EncoderConfig(
            arch=config.arch, bottleneck=config.bottleneck or None, input_size=config.input_size,
            channels=config.channels, dropout=config.dropout, head=self.plan.head,
            timm_kwargs=dict(config.timm_kwargs), schema=(self.plan.tree or schema.DEFAULT).name,
        )).to(memory_format=torch.channels_last)
        self.projection = None
        if config.objective != "dirichlet":
            self.projection = ProjectionHead(self.model.representation_dim,
                                             **default_projection(config.contrastive_method,
                                                                  self.model.representation_dim))
        params = list(self.model.parameters()) + (list(self.projection.parameters()) if self.projection else [])
        self.optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
        self.scheduler = (torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=config.epochs,
                                                                     eta_min=config.lr / 100)
                          if config.lr_schedule == "cosine" else None)

    def _resume(self) -> dict | None:
        from raregal.encoder import checkpoint
        from raregal.encoder.loading import read_state_dict

        last = self.out / "last"
        state = checkpoint.load_train_state(last)
        if state is None:
            return None
        old, new, defaults = dict(state["config"]), asdict(self.config), asdict(TrainConfig())
        if "schema" not in old and self.config.objective != "contrastive":
            old["schema"] = schema.DEFAULT.name  # written before raregal trained other trees: GZ DESI's
        differ = [k for k in _RESUME_KEYS if old.get(k, defaults.get(k)) != new.get(k)]
        if differ or state["n_rows"] != self.n_rows:
            what = differ or [f"catalog rows {state['n_rows']} -> {self.n_rows}"]
            raise InputError(f"{self.out} holds a run with other settings ({', '.join(map(str, what))}); "
                             "use another --out, or --restart to overwrite it")
        weights, _ = read_state_dict(last / checkpoint.WEIGHTS)
        self.model.load_state_dict(weights)
        if self.projection is not None:
            self.projection.load_state_dict(state["projection"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"])
        log.info("resuming %s after epoch %d (best validation loss %.4f)", self.out, state["epoch"],
                 state["best_loss"])
        return state

    def _datasets(self) -> tuple[ImageDataset, ImageDataset]:
        from raregal.encoder.contrastive import paired_views

        config, plan = self.config, self.plan
        size = config.input_size
        counts = plan.counts
        if config.objective == "dirichlet":
            transforms = train_transform(size), eval_transform(size)
        else:
            transforms = paired_views(size), paired_views(size, plain=config.objective == "hybrid")
        return tuple(ImageDataset(plan.locs[idx], tf, config.channels, None if counts is None else counts[idx])
                     for idx, tf in zip((plan.tr_idx, plan.va_idx), transforms))

    def _epoch(self, dataset: ImageDataset, epoch: int) -> dict:
        """Train one epoch; returns the mean training loss and its parts, images and seconds."""
        from tqdm.auto import tqdm

        config = self.config
        self.model.train()
        if self.projection is not None:
            self.projection.train()
        t0 = time.perf_counter()
        loader = _loader(dataset, config.batch_size, config.workers, True, config.seed * 100003 + epoch)
        bar = tqdm(total=len(dataset), unit="img", unit_scale=True, desc=f"epoch {epoch}/{config.epochs}",
                   disable=not self.progress, leave=False)
        sums: dict[str, float] = {}
        n_seen = 0
        for batch in loader:
            for i, reason in batch["failed"]:
                self.skipped.setdefault(self.plan.ids[self.plan.tr_idx[i]], reason)
            bar.update(len(batch["index"]) + len(batch["failed"]))
            if len(batch["index"]) < 2:  # batch norm (and a contrastive loss) needs two images
                continue
            loss, parts = _train_loss(self.model, self.projection, batch, config, self.device, self.plan.weighting)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            n = len(batch["index"])
            for key, value in {"loss": loss.item(), **parts}.items():
                sums[key] = sums.get(key, 0.0) + value * n
            n_seen += n
            bar.set_postfix(loss=f"{sums['loss'] / n_seen:.3f}")
        bar.close()
        means = {k: v / max(n_seen, 1) for k, v in sums.items()}
        return {"loss": means.get("loss", 0.0), "parts": means, "n_seen": n_seen, "seconds": time.perf_counter() - t0}

    def _validate(self, dataset: ImageDataset, trained: dict) -> dict:
        config = self.config
        if not len(dataset):  # no validation split asked for: monitor the training loss
            return {"loss": trained["loss"], "per_question": {}, "failed": []}
        loader = _loader(dataset, config.batch_size, config.workers, False, 0)
        if config.objective == "dirichlet":
            return validation_loss(self.model, loader, self.device)
        return validation_loss_views(self.model, self.projection, loader, config, self.device)

    def _training_record(self, **extra) -> dict:
        """What ``config.json``'s ``training`` records: the settings, the projection head, ``extra``."""
        record = {**asdict(self.config), **extra}
        if self.projection is not None:
            record["projection_head"] = {**self.projection.shape, "saved": "last/train_state.pt (to resume only)"}
        if self.config.objective == "hybrid":
            record["n_with_votes"] = self.plan.n_labelled
        return record

    def _save(self, epoch: int, improved: bool) -> None:
        from raregal.encoder import checkpoint

        plan, last = self.plan, self.out / "last"
        if improved:
            checkpoint.save_model(self.model, self.out, training=self._training_record(
                epoch=epoch, val_loss=self.best_loss, n_train=len(plan.tr_idx), n_val=len(plan.va_idx)))
        checkpoint.save_model(self.model, last, training=self._training_record(epoch=epoch))
        checkpoint.save_train_state(last, {
            "config": asdict(self.config), "n_rows": self.n_rows, "epoch": epoch,
            "optimizer": self.optimizer.state_dict(), "rng": torch.get_rng_state(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "projection": self.projection.state_dict() if self.projection is not None else None,
            "history": self.history, "best_loss": self.best_loss, "bad_epochs": self.bad_epochs,
            "skipped": self.skipped})

    def _record(self, epoch: int, trained: dict, val: dict, lr_used: float, t0: float) -> dict:
        record = {"epoch": epoch, "train_loss": trained["loss"], "val_loss": val["loss"],
                  "val_loss_per_question": val["per_question"], "lr": lr_used,
                  "train_images_per_s": trained["n_seen"] / trained["seconds"],
                  "seconds": time.perf_counter() - t0}
        if self.config.objective != "dirichlet":
            record.update({f"train_{k}": v for k, v in trained["parts"].items() if k != "loss"})
            record.update({f"val_{k}": val[k] for k in ("contrastive", "dirichlet") if k in val})
        return record

    def run(self) -> dict:
        config, plan = self.config, self.plan
        train_ds, val_ds = self._datasets()
        log.info("training %s (bottleneck %s, objective %s%s) on %d galaxies, validating on %d, %d px, batch %d, "
                 "%s (%d threads, %d decoding workers)", config.arch, config.bottleneck, config.objective,
                 "" if config.objective == "dirichlet" else f" {config.contrastive_method}", len(plan.tr_idx),
                 len(plan.va_idx), config.input_size, config.batch_size, self.device, torch.get_num_threads(),
                 config.workers)
        for epoch in range(self.start, config.epochs + 1):
            if self.bad_epochs >= config.patience:
                break
            t0 = time.perf_counter()
            trained = self._epoch(train_ds, epoch)
            lr_used = self.optimizer.param_groups[0]["lr"]
            if self.scheduler is not None:
                self.scheduler.step()
            val = self._validate(val_ds, trained)
            for i, reason in val["failed"]:
                self.skipped.setdefault(plan.ids[plan.va_idx[i]], reason)
            record = self._record(epoch, trained, val, lr_used, t0)
            self.history.append(record)
            improved = val["loss"] < self.best_loss
            if improved:
                self.best_loss, self.bad_epochs = val["loss"], 0
            else:
                self.bad_epochs += 1
            self._save(epoch, improved)
            log.info("epoch %d: train loss %.4f, validation loss %.4f%s%s, %.0f img/s, %.1f s", epoch,
                     record["train_loss"], val["loss"], " nats/galaxy" if config.objective == "dirichlet" else "",
                     " (best)" if improved else "", record["train_images_per_s"], record["seconds"])
            write_json(self.out / "history.json", {"config": asdict(config), "epochs": self.history,
                                                   "best_val_loss": self.best_loss})
        return self._finish()

    def _finish(self) -> dict:
        config, plan, history = self.config, self.plan, self.history
        if self.skipped:
            frame = pd.DataFrame({"id_str": list(self.skipped), "reason": list(self.skipped.values())})
            write_text(self.out / "skipped.csv", frame.to_csv(index=False))
            log.warning("%d images could not be read and were left out; see %s", len(self.skipped),
                        self.out / "skipped.csv")
        best = min(history, key=lambda r: r["val_loss"]) if history else None
        summary = {"out": str(self.out.resolve()), "objective": config.objective, "epochs_run": len(history),
                   "best_epoch": best and best["epoch"], "best_val_loss": self.best_loss,
                   "stopped_early": self.bad_epochs >= config.patience,
                   "train_images_per_s": float(np.mean([r["train_images_per_s"] for r in history])) if history
                   else None, "n_train": len(plan.tr_idx), "n_val": len(plan.va_idx), "n_skipped": len(self.skipped),
                   "has_head": self.model.head is not None,
                   "schema": self.model.schema.name if self.model.head is not None else None}
        write_json(self.out / "history.json", {"config": asdict(config), "epochs": history,
                                               "best_val_loss": self.best_loss, "summary": summary})
        return summary
