"""A checkpoint laid out exactly as Zoobot's ``ZoobotTree`` saves one, for the GZ DECaLS all-campaigns tree.

Zoobot (``zoobot.pytorch.estimators.define_model.ZoobotTree``) holds ``encoder``, a timm model
made with ``num_classes=0``, and ``head = Sequential(Dropout, Sequential(Linear(encoder width,
output_dim), ScaledSigmoid))`` with ``ScaledSigmoid(x) = 1 + 100 sigmoid(x)``; Lightning saves
``{"state_dict": {"encoder.*", "head.1.0.weight", "head.1.0.bias"}, "hyper_parameters": {output_dim,
question_answer_pairs, dependencies, architecture_name, …}, …}`` (its torchmetrics hold no persistent
state). The tree is typed out here from ``galaxy_datasets.shared.label_metadata``
(``decals_all_campaigns_ortho_pairs``: DR1/2, then DR5, then DR8; answers with a leading ``_``),
independently of :mod:`raregal.inputs.gz_trees`, so the test also checks raregal's copy of those facts.
The reference numbers are a direct forward pass of that state dict, with Zoobot's expected vote
fractions: within each question, concentration / sum of the question's concentrations.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from raregal.inputs.tables import read_catalog
from raregal.embedding.local import embed_catalog
from raregal.encoder import load_model
from raregal.errors import InputError
from raregal.images.dataset import ImageDataset, eval_transform

ARCH = "test_efficientnet"  # timm's tiny test network
SIZE = 32

DR12 = {
    "smooth-or-featured-dr12": ["_smooth", "_featured-or-disk", "_artifact"],
    "disk-edge-on-dr12": ["_yes", "_no"],
    "has-spiral-arms-dr12": ["_yes", "_no"],
    "bar-dr12": ["_yes", "_no"],
    "bulge-size-dr12": ["_dominant", "_obvious", "_none"],
    "how-rounded-dr12": ["_completely", "_in-between", "_cigar-shaped"],
    "edge-on-bulge-dr12": ["_boxy", "_none", "_rounded"],
    "spiral-winding-dr12": ["_tight", "_medium", "_loose"],
    "spiral-arm-count-dr12": ["_1", "_2", "_3", "_4", "_more-than-4"],
    "merging-dr12": ["_neither", "_tidal-debris", "_both", "_merger"],
}
DR5 = {
    "smooth-or-featured-dr5": ["_smooth", "_featured-or-disk", "_artifact"],
    "disk-edge-on-dr5": ["_yes", "_no"],
    "has-spiral-arms-dr5": ["_yes", "_no"],
    "bar-dr5": ["_strong", "_weak", "_no"],
    "bulge-size-dr5": ["_dominant", "_large", "_moderate", "_small", "_none"],
    "how-rounded-dr5": ["_round", "_in-between", "_cigar-shaped"],
    "edge-on-bulge-dr5": ["_boxy", "_none", "_rounded"],
    "spiral-winding-dr5": ["_tight", "_medium", "_loose"],
    "spiral-arm-count-dr5": ["_1", "_2", "_3", "_4", "_more-than-4", "_cant-tell"],
    "merging-dr5": ["_none", "_minor-disturbance", "_major-disturbance", "_merger"],
}
PAIRS = {**DR12, **DR5, **{q.replace("-dr5", "-dr8"): a for q, a in DR5.items()}}
_DEPENDS = {"smooth-or-featured": None, "disk-edge-on": "smooth-or-featured_featured-or-disk",
            "has-spiral-arms": "disk-edge-on_no", "bar": "disk-edge-on_no", "bulge-size": "disk-edge-on_no",
            "how-rounded": "smooth-or-featured_smooth", "edge-on-bulge": "disk-edge-on_yes",
            "spiral-winding": "has-spiral-arms_yes", "spiral-arm-count": "has-spiral-arms_yes", "merging": None}
DEPENDENCIES = {f"{q}-{c}": (None if d is None else d.replace("_", f"-{c}_", 1))
                for c in ("dr12", "dr5", "dr8") for q, d in _DEPENDS.items()}
LABEL_COLS = [q + a for q, answers in PAIRS.items() for a in answers]


class ScaledSigmoid(torch.nn.Sigmoid):
    """Zoobot's activation of the head: concentrations in (1, 101)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(x) * 100.0 + 1.0


class ZoobotLike(torch.nn.Module):
    """The modules of ZoobotTree that hold weights, under its attribute names."""

    def __init__(self, output_dim: int, seed: int = 0):
        import timm

        super().__init__()
        torch.manual_seed(seed)
        self.encoder = timm.create_model(ARCH, in_chans=3, num_classes=0)
        width = self.encoder.num_features
        self.head = torch.nn.Sequential(torch.nn.Dropout(0.2),
                                        torch.nn.Sequential(torch.nn.Linear(width, output_dim), ScaledSigmoid()))
        with torch.no_grad():  # BN statistics and head weights off their defaults, so a missed tensor shows
            for m in self.encoder.modules():
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.running_mean.uniform_(-0.1, 0.1)
                    m.running_var.uniform_(0.5, 1.5)
            self.head[1][0].weight.normal_(0, 0.5)

    def concentrations(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))


def zoobot_checkpoint(path, output_dim=len(LABEL_COLS), pairs=PAIRS, dependencies=DEPENDENCIES, seed=0):
    model = ZoobotLike(output_dim, seed).eval()
    hparams = {"output_dim": output_dim, "question_answer_pairs": pairs, "dependencies": dependencies,
               "architecture_name": ARCH, "channels": 3, "test_time_dropout": False, "compile_encoder": False,
               "timm_kwargs": {}, "dropout_rate": 0.2, "learning_rate": 1e-3, "betas": (0.9, 0.999),
               "weight_decay": 0.01, "scheduler_params": {}}
    if pairs is None:
        hparams = {k: v for k, v in hparams.items() if k not in ("question_answer_pairs", "dependencies")}
    torch.save({"epoch": 11, "global_step": 4000, "pytorch-lightning_version": "2.4.0",
                "state_dict": {k: v.clone() for k, v in model.state_dict().items()},
                "hyper_parameters": hparams}, path)
    return model


@pytest.fixture(scope="module")
def galaxies(tmp_path_factory):
    root = tmp_path_factory.mktemp("zoobot")
    rng = np.random.default_rng(3)
    rows = []
    for i in range(5):
        Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(root / f"g{i}.png")
        rows.append({"id_str": f"g{i}", "file_loc": f"g{i}.png"})
    pd.DataFrame(rows).to_csv(root / "catalog.csv", index=False)
    return root


def reference(model: ZoobotLike, catalog: pd.DataFrame) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Zoobot's numbers for the catalog's images: pooled encoder features and expected fractions by column."""
    dataset = ImageDataset(list(catalog["file_loc"]), eval_transform(SIZE), 3)
    x = torch.stack([dataset[i]["image"] for i in range(len(dataset))])
    with torch.no_grad():
        z = model.encoder(x).numpy()
        conc = model.concentrations(x).numpy().astype(np.float64)
    fractions, start = {}, 0
    for question, answers in PAIRS.items():
        part = conc[:, start:start + len(answers)]
        for j, answer in enumerate(answers):
            fractions[f"{question}{answer}_fraction"] = part[:, j] / part.sum(1)
        start += len(answers)
    return z, fractions


def test_the_all_campaigns_tree_has_label_metadatas_98_answers_in_order():
    from raregal.inputs import gz_trees as schema

    assert len(LABEL_COLS) == 98
    assert schema.DECALS_ALL.answers == LABEL_COLS
    assert schema.DECALS_ALL.dependencies == DEPENDENCIES


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_a_zoobot_tree_checkpoint_embeds_to_zoobots_own_numbers(galaxies, tmp_path, backend):
    if backend == "onnx":
        pytest.importorskip("onnxruntime")
    zoobot = zoobot_checkpoint(tmp_path / "zoobot.ckpt")
    model = load_model(tmp_path / "zoobot.ckpt", input_size=SIZE)  # architecture and tree from hyper_parameters
    assert model.schema.name == "decals-all-campaigns" and model.bottleneck is None
    catalog = read_catalog(galaxies / "catalog.csv")
    summary = embed_catalog(catalog, model, tmp_path / "reps.parquet", batch_size=2, workers=0, progress=False,
                            backend=backend)
    assert summary["schema"] == "decals-all-campaigns" and summary["n_embedded"] == 5
    table = pd.read_parquet(tmp_path / "reps.parquet")
    z, fractions = reference(zoobot, catalog)
    names = [c for c in table.columns if c.endswith("_fraction")]
    assert names == list(fractions)  # Zoobot's columns + _fraction, in its head's order
    assert "smooth-or-featured-dr8_smooth_fraction" in names and "bar-dr12_yes_fraction" in names
    tol = dict(rtol=1e-5, atol=1e-6) if backend == "torch" else dict(rtol=1e-4, atol=1e-5)
    feats = table[[f"feat_{j}" for j in range(z.shape[1])]].to_numpy()
    np.testing.assert_allclose(feats, z, **tol)
    np.testing.assert_allclose(table[names].to_numpy(), np.column_stack(list(fractions.values())), **tol)
    dr8 = table[[n for n in names if n.startswith("smooth-or-featured-dr8_")]].to_numpy()
    np.testing.assert_allclose(dr8.sum(1), 1.0, rtol=1e-5)  # conditional on the question: sums to one


def test_a_head_is_matched_by_its_width_when_the_checkpoint_names_no_tree(tmp_path):
    zoobot_checkpoint(tmp_path / "all.ckpt", pairs=None)
    assert load_model(tmp_path / "all.ckpt", input_size=SIZE).schema.name == "decals-all-campaigns"  # 98: one tree
    zoobot_checkpoint(tmp_path / "thirty.ckpt", output_dim=30, pairs=None)  # DR1/2 and GZ2 both have 30 answers
    with pytest.raises(InputError, match=r"30 answers fit several.*decals-dr12, gz2.*schema=NAME") as err:
        load_model(tmp_path / "thirty.ckpt", input_size=SIZE)
    assert err.value.param == "schema"
    assert load_model(tmp_path / "thirty.ckpt", input_size=SIZE, schema="gz2").schema.name == "gz2"
    with pytest.raises(InputError, match="predicts 30 answers, but schema=desi has 34"):
        load_model(tmp_path / "thirty.ckpt", input_size=SIZE, schema="desi")


def test_embed_cli_schema_flag_names_an_ambiguous_head(galaxies, tmp_path, capsys):
    from raregal.cli import main

    zoobot_checkpoint(tmp_path / "thirty.ckpt", output_dim=30, pairs=None)
    args = ["embed", str(galaxies / "catalog.csv"), "--model", str(tmp_path / "thirty.ckpt"), "--input-size",
            str(SIZE), "--workers", "0", "--device", "cpu", "--backend", "torch"]
    assert main([*args, "--out", str(tmp_path / "a.parquet")]) == 2
    assert "--schema NAME" in capsys.readouterr().err
    assert main([*args, "--out", str(tmp_path / "b.parquet"), "--schema", "decals-dr12"]) == 0
    assert "vote fractions of the decals-dr12 tree" in capsys.readouterr().out
    assert "bar-dr12_yes_fraction" in pd.read_parquet(tmp_path / "b.parquet").columns
