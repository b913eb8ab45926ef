"""``RUN_DIR/labels.parquet``: the labels a person gives in the explorer (or saves from Python), kept at once.

One row per (class, galaxy): ``class`` (the name the person gave the class), ``id_str``, ``label``
(1 member, 0 not), ``time`` (UTC, ISO 8601) and ``source`` (``explore``, ``python``, ...).
Several named classes live in one file.

Each change is a read-modify-write under ``RUN_DIR/.raregal.labels.lock`` (a blocking ``flock``:
it excludes other processes and, because each change opens the file anew, other threads of
this process too, so two browser tabs labelling at once lose nothing), and the new table is
written atomically (:mod:`raregal.atomic`): a crash or Ctrl-C leaves the previous whole file or
the new whole file. The run's own lock (``.raregal.lock``) is not taken: a search rewriting the
run never touches ``labels.parquet`` (it is not among :data:`raregal.runs.folder.OUTPUTS`), so
labelling goes on while a report is built.
"""

from __future__ import annotations

import datetime as _dt
import os
import threading
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

from raregal import atomic
from raregal.runs import folder
from raregal.inputs.tables import ID
from raregal.errors import InputError
from raregal.guided.labels import CLASS, LABEL, check_labels

FILE = "labels.parquet"
LOCK = ".raregal.labels.lock"
COLUMNS = (CLASS, ID, LABEL, "time", "source")
_THREADS = threading.Lock()  # where flock is missing (Windows): at least this process's threads


def _empty() -> pd.DataFrame:
    return pd.DataFrame({CLASS: pd.Series(dtype=str), ID: pd.Series(dtype=str), LABEL: pd.Series(dtype=np.int8),
                         "time": pd.Series(dtype=str), "source": pd.Series(dtype=str)})


class LabelStore:
    """The labels of the run folder ``run_dir`` (a folder written by ``raregal search``)."""

    def __init__(self, run_dir: str | os.PathLike):
        self.run_dir = Path(run_dir)
        if folder.folder_kind(self.run_dir) != "run":
            raise InputError(f"{self.run_dir}: not a raregal run folder; labels are kept in a run's folder",
                             param="run_dir")
        self.path = self.run_dir / FILE

    def read(self) -> pd.DataFrame:
        """All labels (columns :data:`COLUMNS`), empty when none were given yet."""
        if not self.path.exists():
            return _empty()
        try:
            frame = pd.read_parquet(self.path)
        except Exception as err:  # pyarrow's many kinds: say which file, never replace it
            raise InputError(f"{self.path}: cannot be read as a labels table ({err}); raregal leaves it as it is, "
                             "move it away to start new labels") from err
        missing = [c for c in COLUMNS if c not in frame.columns]
        if missing:
            raise InputError(f"{self.path}: not raregal's labels table (no {', '.join(missing)}); raregal leaves it "
                             "as it is, move it away to start new labels")
        return frame[list(COLUMNS)]

    def classes(self) -> list[str]:
        """The class names labelled so far, in the order they were first used."""
        return list(dict.fromkeys(self.read()[CLASS]))

    def of_class(self, class_name: str) -> pd.DataFrame:
        """The labels of one class as a checked labels table (``id_str``, ``label``, ``class``)."""
        frame = self.read()
        return check_labels(frame[frame[CLASS] == class_name], where=str(self.path))

    def set(self, class_name: str, ids, label: int | None, source: str = "python") -> pd.DataFrame:
        """Label ``ids`` as ``label`` (1 member, 0 not; None removes their labels) in ``class_name``;
        return the whole table as written."""
        class_name = str(class_name).strip()
        if not class_name:
            raise InputError("a class needs a name", param="class_name")
        if label not in (0, 1, None):
            raise InputError(f"label must be 1 (member), 0 (not) or None (forget), got {label!r}", param="label")
        ids = list(dict.fromkeys(str(i) for i in ids))
        with self._locked():
            frame = self.read()
            frame = frame[~((frame[CLASS] == class_name) & frame[ID].isin(ids))]
            if label is not None and ids:
                now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
                new = pd.DataFrame({CLASS: class_name, ID: ids, LABEL: np.int8(label), "time": now, "source": source})
                frame = pd.concat([frame, new], ignore_index=True) if len(frame) else new
            frame = frame.astype({CLASS: str, ID: str, LABEL: np.int8, "time": str, "source": str})
            atomic.write_parquet(self.path, frame.reset_index(drop=True))
        return frame

    @contextmanager
    def _locked(self):
        with _THREADS:
            fd = os.open(self.run_dir / LOCK, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                try:
                    import fcntl
                except ImportError:  # pragma: no cover - Windows
                    fcntl = None
                if fcntl is not None:
                    fcntl.flock(fd, fcntl.LOCK_EX)  # blocks: a change takes milliseconds
                yield
            finally:
                os.close(fd)
