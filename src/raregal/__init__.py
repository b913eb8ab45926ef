"""raregal: find rare, visually distinctive classes of galaxies without knowing what to look for.

The public API is these names, imported on first use (so ``import raregal`` stays fast)::

    import raregal

    table = raregal.read_table("reps.parquet")          # id_str, feat_*, *_fraction, ra, dec
    result = raregal.search("reps.parquet", seed=0)     # pre-filter -> UMAP -> HDBSCAN leaves
    raregal.write_run(result, "run")                    # RUN_DIR/clusters.parquet, summary.json, ...
    run = raregal.read_run("run")
    near = raregal.similar("run", cluster=0, k=20)      # the whole catalogue ranked by likeness
    nxt = raregal.guide("run", labels="labels.csv")     # a guided round: what to look at next

Stages (the subpackages, in the order a survey goes through them; ARCHITECTURE.md has the map):
``inputs`` (tables, shards, cutouts, sky, GZ trees) -> ``images`` -> ``encoder`` -> ``embedding``
-> ``discovery`` (the search) -> ``runs`` -> ``views`` (report, explorer, SAMP), ``similarity``,
``guided``, ``evaluation``; ``synth`` renders the synthetic survey of ``raregal demo``.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

#: Public name -> "module:attribute" it comes from.
_API = {
    "read_table": "raregal.inputs.tables:read_table",
    "read_catalog": "raregal.inputs.tables:read_catalog",
    "search": "raregal.discovery.pipeline:search",
    "search_table": "raregal.discovery.pipeline:search_table",
    "SearchResult": "raregal.discovery.pipeline:SearchResult",
    "SearchConfig": "raregal.discovery.config:SearchConfig",
    "RareClassSearch": "raregal.discovery.estimator:RareClassSearch",
    "Run": "raregal.runs.model:Run",
    "write_run": "raregal.runs.model:write_run",
    "read_run": "raregal.runs.model:read_run",
    "similar": "raregal.similarity:similar",
    "embed": "raregal.embedding.local:embed",
    "load_model": "raregal.encoder.loading:load_model",
    "GuidedSearch": "raregal.guided.estimator:GuidedSearch",
    "guide": "raregal.guided.rank:guide",
    "evaluate": "raregal.evaluation.encoders:evaluate",
    "InputError": "raregal.errors:InputError",
}

__all__ = sorted(_API) + ["__version__"]


def __getattr__(name: str):
    try:
        module, _, attr = _API[name].partition(":")
    except KeyError:
        raise AttributeError(f"module 'raregal' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))
