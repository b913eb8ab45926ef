"""Embedding a catalog: the output table, bad images, chunked resume, carried columns, the CLI."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from raregal.inputs import gz_trees
from raregal.inputs.tables import feature_matrix, read_catalog, read_table
from raregal.embedding.local import embed_catalog, embed_chunk, parts_dir, skipped_path
from raregal.encoder import EncoderConfig, GalaxyEncoder, load_model, save_model
from raregal.errors import InputError
from raregal.images.dataset import load_image, resize

ARCH = "test_efficientnet"
N_GOOD = 34


@pytest.fixture(scope="module")
def survey(tmp_path_factory):
    """A few dozen images (PNG, JPEG, FITS) with relative paths, plus one corrupt and one missing file."""
    from astropy.io import fits

    root = tmp_path_factory.mktemp("survey")
    (root / "img").mkdir()
    rng = np.random.default_rng(0)
    rows = []
    for i in range(N_GOOD):
        if i % 10 == 7:
            name = f"img/g{i:02d}.fits"
            fits.PrimaryHDU(rng.normal(0, 1, (40, 40)).astype(np.float32)).writeto(root / name)
        else:
            name = f"img/g{i:02d}.{'jpg' if i % 5 == 3 else 'png'}"
            Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(root / name)
        rows.append({"id_str": f"g{i:02d}", "file_loc": name, "true_class": f"class{i % 3}", "ra": float(i)})
    (root / "img" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    rows.insert(5, {"id_str": "corrupt", "file_loc": "img/corrupt.png", "true_class": "class0", "ra": -1.0})
    rows.insert(20, {"id_str": "missing", "file_loc": "img/missing.png", "true_class": "class1", "ra": -2.0})
    pd.DataFrame(rows).to_csv(root / "catalog.csv", index=False)
    torch.manual_seed(0)
    model = GalaxyEncoder(EncoderConfig(arch=ARCH, bottleneck=8, input_size=32)).eval()
    save_model(model, root / "model")
    return root


def run(survey, out, **kw):
    catalog = read_catalog(survey / "catalog.csv")
    kw = {"chunk_size": 8, "batch_size": 3, "workers": 0, "carry": ["true_class"], "progress": False, **kw}
    return embed_catalog(catalog, load_model(survey / "model"), out, **kw)


def test_embed_writes_the_representation_table_search_reads(survey, tmp_path):
    out = tmp_path / "reps.parquet"
    summary = run(survey, out)
    table = read_table(out)
    expected_cols = (["id_str", "file_loc"] + [f"feat_{j}" for j in range(8)] + gz_trees.FRACTIONS + ["true_class"])
    assert list(table.columns) == expected_cols + ["ra"]  # the sky position is carried whenever the catalog has it
    assert summary["n_input"] == N_GOOD + 2 and summary["n_embedded"] == N_GOOD and summary["n_skipped"] == 2
    assert table["id_str"].tolist() == [f"g{i:02d}" for i in range(N_GOOD)]  # catalog order, bad rows dropped
    assert all(loc.startswith(str(survey)) for loc in table["file_loc"])
    assert table["true_class"].tolist() == [f"class{i % 3}" for i in range(N_GOOD)]
    assert all(table[c].dtype == np.float32 for c in expected_cols[2:-1])
    X = feature_matrix(table)
    assert X.shape == (N_GOOD, 8) and np.isfinite(X).all()
    for q in gz_trees.TREE:
        np.testing.assert_allclose(table[[f"{a}_fraction" for a in q.answers]].sum(axis=1), 1.0, rtol=1e-5)
    # the numbers are the model's: recompute three rows directly
    model = load_model(survey / "model")
    x = torch.stack([resize(load_image(loc), 32) for loc in table["file_loc"][:3]])
    with torch.no_grad():
        z, frac = model.embed_and_predict(x)
    np.testing.assert_allclose(X[:3], z.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(table[gz_trees.FRACTIONS].to_numpy()[:3], frac.numpy(), rtol=1e-4, atol=1e-6)
    # the skipped report names the bad ids and why
    skipped = pd.read_csv(skipped_path(out))
    assert skipped["id_str"].tolist() == ["corrupt", "missing"]
    assert "cannot read image" in skipped["reason"][0] and "no such image file" in skipped["reason"][1]
    report = json.loads((tmp_path / "reps.embed.json").read_text())
    assert report["n_skipped"] == 2 and report["images_per_s"] > 0
    assert not parts_dir(out).exists()


def test_resume_after_a_killed_run_gives_the_same_table(survey, tmp_path, monkeypatch):
    import raregal.embedding.local as embed_mod

    reference = read_table(run(survey, tmp_path / "ref.parquet")["output"])
    out = tmp_path / "reps.parquet"
    real_write = embed_mod.write_parquet
    calls = []

    def dying_write(path, table):
        if len(calls) == 2:
            raise KeyboardInterrupt  # killed while the third chunk was being written
        calls.append(path)
        return real_write(path, table)

    monkeypatch.setattr(embed_mod, "write_parquet", dying_write)
    with pytest.raises(KeyboardInterrupt):
        run(survey, out)
    monkeypatch.setattr(embed_mod, "write_parquet", real_write)
    parts = sorted(p.name for p in parts_dir(out).glob("part-*.parquet"))
    assert parts == ["part-00000.parquet", "part-00001.parquet"] and not out.exists()
    (parts_dir(out) / ".part-00002.parquet.tmp123.parquet").write_bytes(b"half-written")  # a killed write
    summary = run(survey, out)
    assert summary["chunks_resumed"] == 2 and summary["chunks"] == 5
    pd.testing.assert_frame_equal(read_table(out), reference)
    assert pd.read_csv(skipped_path(out))["id_str"].tolist() == ["corrupt", "missing"]


def test_parts_of_another_run_are_not_mixed_in(survey, tmp_path, monkeypatch):
    import raregal.embedding.local as embed_mod

    out = tmp_path / "reps.parquet"

    def die(path, table):
        raise KeyboardInterrupt

    monkeypatch.setattr(embed_mod, "write_parquet", die)
    with pytest.raises(KeyboardInterrupt):
        run(survey, out)
    monkeypatch.undo()
    with pytest.raises(InputError, match="another model, catalog or chunk size"):
        run(survey, out, chunk_size=5)
    run(survey, out, chunk_size=5, overwrite=True)
    with pytest.raises(InputError, match="exists"):
        run(survey, out)


def test_embed_chunk_is_a_plain_function_of_rows(survey):
    catalog = read_catalog(survey / "catalog.csv").iloc[3:9]
    table, skipped = embed_chunk(load_model(survey / "model"), catalog, batch_size=4, carry=["ra"])
    assert table["id_str"].tolist() == ["g03", "g04", "g05", "g06", "g07"]
    assert skipped["id_str"].tolist() == ["corrupt"] and list(skipped.columns) == ["id_str", "file_loc", "reason"]
    assert table["ra"].tolist() == [3.0, 4.0, 5.0, 6.0, 7.0]


def test_encoder_without_head_gives_nan_fractions(survey, tmp_path):
    torch.manual_seed(0)
    headless = GalaxyEncoder(EncoderConfig(arch=ARCH, bottleneck=None, input_size=32, head=False)).eval()
    table, _ = embed_chunk(headless, read_catalog(survey / "catalog.csv").head(4))
    assert feature_matrix(table).shape == (4, headless.encoder.num_features)
    assert table[gz_trees.FRACTIONS].isna().all().all()


def test_embed_cli_resolves_relative_paths_and_checks_carry(survey, tmp_path, capsys):
    from raregal.cli import main

    out = tmp_path / "cli.parquet"
    rc = main(["embed", str(survey / "catalog.csv"), "--model", str(survey / "model"), "--out", str(out),
               "--carry", "true_class", "ra", "--workers", "1", "--batch-size", "16", "--device", "cpu"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert f"embedded {N_GOOD} of {N_GOOD + 2}" in printed and "skipped 2" in printed
    table = read_table(out)
    assert {"true_class", "ra"} <= set(table.columns) and len(table) == N_GOOD
    rc = main(["embed", str(survey / "catalog.csv"), "--model", str(survey / "model"), "--out",
               str(tmp_path / "x.parquet"), "--carry", "redshift"])
    assert rc == 2 and "redshift" in capsys.readouterr().err


def _cli_embed(survey, out, *extra):
    from raregal.cli import main

    return main(["embed", str(survey / "catalog.csv"), "--model", str(survey / "model"), "--out", str(out),
                 "--workers", "0", "--batch-size", "3", "--chunk-size", "8", "--device", "cpu", "--carry", "true_class",
                 *extra])


def test_a_users_parts_folder_is_never_adopted_or_deleted(survey, tmp_path, capsys):
    out = tmp_path / "X.parquet"
    mine = parts_dir(out)
    mine.mkdir()
    (mine / "notes.txt").write_text("my own notes\n")
    assert _cli_embed(survey, out) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(mine) in err and "raregal did not write" in err
    assert (mine / "notes.txt").read_text() == "my own notes\n" and not out.exists()


def test_a_damaged_part_is_embedded_again_and_named(survey, tmp_path, monkeypatch, caplog):
    import raregal.embedding.local as embed_mod

    reference = read_table(run(survey, tmp_path / "ref.parquet")["output"])
    out = tmp_path / "reps.parquet"
    real_finish = embed_mod._finish
    monkeypatch.setattr(embed_mod, "_finish", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):  # killed after every chunk was written, before the merge
        run(survey, out)
    monkeypatch.setattr(embed_mod, "_finish", real_finish)
    damaged = parts_dir(out) / "part-00001.parquet"
    damaged.write_bytes(damaged.read_bytes()[: damaged.stat().st_size // 2])  # a truncated part file
    with caplog.at_level("WARNING", logger="raregal"):
        assert _cli_embed(survey, out) == 0
    assert f"{damaged} is damaged or incomplete" in caplog.text
    pd.testing.assert_frame_equal(read_table(out), reference)


@pytest.mark.parametrize("mine", ["X.embed.json", "X.skipped.csv", "X.parquet.parts/notes.txt"])
def test_a_users_file_where_embed_writes_beside_its_output_is_refused_by_name(survey, tmp_path, capsys, mine):
    out = tmp_path / "X.parquet"
    path = tmp_path / mine
    if path.parent != tmp_path:  # raregal's parts folder (its manifest), which a user's file has joined
        path.parent.mkdir()
        (path.parent / "manifest.json").write_text(json.dumps({"fingerprint": "0" * 64}))
    path.write_text("my own file\n")
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in tmp_path.rglob("*") if p.is_file()}
    assert _cli_embed(survey, out) == 2
    assert _cli_embed(survey, out, "--overwrite") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and err[0] == err[1] and "raregal did not write" in err[0] and "--out" in err[0]
    assert str(path if path.parent == tmp_path else path.name) in err[0]
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in tmp_path.rglob("*") if p.is_file()} == before
    assert not out.exists()
