"""Does fine-tuning the encoder lift the classes the frozen representation misses? A simulated person decides.

Protocol (issue #26 item 3; the person of ``benchmarks/guided.py``): for each class, start from
``--start`` (3) random members; each round the search shows ``--batch`` (10) unlabelled galaxies,
best first, and the person labels them by the planted truth (``true_class``). Recall = members
shown / (class size - start members), read after 50, 100, 150 and 200 shown (one run of 20
rounds of 10; ``benchmarks/guided.py``'s 200 is 10 rounds of 20, so its numbers differ a little).

Arms, all on the same start members and, up to ``--switch`` (50) shown, the same rounds:

* ``frozen``: :class:`raregal.guided.GuidedSearch` on the shipped demo encoder's representation
  (``demo_run/reps.parquet``'s ``feat_*``) throughout;
* ``finetune+guided``: at ``--switch`` shown, :func:`raregal.encoder.finetune.finetune` on the
  labels so far (members and non-members shown, plus stand-in non-members), then the guided search
  on the fine-tuned representation, refitted every round as usual;
* ``finetune+head``: the same fine-tuning, then the galaxies in the order of its head's score;
* ``refit+guided``, ``refit+head`` (``--refit 50``): like the two above, fine-tuned again (from the
  shipped encoder) on all the labels so far every ``--refit`` shown after the switch.

Every fine-tuning's seconds are recorded (1 torch thread, images decoded in-process). Each finished
class and draw is kept in ``OUT.partial.json``, so an interrupted run resumes where it stopped.

Usage::

    python benchmarks/guided_finetune.py --survey demo_run/survey/catalog.parquet \
        --reps demo_run/reps.parquet --out benchmarks/results/guided_finetune.json [--draws 3]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from raregal.inputs.tables import feature_matrix, read_catalog, read_table  # noqa: E402
from raregal.encoder.finetune import finetune  # noqa: E402
from raregal.guided.acquisition import top_unlabelled  # noqa: E402
from raregal.guided.estimator import GuidedSearch  # noqa: E402

READ_AT = (50, 100, 150, 200)
ARMS = ("frozen", "finetune+guided", "finetune+head", "refit+guided", "refit+head")


def guided_batch(X: np.ndarray, y: np.ndarray, n: int, seed: int) -> np.ndarray:
    """The guided search's next ``n`` rows (as ``benchmarks/guided.py`` runs it)."""
    return GuidedSearch(random_state=seed).fit(X, y).next_batch(n)


def tune(model, catalog: pd.DataFrame, y: np.ndarray, seed: int, settings: dict
         ) -> tuple[np.ndarray, np.ndarray, float]:
    """Fine-tune on the labels ``y`` (1, 0, -1 over the catalog's rows): (representation (N, D), scores (N,),
    seconds)."""
    rows = np.flatnonzero(y >= 0)
    labels = pd.DataFrame({"id_str": catalog["id_str"].to_numpy()[rows], "label": y[rows]})
    t0 = time.perf_counter()
    result = finetune(model, catalog, labels, seed=seed, threads=1, workers=0, progress=False, **settings)
    seconds = time.perf_counter() - t0
    if len(result.rows) != len(catalog):
        raise RuntimeError(f"{len(catalog) - len(result.rows)} images could not be read")
    return result.representation, result.scores, seconds


class Person:
    """One simulated person on one class and start draw: the labels, and the members found after each round."""

    def __init__(self, truth: np.ndarray, cls: str, start: np.ndarray):
        self.truth, self.cls = truth, cls
        self.y = np.full(len(truth), -1, np.int8)
        self.y[start] = 1
        self.found: list[int] = []

    def label(self, shown: np.ndarray) -> None:
        assert (self.y[shown] == -1).all()
        hit = self.truth[shown] == self.cls
        self.y[shown] = hit.astype(np.int8)
        self.found.append((self.found[-1] if self.found else 0) + int(hit.sum()))

    def copy(self) -> "Person":
        other = Person(self.truth, self.cls, np.zeros(0, np.int64))
        other.y, other.found = self.y.copy(), list(self.found)
        return other


def run_draw(X, truth, cls, draw, model, catalog, args, settings) -> tuple[dict, list]:
    """Recall curves of every arm for one class and start draw, and the fine-tunings' seconds."""
    rng = np.random.default_rng(draw)
    members = np.flatnonzero(truth == cls)
    person = Person(truth, cls, rng.choice(members, size=args.start, replace=False))
    n_rounds, n_switch = args.shown // args.batch, args.switch // args.batch
    for r in range(n_switch):
        person.label(guided_batch(X, person.y, args.batch, draw * 1000 + r))
    arms = {arm: person.copy() for arm in ARMS if not arm.startswith("refit") or args.refit}
    reps, scores, sec = tune(model, catalog, person.y, draw, settings)
    seconds = [sec]
    tuned = {arm: (X, None) if arm == "frozen" else (reps, scores) for arm in arms}
    for r in range(n_switch, n_rounds):
        for arm, p in arms.items():
            if arm.startswith("refit") and r > n_switch and ((r - n_switch) * args.batch) % args.refit == 0:
                z, score, sec = tune(model, catalog, p.y, draw, settings)
                tuned[arm] = (z, score)
                seconds.append(sec)
            if arm.endswith("+head"):
                p.label(top_unlabelled(tuned[arm][1], p.y, args.batch))
            else:
                p.label(guided_batch(tuned[arm][0], p.y, args.batch, draw * 1000 + r))
    denom = len(members) - args.start
    curves = {arm: {str(n): p.found[n // args.batch - 1] / denom for n in READ_AT if n <= args.shown}
              for arm, p in arms.items()}
    curves["members_at_switch"] = int((person.y == 1).sum())
    return curves, seconds


def code_version() -> dict:
    """The commit the benchmark ran at, and whether the guided search or the fine-tuning differed from it."""
    import subprocess

    root = Path(__file__).resolve().parents[1]

    def git(*a):
        return subprocess.run(["git", *a], cwd=root, capture_output=True, text=True).stdout.strip()

    dirty = git("status", "--porcelain", "--", "src/raregal/guided", "src/raregal/encoder").splitlines()
    return {"commit": git("rev-parse", "--short", "HEAD"), "uncommitted": [line[3:] for line in dirty]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--survey", default="demo_run/survey/catalog.parquet", help="image catalog with true_class")
    ap.add_argument("--reps", default="demo_run/reps.parquet", help="the frozen representation (feat_*)")
    ap.add_argument("--model", default="demo")
    ap.add_argument("--classes", default="satellite_trail,ghost_ring,ring")
    ap.add_argument("--draws", type=int, default=3)
    ap.add_argument("--start", type=int, default=3)
    ap.add_argument("--batch", type=int, default=10)
    ap.add_argument("--switch", type=int, default=50, help="shown before the first fine-tuning")
    ap.add_argument("--shown", type=int, default=200)
    ap.add_argument("--refit", type=int, default=50, help="fine-tune again every N shown after the switch (0: never)")
    ap.add_argument("--settings", default="{}", help="JSON of finetune() settings (blocks, epochs, lr, ...)")
    ap.add_argument("--out", help="JSON to write")
    args = ap.parse_args(argv)
    from raregal.embedding.local import load_model

    catalog = read_catalog(args.survey)
    frame = read_table(args.reps).set_index("id_str").loc[catalog["id_str"].astype(str)]
    X = feature_matrix(frame.reset_index())
    truth = catalog["true_class"].astype(str).to_numpy()
    model, settings = load_model(args.model), json.loads(args.settings)
    result = {"survey": args.survey, "reps": args.reps, "model": args.model, "draws": args.draws,
              "start": args.start, "batch": args.batch, "switch": args.switch, "refit": args.refit,
              "settings": settings, "recall": {}, "per_draw": {}, "finetune_seconds": [], "device": "cpu, 1 thread",
              "code": code_version()}
    partial = Path(f"{args.out}.partial.json") if args.out else None
    done = resumed(partial, result)
    for cls in args.classes.split(","):
        draws = []
        for draw in range(args.draws):
            if f"{cls}/{draw}" in done:
                curves, seconds = done[f"{cls}/{draw}"]
            else:
                curves, seconds = run_draw(X, truth, cls, draw, model, catalog, args, settings)
                done[f"{cls}/{draw}"] = (curves, seconds)
                if partial:
                    partial.write_text(json.dumps({"setup": setup(result), "done": done}))
            draws.append(curves)
            result["finetune_seconds"] += [round(s, 1) for s in seconds]
            print(f"{cls} draw {draw}: " + "  ".join(f"{a} {c[max(c, key=int)]:.2f}" for a, c in curves.items()
                                                     if isinstance(c, dict))
                  + f"  (fine-tunes {', '.join(f'{s:.0f}' for s in seconds)} s)", flush=True)
        result["per_draw"][cls] = draws
        result["recall"][cls] = {arm: {n: float(np.mean([d[arm][n] for d in draws])) for n in draws[0][arm]}
                                 for arm in draws[0] if isinstance(draws[0][arm], dict)}
    sec = result["finetune_seconds"]
    result["seconds_per_finetune"] = {"mean": round(float(np.mean(sec)), 1), "max": round(float(np.max(sec)), 1)}
    print(format_table(result))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
        partial.unlink(missing_ok=True)
    return 0


def setup(result: dict) -> dict:
    """What must match for finished draws to be reused: everything but the results."""
    return {k: v for k, v in result.items() if k not in ("recall", "per_draw", "finetune_seconds")}


def resumed(partial: Path | None, result: dict) -> dict:
    """The draws an interrupted run of the same setup finished (``OUT.partial.json``), by ``class/draw``."""
    if partial is None or not partial.is_file():
        return {}
    saved = json.loads(partial.read_text())
    if saved.get("setup") != json.loads(json.dumps(setup(result))):
        return {}
    print(f"resuming {len(saved['done'])} finished draws from {partial}", flush=True)
    return {k: tuple(v) for k, v in saved["done"].items()}


def format_table(result: dict) -> str:
    """The recall table as markdown: one row per class and arm, one column per number shown."""
    cols = [str(n) for n in READ_AT]
    lines = ["| class | arm | " + " | ".join(f"recall@{c}" for c in cols) + " |",
             "|---|---|" + "---|" * len(cols)]
    for cls, arms in result["recall"].items():
        for arm, curve in arms.items():
            lines.append(f"| {cls} | {arm} | " + " | ".join(f"{curve[c]:.2f}" if c in curve else "" for c in cols)
                         + " |")
    sec = result["seconds_per_finetune"]
    lines.append(f"\n{result['draws']} start draw(s); seconds per fine-tune: mean {sec['mean']}, max {sec['max']} "
                 f"({result['device']})")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
