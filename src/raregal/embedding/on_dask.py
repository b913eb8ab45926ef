"""Embed a catalog on many machines with Dask: one Parquet part per partition, resumable.

The catalog is cut into partitions of ``partition_size`` rows. Each partition is one Dask task
that runs :func:`raregal.embedding.local.embed_chunk` on a worker and writes ``OUT/part-NNNNN.parquet``
atomically (plus ``OUT/_part-NNNNN.skipped.csv``, the images it could not read). The output is
therefore a directory of Parquet parts, which :func:`raregal.inputs.tables.read_table` (and so
``raregal search``) reads as one table; bookkeeping files start with ``_`` so that Parquet
readers ignore them.

* **Model once per worker**: the first task on a worker process loads the model and keeps it in
  a per-process cache keyed by the model spec, so later partitions on that worker reuse it.
* **No partition is redone**: a finished partition is a part file on disk. A task whose part
  already exists returns at once, and a new run over the same ``OUT`` submits only the missing
  partitions (``_manifest.json`` holds a fingerprint of model, catalog and partition size, so a
  resume never mixes two runs). A part is trusted only when it reads back whole
  (:func:`raregal.embedding.local.part_done`): a damaged one is named in a warning and redone.
* **Only raregal's folder**: ``OUT`` must be new, empty, or raregal's (its ``_manifest.json``)
  holding nothing but raregal's files; anything else is refused by name before the model is
  loaded (:func:`raregal.embedding.local.check_output`, the same check as the local path's).
* **Summary**: ``OUT.embed.json`` beside the folder (``reps/`` -> ``reps.embed.json``), the same
  file and keys as a local run's (:func:`raregal.embedding.local.write_summary`).
* **Threads**: Dask's nannies start workers with ``OMP_NUM_THREADS=1``, so each worker process
  runs the model on one thread; start one worker process per core (or per GPU).
* **Crashes**: when a worker dies, the Dask scheduler reruns its unfinished tasks elsewhere (up to
  ``distributed.scheduler.allowed-failures`` times); a task that raises is retried ``retries``
  times. Part files are written atomically, so a killed write leaves nothing behind.

The cluster is whatever :func:`make_client` gives: a scheduler address, a local cluster of N
worker processes, or a ``dask_jobqueue.SLURMCluster`` described by a TOML file.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from raregal.atomic import write_parquet, write_text
from raregal.inputs.tables import source_columns
from raregal.errors import InputError

log = logging.getLogger("raregal")

__all__ = ["ModelSpec", "embed_catalog_dask", "embed_partition", "make_client", "part_path"]

#: Models loaded in this process, by :class:`ModelSpec` (one per worker process).
_MODELS: dict = {}


@dataclass(frozen=True)
class ModelSpec:
    """How a worker loads the model: the arguments of :func:`raregal.encoder.load_model` (hashable)."""

    spec: str
    arch: str | None = None
    device: str = "cpu"
    input_size: int | None = None
    trust_checkpoint: bool = False
    backend: str = "auto"
    precision: str = "auto"
    schema: str | None = None  # the Galaxy Zoo tree of a head whose file does not say it (--schema)

    def load(self):
        """(model, runner) for this spec, loaded at most once per process (see :mod:`raregal.encoder.runtime`)."""
        if self not in _MODELS:
            from raregal.encoder.loading import load_model
            from raregal.encoder.runtime import make_runner

            t0 = time.perf_counter()
            model = load_model(self.spec, arch=self.arch, device=self.device, input_size=self.input_size,
                               trust_checkpoint=self.trust_checkpoint, schema=self.schema)
            _MODELS[self] = (model, make_runner(model, self.backend, self.precision))
            log.info("worker pid %d loaded %s in %.2f s", os.getpid(), self.spec, time.perf_counter() - t0)
        return _MODELS[self]


def part_path(out: str | os.PathLike, i: int) -> Path:
    """The Parquet part of partition ``i`` in the output directory ``out``."""
    return Path(out) / f"part-{i:05d}.parquet"


def _skipped_part(out: Path, i: int) -> Path:
    return out / f"_part-{i:05d}.skipped.csv"


def _arrow_table(frame: pd.DataFrame):
    """``frame`` as an Arrow table whose all-empty object columns are strings, not nulls.

    A partition in which every image failed has empty carried columns; Arrow would type them
    ``null`` and that part's schema would then disagree with the others'.
    """
    import pyarrow as pa

    table = pa.Table.from_pandas(frame, preserve_index=False)
    for j, fld in enumerate(table.schema):
        if pa.types.is_null(fld.type):
            table = table.set_column(j, pa.field(fld.name, pa.string()), table.column(j).cast(pa.string()))
    return table


def embed_partition(model_spec: ModelSpec, rows: pd.DataFrame, out: str, i: int, batch_size: int = 64,
                    num_workers: int = 0, carry: tuple = ()) -> dict:
    """The Dask task: embed ``rows`` (``id_str``, absolute ``file_loc``) into ``OUT/part-{i:05d}.parquet``.

    Returns ``{"partition", "n_rows", "n_embedded", "n_skipped", "seconds", "pid", "done_before", "precision",
    "backend"}`` (``precision``, ``backend``: what the runner chose, e.g. ``int8`` for ``auto``; absent for a
    finished partition). A partition whose part already exists and reads back whole is not recomputed
    (``done_before`` True); a damaged one is (:func:`raregal.embedding.local.part_done`).
    """
    from raregal.embedding.local import embed_chunk, part_done

    out_dir = Path(out)
    part = part_path(out_dir, i)
    if part_done(part, _skipped_part(out_dir, i), len(rows)):
        import pyarrow.parquet as pq

        n = pq.read_metadata(part).num_rows
        return {"partition": i, "n_rows": len(rows), "n_embedded": n, "n_skipped": len(rows) - n,
                "seconds": 0.0, "pid": os.getpid(), "done_before": True}
    t0 = time.perf_counter()
    model, runner = model_spec.load()
    table, skipped = embed_chunk(model, rows, batch_size=batch_size, num_workers=num_workers, carry=list(carry),
                                 runner=runner)
    # the skipped list first: the part file is the mark of a finished partition
    write_text(_skipped_part(out_dir, i), skipped.to_csv(index=False))
    write_parquet(part, _arrow_table(table))
    return {"partition": i, "n_rows": len(rows), "n_embedded": len(table), "n_skipped": len(skipped),
            "seconds": round(time.perf_counter() - t0, 3), "pid": os.getpid(), "done_before": False,
            "precision": getattr(runner, "precision", model_spec.precision),
            "backend": getattr(runner, "backend", model_spec.backend)}


def make_client(dask: str | None = None, n_workers: int | None = None, threads_per_worker: int = 1):
    """A ``distributed.Client`` for an embedding run, and the cluster it started (or None).

    ``dask`` is a scheduler address (``tcp://host:8786``), a TOML file whose ``[slurm]`` table
    holds ``dask_jobqueue.SLURMCluster`` arguments (plus ``jobs``, the number of jobs to
    start), or None/``"local"`` for a ``distributed.LocalCluster`` of ``n_workers`` processes
    with ``threads_per_worker`` threads each. Close the client, then the cluster, when done.
    """
    from distributed import Client, LocalCluster

    if dask and dask != "local" and dask.endswith(".toml"):
        from raregal.discovery.config import tomllib  # the stdlib module on Python >= 3.11, tomli before

        path = Path(dask)
        if not path.is_file():
            raise InputError(f"--dask {dask}: no such file")
        conf = tomllib.loads(path.read_text()).get("slurm")
        if not isinstance(conf, dict):
            raise InputError(f"{path}: needs a [slurm] table of dask_jobqueue.SLURMCluster arguments")
        try:
            from dask_jobqueue import SLURMCluster
        except ImportError as err:
            raise InputError("a SLURM cluster needs dask-jobqueue: pip install 'raregal[slurm]'") from err
        conf = dict(conf)
        jobs = int(conf.pop("jobs", 1))
        cluster = SLURMCluster(**conf)
        cluster.scale(jobs=jobs)
        return Client(cluster), cluster
    if dask and dask != "local":
        return Client(dask), None
    cluster = LocalCluster(n_workers=n_workers or 2, threads_per_worker=threads_per_worker, processes=True,
                           dashboard_address=None)
    return Client(cluster), cluster


@dataclass
class _Plan:
    n_rows: int
    partition_size: int
    n_partitions: int
    fingerprint: str
    carry: list = field(default_factory=list)

    def rows(self, i: int) -> int:
        """Catalog rows in partition ``i``."""
        return min(self.n_rows, (i + 1) * self.partition_size) - i * self.partition_size


def _plan(catalog: pd.DataFrame, model, partition_size: int, carry: list, out: Path, overwrite: bool) -> _Plan:
    """The partitions of this run, and ``out`` opened for them (the local path's
    :func:`~raregal.embedding.local.open_parts_folder`: resumed, or another run's parts replaced with ``overwrite``)."""
    from raregal.embedding.local import DASK_MANIFEST, _fingerprint, check_parts_folder, open_parts_folder

    check_parts_folder(out, DASK_MANIFEST)  # a user's folder is refused before anything else
    n = len(catalog)
    plan = _Plan(n, partition_size, max(1, -(-n // partition_size)),
                 _fingerprint(model, catalog, partition_size, carry), carry)
    open_parts_folder(out, DASK_MANIFEST, asdict(plan), overwrite=overwrite, unit="partition size")
    return plan


def embed_catalog_dask(catalog: pd.DataFrame, model_spec: ModelSpec, out: str | os.PathLike, client, *,
                       partition_size: int = 512, batch_size: int = 64, loader_workers: int = 0, carry=(),
                       overwrite: bool = False, retries: int = 2, progress: bool = True) -> dict:
    """Embed every row of ``catalog`` on the workers of ``client`` into the directory ``out``.

    Parameters
    ----------
    catalog : DataFrame with ``id_str`` and absolute ``file_loc`` (:func:`raregal.inputs.tables.read_catalog`).
    model_spec : what each worker loads (:class:`ModelSpec`); it is also loaded here once, to fail
        early on a bad spec and to fingerprint the run.
    out : output directory of ``part-NNNNN.parquet`` files (the representation table).
    partition_size : rows per partition, the unit of work and of resumption.
    loader_workers : image-decoding processes inside each task (0 = decode in the worker itself;
        Dask worker processes are daemons, which may not start children unless
        ``distributed.worker.daemon`` is False).
    retries : reruns of a task that raised (worker deaths are handled by the scheduler).

    ``out`` must be new, empty or an earlier Dask embedding's folder holding only raregal's files
    (:func:`raregal.embedding.local.check_output`, checked before the model is loaded); a damaged
    part of an interrupted run is named in a warning and redone.

    Returns the summary also written to ``OUT.embed.json`` beside the folder: the keys of a local run's
    (:func:`raregal.embedding.local.write_summary`; ``chunks`` are the partitions, ``chunks_resumed`` those
    done before this run, ``worker_pids`` the workers that did the work).
    """
    from raregal.embedding.local import _check_carry, check_output, part_done

    out = check_output(out, overwrite=overwrite, batch_size=batch_size, chunk_size=partition_size, dask=True)
    carry = _check_carry(catalog, carry)
    catalog = catalog.reset_index(drop=True)
    from raregal.encoder.loading import load_model

    # on CPU, only to check and fingerprint
    model = load_model(model_spec.spec, arch=model_spec.arch, input_size=model_spec.input_size,
                       trust_checkpoint=model_spec.trust_checkpoint, schema=model_spec.schema)
    plan = _plan(catalog, model, partition_size, carry, out, overwrite)
    todo = [i for i in range(plan.n_partitions)
            if not part_done(part_path(out, i), _skipped_part(out, i), plan.rows(i))]  # a damaged part is redone
    if len(todo) < plan.n_partitions:
        log.info("resuming: %d of %d partitions already done in %s", plan.n_partitions - len(todo),
                 plan.n_partitions, out)
    t0 = time.perf_counter()
    results = _run_partitions(client, model_spec, catalog, out, todo, plan, partition_size, batch_size,
                              loader_workers, carry, retries, progress)
    return _finish(out, model, model_spec, client, plan, todo, results, time.perf_counter() - t0,
                   partition_size=partition_size, batch_size=batch_size, loader_workers=loader_workers, carry=carry)


def _run_partitions(client, model_spec, catalog, out, todo, plan, partition_size, batch_size, loader_workers,
                    carry, retries, progress) -> list[dict]:
    """Submit the partitions ``todo`` to the cluster and gather their results as they finish."""
    from distributed import as_completed
    from tqdm.auto import tqdm

    columns = ["id_str", *source_columns(catalog), *carry]
    run_token = uuid.uuid4().hex[:8]  # fresh task keys: a rerun on the same client never reuses old results
    futures = [client.submit(embed_partition, model_spec, catalog.iloc[i * partition_size:(i + 1) * partition_size]
                             [columns], str(out), i, batch_size, loader_workers, tuple(carry),
                             key=f"raregal-embed-{run_token}-{i:05d}", retries=retries, pure=False)
               for i in todo]
    results = []
    with tqdm(total=sum(plan.rows(i) for i in todo), unit="img", unit_scale=True, desc="embed (dask)",
              disable=not progress) as bar:
        for future in as_completed(futures):
            res = future.result()
            results.append(res)
            bar.update(res["n_rows"])
    return results


def _finish(out, model, model_spec, client, plan, todo, results, seconds, *, partition_size, batch_size,
            loader_workers, carry) -> dict:
    """Gather the skipped lists, write the summary (the local run's format) and say where it all went."""
    import pyarrow.parquet as pq

    from raregal.embedding.local import write_summary

    skipped = pd.concat([pd.read_csv(_skipped_part(out, i), dtype=str) for i in range(plan.n_partitions)
                         if _skipped_part(out, i).is_file()], ignore_index=True)
    write_text(out / "_skipped.csv", skipped.to_csv(index=False))
    n_embedded = sum(pq.read_metadata(part_path(out, i)).num_rows for i in range(plan.n_partitions))
    fresh = [r for r in results if not r["done_before"]]
    summary = write_summary(
        out, model, engine="dask", model_name=model_spec.spec, n_input=plan.n_rows, n_embedded=n_embedded,
        n_skipped=len(skipped), skipped_report=out / "_skipped.csv", chunk_size=partition_size,
        chunks=plan.n_partitions, chunks_resumed=plan.n_partitions - len(todo), seconds=seconds,
        n_done=sum(r["n_rows"] for r in fresh), batch_size=batch_size, workers=loader_workers,
        n_workers=len(client.scheduler_info().get("workers", {})), worker_pids=sorted({r["pid"] for r in fresh}),
        device=model_spec.device, backend=",".join(sorted({r.get("backend", model_spec.backend) for r in fresh}))
        or model_spec.backend, precision=",".join(sorted({r.get("precision", model_spec.precision) for r in fresh}))
        or model_spec.precision, carry=carry)
    (out / "_embed.json").unlink(missing_ok=True)  # an older raregal's summary: it never stands stale beside this one
    if len(skipped):
        log.warning("%d of %d images could not be read and were skipped, e.g. %s; list in %s", len(skipped),
                    plan.n_rows, ", ".join(skipped["id_str"].head(5)), out / "_skipped.csv")
    log.info("embedded %d images on %d Dask workers in %.1f s -> %s", n_embedded, summary["n_workers"], seconds, out)
    return summary
