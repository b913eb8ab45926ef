"""The encoder: Dirichlet head and loss, bottleneck, and loading weights in every supported format."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from raregal.inputs import gz_trees as schema
from raregal.encoder import EncoderConfig, GalaxyEncoder, load_model, save_model
from raregal.encoder.dirichlet import (dirichlet_loss, dirichlet_multinomial_nll, fractions_from_concentrations,
                                       question_matrix)
from raregal.errors import InputError

ARCH = "test_efficientnet"  # timm's tiny test network: same code paths as efficientnet_b0, 0.1 M parameters
SIZE = 32


def tiny(bottleneck=16, head=True, seed=0) -> GalaxyEncoder:
    torch.manual_seed(seed)
    model = GalaxyEncoder(EncoderConfig(arch=ARCH, bottleneck=bottleneck, input_size=SIZE, head=head))
    with torch.no_grad():  # move BN running stats off their defaults so a missed buffer shows
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return model.eval()


@pytest.fixture(scope="module")
def images():
    return torch.rand(3, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))


def outputs(model, x):
    with torch.no_grad():
        z, frac = model.embed_and_predict(x)
    return z.numpy(), None if frac is None else frac.numpy()


# ---------------------------------------------------------------- Dirichlet head and loss

def test_fractions_are_concentrations_normalised_within_each_question():
    rng = np.random.default_rng(0)
    conc = rng.uniform(1, 101, size=(5, len(schema.ANSWERS)))
    frac = fractions_from_concentrations(conc)
    frac_t = fractions_from_concentrations(torch.tensor(conc)).numpy()
    np.testing.assert_allclose(frac, frac_t)
    for q in schema.TREE:
        np.testing.assert_allclose(frac[:, q.slice].sum(1), 1.0)
        np.testing.assert_allclose(frac[:, q.slice], conc[:, q.slice] / conc[:, q.slice].sum(1, keepdims=True))


def test_head_concentrations_lie_in_1_to_101_and_keys_match_zoobot():
    model = tiny()
    keys = set(model.state_dict())
    assert {"head.1.0.weight", "head.1.0.bias", "bottleneck.weight", "bottleneck.bias"} <= keys
    assert all(k.startswith(("encoder.", "bottleneck.", "head.")) for k in keys)
    with torch.no_grad():
        model.head[1][0].bias.fill_(1e3)
        high = model(torch.rand(2, 3, SIZE, SIZE))
        model.head[1][0].bias.fill_(-1e3)
        low = model(torch.rand(2, 3, SIZE, SIZE))
    assert high.shape == (2, 34) and torch.all(high <= 101) and torch.all(high > 100)
    assert torch.all(low >= 1) and torch.all(low < 1.01)


def test_dirichlet_multinomial_loss_matches_scipy():
    from scipy.stats import dirichlet_multinomial

    rng = np.random.default_rng(3)
    conc = rng.uniform(1, 101, size=(4, 34))
    counts = rng.integers(0, 12, size=(4, 34)).astype(float)
    counts[0, schema.question("bar").slice] = 0  # a question nobody was asked
    counts[1, 5] = np.nan  # a missing count: 0 votes
    nll = dirichlet_multinomial_nll(torch.tensor(conc), torch.tensor(counts)).numpy()
    assert nll.shape == (4, len(schema.TREE))
    filled = np.nan_to_num(counts)
    for i in range(4):
        for j, q in enumerate(schema.TREE):
            x = filled[i, q.slice]
            expected = 0.0 if x.sum() == 0 else -dirichlet_multinomial(conc[i, q.slice], int(x.sum())).logpmf(x)
            assert nll[i, j] == pytest.approx(expected, rel=1e-9, abs=1e-9), (i, q.name)
    assert nll[0, [q.name for q in schema.TREE].index("bar")] == 0.0
    total = dirichlet_loss(torch.tensor(conc), torch.tensor(counts)).item()
    assert total == pytest.approx(nll.sum(1).mean())


def test_a_galaxy_with_only_dr8_votes_teaches_nothing_to_the_other_campaigns_questions():
    # all-campaigns tree (98 answers): votes in DR8 only; the DR1/2 and DR5 questions give loss 0 and gradient 0
    tree = schema.DECALS_ALL
    rng = np.random.default_rng(4)
    conc = torch.tensor(rng.uniform(1, 101, size=(3, len(tree.answers))), requires_grad=True)
    counts = np.zeros((3, len(tree.answers)))
    dr8 = [i for i, a in enumerate(tree.answers) if "-dr8_" in a]
    counts[:, dr8] = rng.integers(0, 12, size=(3, len(dr8)))
    nll = dirichlet_multinomial_nll(conc, torch.tensor(counts), tree)
    campaign = [q.campaign for q in tree.tree]
    assert nll.shape == (3, len(tree.tree)) and len(tree.answers) == 98
    others = [j for j, c in enumerate(campaign) if c != "dr8"]
    assert torch.all(nll[:, others] == 0) and nll[:, [campaign.index("dr8")]].gt(0).all()
    dirichlet_loss(conc, torch.tensor(counts), tree).backward()
    not_dr8 = [i for i in range(len(tree.answers)) if i not in dr8]
    assert torch.all(conc.grad[:, not_dr8] == 0) and conc.grad[:, dr8].abs().sum() > 0
    # the DR8 part is exactly the loss of the DR8 tree on the DR8 columns
    alone = dirichlet_multinomial_nll(conc.detach()[:, dr8], torch.tensor(counts[:, dr8]), schema.DECALS_DR8)
    assert torch.allclose(nll[:, [j for j, c in enumerate(campaign) if c == "dr8"]], alone)
    fr = fractions_from_concentrations(conc.detach().numpy(), tree)
    assert np.allclose(fr @ question_matrix(tree), 1.0)


def test_question_matrix_assigns_every_answer_to_one_question():
    m = question_matrix()
    assert m.shape == (34, 10) and np.all(m.sum(1) == 1)
    assert m[schema.ANSWERS.index("bar_weak"), [q.name for q in schema.TREE].index("bar")] == 1


# ---------------------------------------------------------------- bottleneck and architectures

def test_bottleneck_width_is_the_representation_width(images):
    for width in (8, 128):
        z, frac = outputs(tiny(bottleneck=width), images)
        assert z.shape == (3, width) and frac.shape == (3, 34)
    plain = tiny(bottleneck=None)
    z, _ = outputs(plain, images)
    assert z.shape == (3, plain.encoder.num_features) and plain.bottleneck is None
    # LCNet pools, then widens with a conv head: its output width is head_hidden_size, not num_features
    lcnet = GalaxyEncoder(EncoderConfig(arch="lcnet_050", bottleneck=None, input_size=SIZE)).eval()
    assert lcnet.encoder.num_features != lcnet.encoder.head_hidden_size
    assert outputs(lcnet, images)[0].shape == (3, lcnet.representation_dim)
    assert GalaxyEncoder(EncoderConfig(arch="lcnet_050", bottleneck=32, input_size=SIZE)).bottleneck.in_features == \
        lcnet.representation_dim


def test_first_class_architectures_read_their_width_from_timm():
    import timm

    for arch in ("efficientnet_b0", "maxvit_tiny_rw_224"):
        model = GalaxyEncoder(EncoderConfig(arch=arch, bottleneck=None, input_size=224))
        assert model.representation_dim == timm.create_model(arch, num_classes=0).num_features
        assert GalaxyEncoder(EncoderConfig(arch=arch, bottleneck=128)).representation_dim == 128
    # a window-attention net built for another input size still runs
    small = GalaxyEncoder(EncoderConfig(arch="test_maxvit", bottleneck=8, input_size=64)).eval()
    assert outputs(small, torch.rand(1, 3, 64, 64))[0].shape == (1, 8)


def test_unknown_architecture_is_named():
    with pytest.raises(InputError, match="efficientnet_b99"):
        GalaxyEncoder(EncoderConfig(arch="efficientnet_b99"))


# ---------------------------------------------------------------- loading every format

def test_raregal_format_roundtrip_folder_json_and_lone_safetensors(tmp_path, images):
    model = tiny()
    save_model(model, tmp_path / "m", training={"note": "test"})
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["model"]["arch"] == ARCH and config["representation_dim"] == 16
    assert config["schema"]["answers"] == schema.ANSWERS
    z0, f0 = outputs(model, images)
    for spec in (tmp_path / "m", tmp_path / "m" / "config.json", tmp_path / "m" / "model.safetensors"):
        loaded = load_model(spec)  # no --arch needed: the files say it
        assert loaded.config.input_size == SIZE and not loaded.training
        z, f = outputs(loaded, images)
        np.testing.assert_array_equal(z, z0)
        np.testing.assert_array_equal(f, f0)


def test_the_head_is_as_wide_as_its_schema_and_the_checkpoint_records_it(tmp_path, images):
    torch.manual_seed(0)
    model = GalaxyEncoder(EncoderConfig(arch=ARCH, bottleneck=16, input_size=SIZE, schema="decals_dr8_ortho")).eval()
    assert model.schema is schema.DECALS_DR8 and model.config.schema == "decals-dr8"  # label_metadata's name works
    save_model(model, tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    assert loaded.schema is schema.DECALS_DR8 and loaded.head[1][0].out_features == 34
    _, f = outputs(loaded, images)
    assert np.allclose(f[:, schema.DECALS_DR8.question("bar-dr8").slice].sum(1), 1.0)
    assert load_model(tmp_path / "m", schema="dr8").schema is schema.DECALS_DR8  # agreeing: fine
    with pytest.raises(InputError, match="decals-dr8 tree.*not schema=desi") as err:
        load_model(tmp_path / "m", schema="desi")  # same width, other names: the file decides, so say so
    assert err.value.param == "schema"
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    config["schema"]["name"] = "gz2"
    (tmp_path / "m" / "config.json").write_text(json.dumps(config))
    with pytest.raises(InputError, match="names the tree 'gz2' but its answers are those of 'decals-dr8'"):
        load_model(tmp_path / "m" / "config.json")
    wide = GalaxyEncoder(EncoderConfig(arch=ARCH, bottleneck=16, input_size=SIZE, schema="decals-all-campaigns"))
    assert wide.head[1][0].out_features == 98


def test_half_precision_raregal_file_loads_close(tmp_path, images):
    model = tiny()
    save_model(model, tmp_path / "h", dtype=torch.float16)
    z, _ = outputs(load_model(tmp_path / "h"), images)
    np.testing.assert_allclose(z, outputs(model, images)[0], rtol=0.05, atol=0.05)
    assert (tmp_path / "h" / "model.safetensors").stat().st_size < 0.7 * sum(
        v.numel() * v.element_size() for v in model.state_dict().values())


@pytest.mark.parametrize("suffix", [".safetensors", ".pth", ".bin"])
def test_timm_state_dict_files_load_with_arch(tmp_path, images, suffix):
    import timm

    torch.manual_seed(5)
    timm_model = timm.create_model(ARCH, num_classes=7).eval()  # with an ImageNet-style classifier
    state = timm_model.state_dict()
    path = tmp_path / f"weights{suffix}"
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(path))
    else:
        torch.save(state, path)
    with pytest.raises(InputError, match="--arch"):
        load_model(path)
    loaded = load_model(path, arch=ARCH, input_size=SIZE)
    assert loaded.head is None and loaded.bottleneck is None
    z, frac = outputs(loaded, images)
    with torch.no_grad():
        expected = timm_model.forward_head(timm_model.forward_features(images), pre_logits=True).numpy()
    np.testing.assert_allclose(z, expected, rtol=1e-6, atol=1e-6)
    assert frac is None


def _lightning_ckpt(model, path, **extra):
    ckpt = {"epoch": 3, "global_step": 120, "pytorch-lightning_version": "2.4.0",
            "state_dict": {k: v.clone() for k, v in model.state_dict().items()},
            "hyper_parameters": {"output_dim": 34, "architecture_name": ARCH, "dropout_rate": 0.2}, **extra}
    torch.save(ckpt, path)
    return path


def test_zoobot_lightning_checkpoint_loads_encoder_and_head(tmp_path, images):
    model = tiny(bottleneck=None)  # Zoobot's own models have no bottleneck: encoder.* + head.1.0.*
    path = _lightning_ckpt(model, tmp_path / "zoobot.ckpt")
    loaded = load_model(path, input_size=SIZE)  # architecture read from hyper_parameters
    assert loaded.config.arch == ARCH and loaded.head is not None
    z, f = outputs(loaded, images)
    z0, f0 = outputs(model, images)
    np.testing.assert_array_equal(z, z0)
    np.testing.assert_array_equal(f, f0)


def test_checkpoint_with_python_objects_is_refused_unless_trusted(tmp_path, images):
    from collections import OrderedDict
    from fractions import Fraction  # any class outside torch's weights-only allow-list

    model = tiny(bottleneck=None)
    path = _lightning_ckpt(model, tmp_path / "objects.ckpt", callbacks=OrderedDict(x=Fraction(1, 3)))
    with pytest.raises(InputError, match="trust-checkpoint") as err:
        load_model(path)
    assert "objects.ckpt" in str(err.value)
    loaded = load_model(path, trust_checkpoint=True, input_size=SIZE)
    np.testing.assert_array_equal(outputs(loaded, images)[0], outputs(model, images)[0])


def test_mismatched_weights_name_the_keys(tmp_path):
    path = _lightning_ckpt(tiny(bottleneck=None), tmp_path / "z.ckpt")
    with pytest.raises(InputError) as err:
        load_model(path, arch="test_resnet")
    text = str(err.value)
    assert "z.ckpt" in text and "missing keys" in text and "encoder." in text
    state = tiny(bottleneck=16).state_dict()
    state["head.1.0.weight"] = state["head.1.0.weight"][:, :8]
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(InputError, match=r"head\.1\.0\.weight \(34, 8\) vs model \(34, 16\)"):
        load_model(tmp_path / "bad.pth", arch=ARCH)


def test_hub_id_without_network_says_to_pass_a_local_file(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # fail at once instead of retrying
    with pytest.raises(InputError, match="pass the local weights file") as err:
        load_model("hf_hub:mwalmsley/zoobot-encoder-efficientnet_b0")
    assert "mwalmsley/zoobot-encoder-efficientnet_b0" in str(err.value)


def test_hub_id_fails_at_once_when_the_hub_host_does_not_resolve(monkeypatch):
    import socket

    def no_dns(*args, **kwargs):
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    with pytest.raises(InputError, match="cannot resolve .*pass the local weights file"):
        load_model("hf_hub:mwalmsley/zoobot-encoder-maxvit_tiny_rw_224")


def test_missing_and_unknown_files_are_clear(tmp_path):
    with pytest.raises(InputError, match="no such model"):
        load_model(tmp_path / "nope.ckpt")
    (tmp_path / "weights.onnx").write_bytes(b"x")
    with pytest.raises(InputError, match="unknown weights format"):
        load_model(tmp_path / "weights.onnx", arch=ARCH)
    (tmp_path / "junk.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(InputError, match="junk.safetensors"):
        load_model(tmp_path / "junk.safetensors", arch=ARCH)
