"""Fine-tune an encoder on a person's labels: its last blocks, the bottleneck and a member-or-not head.

When the frozen representation does not separate a class (artifacts such as satellite trails or
ghost rings, which no Galaxy Zoo question asks about), the guided search cannot find it however
many labels it gets. :func:`finetune` follows Zoobot's fine-tuning workflow (Walmsley et al.
2022, "Practical galaxy morphology tools from deep supervised representation learning") on a
CPU, in a minute or two for a few thousand galaxies:

* **what learns**: the last ``blocks`` of the timm backbone (timm's coarse parameter groups,
  :func:`backbone_groups`), every layer after them (a pooled head conv such as MobileNetV3's
  ``conv_head``), the bottleneck, and a new binary head (dropout, ``Linear(D, 1)``) on the
  representation; everything else is frozen (``requires_grad`` off). The Dirichlet head is
  dropped: it was fitted to the old representation and predicts nothing right on the new one.
* **batch norm** keeps its running statistics (every layer in eval mode; the affine weights of
  the unfrozen blocks still learn): a training set of a few members, oversampled by the loss,
  must not move the normalisation every other galaxy is embedded with.
* **the training set**: the labelled galaxies (1 = member, 0 = not) plus ``pseudo_negatives``
  unlabelled galaxies drawn at random as stand-in non-members (a rare class is about 1 % of a
  survey, so a random galaxy is almost never a member; the guided search's linear learner does
  the same, :mod:`raregal.guided.learner`).
* **augmentation**: each image in one of its eight flips and 90-degree rotations (the dihedral
  group; galaxies have no orientation, and these need no interpolation).
* **loss**: binary cross-entropy, class-balanced: each epoch draws the members as often as the
  non-members (:func:`balanced_order`: every batch holds members, each in a fresh view, rather
  than a rare member weighed up), so the two classes weigh the same.
* **deterministic** under ``seed``: the head's initialisation, dropout, batch order and
  augmentation come from seeded generators (the caller's global torch RNG is left as it was);
  images are read once, in order, so decoding workers change nothing.

Then every galaxy of the catalog is re-embedded with the fine-tuned encoder
(:func:`raregal.encoder.runtime.make_runner`) and scored by the head: a :class:`FinetuneResult`
holds the new representation (for the guided search) and the score (for a ranking).
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from torch import nn

from raregal.inputs.tables import ID, image_sources
from raregal.errors import InputError
from raregal.validation import Integer, Number, check_params, check_value

log = logging.getLogger("raregal")

#: Defaults, measured on the demo survey (``benchmarks/guided_finetune.py``): ``blocks`` None trains
#: every stage but the stem (the last 3 of the demo encoder's 7 lifted ghost rings less).
BLOCKS = None
EPOCHS = 20
LR = 1e-3
BATCH_SIZE = 32
WEIGHT_DECAY = 0.01
HEAD_DROPOUT = 0.2
#: Stand-in non-members drawn when ``pseudo_negatives`` is None: at least this many, and this many per member.
PSEUDO_MIN = 200
PSEUDO_PER_MEMBER = 20


@dataclass
class TrainingSet:
    """The galaxies :func:`finetune` learns from, as catalog row positions.

    ``rows`` (M,): positions in the catalog; ``targets`` (M,) float32: 1 member, 0 not (labelled or
    stand-in); ``y`` (N,) int8 over the whole catalog: 1, 0 as labelled, -1 not labelled (the
    stand-ins stay -1); ``class_name``: the class the labels are for; ``n_pseudo``: stand-ins drawn.
    """

    rows: np.ndarray
    targets: np.ndarray
    y: np.ndarray
    class_name: str
    n_pseudo: int


@dataclass
class FinetuneResult:
    """What :func:`finetune` gives back.

    ``rows`` (N,): the catalog positions that were embedded (unreadable images are left out and
    listed in ``skipped``: ``id_str``, ``reason``); ``ids`` (N,) their ``id_str``;
    ``representation`` (N, D) float32: the fine-tuned encoder's; ``scores`` (N,) float32: the
    head's logit, higher = more likely a member; ``labels`` (N,) int8: 1, 0, -1 (not labelled);
    ``model``: the fine-tuned :class:`~raregal.encoder.GalaxyEncoder` (no Dirichlet head, eval
    mode); ``head``: the binary head; ``history``: per epoch ``loss``, ``seconds``; ``info``:
    settings, counts and seconds (what ``finetune.json`` records).
    """

    rows: np.ndarray
    ids: np.ndarray
    representation: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    model: nn.Module
    head: nn.Module
    history: list = field(default_factory=list)
    skipped: pd.DataFrame | None = None
    info: dict = field(default_factory=dict)


def backbone_groups(encoder: nn.Module) -> tuple[list[list[str]], int]:
    """The backbone's parameter names in timm's coarse groups, input side first, and how many of the
    last groups come after the feature stages.

    The groups are those timm orders layers by for layer-wise learning rates
    (``group_matcher(coarse=True)``: the stem, then one per stage). Layers after the last stage
    (MobileNetV3's ``conv_head``, ConvNeXt's ``head.norm``) are a last group of their own when no
    parameter of it lies in a module of timm's ``feature_info``; they are counted apart, so that
    ``blocks`` counts stages whatever the architecture (EfficientNet and MaxViT fold them into
    their last stage). A backbone without ``group_matcher`` is grouped by its top-level modules.
    """
    names = [n for n, _ in encoder.named_parameters()]
    if hasattr(encoder, "group_matcher"):
        from timm.models import group_parameters

        found = group_parameters(encoder, encoder.group_matcher(coarse=True))
        groups = [found[k] for k in sorted(found)]
    else:
        groups = [[n for n in names if n.split(".")[0] == top]
                  for top in dict.fromkeys(n.split(".")[0] for n in names)]
    stages = tuple(f"{f['module']}." for f in getattr(encoder, "feature_info", None) or [] if f.get("module"))
    tail = 0
    while stages and tail < len(groups) - 1 and not any(n.startswith(stages) for n in groups[-1 - tail]):
        tail += 1
    return groups, tail


def stages_trained(model: nn.Module, blocks: int | None) -> int:
    """How many stages ``blocks`` trains in ``model``'s backbone (None: all but the stem); InputError when
    it is not a whole number from 0 to the number of stages."""
    groups, tail = backbone_groups(model.encoder)
    n_stages = len(groups) - tail
    if blocks is None:
        return max(0, n_stages - 1)
    try:
        check_value("blocks", blocks, Integer(0, n_stages))
    except InputError as err:
        raise InputError(f"{err} (the stages of {model.config.arch}'s backbone, stem included)",
                         param="blocks") from None
    return int(blocks)


def unfreeze_last(model: nn.Module, blocks: int | None) -> list[str]:
    """Freeze ``model`` except the last ``blocks`` stages of its backbone, the layers after them and the
    bottleneck; return the names of the parameters left trainable (in ``model.state_dict()`` terms).

    ``blocks`` None: every stage but the stem (the first group); 0: only what follows the stages.
    InputError when the backbone has fewer stages.
    """
    groups, tail = backbone_groups(model.encoder)
    blocks = stages_trained(model, blocks)
    chosen = {f"encoder.{n}" for g in groups[len(groups) - tail - blocks:] for n in g}
    trainable = []
    for name, p in model.named_parameters():
        learn = name in chosen or name.startswith("bottleneck.")
        p.requires_grad_(learn)
        if learn:
            trainable.append(name)
    return trainable


#: What each fine-tuning setting may be (``blocks`` None: all stages but the stem; ``pseudo_negatives``
#: None: automatic).
SETTINGS = {"epochs": Integer(1), "batch_size": Integer(2), "blocks": Integer(0, none_ok=True),
            "lr": Number(0.0, above=True), "pseudo_negatives": Integer(0, none_ok=True)}


def check_settings(blocks, epochs, lr, pseudo_negatives, batch_size) -> None:
    """InputError, naming the parameter, for a setting no fine-tuning can use (``blocks`` is checked
    against the model's stages by :func:`stages_trained`)."""
    check_params(dict(epochs=epochs, batch_size=batch_size, blocks=blocks, lr=lr, pseudo_negatives=pseudo_negatives),
                 SETTINGS)


def training_set(catalog: pd.DataFrame, labels: pd.DataFrame, *, class_name: str | None = None,
                 pseudo_negatives: int | None = None, seed: int = 0) -> TrainingSet:
    """Check ``labels`` against ``catalog`` and choose the galaxies to learn from (no image is read).

    ``labels``: a labels table (``id_str``, ``label`` 1/0, optional ``class``), checked with
    :mod:`raregal.guided.labels`: ids not in the catalog, an id labelled both 1 and 0, labels other
    than 0/1, several classes without ``class_name``, no member, nothing left unlabelled are each an
    InputError. ``pseudo_negatives`` unlabelled galaxies (None: enough to make, with the labelled
    non-members, ``max(PSEUDO_MIN, PSEUDO_PER_MEMBER x members)``) are drawn with ``seed``.
    """
    from raregal.guided.labels import check_labels, labels_vector, pick_class

    if ID not in catalog.columns:
        raise InputError(f"the catalog has no {ID!r} column", param="catalog")
    frame, name = pick_class(check_labels(labels), class_name)
    y = labels_vector(frame, pd.Index(catalog[ID].astype(str)))
    members, non = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    unlabelled = np.flatnonzero(y == -1)
    if pseudo_negatives is None:
        pseudo_negatives = max(0, max(PSEUDO_MIN, PSEUDO_PER_MEMBER * len(members)) - len(non))
    n_pseudo = min(int(pseudo_negatives), len(unlabelled))
    if len(non) + n_pseudo == 0:
        raise InputError("no non-member to learn from: label some galaxies 0, or allow pseudo_negatives",
                         param="pseudo_negatives")
    pseudo = np.sort(np.random.default_rng(seed).choice(unlabelled, size=n_pseudo, replace=False))
    rows = np.concatenate([members, non, pseudo]).astype(np.int64)
    targets = np.concatenate([np.ones(len(members)), np.zeros(len(non) + n_pseudo)]).astype(np.float32)
    return TrainingSet(rows=rows, targets=targets, y=y, class_name=name, n_pseudo=n_pseudo)


def read_images(sources, size: int, channels: int, workers: int = 0, batch_size: int = 64
                ) -> tuple[torch.Tensor, np.ndarray, list]:
    """Every image of ``sources`` (:func:`raregal.inputs.tables.image_sources` items) at ``size`` px.

    Returns (images (n_read, C, size, size) float32 in 0..1, positions read (n_read,), failed
    [(position, reason)]), in the order of ``sources``; read with :class:`raregal.images.dataset.ImageDataset`.
    The images are held in memory (a training set of a few hundred: tens of MiB at 64 px).
    """
    from raregal.images.dataset import ImageDataset, collate_images, eval_transform

    dataset = ImageDataset(sources, eval_transform(size), channels)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, num_workers=workers,
                                         collate_fn=collate_images, persistent_workers=False)
    images, index, failed = [], [], []
    for batch in loader:
        if len(batch["index"]):
            images.append(batch["image"])
            index.append(batch["index"].numpy())
        failed.extend(batch["failed"])
    if not images:
        return torch.zeros(0, channels, size, size), np.zeros(0, np.int64), failed
    return torch.cat(images), np.concatenate(index), failed


def dihedral(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each image of ``x`` (B, C, H, H) in one of its eight flips and 90-degree rotations, drawn from ``generator``."""
    turns = torch.randint(0, 4, (len(x),), generator=generator)
    flip = torch.randint(0, 2, (len(x),), generator=generator).bool()
    out = torch.where(flip[:, None, None, None], x.flip(-1), x)
    for k in (1, 2, 3):
        chosen = turns == k
        if bool(chosen.any()):
            out[chosen] = torch.rot90(out[chosen], k, dims=(-2, -1))
    return out


def balanced_order(targets: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One epoch's order of training positions: every non-member once and as many member draws
    (each member as evenly often as the count allows), shuffled with ``generator``."""
    pos = torch.nonzero(targets > 0.5).flatten()
    neg = torch.nonzero(targets <= 0.5).flatten()
    if not len(pos) or not len(neg):
        return torch.randperm(len(targets), generator=generator)
    repeats = -(-len(neg) // len(pos))
    pos = pos.repeat(repeats)[torch.randperm(repeats * len(pos), generator=generator)][:len(neg)]
    both = torch.cat([neg, pos])
    return both[torch.randperm(len(both), generator=generator)]


def binary_head(dim: int, dropout: float = HEAD_DROPOUT) -> nn.Sequential:
    """Dropout, then ``Linear(dim, 1)``: the member-or-not logit of a representation (B, dim) -> (B, 1)."""
    return nn.Sequential(nn.Dropout(dropout), nn.Linear(dim, 1))


def train_head(model: nn.Module, head: nn.Module, images: torch.Tensor, targets: torch.Tensor, *,
               epochs: int, lr: float, batch_size: int, generator: torch.Generator,
               progress: bool = True) -> list[dict]:
    """Train ``model``'s trainable parameters and ``head`` on ``images`` (M, C, H, W) / ``targets`` (M,) 0/1.

    AdamW (``lr``, weight decay :data:`WEIGHT_DECAY`) on the binary cross-entropy of dihedrally
    augmented batches (:func:`dihedral`); each epoch is :func:`balanced_order` (members drawn as
    often as non-members, so the two classes weigh the same), drawn from ``generator``. ``model``
    stays in eval mode (batch-norm statistics fixed); the head's dropout is on. Returns per epoch
    ``{"epoch", "loss", "seconds", "images"}``.
    """
    from tqdm.auto import tqdm

    params = [p for p in model.parameters() if p.requires_grad] + list(head.parameters())
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=WEIGHT_DECAY)
    model.eval()
    head.train()
    history = []
    bar = tqdm(range(1, epochs + 1), desc="fine-tune", unit="epoch", disable=not progress, leave=False)
    for epoch in bar:
        t0, total, seen = time.perf_counter(), 0.0, 0
        order = balanced_order(targets, generator)
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            if len(idx) < 2 and seen:  # a last batch of one galaxy: fold its turn into the next epoch
                continue
            logits = head(model.embed(dihedral(images[idx], generator))).squeeze(1)
            loss = nn.functional.binary_cross_entropy_with_logits(logits, targets[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(idx)
            seen += len(idx)
        history.append({"epoch": epoch, "loss": total / max(seen, 1), "seconds": time.perf_counter() - t0,
                        "images": seen})
        bar.set_postfix(loss=f"{history[-1]['loss']:.3f}")
    bar.close()
    head.eval()
    return history


def embed_all(model: nn.Module, sources, *, batch_size: int = 128, workers: int = 0, backend: str = "auto",
              progress: bool = True) -> tuple[np.ndarray, np.ndarray, list]:
    """The representation of every image of ``sources`` with ``model`` (eval mode, the project's runner).

    Returns (positions read (n,), representation (n, D) float32, failed [(position, reason)]).
    """
    from tqdm.auto import tqdm

    from raregal.images.dataset import ImageDataset, collate_images, eval_transform
    from raregal.encoder.runtime import make_runner

    runner = make_runner(model, backend, "fp32")
    dataset = ImageDataset(sources, eval_transform(model.config.input_size), model.config.channels)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, num_workers=workers,
                                         collate_fn=collate_images, persistent_workers=False)
    index, reps, failed = [], [], []
    with tqdm(total=len(dataset), desc="embed", unit="img", unit_scale=True, disable=not progress) as bar:
        for batch in loader:
            if len(batch["index"]):
                z, _ = runner(batch["image"])
                index.append(batch["index"].numpy())
                reps.append(np.asarray(z, np.float32))
            failed.extend(batch["failed"])
            bar.update(len(batch["index"]) + len(batch["failed"]))
    dim = model.representation_dim
    if not index:
        return np.zeros(0, np.int64), np.zeros((0, dim), np.float32), failed
    return np.concatenate(index), np.concatenate(reps), failed


def head_scores(head: nn.Module, representation: np.ndarray) -> np.ndarray:
    """The head's logits (N,) float32 for a representation (N, D): its linear layer, in float64."""
    linear = [m for m in head.modules() if isinstance(m, nn.Linear)][-1]
    w = linear.weight.detach().double().numpy().reshape(-1)
    b = float(linear.bias.detach().double())
    return (np.asarray(representation, np.float64) @ w + b).astype(np.float32)


def _prepared(model: nn.Module, blocks: int) -> tuple[nn.Module, list[str]]:
    """A copy of ``model`` on the CPU, without its Dirichlet head, frozen but for the last ``blocks``."""
    model = copy.deepcopy(model).cpu().to(memory_format=torch.contiguous_format)
    model.head = None
    model.config = copy.deepcopy(model.config)
    model.config.head = False
    return model, unfreeze_last(model, blocks)


def _training_images(model, catalog: pd.DataFrame, plan: TrainingSet, workers: int
                     ) -> tuple[torch.Tensor, torch.Tensor, list]:
    """The training set's images and targets; unreadable ones left out (InputError when no member is left)."""
    sources = image_sources(catalog.iloc[plan.rows])
    images, read, failed = read_images(sources, model.config.input_size, model.config.channels, workers)
    targets = torch.from_numpy(plan.targets[read])
    if failed:
        log.warning("fine-tune: %d of the %d training images could not be read and are left out, e.g. %s",
                    len(failed), len(plan.rows), failed[0][1])
    if not bool((targets > 0.5).any()):
        raise InputError("none of the members' images could be read: " + "; ".join(r for _, r in failed[:3]),
                         param="labels")
    return images, targets, failed


def finetune(model: nn.Module, catalog_frame: pd.DataFrame, labels_frame: pd.DataFrame, *,
             blocks: int | None = BLOCKS,
             epochs: int = EPOCHS, lr: float = LR, seed: int = 0, pseudo_negatives: int | None = None,
             class_name: str | None = None, batch_size: int = BATCH_SIZE, workers: int = 0,
             threads: int | None = None, backend: str = "auto", progress: bool = True) -> FinetuneResult:
    """Fine-tune ``model`` on the labels of one class, then re-embed and score every galaxy of the catalog.

    Parameters
    ----------
    model : a :class:`~raregal.encoder.GalaxyEncoder` as :func:`~raregal.encoder.load_model` returns
        it; it is copied, never changed.
    catalog_frame : ``id_str`` and where each image is (``file_loc``, absolute, or ``image_shard`` /
        ``image_row``), as :func:`raregal.inputs.tables.read_catalog` returns it.
    labels_frame : ``id_str``, ``label`` (1 member, 0 not), optional ``class`` (then ``class_name``
        says which, when there are several); checked before any compute (:func:`training_set`).
    blocks : backbone stages trained, from the last (:func:`unfreeze_last`; None: all but the stem);
        the layers after them and the bottleneck always are.
    epochs, lr, batch_size : passes over the training set, AdamW's learning rate, images per step.
    seed : the same inputs and seed give the same scores and representation.
    pseudo_negatives : unlabelled galaxies drawn as stand-in non-members (None: automatic).
    workers, threads : image-decoding processes; torch threads (None: :func:`raregal.workers.default_threads`).
    backend : inference path of the re-embedding (:func:`~raregal.encoder.runtime.make_runner`).

    Returns a :class:`FinetuneResult`.
    """
    from raregal.workers import default_threads

    check_settings(blocks, epochs, lr, pseudo_negatives, batch_size)
    plan = training_set(catalog_frame, labels_frame, class_name=class_name, pseudo_negatives=pseudo_negatives,
                        seed=seed)
    catalog = catalog_frame.reset_index(drop=True)
    before = torch.get_num_threads()
    torch.set_num_threads(threads or default_threads(workers))
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            tuned, trainable = _prepared(model, blocks)
            head = binary_head(tuned.representation_dim)
            t0 = time.perf_counter()
            images, targets, _ = _training_images(tuned, catalog, plan, workers)
            t_read = time.perf_counter()
            history = train_head(tuned, head, images, targets, epochs=epochs, lr=lr, batch_size=batch_size,
                                 generator=torch.Generator().manual_seed(seed), progress=progress)
            t_train = time.perf_counter()
        for p in tuned.parameters():
            p.requires_grad_(False)
        tuned.eval()
        rows, reps, failed = embed_all(tuned, image_sources(catalog), workers=workers, backend=backend,
                                       progress=progress)
        t_embed = time.perf_counter()
    finally:
        torch.set_num_threads(before)
    ids = catalog[ID].astype(str).to_numpy()
    seconds = {"read": t_read - t0, "train": t_train - t_read, "embed": t_embed - t_train, "total": t_embed - t0}
    settings = {"blocks": stages_trained(tuned, blocks), "epochs": int(epochs), "lr": float(lr), "seed": seed,
                "batch_size": int(batch_size)}
    info = _info(plan, tuned, head, trainable, settings, len(images), len(rows), len(failed), seconds)
    skipped = pd.DataFrame({ID: [ids[i] for i, _ in failed], "reason": [r for _, r in failed]})
    return FinetuneResult(rows=rows, ids=ids[rows], representation=reps, scores=head_scores(head, reps),
                          labels=plan.y[rows], model=tuned, head=head, history=history, skipped=skipped, info=info)


def _info(plan: TrainingSet, model: nn.Module, head: nn.Module, trainable: list[str], settings: dict,
          n_train: int, n_embedded: int, n_skipped: int, seconds: dict) -> dict:
    """What a fine-tuning did: class, settings, counts, the layers that learnt, seconds per stage."""
    learnt = set(trainable)
    n_params = sum(p.numel() for n, p in model.named_parameters() if n in learnt)
    modules = list(dict.fromkeys(".".join(n.rsplit(".", 1)[0].split(".")[:3]) for n in trainable))
    return {"class": plan.class_name, **settings, "n_members": int((plan.y == 1).sum()),
            "n_non_members": int((plan.y == 0).sum()), "n_pseudo_negatives": plan.n_pseudo,
            "n_train_images": n_train, "trainable": modules + ["member head"],
            "n_trainable_parameters": int(n_params + sum(p.numel() for p in head.parameters())),
            "n_embedded": n_embedded, "n_skipped": n_skipped, "seconds": {k: round(v, 3) for k, v in seconds.items()}}


# ---- I/O at the edges: a catalog or run in, a finetune folder out (what `raregal finetune` runs) ----

#: The files of a finetune folder (:data:`raregal.runs.folder.OUTPUTS` ``["finetune"]``).
REPS, RANKED, SUMMARY, SKIPPED, MODEL_DIR = "reps.parquet", "ranked.csv", "finetune.json", "skipped.csv", "model"
#: The binary head's weights, beside the fine-tuned encoder in ``model/``.
HEAD_WEIGHTS = "member_head.safetensors"
#: Catalog columns a finetune folder's tables carry when the source has them.
CARRIED = ("ra", "dec", "true_class")


def read_source(source) -> pd.DataFrame:
    """The galaxies of ``source`` with where their images are: an image catalog
    (:func:`raregal.inputs.tables.read_catalog`), or a run folder's representation table (``raregal
    search`` output; ``id_str``, ``file_loc`` or ``image_shard``/``image_row``, and ``ra``/``dec``,
    ``true_class`` when it has them). Sky positions are checked (:func:`raregal.inputs.sky.with_coordinates`)."""
    from pathlib import Path

    from raregal.inputs import sky
    from raregal.inputs.tables import absolute_file_locs, check_ids, read_catalog, read_table, source_columns
    from raregal.runs.model import is_run_dir, read_run

    if not is_run_dir(source):
        return sky.with_coordinates(read_catalog(source), str(source))
    table_path = read_run(source).summary.get("input")
    if not table_path or not Path(table_path).exists():
        raise InputError(f"{source}: the run's representation table {table_path!r} is gone; give the image "
                         "catalog instead", param="source")
    try:
        import pyarrow.parquet as pq

        names = list(pq.ParquetDataset(table_path).schema.names)
    except Exception:  # not Parquet: read it whole
        names = None
    keep = None if names is None else [c for c in names if not c.startswith("feat_") and not c.endswith("_fraction")]
    frame = read_table(table_path, columns=keep)
    check_ids(frame, str(table_path))
    if not source_columns(frame):
        raise InputError(f"{source}: the run's table {table_path} does not say where the images are (no file_loc); "
                         "give the image catalog instead", param="source")
    if "file_loc" in frame.columns:
        frame = absolute_file_locs(frame, table_path)
    return sky.with_coordinates(frame, str(table_path))


def source_labels(source, labels) -> pd.DataFrame:
    """The labels table: ``labels`` (a path or DataFrame, read and checked with
    :mod:`raregal.guided.labels`), or for a run folder its own ``labels.parquet`` (``raregal explore``)."""
    from raregal.guided.labels import check_labels, read_labels
    from raregal.runs.model import is_run_dir

    if labels is None:
        if not is_run_dir(source):
            raise InputError("labels are needed when the source is a catalog (id_str, label 1/0)", param="labels")
        from raregal.guided.store import LabelStore

        labels = LabelStore(source).read()
        if labels.empty:
            raise InputError(f"{source}: no labels yet (labels.parquet); label galaxies in `raregal explore` or give "
                             "a labels table", param="labels")
    return check_labels(labels) if isinstance(labels, pd.DataFrame) else read_labels(labels)


def result_tables(result: FinetuneResult, catalog: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(reps, ranked) of a fine-tuning over ``catalog`` (the frame :func:`finetune` was given).

    ``reps``: ``id_str``, where the image is, ``feat_0 … feat_{D-1}`` (the fine-tuned encoder's),
    ``score``, ``label`` (1, 0, -1 not labelled) and the :data:`CARRIED` columns known; ``ranked``:
    the unlabelled galaxies, best score first (ties: catalog order): ``id_str``, ``rank``, ``score``,
    then ``ra``, ``dec``, where the image is, ``true_class`` when known.
    """
    from raregal.inputs.tables import source_columns

    picked = catalog.reset_index(drop=True).iloc[result.rows]
    where = {c: picked[c].to_numpy() for c in source_columns(picked)}
    carried = {c: picked[c].to_numpy() for c in CARRIED if c in picked.columns}
    feats = pd.DataFrame(result.representation.astype(np.float32),
                         columns=[f"feat_{j}" for j in range(result.representation.shape[1])])
    reps = pd.concat([pd.DataFrame({ID: result.ids, **where}), feats,
                      pd.DataFrame({"score": result.scores, "label": result.labels.astype(np.int8), **carried})],
                     axis=1)
    todo = np.flatnonzero(result.labels == -1)
    order = todo[np.lexsort((todo, -result.scores[todo]))]
    ranked = pd.DataFrame({ID: result.ids[order], "rank": np.arange(1, len(order) + 1),
                           "score": result.scores[order]})
    for col in ("ra", "dec", *where, "true_class"):
        source = carried.get(col, where.get(col))
        if source is not None:
            ranked[col] = source[order]
    return reps, ranked


def save_finetuned(result: FinetuneResult, folder) -> None:
    """Write the fine-tuned encoder (raregal's format, :func:`~raregal.encoder.checkpoint.save_model`:
    loadable with ``--model folder``, without a Dirichlet head) and its binary head
    (:data:`HEAD_WEIGHTS`: ``weight`` (1, D), ``bias`` (1,)) into ``folder``."""
    from pathlib import Path

    from safetensors.torch import save_file

    from raregal.atomic import atomic_path
    from raregal.encoder.checkpoint import save_model

    folder = Path(folder)
    save_model(result.model, folder, training={"finetune": result.info, "member_head": HEAD_WEIGHTS,
                                               "history": result.history})
    linear = [m for m in result.head.modules() if isinstance(m, nn.Linear)][-1]
    with atomic_path(folder / HEAD_WEIGHTS) as tmp:
        save_file({"weight": linear.weight.detach().contiguous(), "bias": linear.bias.detach().contiguous()},
                  str(tmp), metadata={"raregal": "finetune member head", "class": result.info.get("class", "")})


def write_finetune(result: FinetuneResult, catalog: pd.DataFrame, out_dir, *, overwrite: bool = False,
                   inputs: tuple = (), extra: dict | None = None) -> dict:
    """Write a fine-tuning's folder ``out_dir`` (:mod:`raregal.runs.folder` kind ``finetune``: never a user's
    folder; ``overwrite`` replaces an earlier finetune folder's own files): ``reps.parquet``,
    ``ranked.csv``, ``model/`` (:func:`save_finetuned`), ``skipped.csv`` (when images could not be
    read) and ``finetune.json`` (last). Returns what ``finetune.json`` holds."""
    from pathlib import Path

    from raregal import atomic
    from raregal.runs import folder as runfolder

    out_dir = Path(out_dir)
    reps, ranked = result_tables(result, catalog)
    summary = {**result.info, **(extra or {}), "history": result.history,
               "files": {"reps": REPS, "ranked": RANKED, "model": f"{MODEL_DIR}/"}}
    runfolder.check_output_folder(out_dir, "finetune", overwrite=overwrite, inputs=inputs, flag="out_dir")
    with runfolder.WriteLock(out_dir, "raregal finetune"):
        runfolder.check_output_folder(out_dir, "finetune", overwrite=overwrite, inputs=inputs, flag="out_dir")
        runfolder.mark(out_dir, "finetune", "raregal finetune")
        if overwrite:
            runfolder.remove_outputs(out_dir, "finetune")
        atomic.write_parquet(out_dir / REPS, reps)
        atomic.write_text(out_dir / RANKED, ranked.to_csv(index=False))
        save_finetuned(result, out_dir / MODEL_DIR)
        if result.skipped is not None and len(result.skipped):
            atomic.write_text(out_dir / SKIPPED, result.skipped.to_csv(index=False))
        atomic.write_json(out_dir / SUMMARY, summary)
    return summary
