"""raregal: find rare, visually distinctive classes of galaxies without knowing what to look for.

The pipeline, in the order a survey goes through it (ARCHITECTURE.md has the whole map)::

    data in     synth (synthetic survey), cutouts (Legacy Surveys), catalog, embedded (images inside
                Parquet shards), images + pixels + colour (decoding), sky (ra/dec), schema (GZ trees)
    model       encoder (timm + 128-d bottleneck + Dirichlet head), train, contrastive, pca
    represent   embed, embed_dask
    search      prefilter -> reduce (UMAP; layout, its thread-independent optimiser) -> cluster
                (HDBSCAN leaves), as the estimator in search, whose search_table is the pure core
                on a table; stability, merge, artifact_classes and diagnostics check its clusters;
                config holds its parameters; jitcache keeps compiled numba kernels between processes
    the run     runmodel (the run's files: Run, write_run, read_run), runfolder (ownership marker,
                write lock), report.rundir (a run with its images, for report and explore)
    look        report (HTML), explore (Bokeh server), similar, samp (TOPCAT/Aladin)
    measure     evaluate (encoder benchmark), metrics (planted recovery), datasets (planted tables),
                demo (the whole method on the synthetic survey), timing
    support     errors, atomic, workers (CPU budget), jitcache (numba kernel cache), cli
"""

__version__ = "0.1.0"
