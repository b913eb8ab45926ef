"""The HTML report of a run: every cluster has a gallery, counts match the run, strings are escaped."""

from __future__ import annotations

import json
import re
from html import escape
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest

from conftest import TINY_EVIL_ID


class _Page(HTMLParser):
    """Collect tags with attributes, and the text, of a page."""

    def __init__(self):
        super().__init__()
        self.tags, self.text, self.scripts = [], [], 0

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self.scripts += tag == "script"

    def handle_data(self, data):
        self.text.append(data)


def _parse(index):
    page = _Page()
    page.feed(index.read_text())
    return page


def test_every_cluster_has_a_gallery_of_its_most_confident_members(tiny_run_dir, tiny_report):
    page = _parse(tiny_report)
    summary = json.loads((tiny_run_dir / "summary.json").read_text())
    clusters = pd.read_parquet(tiny_run_dir / "clusters.parquet")
    sections = [a for t, a in page.tags if t == "section" and "data-cluster" in a]
    assert sorted(int(a["data-cluster"]) for a in sections) == [c["cluster"] for c in summary["clusters"]]
    html = tiny_report.read_text()
    for c in summary["clusters"]:
        k = c["cluster"]
        block = html.split(f'id="cluster-{k}"')[1].split("</section>")[0]
        srcs = re.findall(r'<img loading="lazy" src="([^"]+)" width="128"', block)
        assert len(srcs) == min(36, c["size"]) and len(srcs) >= 16
        # most confident first: the tiles' ids follow the probability order of the run
        members = clusters[clusters.cluster == k].sort_values("probability", ascending=False, kind="stable")
        ids = re.findall(r'<div class="id">([^<]*)</div>', block)
        assert ids == [escape(i, quote=False) for i in members.id_str.iloc[:len(ids)]]
        for src in srcs:
            assert (tiny_report.parent / src).is_file()
        assert f"{c['size']:,} galaxies" in block


def test_counts_overview_and_figures(tiny_run_dir, tiny_report):
    from PIL import Image

    page = _parse(tiny_report)
    summary = json.loads((tiny_run_dir / "summary.json").read_text())
    html = tiny_report.read_text()
    shown = [int(n.replace(",", "")) for n in re.findall(r'data-count="[^"]+">([\d,]+)<', html)]
    assert shown == list(summary["counts"].values())
    assert f'<div class="n" id="n-clusters">{summary["n_clusters"]}</div>' in html
    assert f'{100 * summary["fraction_clustered"]:.1f}%' in html
    for name in ("map.png", "montage.png", "tree.png"):
        with Image.open(tiny_report.parent / name) as im:
            assert im.width > 400 and im.height > 200
            # not a blank picture: many distinct colours
            small = np.asarray(im.convert("RGB").resize((200, 150))).reshape(-1, 3)
            assert len(np.unique(small, axis=0)) > 20
    # the map shows cluster colours: some strongly coloured pixels exist
    rgb = np.asarray(Image.open(tiny_report.parent / "map.png").convert("RGB")).astype(int)
    assert ((rgb.max(-1) - rgb.min(-1)) > 120).sum() > 200
    # the montage has one row of 128 px tiles per cluster (fewer than 8 clusters here)
    with Image.open(tiny_report.parent / "montage.png") as im:
        assert im.height == summary["n_clusters"] * 132 + 4
    # every image referenced by the page exists inside the report folder; no external URL
    for tag, attrs in page.tags:
        for key in ("src", "href"):
            ref = attrs.get(key)
            if ref and not ref.startswith("#"):
                assert "://" not in ref and not ref.startswith("//"), ref
                assert (tiny_report.parent / ref).exists(), ref
    assert page.scripts == 0


def test_catalog_strings_are_escaped(tiny_report):
    html = tiny_report.read_text()
    assert TINY_EVIL_ID not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert TINY_EVIL_ID in "".join(_parse(tiny_report).text)


def test_unreadable_images_are_placeholders_and_counted(tiny_run_dir, tiny_report):
    rows = json.loads((tiny_run_dir / "tiny_fixture.json").read_text())
    clusters = pd.read_parquet(tiny_run_dir / "clusters.parquet")
    bad_ids = {clusters.id_str[rows["corrupt_row"]], clusters.id_str[rows["missing_row"]]}
    info = json.loads((tiny_report.parent / "report.json").read_text())
    assert {b["id_str"] for b in info["unreadable_images"]} == bad_ids
    html = tiny_report.read_text()
    assert html.count('class="tile missing"') == 2
    assert "2 gallery image(s) could not be read" in html
    assert "2 image(s) unreadable" in html
    assert (tiny_report.parent / "missing.png").is_file()


def test_morphology_in_words_names_the_planted_answer(tiny_run_dir, tiny_report):
    # each planted group has one raised answer; its cluster's words name it first, with both means
    clusters = pd.read_parquet(tiny_run_dir / "clusters.parquet")
    planted = ["bar_strong", "merging_merger", "has-spiral-arms_yes", "bulge-size_dominant"]
    html = tiny_report.read_text()
    for k in sorted(clusters.cluster[clusters.cluster >= 0].unique()):
        truth = clusters.true_class[clusters.cluster == k].mode().iloc[0]
        block = html.split(f'id="cluster-{k}"')[1].split("</section>")[0]
        m = re.search(r"<b>([\w-]+)</b> (\d\.\d\d) vs (\d\.\d\d)", block)
        assert m and m.group(1) == planted[truth]
        assert float(m.group(2)) > float(m.group(3)) + 0.2


def test_downloads_per_cluster_csv_and_fits(tiny_run_dir, tiny_report):
    from astropy.table import Table

    clusters = pd.read_parquet(tiny_run_dir / "clusters.parquet")
    dl = tiny_report.parent / "downloads"
    assert pd.read_parquet(dl / "clusters.parquet").equals(clusters)
    for k in sorted(clusters.cluster[clusters.cluster >= 0].unique()):
        csv = pd.read_csv(dl / f"cluster_{k}.csv", dtype={"id_str": str})
        fits = Table.read(dl / f"cluster_{k}.fits")
        members = clusters[clusters.cluster == k]
        assert set(csv.id_str) == set(members.id_str) == {str(s) for s in fits["id_str"]}
        assert csv.probability.is_monotonic_decreasing
        assert "bar_strong_fraction" in csv.columns and "bar_strong_fraction" in fits.colnames


def test_catalog_option_and_rebuild(tiny_run_dir, tmp_path):
    from raregal.errors import InputError
    from raregal.views.report import build_report

    clusters = pd.read_parquet(tiny_run_dir / "clusters.parquet")
    cat = clusters[["id_str", "file_loc"]].copy()
    cat["file_loc"] = [f"../{p.split('/')[-2]}/{p.split('/')[-1]}" for p in cat.file_loc]  # relative paths
    (tmp_path / "cat").mkdir()
    cat.to_csv(tmp_path / "cat" / "catalog.csv", index=False)
    import shutil
    shutil.copytree(tiny_run_dir.parent / "images", tmp_path / "images")
    out = tmp_path / "rep"
    index = build_report(tiny_run_dir, catalog=tmp_path / "cat" / "catalog.csv", out=out, progress=False)
    assert index == out / "index.html" and index.is_file()
    index = build_report(tiny_run_dir, catalog=tmp_path / "cat" / "catalog.csv", out=out, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cat", "images", "rep"]  # no temp folders left
    with pytest.raises(InputError, match="clusters.parquet"):
        build_report(tmp_path, out=tmp_path / "x")
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"id_str": ["nope"], "file_loc": ["x.png"]}).to_csv(bad, index=False)
    with pytest.raises(InputError, match="none of the run's"):
        build_report(tiny_run_dir, catalog=bad, out=tmp_path / "y")


def test_cli_report(tiny_run_dir, tmp_path, capsys):
    from raregal.cli import main

    from raregal.runs.model import read_run

    assert main(["report", str(tiny_run_dir), "--out", str(tmp_path / "r")]) == 0
    index = tmp_path / "r" / "index.html"
    assert capsys.readouterr().out.strip() == f"raregal report: open {index}"
    run, info = read_run(tiny_run_dir), json.loads((tmp_path / "r" / "report.json").read_text())
    assert info["run"] == str(tiny_run_dir.resolve()) and info["n_clusters"] == len(run.cluster_info)
    assert info["n_kept"] == int(run.clusters["kept"].sum())
    assert info["n_clustered"] == int((run.clusters["cluster"] >= 0).sum())
    assert info["gallery_tiles"] > 0 and set(info["montage"].values()) <= set(run.cluster_info["cluster"])
    assert main(["report", str(tmp_path / "nothing")]) == 2
    assert "not a run directory" in capsys.readouterr().err


def test_previews_of_fits_and_jpeg(tmp_path):
    from astropy.io import fits
    from PIL import Image

    from raregal.views.report.thumbs import load_preview

    yy, xx = np.mgrid[:40, :60]
    blob = np.exp(-((xx - 40) ** 2 + (yy - 12) ** 2) / 20.0).astype(np.float32)
    fits.PrimaryHDU(blob).writeto(tmp_path / "g.fits")
    fits.PrimaryHDU(np.stack([blob, blob * 0.5, blob * 0.1])).writeto(tmp_path / "cube.fits")
    Image.fromarray((np.dstack([blob] * 3) * 255).astype(np.uint8)).save(tmp_path / "g.jpg")
    for name in ("g.fits", "cube.fits", "g.jpg"):
        im, why = load_preview(tmp_path / name, 32)
        assert why == "" and im.size == (32, 32) and im.mode == "RGB"
        a = np.asarray(im).astype(int)
        # the blob is right of centre; FITS rows run bottom-up, so it shows in the lower half
        rows, cols = np.nonzero(a.max(-1) > 128)
        assert cols.mean() > 16
        assert (rows.mean() > 16) == name.endswith(".fits")
    cube = np.asarray(load_preview(tmp_path / "cube.fits", 32)[0]).astype(int)
    assert cube[..., 2].sum() > 1.5 * cube[..., 0].sum()  # bands bluest first: plane 0 -> blue
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8 broken")
    im, why = load_preview(tmp_path / "bad.jpg", 32)
    assert im is None and "bad.jpg" in why
    assert load_preview(None)[0] is None and load_preview(float("nan"))[0] is None


def test_morphology_words_of_a_dr8_table_come_from_its_schema(tiny_run_dir, tmp_path):
    # the same run with its input's fractions named as GZ DECaLS DR8's: the words name dr8 answers
    import shutil

    from raregal.inputs import gz_trees
    from raregal.views.report import build_report
    from raregal.views.report.morphology import run_fractions
    from raregal.runs.with_images import load_run

    root = tmp_path / "dr8"
    shutil.copytree(tiny_run_dir.parent, root)
    reps = pd.read_parquet(root / "reps.parquet")
    reps.rename(columns=dict(zip(gz_trees.DESI.fractions, gz_trees.DECALS_DR8.fractions))).to_parquet(root / "reps.parquet")
    summary = json.loads((root / "run" / "summary.json").read_text())
    summary["input"] = str(root / "reps.parquet")
    (root / "run" / "summary.json").write_text(json.dumps(summary))
    frac = run_fractions(load_run(root / "run"))
    assert list(frac.columns[1:]) == gz_trees.DECALS_DR8.fractions
    html = build_report(root / "run", progress=False).read_text()
    words = re.findall(r"<b>([\w-]+)</b> \d\.\d\d vs \d\.\d\d", html)
    assert words and all("-dr8_" in w for w in words) and "bar-dr8_strong" in words
    assert "Predicted morphology is not shown" not in html
