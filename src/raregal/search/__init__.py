"""The rare-class search: pre-filter -> k-NN graph -> UMAP layout -> HDBSCAN leaves -> checks."""
