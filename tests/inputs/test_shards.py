"""Catalogs with the images inside: Parquet shards in the Hugging Face ``datasets`` Image layout.

The shards are written with pyarrow exactly as ``datasets`` writes them (a struct column
``image`` of ``bytes`` and ``path``, the features under the schema metadata key ``huggingface``),
and once by ``datasets`` itself when it is installed. Every reader (embed, train, report,
explore, similar) must see the same pictures as from the same files on disk, unpack nothing,
and list a bad row by id.
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from raregal.inputs import gz_trees as schema
from raregal.inputs.tables import image_sources, read_catalog
from raregal.inputs.shards import ROW, SHARD, EmbeddedImages
from raregal.errors import InputError
from raregal.images.dataset import ImageDataset, eval_transform, load_image
from raregal.images.decode import EncodedImage

IMAGE_TYPE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
ARCH = "test_efficientnet"


def hf_metadata(columns: dict[str, pa.DataType]) -> dict[bytes, bytes]:
    """The schema metadata ``datasets`` writes: its Features, the image column as ``{"_type": "Image"}``."""
    def feature(name, kind):
        if name == "image":
            return {"_type": "Image"}
        dtype = {pa.string(): "string", pa.float64(): "float64", pa.int64(): "int64"}.get(kind, "float32")
        return {"dtype": dtype, "_type": "Value"}

    info = {"info": {"features": {n: feature(n, k) for n, k in columns.items()}}}
    return {b"huggingface": json.dumps(info).encode()}


def write_hf_shards(frame: pd.DataFrame, folder: Path, n_shards: int = 2, row_group_size: int = 3) -> Path:
    """Write ``frame`` (with an ``image`` column of {"bytes", "path"} dicts or None) as HF-style shards."""
    folder.mkdir(parents=True, exist_ok=True)
    columns = {c: (IMAGE_TYPE if c == "image" else pa.array(frame[c].tolist()).type) for c in frame.columns}
    schema_ = pa.schema(list(columns.items()), metadata=hf_metadata(columns))
    for k, part in enumerate(np.array_split(np.arange(len(frame)), n_shards)):
        rows = frame.iloc[part]
        table = pa.Table.from_pydict({c: rows[c].tolist() for c in frame.columns}, schema=schema_)
        pq.write_table(table, folder / f"train-{k:05d}-of-{n_shards:05d}.parquet", row_group_size=row_group_size)
    return folder


def file_struct(path: Path) -> dict | None:
    """The Image feature's value for a file: its bytes and name (None when the file is missing)."""
    return {"bytes": path.read_bytes(), "path": path.name} if path.is_file() else None


def jpeg(colour, size=24) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(buf, "JPEG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def survey(tmp_path_factory):
    """The same galaxies twice: image files + a file_loc catalog, and HF shards with the bytes inside.

    Files: JPEG and PNG cutouts, a one-band FITS and a (g, r, z) FITS cube. The shards add rows
    that only a catalog with the images inside can have: a null image, null bytes, an HTML page.
    """
    from astropy.io import fits

    root = tmp_path_factory.mktemp("embedded")
    (root / "img").mkdir()
    rng = np.random.default_rng(0)
    rows = []
    for i in range(14):
        name = f"img/g{i:02d}." + ("fits" if i in (4, 9) else "jpg" if i % 3 else "png")
        if i == 4:
            fits.PrimaryHDU(rng.normal(0, 1, (30, 30)).astype(np.float32)).writeto(root / name)
        elif i == 9:
            fits.PrimaryHDU(rng.gamma(1.0, 0.05, (3, 30, 30)).astype(np.float32)).writeto(root / name)
        else:
            Image.fromarray(rng.integers(0, 256, (30, 30, 3), dtype=np.uint8)).save(root / name)
        votes = {a: int(rng.integers(0, 5)) for a in schema.ANSWERS}
        rows.append({"id_str": f"g{i:02d}", "file_loc": name, "ra": 10.0 + i, "dec": -1.0 * i,
                     "true_class": f"c{i % 3}", **votes})
    files = pd.DataFrame(rows)
    files.to_parquet(root / "files.parquet")
    shards = files.drop(columns=["file_loc"])
    shards.insert(1, "image", [file_struct(root / loc) for loc in files["file_loc"]])
    bad = pd.DataFrame([{**rows[0], "id_str": "nullimage", "image": None},
                        {**rows[0], "id_str": "nullbytes", "image": {"bytes": None, "path": "lost.jpg"}},
                        {**rows[0], "id_str": "html", "image": {"bytes": b"<html><title>502 Bad Gateway</title>",
                                                                "path": None}}]).drop(columns=["file_loc"])
    shards = pd.concat([shards.iloc[:6], bad, shards.iloc[6:]], ignore_index=True)
    write_hf_shards(shards, root / "shards")
    torch.manual_seed(0)
    from raregal.encoder import EncoderConfig, GalaxyEncoder, save_model

    save_model(GalaxyEncoder(EncoderConfig(arch=ARCH, bottleneck=8, input_size=32)).eval(), root / "model")
    return root


def test_read_catalog_reads_no_image_bytes_and_says_where_each_image_is(survey):
    cat = read_catalog(survey / "shards")
    assert "image" not in cat.columns and "file_loc" not in cat.columns
    assert len(cat) == 17 and cat["id_str"].tolist()[6:9] == ["nullimage", "nullbytes", "html"]
    shards = sorted(str(p.resolve()) for p in (survey / "shards").glob("*.parquet"))
    assert cat[SHARD].astype(str).tolist() == [shards[0]] * 9 + [shards[1]] * 8
    assert cat[ROW].tolist() == list(range(9)) + list(range(8))
    assert cat[["ra", "dec", "true_class"]].notna().all().all()
    one = read_catalog(survey / "shards" / "train-00001-of-00002.parquet")  # one shard alone reads too
    assert one["id_str"].tolist() == cat["id_str"].tolist()[9:]


def test_images_inside_read_exactly_as_the_same_files(survey):
    files = read_catalog(survey / "files.parquet").set_index("id_str")
    cat = read_catalog(survey / "shards")
    sources = image_sources(cat)
    assert isinstance(sources, EmbeddedImages) and len(sources) == 17
    for i, gid in enumerate(cat["id_str"]):
        if gid in files.index:
            src = sources[i]
            assert isinstance(src, EncodedImage) and gid in src.name
            expected = load_image(files.loc[gid, "file_loc"])
            assert torch.equal(load_image(src), expected), gid
            assert torch.equal(load_image(src, channels=1), load_image(files.loc[gid, "file_loc"], channels=1))
    cube = load_image(sources[list(cat["id_str"]).index("g09")])
    assert not torch.equal(cube[0], cube[2])  # a (g, r, z) cube is a colour picture, not one band repeated


def test_bad_rows_are_errors_that_name_the_id(survey, tmp_path):
    cat = read_catalog(survey / "shards")
    sources = image_sources(cat)
    pos = {gid: i for i, gid in enumerate(cat["id_str"])}
    with pytest.raises(InputError, match=r"id nullimage\): the catalog's image is null"):
        sources[pos["nullimage"]]
    with pytest.raises(InputError, match=r"id nullbytes\).*null.*names only a file, 'lost.jpg'"):
        sources[pos["nullbytes"]]
    with pytest.raises(InputError, match=r"id html\): the image's bytes are an HTML page \(title '502 Bad Gateway'\)"):
        load_image(sources[pos["html"]])
    # a shard rewritten in another order: an error for that row, never another galaxy's picture
    moved = tmp_path / "shards"
    shutil.copytree(survey / "shards", moved)
    frame = read_catalog(moved)
    first = moved / "train-00000-of-00002.parquet"
    table = pq.read_table(first)
    pq.write_table(table.take(list(range(table.num_rows))[::-1]), first, row_group_size=3)
    with pytest.raises(InputError, match="holds id 'html', not 'g00'.*shard changed"):
        image_sources(frame)[0]
    first.unlink()
    with pytest.raises(InputError, match="the catalog shard holding the images is gone"):
        image_sources(frame)[0]


def test_bytes_are_told_by_their_first_bytes_not_by_a_name():
    import gzip

    from astropy.io import fits

    from raregal.views.report.thumbs import load_preview

    buf = io.BytesIO()
    fits.PrimaryHDU(np.arange(64.0).reshape(8, 8)).writeto(buf)
    plain = load_image(EncodedImage(buf.getvalue(), "plain (id p)", "p.jpg"))  # a misleading name changes nothing
    assert torch.equal(load_image(EncodedImage(gzip.compress(buf.getvalue()), "gz (id z)")), plain)
    assert load_preview(EncodedImage(gzip.compress(buf.getvalue()), "gz (id z)"), 16)[0].size == (16, 16)
    assert load_image(EncodedImage(jpeg((200, 10, 10)), "j (id j)", "j.fits"))[0].mean() > 0.7
    for data, why in ((b"GIF89a....", "not a JPEG, PNG or FITS"), (gzip.compress(b"hello"), "not a JPEG, PNG"),
                      (b"", "empty"), (jpeg((9, 9, 9))[:40], "cannot read image")):
        with pytest.raises(InputError, match=why):
            load_image(EncodedImage(data, "bad (id b)"))
        assert load_preview(EncodedImage(data, "bad (id b)"))[0] is None


def test_catalogs_that_cannot_say_which_picture_is_which_are_refused(survey, tmp_path):
    table = pq.read_table(survey / "shards" / "train-00000-of-00002.parquet")
    pq.write_table(table.append_column("file_loc", pa.array(["x.jpg"] * table.num_rows)), tmp_path / "both.parquet")
    with pytest.raises(InputError, match="both 'image'.*and 'file_loc'"):
        read_catalog(tmp_path / "both.parquet")
    pq.write_table(table.set_column(1, "image", pa.array(["x"] * table.num_rows)), tmp_path / "text.parquet")
    with pytest.raises(InputError, match="column 'image' is string; expected the images' bytes"):
        read_catalog(tmp_path / "text.parquet")
    pd.DataFrame({"id_str": ["a"], "ra": [1.0]}).to_csv(tmp_path / "noimages.csv", index=False)
    with pytest.raises(InputError, match="missing column 'file_loc'.*or give a Parquet catalog with the images"):
        read_catalog(tmp_path / "noimages.csv")


def test_embed_reads_the_shards_like_the_files_and_lists_bad_rows_by_id(survey, tmp_path):
    from raregal.inputs.tables import read_table
    from raregal.embedding.local import embed_catalog, skipped_path
    from raregal.encoder import load_model

    model = load_model(survey / "model")
    kw = {"chunk_size": 5, "batch_size": 4, "carry": ["true_class"], "progress": False}
    before = sorted(p for p in survey.rglob("*"))
    s = embed_catalog(read_catalog(survey / "shards"), model, tmp_path / "shards.parquet", workers=1, **kw)
    assert sorted(p for p in survey.rglob("*")) == before  # nothing unpacked next to the catalog
    embed_catalog(read_catalog(survey / "files.parquet"), model, tmp_path / "files.parquet", workers=0, **kw)
    inside, files = read_table(tmp_path / "shards.parquet"), read_table(tmp_path / "files.parquet")
    assert s["n_input"] == 17 and s["n_embedded"] == 14 and s["n_skipped"] == 3
    assert list(inside.columns[:3]) == ["id_str", SHARD, ROW] and "file_loc" not in inside.columns
    assert {"ra", "dec", "true_class"} <= set(inside.columns)  # ra, dec carried without asking
    assert inside["id_str"].tolist() == files["id_str"].tolist()
    feats = [f"feat_{j}" for j in range(8)] + schema.FRACTIONS
    np.testing.assert_allclose(inside[feats].to_numpy(), files[feats].to_numpy(), rtol=1e-5, atol=1e-6)
    skipped = pd.read_csv(skipped_path(tmp_path / "shards.parquet")).set_index("id_str")
    assert sorted(skipped.index) == ["html", "nullbytes", "nullimage"]
    assert "HTML page" in skipped.loc["html", "reason"] and "null" in skipped.loc["nullimage", "reason"]
    assert list(skipped.columns) == [SHARD, ROW, "reason"]


def test_train_reads_the_shards_like_the_files(survey, tmp_path):
    from raregal.encoder.train import TrainConfig, train

    cfg = dict(arch=ARCH, bottleneck=8, input_size=32, epochs=1, batch_size=6, lr=3e-3, val_fraction=0.25,
               patience=3, seed=0, workers=0)
    inside = train(read_catalog(survey / "shards"), tmp_path / "a", TrainConfig(**cfg), progress=False)
    files = train(read_catalog(survey / "files.parquet"), tmp_path / "b", TrainConfig(**cfg), progress=False)
    assert inside["n_skipped"] == 3 and files["n_skipped"] == 0
    # the shards hold 3 more (bad) galaxies, so the split differs; the images read must not: same loss scale
    assert np.isfinite(inside["best_val_loss"])
    subset = image_sources(read_catalog(survey / "shards"))[np.array([12, 0])]  # what train indexes
    items = [ImageDataset(subset, eval_transform(32))[i] for i in range(2)]
    assert [it["image"].shape for it in items] == [(3, 32, 32)] * 2 and items[0]["index"] == 0


def test_shards_written_by_the_datasets_library(survey, tmp_path):
    datasets = pytest.importorskip("datasets")
    files = read_catalog(survey / "files.parquet").iloc[:5]
    ds = datasets.Dataset.from_dict({"id_str": files["id_str"].tolist(),
                                     "image": [file_struct(Path(p)) for p in files["file_loc"]],
                                     "ra": files["ra"].tolist(), "dec": files["dec"].tolist()})
    ds = ds.cast_column("image", datasets.Image())  # bytes inside, as on the Hub (a bare path would stay a path)
    (tmp_path / "hf").mkdir()
    ds.to_parquet(str(tmp_path / "hf" / "train-00000-of-00001.parquet"))
    assert b"huggingface" in pq.read_schema(tmp_path / "hf" / "train-00000-of-00001.parquet").metadata
    cat = read_catalog(tmp_path / "hf")
    assert cat["id_str"].tolist() == files["id_str"].tolist() and "image" not in cat.columns
    sources = image_sources(cat)
    for i, loc in enumerate(files["file_loc"]):
        assert torch.equal(load_image(sources[i]), load_image(loc))


# ---- reports, the explorer and similar: a run of a catalog with the images inside ------------------

@pytest.fixture(scope="module")
def shard_run(tiny_run_dir, tmp_path_factory):
    """The conftest's tiny run, as if made from shards: no file_loc anywhere, the images in two shards."""
    root = tmp_path_factory.mktemp("shard_run")
    clusters = pd.read_parquet(tiny_run_dir / "clusters.parquet")
    frame = pd.DataFrame({"id_str": clusters["id_str"],
                          "image": [file_struct(Path(p)) for p in clusters["file_loc"]]})
    write_hf_shards(frame, root / "shards", row_group_size=50)
    where = read_catalog(root / "shards")[["id_str", SHARD, ROW]]
    reps = pd.read_parquet(tiny_run_dir.parent / "reps.parquet").drop(columns=["file_loc"])
    reps = where.merge(reps, on="id_str")
    from raregal.atomic import write_json, write_parquet

    run = root / "run"
    shutil.copytree(tiny_run_dir, run, ignore=shutil.ignore_patterns("report", ".raregal*"))
    write_parquet(run / "clusters.parquet", clusters.drop(columns=["file_loc"]))
    write_parquet(root / "reps.parquet", reps)
    summary = json.loads((run / "summary.json").read_text())
    write_json(run / "summary.json", {**summary, "input": str(root / "reps.parquet")})
    return run


def test_report_shows_the_images_inside_the_shards(tiny_run_dir, shard_run, tmp_path):
    from raregal.views.report import build_report
    from raregal.runs.with_images import load_run

    fixture = json.loads((tiny_run_dir / "tiny_fixture.json").read_text())
    ids = pd.read_parquet(tiny_run_dir / "clusters.parquet")["id_str"]
    bad = {str(ids.iloc[fixture[k]]) for k in ("corrupt_row", "missing_row")}
    index = build_report(shard_run, out=tmp_path / "report", progress=False)  # found through the run's reps
    report = json.loads((index.parent / "report.json").read_text())
    assert report["gallery_tiles"] > 100
    assert {u["id_str"] for u in report["unreadable_images"]} == bad  # the corrupt and the missing file
    assert "No image paths are known" not in index.read_text()
    # --catalog SHARDS: the shards' images replace the run's own file_loc, joined on id_str
    run = load_run(tiny_run_dir, catalog=shard_run.parent / "shards")
    assert "file_loc" not in run.clusters.columns and run.has_images
    sources = image_sources(run.clusters)
    good = int(np.flatnonzero(~run.clusters["id_str"].isin(bad))[0])
    assert torch.equal(load_image(sources[good]), load_image(run_file(tiny_run_dir, run.clusters["id_str"][good])))


def run_file(run_dir: Path, gid: str) -> str:
    clusters = pd.read_parquet(run_dir / "clusters.parquet")
    return clusters.loc[clusters["id_str"] == gid, "file_loc"].iloc[0]


def test_explorer_and_similar_show_the_images_inside_the_shards(shard_run, tmp_path):
    from raregal.views.explore.data import ExplorerData
    from raregal.runs.with_images import load_run
    from raregal.views.report.thumbs import encode, placeholder
    from raregal.similarity import similar
    from raregal.views.report.similar_gallery import write_similar_gallery

    data = ExplorerData(load_run(shard_run), neighbours=False)
    row = int(data.members(1, 1)[0])
    assert data.thumbnail(row, 64) != encode(placeholder(64))
    result = similar(shard_run, cluster=1, k=10, progress=False)
    assert {SHARD, ROW} <= set(result.columns) and len(result.attrs["query_images"]["id_str"]) > 10
    png, unreadable = write_similar_gallery(result, tmp_path / "sim.png")
    assert png.is_file() and unreadable == 0
