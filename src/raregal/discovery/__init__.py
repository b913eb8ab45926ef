"""The unsupervised rare-class search (the paper's method): pre-filter -> k-NN graph -> UMAP -> HDBSCAN leaves -> checks."""
