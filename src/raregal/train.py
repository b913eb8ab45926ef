"""Train (or retrain) a bottlenecked galaxy encoder on volunteer vote counts, Zoobot-style.

The loss is the Dirichlet-multinomial negative log-likelihood of each galaxy's vote counts,
summed over the questions of the GZ DESI tree (missing counts count as 0 votes) and averaged
over the batch. Images are augmented with random rotations and flips. A seeded fraction of the
catalog is held out for validation; its loss is logged per question, the best epoch is kept,
and training stops early when the validation loss has not improved for ``patience`` epochs.

Output folder ``out``:

* ``config.json`` + ``model.safetensors``: the best model so far (a raregal model folder,
  loadable with ``raregal embed --model out``);
* ``last/``: the latest epoch's model and ``train_state.pt`` (optimizer, epoch, RNG, history);
  a rerun with the same ``out`` resumes from there;
* ``history.json``: per epoch, train and validation loss (nats per galaxy) and validation loss
  per question, images/s and seconds;
* ``skipped.csv``: images that could not be read (id, reason), left out of training.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from . import schema
from .atomic import write_json, write_text
from .catalog import image_sources
from .errors import InputError
from .images import ImageDataset, collate_images, eval_transform, train_transform

log = logging.getLogger("raregal")


def usable_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return max(1, os.cpu_count() or 1)


def default_workers() -> int:
    """Image-decoding worker processes: half the CPU cores, at most 4 (the rest run the model)."""
    return max(0, min(4, usable_cores() // 2))


def default_threads(workers: int) -> int:
    """Torch threads for the model: the cores that neither the decoding workers nor other running
    programs (the 1-minute load average) occupy, at least 1.

    More threads than free cores is far worse than fewer: OpenMP threads spin-wait for each
    other, and on a 2-core machine busy with other work, 2 threads trained 9 img/s where 1 thread
    trained 450 img/s (mobilenetv3_small_050, 64 px, batch 64).
    """
    cores = usable_cores()
    try:
        busy = int(round(os.getloadavg()[0]))
    except (AttributeError, OSError):  # pragma: no cover - Windows
        busy = 0
    return max(1, min(cores - workers, cores - busy))


@dataclass
class TrainConfig:
    """Settings of one training run (all saved with the model).

    ``lr`` and ``weight_decay`` are AdamW's (Zoobot's defaults); ``lr_schedule`` is ``constant``
    (Zoobot's default) or ``cosine`` (annealed to lr/100 over ``epochs``); ``val_fraction`` the held-out share
    of galaxies; ``patience`` the epochs without validation improvement before stopping;
    ``init`` a weights spec to start from (see :func:`raregal.encoder.loading.load_model`).
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


#: Settings that must match for a rerun to resume an earlier run in the same folder.
_RESUME_KEYS = ("arch", "bottleneck", "input_size", "channels", "dropout", "batch_size", "lr", "lr_schedule",
                "weight_decay",
                "val_fraction", "seed", "init")


def vote_counts(catalog: pd.DataFrame) -> np.ndarray:
    """The (N, 34) float32 vote counts of :data:`raregal.schema.ANSWERS`; missing values count as 0.

    Raises InputError when the catalog has none of the answer columns; answer columns it lacks
    entirely are treated as 0 votes with a warning naming them.
    """
    present = [a for a in schema.ANSWERS if a in catalog.columns]
    if not present:
        raise InputError("catalog has no vote-count columns; expected the GZ DESI answers, e.g. "
                         f"{', '.join(schema.ANSWERS[:3])} … (34 in all, see raregal.schema.ANSWERS)")
    absent = [a for a in schema.ANSWERS if a not in catalog.columns]
    if absent:
        log.warning("catalog lacks %d answer columns, counted as 0 votes: %s", len(absent), ", ".join(absent[:10]))
    counts = np.zeros((len(catalog), len(schema.ANSWERS)), dtype=np.float32)
    for j, a in enumerate(schema.ANSWERS):
        if a in catalog.columns:
            values = pd.to_numeric(catalog[a], errors="coerce").to_numpy(dtype=np.float64)
            if np.any(values[np.isfinite(values)] < 0):
                raise InputError(f"column {a!r} holds negative vote counts")
            counts[:, j] = np.nan_to_num(values, nan=0.0, posinf=0.0)
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


def evaluate(model, loader, device) -> dict:
    """Validation loss (nats): ``loss``, the mean over galaxies of the NLL summed over questions;
    ``per_question``, each question's mean NLL over the galaxies that were asked it; ``failed``,
    [(position, reason)] of unreadable images."""
    from .encoder.dirichlet import dirichlet_multinomial_nll

    model.eval()
    total, n = 0.0, 0
    q_sum = np.zeros(len(schema.TREE))
    q_n = np.zeros(len(schema.TREE))
    failed = []
    with torch.no_grad():
        for batch in loader:
            failed.extend(batch["failed"])
            if not len(batch["index"]):
                continue
            counts = batch["labels"].to(device)
            nll = dirichlet_multinomial_nll(model(batch["image"].to(device)), counts).cpu().numpy()
            total += float(nll.sum())
            n += len(nll)
            asked = (counts.cpu().numpy() @ _member()) > 0
            q_sum += (nll * asked).sum(0)
            q_n += asked.sum(0)
    per_q = {q.name: (float(q_sum[j] / q_n[j]) if q_n[j] else None) for j, q in enumerate(schema.TREE)}
    return {"loss": total / n if n else math.nan, "n": n, "per_question": per_q, "failed": failed}


def _member() -> np.ndarray:
    from .encoder.dirichlet import question_matrix

    return question_matrix()


def _init_weights(model, spec: str, device) -> None:
    """Copy every fitting tensor of ``spec`` into ``model``; all encoder tensors must fit."""
    from .encoder.loading import load_model, load_weights

    source = load_model(spec, arch=model.config.arch, channels=model.config.channels,
                        input_size=model.config.input_size)
    report = load_weights(model, source.state_dict(), spec, strict=False)
    enc_missing = [k for k in report["missing"] + report["mismatched"] if k.startswith("encoder.")]
    if enc_missing:
        raise InputError(f"--init {spec}: its encoder does not fit {model.config.arch}: {enc_missing[:8]}")
    log.info("initialised from %s: %d tensors copied; left at random init: %s", spec, len(report["loaded"]),
             sorted({k.split(".")[0] for k in report["missing"] + report["mismatched"]}) or "none")


def train(catalog: pd.DataFrame, out: str | os.PathLike, config: TrainConfig, restart: bool = False,
          progress: bool = True) -> dict:
    """Train on ``catalog`` (``id_str``, absolute ``file_loc``, vote counts) and write to ``out``.

    Resumes from ``out/last`` when it exists and its settings match (else InputError), unless
    ``restart``. On CPU, torch runs ``config.threads`` threads (default :func:`default_threads`)
    for the duration. Returns the run summary (also in ``out/history.json``): best epoch and
    validation loss (nats per galaxy), epochs run, images/s, skipped images.
    """
    before = torch.get_num_threads()
    if torch.device(config.device).type == "cpu":
        torch.set_num_threads(config.threads or default_threads(config.workers))
    try:
        return _train(catalog, out, config, restart, progress)
    finally:
        torch.set_num_threads(before)


def _train(catalog: pd.DataFrame, out: str | os.PathLike, config: TrainConfig, restart: bool,
           progress: bool) -> dict:
    from tqdm.auto import tqdm

    from .encoder import checkpoint
    from .encoder.dirichlet import dirichlet_loss
    from .encoder.loading import read_state_dict
    from .encoder.model import EncoderConfig, GalaxyEncoder

    out = Path(out)
    last = out / "last"
    counts = vote_counts(catalog)
    if len(catalog) < 2:
        raise InputError(f"need at least 2 galaxies to train, catalog has {len(catalog)}")
    device = torch.device(config.device)
    torch.manual_seed(config.seed)
    model = GalaxyEncoder(EncoderConfig(arch=config.arch, bottleneck=config.bottleneck or None,
                                        input_size=config.input_size, channels=config.channels,
                                        dropout=config.dropout, timm_kwargs=dict(config.timm_kwargs)))
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    if config.lr_schedule not in ("constant", "cosine"):
        raise InputError(f"--lr-schedule must be constant or cosine, got {config.lr_schedule!r}")
    scheduler = (torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs, eta_min=config.lr / 100)
                 if config.lr_schedule == "cosine" else None)
    state = None if restart else checkpoint.load_train_state(last)
    if state is not None:
        old = state["config"]
        differ = [k for k in _RESUME_KEYS if old.get(k) != asdict(config).get(k)]
        if differ or state["n_rows"] != len(catalog):
            what = differ or [f"catalog rows {state['n_rows']} -> {len(catalog)}"]
            raise InputError(f"{out} holds a run with other settings ({', '.join(map(str, what))}); "
                             "use another --out, or --restart to overwrite it")
        weights, _ = read_state_dict(last / checkpoint.WEIGHTS)
        model.load_state_dict(weights)
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"])
        log.info("resuming %s after epoch %d (best validation loss %.4f)", out, state["epoch"], state["best_loss"])
    elif config.init:
        _init_weights(model, config.init, device)
    model.to(device)
    for group in optimizer.state.values():  # optimizer state follows the model to the device
        for k, v in group.items():
            if isinstance(v, torch.Tensor):
                group[k] = v.to(device)

    tr_idx, va_idx = split_indices(catalog["id_str"], config.val_fraction, config.seed)
    locs = image_sources(catalog)  # file paths, or the images inside the catalog's shards
    train_ds = ImageDataset(locs[tr_idx], train_transform(config.input_size), config.channels, counts[tr_idx])
    val_ds = ImageDataset(locs[va_idx], eval_transform(config.input_size), config.channels, counts[va_idx])
    history = state["history"] if state else []
    best_loss = state["best_loss"] if state else math.inf
    bad_epochs = state["bad_epochs"] if state else 0
    start = state["epoch"] + 1 if state else 1
    skipped: dict[str, str] = dict(state.get("skipped", {})) if state else {}
    ids = catalog["id_str"].astype(str).to_numpy()
    log.info("training %s (bottleneck %s) on %d galaxies, validating on %d, %d px, batch %d, %s (%d threads, "
             "%d decoding workers)", config.arch, config.bottleneck, len(tr_idx), len(va_idx), config.input_size,
             config.batch_size, device, torch.get_num_threads(), config.workers)

    for epoch in range(start, config.epochs + 1):
        if bad_epochs >= config.patience:
            break
        model.train()
        t0 = time.perf_counter()
        loader = _loader(train_ds, config.batch_size, config.workers, True, config.seed * 100003 + epoch)
        bar = tqdm(total=len(train_ds), unit="img", unit_scale=True, desc=f"epoch {epoch}/{config.epochs}",
                   disable=not progress, leave=False)
        run_loss, n_seen = 0.0, 0
        for batch in loader:
            for i, reason in batch["failed"]:
                skipped.setdefault(ids[tr_idx[i]], reason)
            bar.update(len(batch["index"]) + len(batch["failed"]))
            if len(batch["index"]) < 2:  # batch norm needs two images
                continue
            loss = dirichlet_loss(model(batch["image"].to(device)), batch["labels"].to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            run_loss += loss.item() * len(batch["index"])
            n_seen += len(batch["index"])
            bar.set_postfix(loss=f"{run_loss / n_seen:.3f}")
        bar.close()
        train_s = time.perf_counter() - t0
        lr_used = optimizer.param_groups[0]["lr"]
        if scheduler is not None:
            scheduler.step()
        val_loader = _loader(val_ds, config.batch_size, config.workers, False, 0)
        if len(val_ds):
            val = evaluate(model, val_loader, device)
        else:  # no validation split asked for: monitor the training loss
            val = {"loss": run_loss / max(n_seen, 1), "per_question": {}, "failed": []}
        for i, reason in val["failed"]:
            skipped.setdefault(ids[va_idx[i]], reason)
        record = {"epoch": epoch, "train_loss": run_loss / max(n_seen, 1), "val_loss": val["loss"],
                  "val_loss_per_question": val["per_question"], "lr": lr_used, "train_images_per_s": n_seen / train_s,
                  "seconds": time.perf_counter() - t0}
        history.append(record)
        improved = val["loss"] < best_loss
        if improved:
            best_loss, bad_epochs = val["loss"], 0
            checkpoint.save_model(model, out, training={**asdict(config), "epoch": epoch, "val_loss": best_loss,
                                                       "n_train": len(tr_idx), "n_val": len(va_idx)})
        else:
            bad_epochs += 1
        checkpoint.save_model(model, last, training={**asdict(config), "epoch": epoch})
        checkpoint.save_train_state(last, {"config": asdict(config), "n_rows": len(catalog), "epoch": epoch,
                                           "optimizer": optimizer.state_dict(), "rng": torch.get_rng_state(),
                                           "scheduler": scheduler.state_dict() if scheduler is not None else None,
                                           "history": history, "best_loss": best_loss, "bad_epochs": bad_epochs,
                                           "skipped": skipped})
        log.info("epoch %d: train loss %.4f, validation loss %.4f nats/galaxy%s, %.0f img/s, %.1f s", epoch,
                 record["train_loss"], val["loss"], " (best)" if improved else "", record["train_images_per_s"],
                 record["seconds"])
        write_json(out / "history.json", {"config": asdict(config), "epochs": history, "best_val_loss": best_loss})

    if skipped:
        frame = pd.DataFrame({"id_str": list(skipped), "reason": list(skipped.values())})
        write_text(out / "skipped.csv", frame.to_csv(index=False))
        log.warning("%d images could not be read and were left out; see %s", len(skipped), out / "skipped.csv")
    best = min(history, key=lambda r: r["val_loss"]) if history else None
    summary = {"out": str(out.resolve()), "epochs_run": len(history), "best_epoch": best and best["epoch"],
               "best_val_loss": best_loss, "stopped_early": bad_epochs >= config.patience,
               "train_images_per_s": float(np.mean([r["train_images_per_s"] for r in history])) if history else None,
               "n_train": len(tr_idx), "n_val": len(va_idx), "n_skipped": len(skipped)}
    write_json(out / "history.json", {"config": asdict(config), "epochs": history, "best_val_loss": best_loss,
                                      "summary": summary})
    return summary
