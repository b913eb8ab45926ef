"""Embedding on a Dask cluster: parts per partition, a worker killed mid-run, resume, the runtime backends."""

from __future__ import annotations

import json
import os
import signal
import time

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from raregal.inputs.tables import feature_matrix, read_catalog, read_table
from raregal.embedding.local import SUMMARY_KEYS, embed_catalog, embed_chunk, summary_path
from raregal.embedding.on_dask import ModelSpec, embed_catalog_dask, make_client, part_path
from raregal.encoder import EncoderConfig, GalaxyEncoder, load_model, save_model
from raregal.encoder.runtime import make_runner
from raregal.errors import InputError

N = 240


@pytest.fixture(scope="module")
def survey(tmp_path_factory):
    """N tiny PNGs with one corrupt file, and a tiny saved encoder."""
    root = tmp_path_factory.mktemp("dask_survey")
    (root / "img").mkdir()
    rng = np.random.default_rng(1)
    rows = []
    for i in range(N):
        Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(root / "img" / f"g{i:03d}.png")
        rows.append({"id_str": f"g{i:03d}", "file_loc": f"img/g{i:03d}.png", "true_class": f"c{i % 4}"})
    (root / "img" / "bad.png").write_bytes(b"not a png")
    rows.insert(17, {"id_str": "bad", "file_loc": "img/bad.png", "true_class": "c0"})
    pd.DataFrame(rows).to_csv(root / "catalog.csv", index=False)
    torch.manual_seed(0)
    save_model(GalaxyEncoder(EncoderConfig(arch="test_efficientnet", bottleneck=8, input_size=32)).eval(),
               root / "model")
    return root


@pytest.fixture(scope="module")
def client():
    client, cluster = make_client(None, n_workers=2, threads_per_worker=1)
    yield client
    client.close()
    cluster.close()


def _slow_partition(*args, **kwargs):
    """The real task, slowed so that a worker can be killed while others are still queued."""
    from raregal.embedding.on_dask import embed_partition

    time.sleep(0.3)
    return embed_partition(*args, **kwargs)


def test_a_killed_worker_does_not_lose_or_duplicate_galaxies(survey, client, tmp_path, monkeypatch):
    import raregal.embedding.on_dask as mod

    catalog = read_catalog(survey / "catalog.csv")
    out = tmp_path / "reps"
    spec = ModelSpec(str(survey / "model"), backend="torch")  # no ONNX export per worker: keeps the test short
    monkeypatch.setattr(mod, "embed_partition", _slow_partition)
    pids = client.run(os.getpid)  # {worker address: pid}

    def kill_one_worker():
        deadline = time.time() + 30
        while time.time() < deadline and not list(out.glob("part-*.parquet")):
            time.sleep(0.05)
        os.kill(next(iter(pids.values())), signal.SIGKILL)  # the nanny restarts it; its tasks go elsewhere

    import threading

    killer = threading.Thread(target=kill_one_worker)
    killer.start()
    summary = embed_catalog_dask(catalog, spec, out, client, partition_size=16, batch_size=8,
                                 carry=["true_class"], progress=False)
    killer.join()
    client.wait_for_workers(2, timeout=30)
    assert set(client.run(os.getpid).values()) != set(pids.values())  # the worker really was killed and replaced
    assert len(summary["worker_pids"]) >= 2  # both original workers (and perhaps the restarted one) worked
    table = read_table(out)  # the directory of parts is the representation table search reads
    assert sorted(table["id_str"]) == sorted(f"g{i:03d}" for i in range(N))  # every galaxy exactly once
    assert table["id_str"].is_unique and summary["n_embedded"] == N and summary["n_skipped"] == 1
    assert pd.read_csv(out / "_skipped.csv")["id_str"].tolist() == ["bad"]
    assert summary["chunks"] == -(-(N + 1) // 16) and summary["engine"] == "dask"
    # the numbers are the model's, whichever worker computed them
    expected, _ = embed_chunk(load_model(survey / "model"), catalog, backend="torch", carry=["true_class"])
    got = table.set_index("id_str").loc[expected["id_str"]]
    np.testing.assert_allclose(feature_matrix(got.reset_index()), feature_matrix(expected), rtol=1e-4, atol=1e-5)
    assert (got["true_class"].to_numpy() == expected["true_class"].to_numpy()).all()


def test_a_rerun_only_does_missing_partitions(survey, client, tmp_path):
    catalog = read_catalog(survey / "catalog.csv").head(64)
    out = tmp_path / "reps"
    spec = ModelSpec(str(survey / "model"), backend="torch")
    first = embed_catalog_dask(catalog, spec, out, client, partition_size=16, progress=False)
    assert first["chunks"] == 4 and first["chunks_resumed"] == 0
    part_path(out, 2).unlink()  # as if the run had died before partition 2 finished
    stamp = part_path(out, 0).stat().st_mtime_ns
    again = embed_catalog_dask(catalog, spec, out, client, partition_size=16, progress=False)
    assert again["chunks_resumed"] == 3 and part_path(out, 0).stat().st_mtime_ns == stamp
    assert read_table(out)["id_str"].tolist() == [i for i in catalog["id_str"] if i != "bad"]
    assert json.loads(summary_path(out).read_text())["n_embedded"] == 63  # 'bad' is row 17
    with pytest.raises(InputError, match="another model, catalog or partition size"):
        embed_catalog_dask(catalog, spec, out, client, partition_size=8, progress=False)


def test_local_and_dask_runs_write_one_summary_format(survey, client, tmp_path):
    catalog = read_catalog(survey / "catalog.csv").head(20)
    local = embed_catalog(catalog, load_model(survey / "model"), tmp_path / "local.parquet", chunk_size=8,
                          batch_size=4, workers=0, backend="torch", progress=False, model_name=str(survey / "model"))
    spec = ModelSpec(str(survey / "model"), backend="torch")
    on_dask = embed_catalog_dask(catalog, spec, tmp_path / "dask", client, partition_size=8, batch_size=4,
                                 progress=False)
    written = {name: json.loads((tmp_path / f"{name}.embed.json").read_text()) for name in ("local", "dask")}
    assert set(local) == set(on_dask) == set(written["local"]) == set(written["dask"]) == set(SUMMARY_KEYS)
    assert (local["engine"], on_dask["engine"]) == ("local", "dask") and written["dask"] == on_dask
    same = ["model", "arch", "representation_dim", "input_size", "has_fractions", "schema", "n_input", "n_embedded",
            "n_skipped", "chunk_size", "chunks", "chunks_resumed", "batch_size", "device", "backend", "carry"]
    assert {k: local[k] for k in same} == {k: on_dask[k] for k in same}
    assert local["n_embedded"] == 19 and local["chunks"] == 3 and on_dask["worker_pids"]
    assert not (tmp_path / "dask" / "_embed.json").exists()  # the summary is beside the folder, as beside a file
    (tmp_path / "dask" / "_embed.json").write_text('{"n_embedded": 19, "partitions": 3}')  # an older raregal's
    again = embed_catalog_dask(catalog, spec, tmp_path / "dask", client, partition_size=8, batch_size=4,
                               progress=False)
    assert again["chunks_resumed"] == 3 and set(again) == set(SUMMARY_KEYS)
    assert not (tmp_path / "dask" / "_embed.json").exists()  # never left stale beside the new summary
    # dask.parquet would share dask/'s summary, dask.embed.json: refused, and the Dask run's summary kept
    with pytest.raises(InputError, match=r"dask.embed.json: is the summary of another embedding \(.*dask\)"):
        embed_catalog(catalog, None, tmp_path / "dask.parquet", progress=False)
    assert json.loads((tmp_path / "dask.embed.json").read_text()) == again


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_runtime_backends_give_the_eager_models_numbers(backend):
    pytest.importorskip("onnxruntime") if backend == "onnx" else None
    torch.manual_seed(0)
    model = GalaxyEncoder(EncoderConfig(arch="test_efficientnet", bottleneck=8, input_size=32)).eval()
    x = torch.rand(6, 3, 32, 32)
    with torch.no_grad():
        z_ref, frac_ref = model.embed_and_predict(x)
    runner = make_runner(model, backend=backend)
    z, frac = runner(x)
    assert runner.backend == backend and z.dtype == np.float32 and z.shape == (6, 8) and frac.shape == (6, 34)
    np.testing.assert_allclose(z, z_ref.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(frac, frac_ref.numpy(), rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="onnx backend runs on CPU in fp32 or int8"):
        make_runner(model, backend="onnx", precision="bf16")


def test_embed_cli_on_a_dask_scheduler(survey, client, tmp_path, capsys):
    from raregal.cli import main

    out = tmp_path / "reps"
    rc = main(["embed", str(survey / "catalog.csv"), "--model", str(survey / "model"), "--out", str(out),
               "--dask", client.scheduler.address, "--partition-size", "100", "--backend", "torch",
               "--carry", "true_class", "--device", "cpu"])
    assert rc == 0
    assert f"embedded {N} of {N + 1} images" in capsys.readouterr().out
    assert sorted(p.name for p in out.glob("part-*.parquet")) == [f"part-{i:05d}.parquet" for i in range(3)]
    table = read_table(out)
    assert len(table) == N and table["id_str"].is_unique and "true_class" in table


def test_a_slurm_config_is_checked_before_anything_starts(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        make_client(str(tmp_path / "missing.toml"))
    (tmp_path / "bad.toml").write_text("[cluster]\ncores = 4\n")
    with pytest.raises(InputError, match=r"\[slurm\] table"):
        make_client(str(tmp_path / "bad.toml"))
    (tmp_path / "slurm.toml").write_text('[slurm]\ncores = 4\nmemory = "16GB"\njobs = 2\n')
    import importlib.util

    if importlib.util.find_spec("dask_jobqueue") is None:
        with pytest.raises(InputError, match=r"raregal\[slurm\]"):
            make_client(str(tmp_path / "slurm.toml"))


def test_int8_quantizes_transformers_only_and_keeps_their_representation(monkeypatch):
    pytest.importorskip("onnxruntime")
    from raregal.encoder import runtime

    torch.manual_seed(0)
    vit = GalaxyEncoder(EncoderConfig(arch="test_maxvit", bottleneck=16, input_size=64)).eval()
    cnn = GalaxyEncoder(EncoderConfig(arch="test_efficientnet", bottleneck=8, input_size=32)).eval()
    x = torch.from_numpy(runtime.probe_images(3, 64, n=4, seed=1))
    with torch.no_grad():
        z_ref = vit.embed(x).numpy()
    auto = make_runner(vit)  # CPU, precision auto: MaxViT's weights are mostly matrix products
    assert auto.precision == "int8" and auto.int8_min_cosine >= runtime.INT8_MIN_COSINE
    z, frac = auto(x)
    cosine = (z * z_ref).sum(1) / np.linalg.norm(z, axis=1) / np.linalg.norm(z_ref, axis=1)
    assert cosine.min() >= 0.999 and frac.shape == (4, 34)
    assert np.abs(z - z_ref).max() > 1e-6  # it really is another graph, not the fp32 one
    assert make_runner(cnn).precision == "fp32"  # a CNN's work is in convolutions: left alone
    assert make_runner(cnn, precision="int8").precision == "int8"  # unless asked for
    with pytest.raises(ValueError, match="int8 runs on CPU with ONNX Runtime"):
        make_runner(cnn, backend="torch", precision="int8")
    monkeypatch.setattr(runtime, "INT8_MIN_COSINE", 1.5)  # a check no quantized graph can pass
    assert make_runner(vit).precision == "fp32"  # auto falls back to the exact graph
    with pytest.raises(ValueError, match="changes test_maxvit's representation too much"):
        make_runner(vit, precision="int8")
