"""The README's Python example runs as written, using only ``import raregal`` (and is fast to import)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_example() -> str:
    text = README.read_text()
    block = re.search(r"<!-- python-example:start -->\s*```python\n(.*?)```\s*<!-- python-example:end -->", text, re.S)
    assert block, "README.md has no python-example block"
    return block.group(1)


def test_the_example_imports_only_raregal():
    code = readme_example()
    imports = re.findall(r"(?m)^\s*(?:import|from)\s+([\w.]+)", code)
    assert imports == ["raregal"]


@pytest.mark.slow
def test_the_readme_example_runs_as_written(tmp_path, monkeypatch):
    from raregal.evaluation.planted import make_planted

    table = make_planted(n=8000, group_fractions=(0.03, 0.04), seed=0)  # 240 and 320 planted galaxies
    table.to_parquet(tmp_path / "reps.parquet")
    members = table.loc[table["true_class"] == "planted_1", "id_str"].iloc[:3]
    bulk = table.loc[table["true_class"] == "bulk", "id_str"].iloc[:2]
    pd.DataFrame({"id_str": [*members, *bulk], "label": [1, 1, 1, 0, 0]}).to_csv(tmp_path / "labels.csv", index=False)
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(readme_example(), str(README), "exec"), scope)

    result, run, nxt = scope["result"], scope["run"], scope["nxt"]
    truth = table["true_class"].to_numpy()
    found = [c for c in range(result.n_clusters) if (truth[result.labels == c] == "planted_1").mean() > 0.9]
    assert found, "a planted group comes out as a cluster"
    assert (tmp_path / "run" / "clusters.parquet").is_file() and len(run.clusters) == len(table)
    assert np.array_equal(run.clusters["cluster"].to_numpy(), result.labels)
    near = pd.read_csv(tmp_path / "near.csv")
    assert len(near) == 20 and list(near["rank"]) == list(range(1, 21))
    shown = nxt.next["id_str"]
    assert len(shown) == 10 and not shown.isin([*members, *bulk]).any()
    assert (table.set_index("id_str").loc[shown, "true_class"] == "planted_1").mean() >= 0.8


def test_import_raregal_is_fast_and_lazy():
    code = ("import sys, time; t = time.perf_counter(); import raregal; dt = time.perf_counter() - t; "
            "heavy = [m for m in ('torch', 'umap', 'sklearn', 'pandas', 'numba') if m in sys.modules]; "
            "print(dt, heavy, sorted(raregal.__all__))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONWARNINGS": "ignore"}).stdout.split(" ", 1)
    seconds, rest = float(out[0]), out[1]
    assert rest.startswith("[]"), rest  # nothing heavy is imported by `import raregal`
    assert seconds < 0.5
    for name in ("read_table", "search", "RareClassSearch", "write_run", "read_run", "similar", "embed",
                 "GuidedSearch", "guide", "evaluate"):
        assert f"'{name}'" in rest
