"""A person's labels: read them, check them, and turn them into the estimator's ``y``.

A labels table (CSV, Parquet, FITS: anything :func:`raregal.inputs.tables.read_table` reads) has
``id_str`` and ``label`` (1 = member / interesting, 0 = not a member), and optionally ``class``
(the name of the class, for several classes in one file; without it every row is one class).
Every problem is an :class:`~raregal.errors.InputError` raised before any compute: ids not in
the table (how many, with examples), an id labelled both 1 and 0, labels other than 0/1, no
member, every galaxy labelled already.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from raregal.inputs.tables import ID
from raregal.errors import InputError

LABEL = "label"
CLASS = "class"
_EXAMPLES = 5


def _examples(values) -> str:
    values = [str(v) for v in values]
    shown = ", ".join(repr(v if len(v) <= 40 else v[:37] + "...") for v in values[:_EXAMPLES])
    return shown + (f" (and {len(values) - _EXAMPLES} more)" if len(values) > _EXAMPLES else "")


def check_labels(frame: pd.DataFrame, where: str = "labels") -> pd.DataFrame:
    """``frame`` as a clean labels table: ``id_str`` (str), ``label`` (int8, 0/1), ``class`` (str, '' when absent).

    Repeated rows that agree are kept once; an id labelled both 1 and 0 (within one class) is an error.
    """
    missing = [c for c in (ID, LABEL) if c not in frame.columns]
    if missing:
        raise InputError(f"{where}: no {' and no '.join(repr(c) for c in missing)} column; a table of labels has "
                         f"'id_str' and 'label' (1 = member, 0 = not), and optionally 'class'", param="labels")
    if frame[ID].isna().any():
        raise InputError(f"{where}: {int(frame[ID].isna().sum())} rows have no id_str", param="labels")
    label = _label_values(frame[LABEL], frame[ID], where)
    out = pd.DataFrame({ID: frame[ID].astype(str).to_numpy(), LABEL: label,
                        CLASS: frame[CLASS].fillna("").astype(str).to_numpy() if CLASS in frame.columns else ""})
    out = out.drop_duplicates(ignore_index=True)
    clash = out.duplicated([CLASS, ID], keep=False)
    if clash.any():
        ids = out.loc[clash, ID].drop_duplicates()
        raise InputError(f"{where}: {len(ids)} id(s) are labelled both 1 and 0: {_examples(ids)}; keep one label "
                         "each", param="labels")
    return out


def _label_values(values: pd.Series, ids: pd.Series, where: str) -> np.ndarray:
    """The labels as int8 0/1; InputError naming the rows that are not 0 or 1."""
    if pd.api.types.is_bool_dtype(values):
        return values.to_numpy().astype(np.int8)
    numeric = pd.to_numeric(values, errors="coerce")
    bad = ~numeric.isin((0, 1))
    if bad.any():
        pairs = [f"{i}={v!r}" for i, v in zip(ids[bad].astype(str)[:_EXAMPLES], values[bad][:_EXAMPLES])]
        raise InputError(f"{where}: {int(bad.sum())} label(s) are not 0 or 1 (1 = member, 0 = not): "
                         f"{', '.join(pairs)}", param="labels")
    return numeric.to_numpy().astype(np.int8)


def read_labels(path) -> pd.DataFrame:
    """Read and check a labels table (:func:`check_labels`)."""
    from raregal.inputs.tables import read_table

    return check_labels(read_table(path), where=str(path))


def pick_class(labels: pd.DataFrame, class_name: str | None) -> tuple[pd.DataFrame, str]:
    """The rows of one class, and its name: ``class_name``, or the only class there is."""
    names = sorted(labels[CLASS].unique())
    if class_name is None:
        if len(names) > 1:
            raise InputError(f"the labelled galaxies belong to {len(names)} classes ({_examples(names)}); say which with "
                              "class_name",
                             param="class_name")
        return labels, names[0] if names else ""
    if class_name not in names:
        raise InputError(f"class_name {class_name!r}: no galaxy is labelled in that class; the classes are {_examples(names)}",
                         param="class_name")
    return labels[labels[CLASS] == class_name], class_name


def labels_vector(labels: pd.DataFrame, ids: pd.Index) -> np.ndarray:
    """``y`` (N,) for the table whose ids are ``ids``: 1 member, 0 not, -1 not labelled.

    InputError when labels name ids the table does not have, no member is labelled, or every
    galaxy is labelled already.
    """
    rows = ids.get_indexer(pd.Index(labels[ID]))
    unknown = labels.loc[rows < 0, ID]
    if len(unknown):
        raise InputError(f"{len(unknown)} of the {len(labels)} labelled id(s) are not in the table: "
                         f"{_examples(unknown)}", param="labels")
    y = np.full(len(ids), -1, np.int8)
    y[rows] = labels[LABEL].to_numpy()
    if not (y == 1).any():
        raise InputError(f"none of the {len(labels)} labelled galaxies is a member (1): the guided search needs at least one "
                         "example of the class", param="labels")
    if not (y == -1).any():
        raise InputError(f"all {len(ids)} galaxies of the table are labelled already: there is nothing left to show",
                         param="labels")
    return y
