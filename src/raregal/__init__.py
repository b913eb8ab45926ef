"""raregal: find rare, visually distinctive classes of galaxies without knowing what to look for.

The pipeline, one module per stage::

    synth    -> a seeded synthetic survey with planted rare classes (GalSim)
    catalog  -> read and check catalogs (``id_str``, ``file_loc``) and representation tables
    images   -> load jpg/png/FITS cutouts the way Zoobot does
    encoder  -> timm encoders with a 128-d bottleneck and a Galaxy Zoo DESI Dirichlet head
    embed    -> images -> representations + predicted vote fractions (Parquet)
    select   -> the pre-filter on predicted morphology
    reduce   -> UMAP
    cluster  -> HDBSCAN leaf clusters
    search   -> select + reduce + cluster, as an estimator and as a run directory
    report   -> galleries, maps and an interactive explorer
"""

__version__ = "0.1.0"
