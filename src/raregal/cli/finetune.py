"""``raregal finetune CATALOG_OR_RUN --labels LABELS --out OUT_DIR``: fine-tune the encoder on labels, re-embed,
rank."""

from __future__ import annotations


def register(subparsers) -> None:
    from raregal.encoder import finetune as ft

    p = subparsers.add_parser(
        "finetune", help="fine-tune the encoder's last blocks and a member-or-not head on labels, then re-embed",
        description="When the representation does not separate a class: fine-tunes the encoder's last blocks, its "
                    "bottleneck and a binary head on your labels (id_str, label 1 = member / 0 = not; unlabelled "
                    "galaxies drawn as stand-in non-members), then re-embeds every galaxy and ranks them. Writes "
                    "OUT_DIR/reps.parquet (id_str, feat_* of the fine-tuned encoder, score, label, ra, dec, file_loc: "
                    "continue with `raregal guide OUT_DIR/reps.parquet --labels LABELS`), OUT_DIR/ranked.csv (the "
                    "unlabelled galaxies, best first) and OUT_DIR/model/ (the fine-tuned encoder: "
                    "--model OUT_DIR/model).")
    p.add_argument("source", metavar="CATALOG_OR_RUN",
                   help="image catalog (id_str, file_loc) or a run folder (raregal search output, its table's images)")
    p.add_argument("--labels", help="labels table (CSV/Parquet/FITS: id_str, label, optional class); default for a "
                                    "run: its labels.parquet, written by `raregal explore`")
    p.add_argument("--class", dest="class_name", metavar="NAME", help="which class, when the labels hold several")
    p.add_argument("--out", dest="out_dir", required=True, help="folder to write (new, empty, or an earlier "
                                                                "finetune folder with --overwrite)")
    p.add_argument("--model", default="demo", help="encoder to start from: 'demo', a raregal model folder, a weights "
                                                   "file or hf_hub:owner/repo (default: demo)")
    p.add_argument("--arch", help="timm architecture, for weights files that do not say it")
    p.add_argument("--epochs", type=int, default=ft.EPOCHS, help=f"passes over the training set (default {ft.EPOCHS})")
    p.add_argument("--blocks", type=int, default=ft.BLOCKS,
                   help="backbone stages trained, from the last (default: all but the stem, 6 of the demo encoder's "
                        "7); the layers after them, the bottleneck and the head always are")
    p.add_argument("--lr", type=float, default=ft.LR, help=f"AdamW learning rate (default {ft.LR:g})")
    p.add_argument("--pseudo-negatives", type=int, default=None, metavar="N",
                   help=f"unlabelled galaxies drawn as stand-in non-members (default: enough for "
                        f"max({ft.PSEUDO_MIN}, {ft.PSEUDO_PER_MEMBER} x members) non-members)")
    p.add_argument("--batch-size", type=int, default=ft.BATCH_SIZE)
    p.add_argument("--seed", type=int, default=0, help="seed (the same labels and seed give the same scores)")
    p.add_argument("--workers", type=int, default=None, help="image-decoding processes (default: half the cores, <= 4)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: the cores left free)")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier raregal finetune folder")
    p.set_defaults(func=run, param_flags={"class_name": "--class", "out_dir": "--out", "labels": "--labels",
                                          "pseudo_negatives": "--pseudo-negatives", "batch_size": "--batch-size"})


def run(args) -> int:
    import time

    from raregal.runs import folder
    from raregal.embedding.local import load_model
    from raregal.encoder import finetune as ft
    from raregal.workers import default_workers

    t0 = time.perf_counter()
    inputs = tuple(p for p in (args.source, args.labels) if p)
    folder.check_output_folder(args.out_dir, "finetune", overwrite=args.overwrite, inputs=inputs, flag="out_dir")
    ft.check_settings(args.blocks, args.epochs, args.lr, args.pseudo_negatives, args.batch_size)
    catalog = ft.read_source(args.source)
    labels = ft.source_labels(args.source, args.labels)
    ft.training_set(catalog, labels, class_name=args.class_name, pseudo_negatives=args.pseudo_negatives,
                    seed=args.seed)  # every label problem is said here, before the model is loaded
    model = load_model(args.model, arch=args.arch)
    workers = default_workers() if args.workers is None else args.workers
    result = ft.finetune(model, catalog, labels, blocks=args.blocks, epochs=args.epochs, lr=args.lr, seed=args.seed,
                         pseudo_negatives=args.pseudo_negatives, class_name=args.class_name,
                         batch_size=args.batch_size, workers=workers, threads=args.threads)
    ft.write_finetune(result, catalog, args.out_dir, overwrite=args.overwrite, inputs=inputs,
                      extra={"source": str(args.source), "labels": args.labels, "model": str(args.model)})
    info, out = result.info, args.out_dir
    name = f" {info['class']!r}" if info["class"] else ""
    print(f"fine-tuned {args.model} on the class{name} ({info['n_members']} members, {info['n_non_members']} "
          f"non-members, {info['n_pseudo_negatives']} stand-ins; {', '.join(info['trainable'])}) for {args.epochs} "
          f"epochs in {info['seconds']['train']:.1f} s; re-embedded {info['n_embedded']:,} galaxies in "
          f"{info['seconds']['embed']:.1f} s" + (f" ({info['n_skipped']} unreadable, see {out}/{ft.SKIPPED})"
                                                 if info["n_skipped"] else ""))
    print(f"representation: {out}/{ft.REPS}  (next: raregal guide {out}/{ft.REPS} --labels LABELS)")
    print(f"ranking:        {out}/{ft.RANKED}")
    print(f"model:          {out}/{ft.MODEL_DIR}/  (raregal embed CATALOG --model {out}/{ft.MODEL_DIR})")
    print(f"done in {time.perf_counter() - t0:.1f} s")
    return 0
