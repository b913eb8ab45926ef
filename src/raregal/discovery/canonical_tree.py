"""One spanning tree per hierarchy: make HDBSCAN's labels independent of which tied MST edges were picked.

HDBSCAN's hierarchy is the single linkage of a minimum spanning tree of the mutual-reachability
graph. Mutual-reachability weights tie often (every edge whose weight is a point's core distance
ties with that point's other such edges), and then the graph has many minimum spanning trees.
fast_hdbscan's parallel Boruvka picks among them by which thread finds an edge first, so the
tree, and through the order of tied merges a few labels, change from run to run on more than one
thread (measured: 1 label in 1,500 in 3 of 8 identical fits on 2 threads).

What every minimum spanning tree shares is the partition it induces at each weight: the
components of the edges lighter than w, and which of them the edges of weight exactly w join
(those are the components of the whole graph at these thresholds, whichever tree is taken).
:func:`canonical_spanning_tree` rewrites the tree's edges of each weight from that partition
alone: the components joined at weight w are named by their smallest point index, and each
group of them becomes a star from its smallest member to the others in ascending order. Any
minimum spanning tree of the same graph gives the same rewritten tree, so the single linkage,
condensed tree and labels built from it are the same, bit for bit, while the Boruvka that finds
the tree runs on every core. The rewritten tree has the same weights and the same components at
every weight; what it fixes is the order of merges at equal weights (smallest index first), a
fixed, arbitrary tie-break. HDBSCAN's condensed tree does depend on that order (which of several
components merging at one weight counts as the parent), so its clusters can differ from those of
another tie-break, as they differ between the trees fast_hdbscan's threads happen to pick; the
star may even merge two components that no edge of that weight joins directly, which single
linkage does not mind (it only sees components).

Written here because no library offers it: fast_hdbscan's ``reproducible=True`` fixes the block
order, not the choice among tied edges, and scipy's and hdbscan's single linkage take the tree
as given.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True)
def _root(parent: np.ndarray, i: int) -> int:
    while parent[i] != i:
        parent[i] = parent[parent[i]]  # path halving
        i = parent[i]
    return i


@numba.njit(cache=True)
def _rewrite(src: np.ndarray, dst: np.ndarray, weight: np.ndarray, n: int) -> np.ndarray:
    """The canonical tree (m, 3) of the tree edges ``src``-``dst`` sorted by ``weight`` (m = n - 1).

    The output comes sorted by (weight, src, dst): weight groups in input order, and within one
    the edges (group, member) in ascending key order, where src is the group's smallest member.
    """
    m = len(weight)
    parent = np.arange(n)
    smallest = np.arange(n)  # smallest point index of each component, kept at its root
    out = np.empty((m, 3))
    reps = np.empty((m, 2), dtype=np.int64)
    i = 0
    while i < m:
        j = i + 1  # (a NaN weight is a group of its own)
        while j < m and weight[j] == weight[i]:
            j += 1
        for e in range(i, j):  # the components below this weight that each edge of it joins
            reps[e, 0] = smallest[_root(parent, src[e])]
            reps[e, 1] = smallest[_root(parent, dst[e])]
        for e in range(i, j):  # merge them (the partition at this weight, whichever edges were picked)
            a, b = _root(parent, src[e]), _root(parent, dst[e])
            if a != b:
                parent[b] = a
                smallest[a] = min(smallest[a], smallest[b])
        keys = np.empty(2 * (j - i), dtype=np.int64)  # (component at this weight, member below it)
        for e in range(i, j):
            group = smallest[_root(parent, src[e])]
            keys[2 * (e - i)] = group * n + reps[e, 0]
            keys[2 * (e - i) + 1] = group * n + reps[e, 1]
        keys = np.unique(keys)  # sorted: groups in turn, each's members ascending
        k = i
        for t in range(1, len(keys)):
            if keys[t] // n == keys[t - 1] // n:  # a star from each group's smallest member
                out[k, 0] = keys[t] // n
                out[k, 1] = keys[t] % n
                out[k, 2] = weight[i]
                k += 1
        if k != j:
            raise ValueError("the edges do not form a spanning tree (a cycle, or an edge inside a component)")
        i = j
    return out


def canonical_spanning_tree(tree: np.ndarray) -> np.ndarray:
    """The same hierarchy as ``tree``, written the one way every tied minimum spanning tree shares.

    Parameters
    ----------
    tree : (n - 1, 3) float array of the edges [src, dst, weight] of a spanning tree of n points
        (fast_hdbscan's ``compute_minimum_spanning_tree`` output), in any order.

    Returns
    -------
    (n - 1, 3) float64 [src, dst, weight], sorted by weight, then src, then dst. Its edges of weight w
    join the same components as ``tree``'s do, each group of components a star from its smallest
    point index; so two minimum spanning trees of one graph give the same array.
    """
    tree = np.asarray(tree, dtype=np.float64)
    if tree.ndim != 2 or tree.shape[1] != 3:
        raise ValueError(f"a spanning tree is an (n - 1, 3) array of [src, dst, weight], got shape {tree.shape}")
    n = len(tree) + 1
    if len(tree) == 0:
        return tree.copy()
    order = np.lexsort((tree[:, 1], tree[:, 0], tree[:, 2]))
    src, dst = tree[order, 0].astype(np.int64), tree[order, 1].astype(np.int64)
    if min(src.min(), dst.min()) < 0 or max(src.max(), dst.max()) >= n:
        raise ValueError(f"spanning tree of {n} points names a point outside 0..{n - 1}")
    if not (np.array_equal(src, tree[order, 0]) and np.array_equal(dst, tree[order, 1])):
        raise ValueError("spanning tree's src and dst must be whole point indices")
    return _rewrite(src, dst, tree[order, 2], n)  # sorted by construction: groups by weight, keys ascending
