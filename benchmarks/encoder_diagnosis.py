"""Why a planted class fails: the votes, the encoder's predicted votes, and a linear probe.

For the demo survey (a ``raregal synth`` catalog with ``true_class``) and one or more ``raregal
embed`` outputs of it, print and optionally write as JSON:

* per class, the synthetic volunteers' vote fractions for the answers that could tell the failing
  classes apart (``spiral-arm-count_1`` among those asked, ``smooth-or-featured_artifact``):
  do the *votes* distinguish the class?
* per encoder, its predicted fractions for the same answers and the ROC AUC of its predicted
  ``spiral-arm-count_1`` for one-armed spirals against the bulk's spirals: did the encoder
  *learn* what the votes say?
* per encoder and class, a cross-validated linear probe (logistic regression, 5 folds) on the
  128-d representation: ROC AUC and average precision (chance: the class's share, 0.01). The
  planted labels are used only here, to diagnose; never to train an encoder. A class that a
  linear probe cannot pick out is missing from the representation, not merely mixed up by the
  kNN metric.

``--compare A,B`` adds a paired bootstrap (2000 resamplings of each planted class's galaxies)
of B's mean kNN@10 purity minus A's: how much of a difference the survey's 30 galaxies per class
can tell apart (training-seed noise comes on top).

Usage::

    python benchmarks/encoder_diagnosis.py --catalog /tmp/de/demo_survey/catalog.parquet \\
        --reps old_demo=/tmp/de/work/old_demo/reps.parquet --out benchmarks/results/encoder_diagnosis.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

CLASSES = ("one_armed_spiral", "satellite_trail", "ghost_ring", "diffraction_spikes", "missing_band",
           "ring", "shells_streams")


def vote_table(cat) -> dict:
    import pandas as pd

    cls = np.where(cat["true_class"].to_numpy(object) == "bulk", "bulk:" + cat["subtype"].to_numpy(object),
                   cat["true_class"].to_numpy(object))
    asked = cat["spiral-arm-count_total-votes"].replace(0, np.nan)
    f = pd.DataFrame({"class": cls,
                      "arm1": cat["spiral-arm-count_1"] / asked, "arm2": cat["spiral-arm-count_2"] / asked,
                      "artifact": cat["smooth-or-featured_artifact"] / cat["smooth-or-featured_total-votes"]})
    return f.groupby("class")[["arm1", "arm2", "artifact"]].mean().round(3).to_dict("index")


def encoder_report(cat, reps_path: Path) -> dict:
    import pandas as pd
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import average_precision_score, roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.preprocessing import StandardScaler

    reps = pd.read_parquet(reps_path)
    rows = cat.set_index("id_str").loc[reps["id_str"]]
    tc = rows["true_class"].to_numpy(object)
    cls = np.where(tc == "bulk", "bulk:" + rows["subtype"].to_numpy(object), tc)
    out: dict = {}
    if "spiral-arm-count_1_fraction" in reps:
        pred = pd.DataFrame({"class": cls, "arm1": reps["spiral-arm-count_1_fraction"].to_numpy(),
                             "artifact": reps["smooth-or-featured_artifact_fraction"].to_numpy()})
        means = pred.groupby("class")[["arm1", "artifact"]].mean().round(3)
        out["predicted"] = means.loc[[c for c in ("bulk:spiral", *CLASSES) if c in means.index]].to_dict("index")
        spirals = np.isin(cls, ["one_armed_spiral", "bulk:spiral"])
        out["arm1_auc_one_armed_vs_spirals"] = round(float(roc_auc_score(
            cls[spirals] == "one_armed_spiral", pred["arm1"].to_numpy()[spirals])), 3)
    x = StandardScaler().fit_transform(reps[[c for c in reps.columns if c.startswith("feat_")]].to_numpy())
    probe = {}
    for c in CLASSES:
        y = (tc == c).astype(int)
        p = cross_val_predict(LogisticRegression(C=0.1, max_iter=2000, class_weight="balanced"), x, y,
                              cv=StratifiedKFold(5, shuffle=True, random_state=0), method="predict_proba")[:, 1]
        probe[c] = {"auc": round(float(roc_auc_score(y, p)), 3), "ap": round(float(average_precision_score(y, p)), 3)}
    out["linear_probe"] = probe
    return out


def compare(path_a: Path, path_b: Path, n_boot: int = 2000, k: int = 10) -> dict:
    import pandas as pd

    from raregal.evaluation.encoders import knn_purity

    rare = ("ring", "one_armed_spiral", "clumpy_barred_dwarf", "tidal_merger", "shells_streams", "shredded",
            "satellite_trail", "diffraction_spikes", "ghost_ring", "missing_band")

    def per_galaxy(path):
        r = pd.read_parquet(path)
        x = r[[c for c in r.columns if c.startswith("feat_")]].to_numpy(np.float32)
        return r["id_str"].to_numpy(object), knn_purity(x, r["true_class"].to_numpy(object), k), \
            r["true_class"].to_numpy(object)

    ids_a, pa, lab = per_galaxy(path_a)
    ids_b, pb, _ = per_galaxy(path_b)
    if not (ids_a == ids_b).all():
        raise SystemExit("--compare: the two embeddings list different galaxies")
    idx = {c: np.flatnonzero(lab == c) for c in rare}
    rng = np.random.default_rng(0)
    diff = []
    for _ in range(n_boot):
        s = {c: rng.choice(v, len(v)) for c, v in idx.items()}
        diff.append(np.mean([pb[s[c]].mean() - pa[s[c]].mean() for c in rare]))
    diff = np.asarray(diff)
    point = float(np.mean([pb[idx[c]].mean() - pa[idx[c]].mean() for c in rare]))
    lo, hi = np.percentile(diff, [2.5, 97.5])
    return {"difference": round(point, 4), "ci95": [round(float(lo), 4), round(float(hi), 4)],
            "p_not_better": round(float((diff <= 0).mean()), 4)}


def contact_sheet(catalog: Path, out: Path, per_row: int = 8, scale: int = 4) -> None:
    """The first ``per_row`` images of each failing class (and the bulk's spirals) at the survey's
    pixels, enlarged ``scale`` times with nearest-neighbour so no detail is added."""
    import pandas as pd
    from PIL import Image

    cat = pd.read_parquet(catalog)
    cls = np.where(cat["true_class"] == "bulk", "bulk:" + cat["subtype"].astype(str), cat["true_class"].astype(str))
    rows = ("one_armed_spiral", "bulk:spiral", "clumpy_barred_dwarf", "satellite_trail", "ghost_ring",
            "diffraction_spikes", "missing_band")
    first = Image.open(catalog.parent / cat["file_loc"].iloc[0])
    side = first.size[0] * scale
    sheet = Image.new("RGB", (per_row * (side + 4), len(rows) * (side + 4)), (255, 255, 255))
    for r, name in enumerate(rows):
        for j, loc in enumerate(cat.loc[cls == name, "file_loc"].head(per_row)):
            im = Image.open(catalog.parent / loc).convert("RGB").resize((side, side), Image.NEAREST)
            sheet.paste(im, (j * (side + 4), r * (side + 4)))
    sheet.save(out)
    print(f"contact sheet ({', '.join(rows)}; one row each) -> {out}")


def main(argv=None) -> int:
    import pandas as pd

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--catalog", required=True)
    p.add_argument("--reps", action="append", default=[], metavar="NAME=REPS")
    p.add_argument("--compare", default=None, metavar="A,B", help="paired bootstrap of B's mean purity minus A's")
    p.add_argument("--sheet", default=None, metavar="PNG", help="also write a contact sheet of the failing classes")
    p.add_argument("--out", default=None)
    a = p.parse_args(argv)
    if a.sheet:
        contact_sheet(Path(a.catalog), Path(a.sheet))
    cat = pd.read_parquet(a.catalog)
    res = {"votes": vote_table(cat), "encoders": {}}
    print("synthetic votes (mean fraction):")
    for c, v in res["votes"].items():
        print(f"  {c:22s} arm1 {v['arm1']:.2f}  arm2 {v['arm2']:.2f}  artifact {v['artifact']:.2f}")
    for spec in a.reps:
        name, path = spec.split("=", 1)
        r = res["encoders"][name] = encoder_report(cat, Path(path))
        print(f"{name}: predicted arm1 AUC (one-armed vs bulk spirals) {r.get('arm1_auc_one_armed_vs_spirals')}")
        for c, v in (r.get("predicted") or {}).items():
            print(f"  predicted {c:22s} arm1 {v['arm1']:.2f}  artifact {v['artifact']:.2f}")
        print("  linear probe (AUC / AP): " + ", ".join(f"{c} {v['auc']:.2f}/{v['ap']:.2f}"
                                                       for c, v in r["linear_probe"].items()))
    if a.compare:
        paths = dict(spec.split("=", 1) for spec in a.reps)
        name_a, name_b = a.compare.split(",")
        c = res["compare"] = {"a": name_a, "b": name_b, **compare(Path(paths[name_a]), Path(paths[name_b]))}
        print(f"{name_b} - {name_a} mean kNN@10 purity: {c['difference']:+.3f} "
              f"(95% bootstrap interval {c['ci95'][0]:+.3f} .. {c['ci95'][1]:+.3f}; P(not better) {c['p_not_better']:.3f})")
    if a.out:
        Path(a.out).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
