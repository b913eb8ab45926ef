"""``raregal train --catalog CAT --out CKPT_DIR``: train a bottlenecked encoder on votes, without them, or both."""

from __future__ import annotations

import argparse


def register(sub) -> argparse.ArgumentParser:
    from raregal.encoder.contrastive import METHODS
    from raregal.inputs.gz_trees import SCHEMAS
    from raregal.encoder.train import OBJECTIVES

    p = sub.add_parser("train", help="train an encoder on Galaxy Zoo vote counts, without votes, or both",
                       description="Train (or retrain from --init) a timm encoder with an optional bottleneck. "
                                   "--objective dirichlet (default): a Dirichlet head on Galaxy Zoo vote counts "
                                   "(Dirichlet-multinomial loss summed over questions) of the tree --schema names "
                                   "or the catalog's vote columns show (GZ DESI, a GZ DECaLS campaign, all DECaLS "
                                   "campaigns, GZ2). contrastive: no votes "
                                   "needed; two augmented views of each galaxy, a projection head and a "
                                   "contrastive loss (--contrastive-method); the encoder has no Dirichlet head. "
                                   "hybrid: the Dirichlet loss on the galaxies with votes plus "
                                   "--contrastive-weight x the contrastive loss on all. Rerunning with the same "
                                   "--out resumes.")
    p.add_argument("--catalog", required=True,
                   help="catalog with id_str, file_loc and (dirichlet, hybrid) vote-count columns of a Galaxy Zoo "
                        "tree (e.g. smooth-or-featured_smooth, or smooth-or-featured-dr8_smooth)")
    p.add_argument("--schema", metavar="NAME",
                   help="Galaxy Zoo tree of the votes and the head: " + ", ".join(SCHEMAS)
                        + " (default: inferred from the catalog's vote columns; an error lists the candidates "
                          "when several fit)")
    p.add_argument("--out", required=True, help="folder for the model (best epoch), last/ (resume) and history.json")
    p.add_argument("--arch", default="efficientnet_b0", help="timm architecture (efficientnet_b0, maxvit_tiny_rw_224, …)")
    p.add_argument("--bottleneck", type=int, default=128, help="representation width; 0 for no bottleneck (128)")
    p.add_argument("--init", help="start from these weights: 'demo', hf_hub:…, a raregal folder or a weights file")
    p.add_argument("--input-size", type=int, default=224, help="square input size in pixels (224)")
    p.add_argument("--epochs", type=int, default=30, help="most epochs to run (30)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3, help="AdamW learning rate (1e-3)")
    p.add_argument("--lr-schedule", choices=["constant", "cosine"], default="constant",
                   help="constant (Zoobot's default) or cosine annealing to lr/100 over --epochs")
    p.add_argument("--weight-decay", type=float, default=0.01, help="AdamW weight decay (0.01)")
    p.add_argument("--dropout", type=float, default=0.2, help="dropout before the Dirichlet head (0.2)")
    p.add_argument("--val-fraction", type=float, default=0.1, help="share of galaxies held out for validation (0.1)")
    p.add_argument("--patience", type=int, default=5, help="stop after this many epochs without improvement (5)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--objective", default=OBJECTIVES[0], metavar="|".join(OBJECTIVES),
                   help="what the encoder learns from: votes (dirichlet, the default), two views of each galaxy "
                        "(contrastive, no votes needed) or both (hybrid)")
    p.add_argument("--contrastive-method", default=METHODS[0], metavar="|".join(METHODS),
                   help=f"contrastive loss ({METHODS[0]}; see benchmarks/README.md for how it was chosen)")
    p.add_argument("--contrastive-weight", type=float, default=1.0,
                   help="hybrid: weight of the contrastive loss added to the Dirichlet loss (1.0)")
    p.add_argument("--rarity-weight", type=float, default=0.0,
                   help="dirichlet, hybrid: weigh each galaxy's Dirichlet loss by how rare its votes are (their KL "
                        "from the average volunteer's); 0 (default) is Zoobot's unweighted loss")
    p.add_argument("--temperature", type=float, default=0.2, help="simclr: temperature of the NT-Xent loss (0.2)")
    p.add_argument("--workers", type=int, default=None, help="image-decoding processes (default: half the cores, <= 4)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads on CPU (default: the cores neither the decoding workers nor other programs use)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, … (default: cuda if available)")
    p.add_argument("--restart", action="store_true", help="ignore an earlier run in --out instead of resuming it")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    import torch

    from raregal.inputs.tables import read_catalog
    from raregal.errors import InputError
    from raregal.encoder.train import TrainConfig, train
    from raregal.workers import default_workers

    if args.bottleneck < 0 or args.input_size < 8 or args.epochs < 1 or args.batch_size < 2:
        raise InputError("--bottleneck must be >= 0, --input-size >= 8, --epochs >= 1, --batch-size >= 2")
    if not 0 <= args.val_fraction < 1:
        raise InputError("--val-fraction must be in [0, 1)")
    config = TrainConfig(arch=args.arch, bottleneck=args.bottleneck or None, input_size=args.input_size,
                         epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, lr_schedule=args.lr_schedule,
                         weight_decay=args.weight_decay,
                         dropout=args.dropout, val_fraction=args.val_fraction, patience=args.patience, seed=args.seed,
                         workers=default_workers() if args.workers is None else args.workers, threads=args.threads,
                         device=args.device or ("cuda" if torch.cuda.is_available() else "cpu"), init=args.init,
                         objective=args.objective, contrastive_method=args.contrastive_method,
                         contrastive_weight=args.contrastive_weight, temperature=args.temperature,
                         rarity_weight=args.rarity_weight,
                         schema=args.schema)
    config.validate()  # before reading the catalog
    if args.schema is not None:
        from raregal.inputs.gz_trees import get

        config.schema = get(args.schema, param="schema").name
    catalog = read_catalog(args.catalog)
    summary = train(catalog, args.out, config, restart=args.restart)
    unit = " nats/galaxy" if args.objective == "dirichlet" else f" ({args.objective})"
    print(f"trained {summary['epochs_run']} epochs; best validation loss {summary['best_val_loss']:.4f}{unit} "
          f"at epoch {summary['best_epoch']}; {summary['train_images_per_s']:.0f} img/s. Model in {args.out}/"
          + (f" (head: the {summary['schema']} tree)" if summary["has_head"]
             else " (no Dirichlet head: it predicts no vote fractions)")
          + f" (use: raregal embed CAT --model {args.out} --out reps.parquet)")
    return 0
