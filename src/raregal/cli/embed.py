"""``raregal embed CAT --model MODEL --out REPS.parquet``: representation + predicted vote fractions."""

from __future__ import annotations

import argparse


def register(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("embed", help="embed a catalog's images with an encoder",
                       description="Run the encoder over every image of a catalog and write id_str, file_loc, "
                                   "feat_0..feat_{D-1} and one <answer>_fraction column per answer of the model's "
                                   "Galaxy Zoo tree (e.g. smooth-or-featured_smooth_fraction for GZ DESI, "
                                   "smooth-or-featured-dr8_smooth_fraction for GZ DECaLS) to Parquet, in chunks "
                                   "(an interrupted run resumes). Unreadable images are skipped and listed.")
    p.add_argument("catalog", help="image catalog (id_str, file_loc): Parquet, CSV or FITS")
    p.add_argument("--model", default="demo",
                   help="'demo' (shipped encoder), hf_hub:owner/repo, a raregal model folder, or a weights file "
                        "(.safetensors, .ckpt, .pth, .bin) (default: demo)")
    p.add_argument("--arch", help="timm architecture, for weights files that do not say it")
    p.add_argument("--input-size", type=int, help="input size in pixels (default: the model's)")
    p.add_argument("--schema", metavar="NAME",
                   help="Galaxy Zoo tree the model's head predicts, where the file does not say it (a Zoobot "
                        "checkpoint whose head width fits several trees): " + _schema_names()
                        + " (default: a raregal model's own; a Zoobot head matched by its width)")
    p.add_argument("--out", required=True, help="output Parquet file, e.g. reps.parquet")
    p.add_argument("--carry", nargs="+", default=[], metavar="COL", help="catalog columns to copy to the output")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--chunk-size", type=int, default=4096, help="rows per resumable part (4096)")
    p.add_argument("--workers", type=int, default=None, help="image-decoding processes (default: half the cores, <= 4)")
    p.add_argument("--device", default=None, help="cpu, cuda, … (default: cuda if available)")
    p.add_argument("--backend", default="auto", choices=["auto", "torch", "onnx"],
                   help="inference engine: onnx (ONNX Runtime, fastest on CPU), torch; auto = onnx on CPU when "
                        "onnxruntime is installed (a core dependency), else torch")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16", "int8"],
                   help="auto = bf16 autocast on CUDA; on CPU int8 matrix products for transformers (MaxViT) when "
                        "they keep every probe galaxy's representation to cosine >= 0.999 of fp32, else fp32")
    p.add_argument("--dask", metavar="SCHEDULER", default=None,
                   help="embed on a Dask cluster: a scheduler address (tcp://host:8786), 'local', or a TOML file "
                        "with a [slurm] table of dask_jobqueue.SLURMCluster arguments (+ jobs = N). --out is then "
                        "a directory of Parquet parts, one per partition, which search reads as it is")
    p.add_argument("--dask-workers", type=int, default=None, metavar="N",
                   help="start a local Dask cluster of N worker processes (implies --dask local)")
    p.add_argument("--partition-size", type=int, default=512, help="rows per Dask task and part file (512)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.add_argument("--trust-checkpoint", action="store_true",
                   help="allow full unpickling of a .ckpt/.pth that holds Python objects (runs code in the file)")
    p.set_defaults(func=run)
    return p


def _schema_names() -> str:
    from raregal.inputs.gz_trees import SCHEMAS

    return ", ".join(SCHEMAS)


def run(args) -> int:
    import torch

    from raregal.inputs.tables import read_catalog
    from raregal.embedding.local import check_output, embed_catalog, load_model

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    catalog = read_catalog(args.catalog)
    if args.dask or args.dask_workers:
        return _run_dask(args, catalog, device)
    check_output(args.out, overwrite=args.overwrite, batch_size=args.batch_size, chunk_size=args.chunk_size,
                 inputs=(args.catalog,))  # before the model is loaded
    model = load_model(args.model, arch=args.arch, device=device, input_size=args.input_size,
                       trust_checkpoint=args.trust_checkpoint, schema=args.schema)
    summary = embed_catalog(catalog, model, args.out, chunk_size=args.chunk_size, batch_size=args.batch_size,
                            workers=args.workers, carry=args.carry, overwrite=args.overwrite, model_name=args.model,
                            backend=args.backend, precision=args.precision)
    print(f"embedded {summary['n_embedded']} of {summary['n_input']} images ({summary['representation_dim']}-d) "
          f"-> {args.out}; skipped {summary['n_skipped']} (see {summary['skipped_report']})"
          + (f"; vote fractions of the {summary['schema']} tree" if summary["has_fractions"] else ""))
    if not summary["has_fractions"]:
        print("note: this encoder has no Dirichlet head, so the *_fraction columns are NaN; "
              "search it without the morphology pre-filter")
    return 0


def _run_dask(args, catalog, device: str) -> int:
    from raregal.embedding.local import _check_carry, check_output
    from raregal.embedding.on_dask import ModelSpec, embed_catalog_dask, make_client

    # the local path's checks of the output folder (a user's folder or file is refused by name) and of
    # --carry, before a cluster starts or the model is loaded
    check_output(args.out, overwrite=args.overwrite, batch_size=args.batch_size, chunk_size=args.partition_size,
                 inputs=(args.catalog,), dask=True)
    _check_carry(catalog, args.carry)
    spec = ModelSpec(str(args.model), arch=args.arch, device=device, input_size=args.input_size,
                     trust_checkpoint=args.trust_checkpoint, backend=args.backend, precision=args.precision,
                     schema=args.schema)
    client, cluster = make_client(args.dask, n_workers=args.dask_workers)
    try:
        print(f"Dask: {client}")
        summary = embed_catalog_dask(catalog, spec, args.out, client, partition_size=args.partition_size,
                                     batch_size=args.batch_size, carry=args.carry, overwrite=args.overwrite)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    print(f"embedded {summary['n_embedded']} of {summary['n_input']} images ({summary['representation_dim']}-d) "
          f"on {summary['n_workers']} Dask workers -> {args.out}/ ({summary['chunks']} parts); "
          f"skipped {summary['n_skipped']} (see {summary['skipped_report']})")
    return 0
