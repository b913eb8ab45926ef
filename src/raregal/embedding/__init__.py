"""Embedding a catalogue: locally, on Dask, and PCA of the representation."""
