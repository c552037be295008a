"""DARTS / RobustDARTS S1–S4 spaces, the search network's engine contract, DOTS topology, genotypes, data, plot."""
import gzip
import math
import os
import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from ssnas.darts.data import CIFAR_MEAN, CIFAR_STD, build_darts_dataset
from ssnas.darts.genotypes import PRIMITIVES, SPACES, Genotype, derive_cell, edge_index, node_pairs
from ssnas.darts.model_search import DartsSearchNetwork, dots_temperature
from ssnas.darts.operations import NoiseOp
from ssnas.darts.plot import plot_genotype
from ssnas.errors import UserError

SKIP, SEP3, DIL3, DIL5, MAX, AVG = ("skip_connect", "sep_conv_3x3", "dil_conv_3x3", "dil_conv_5x5",
                                    "max_pool_3x3", "avg_pool_3x3")


def _tiny(space="s1", topology="none"):
    torch.manual_seed(0)
    return DartsSearchNetwork(C=2, num_classes=3, layers=3, space=space, topology=topology)


def _batch():
    torch.manual_seed(1)
    return torch.randn(2, 3, 8, 8), torch.tensor([0, 2])


# --- spaces -------------------------------------------------------------------------------------------------
def test_s1_is_the_design_notes_table():
    normal = [(SKIP, DIL3), (SKIP, DIL5), (SKIP, DIL5), (SKIP, SEP3), (SKIP, DIL3), (MAX, SKIP), (SKIP, SEP3),
              (SKIP, SEP3), (SKIP, DIL3), (SKIP, SEP3), (MAX, SKIP), (SKIP, DIL3), (DIL3, DIL5), (DIL3, DIL5)]
    reduce = [(MAX, AVG), (MAX, DIL3), (MAX, AVG), (MAX, AVG), (SKIP, DIL5), (MAX, AVG), (MAX, SEP3),
              (SKIP, DIL3), (SKIP, DIL5), (MAX, AVG), (MAX, AVG), (SKIP, DIL5), (SKIP, DIL5), (SKIP, DIL5)]
    assert [tuple(ops) for ops in SPACES["s1"]["normal"]] == normal
    assert [tuple(ops) for ops in SPACES["s1"]["reduce"]] == reduce


@pytest.mark.parametrize("space, ops", [("s2", [SKIP, SEP3]), ("s3", ["none", SKIP, SEP3]),
                                        ("s4", ["noise", SEP3]), ("darts", list(PRIMITIVES))])
def test_uniform_spaces(space, ops):
    for cell in ("normal", "reduce"):
        assert SPACES[space][cell] == [ops] * 14
    assert PRIMITIVES[0] == "none" and len(PRIMITIVES) == 8


def test_edge_numbering_and_pairs_follow_darts_order():
    assert [edge_index(n, 0) for n in range(4)] == [0, 2, 5, 9]
    assert edge_index(3, 4) == 13
    assert [len(node_pairs(n)) for n in range(4)] == [1, 3, 6, 10]


def test_unknown_space_is_a_user_error():
    with pytest.raises(UserError, match="s5"):
        DartsSearchNetwork(space="s5")


# --- network and engine contract ---------------------------------------------------------------------------
@pytest.mark.parametrize("space, topology", [("darts", "none"), ("s1", "none"), ("s2", "none"), ("s3", "none"),
                                             ("s4", "none"), ("s1", "dots")])
def test_every_weight_and_alpha_gets_a_gradient(space, topology):
    model = _tiny(space, topology)
    x, y = _batch()
    logits = model(x)
    assert logits.shape == (2, 3)
    F.cross_entropy(logits, y).backward()
    k = len(SPACES[space]["normal"][0])
    assert model.alpha_normal.shape == model.alpha_reduce.shape == (14, k)
    silent = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert silent == []
    if topology == "dots":
        # node 0 has a single input pair: its probability is constantly 1, so its logit's gradient is exactly 0
        for name in ("topology_normal", "topology_reduce"):
            grad = getattr(model, name).grad
            assert grad[0] == 0 and (grad[1:] != 0).all()
    else:
        for alpha in model.arch_parameters():
            assert (alpha.grad != 0).all()  # every α entry, not just every tensor


def test_arch_and_weight_parameters_partition_the_model():
    model = _tiny("s3", "dots")
    arch, weights = model.arch_parameters(), model.weight_parameters()
    ids = {id(p) for p in arch} | {id(p) for p in weights}
    assert len(ids) == len(arch) + len(weights) == len(list(model.parameters()))
    assert [tuple(p.shape) for p in arch] == [(14, 3), (14, 3), (20,), (20,)]
    model.freeze_architecture()
    assert model.arch_frozen and not any(p.requires_grad for p in arch)
    assert all(p.requires_grad for p in weights)


def test_arch_distributions_without_topology():
    model = _tiny("s2")
    dists = model.arch_distributions()
    assert set(dists) == {"alpha_normal", "alpha_reduce"}
    probs, valid = dists["alpha_reduce"]
    torch.testing.assert_close(probs, F.softmax(model.alpha_reduce, -1))
    assert valid.dtype == torch.bool and valid.all()


def test_noise_op_is_standard_normal_without_input_gradient():
    x = torch.randn(4, 8, 16, 16, requires_grad=True)
    out = NoiseOp(stride=1)(x)
    assert out.shape == x.shape and not out.requires_grad
    assert NoiseOp(stride=2)(x).shape == (4, 8, 8, 8)
    assert abs(float(out.mean())) < 0.05 and abs(float(out.std()) - 1) < 0.05
    model = _tiny("s4")
    x, _ = _batch()
    torch.manual_seed(3)
    first = model(x)
    torch.manual_seed(3)
    assert torch.equal(first, model(x))  # noise is reproducible under a seed


# --- DOTS ----------------------------------------------------------------------------------------------------
def test_dots_pair_probabilities_and_edge_weights():
    model = _tiny("s2", "dots")
    with torch.no_grad():
        model.topology_normal.copy_(torch.arange(20, dtype=torch.float32) * 0.1)
        model.set_topology_temperature(0.5)
        probs = model.pair_probabilities("normal")
        edges = model.edge_weights("normal")
        table, valid = model.arch_distributions()["topology_normal"]
    assert [p.numel() for p in probs] == [1, 3, 6, 10]
    for p in probs:
        assert float(p.sum()) == pytest.approx(1.0, abs=1e-6)
    # node 2: logits 0.4..0.9 over pairs (0,1) (0,2) (0,3) (1,2) (1,3) (2,3), tempered by 0.5
    expected = F.softmax(torch.tensor([0.4, 0.5, 0.6, 0.7, 0.8, 0.9]) / 0.5, -1)
    torch.testing.assert_close(probs[2], expected)
    e = expected.tolist()
    input_weights = [e[0] + e[1] + e[2], e[0] + e[3] + e[4], e[1] + e[3] + e[5], e[2] + e[4] + e[5]]
    torch.testing.assert_close(edges[2], torch.tensor(input_weights))
    for w in edges:
        assert float(w.sum()) == pytest.approx(2.0, abs=1e-5)  # each pair feeds two edges
    assert table.shape == valid.shape == (4, 10)
    assert valid.sum(1).tolist() == [1, 3, 6, 10]
    assert float(table[~valid].abs().sum()) == 0.0
    with pytest.raises(UserError, match="temperature"):
        model.set_topology_temperature(0.0)


def test_dots_temperature_anneals_from_10_to_0_02():
    assert dots_temperature(0.0) == pytest.approx(10.0)
    assert dots_temperature(1.0) == pytest.approx(0.02)
    assert dots_temperature(0.5) == pytest.approx(math.sqrt(10.0 * 0.02))
    assert dots_temperature(2.0) == pytest.approx(0.02)  # clamped


# --- genotype derivation -------------------------------------------------------------------------------------
def test_darts_genotype_rule_never_picks_none():
    model = _tiny("s3")  # ops per edge: none, skip, sep3
    alpha = torch.zeros(14, 3)
    alpha[:, 0] = 5.0  # `none` dominates every edge: it must still never be chosen
    strong = {0: (0, 2), 1: (2, 1), 2: (3, 1), 3: (4, 2)}  # node → (strongest input, its best op column)
    second = {0: (1, 1), 1: (0, 2), 2: (2, 2), 3: (1, 1)}
    for node, (src, col) in strong.items():
        alpha[edge_index(node, src), col] = 4.0
    for node, (src, col) in second.items():
        alpha[edge_index(node, src), col] = 3.0
    with torch.no_grad():
        model.alpha_normal.copy_(alpha)
    ops = {1: SKIP, 2: SEP3}
    expected = []
    for node in range(4):
        genes = sorted([strong[node], second[node]])
        expected += [(ops[col], src) for src, col in genes]
    geno = model.genotype()
    assert geno.normal == expected
    assert all(op != "none" for op, _ in geno.normal + geno.reduce)
    assert geno.normal_concat == [2, 3, 4, 5]


def test_darts_rule_on_full_space_picks_best_non_none_op():
    probs = torch.full((14, 8), 0.01)
    probs[:, PRIMITIVES.index("none")] = 0.9
    probs[edge_index(3, 4), PRIMITIVES.index("dil_conv_5x5")] = 0.5
    probs[edge_index(3, 2), PRIMITIVES.index("max_pool_3x3")] = 0.3
    genes = derive_cell(probs, SPACES["darts"]["normal"])
    assert genes[6:] == [("max_pool_3x3", 2), ("dil_conv_5x5", 4)]


def test_dots_genotype_takes_top_pair():
    model = _tiny("s2", "dots")
    logits = torch.zeros(20)
    logits[1 + 2] = 1.0  # node 1: pair (1, 2)
    logits[4 + 4] = 1.0  # node 2: pair (1, 3)
    logits[10 + 9] = 1.0  # node 3: pair (3, 4)
    alpha = torch.zeros(14, 2)
    alpha[:, 1] = 1.0  # sep3 everywhere...
    alpha[edge_index(3, 3), 0] = 2.0  # ...except skip on node 3's edge from state 3
    with torch.no_grad():
        model.topology_normal.copy_(logits)
        model.alpha_normal.copy_(alpha)
    geno = model.genotype()
    assert [src for _, src in geno.normal] == [0, 1, 1, 2, 1, 3, 3, 4]
    assert [op for op, _ in geno.normal] == [SEP3] * 6 + [SKIP, SEP3]


# --- data ----------------------------------------------------------------------------------------------------
def _write_fake_cifar(root, per_batch=2):
    rng = np.random.default_rng(0)
    for i, name in enumerate([f"data_batch_{j}" for j in range(1, 6)] + ["test_batch"]):
        batch = {b"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
                 b"labels": [(i + k) % 10 for k in range(per_batch)]}
        with open(root / name, "wb") as f:
            pickle.dump(batch, f)
    with open(root / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [f"class{c}".encode() for c in range(10)]}, f)


def test_cifar10_loader_reads_pickle_layout(tmp_path):
    _write_fake_cifar(tmp_path)
    train = build_darts_dataset("cifar10", tmp_path, "train")
    test = build_darts_dataset("cifar10", tmp_path, "test")
    assert len(train) == 10 and len(test) == 2 and train.classes[3] == "class3"
    sample = test[1]
    assert sample["image"].shape == (3, 32, 32) and sample["image"].dtype == torch.float32
    assert sample["label"].dtype == torch.int64 and int(sample["label"]) == 6
    with open(tmp_path / "test_batch", "rb") as f:
        raw = pickle.load(f)[b"data"][1].reshape(3, 32, 32).astype(np.float32) / 255
    mean, std = np.array(CIFAR_MEAN)[:, None, None], np.array(CIFAR_STD)[:, None, None]
    np.testing.assert_allclose(sample["image"].numpy(), (raw - mean) / std, rtol=1e-5, atol=1e-5)


def test_darts_augmentation_on_the_device(tmp_path):
    """Training items stay uint8 (the CPU only decodes); DartsAugment pads 4, crops 32 at a seeded offset
    uniform over 0..8, flips half of the time, normalises; the same seeds give the same batch."""
    import torch.nn.functional as F

    from ssnas.darts.data import CROP_PADDING, DartsAugment
    _write_fake_cifar(tmp_path)
    train = build_darts_dataset("cifar10", tmp_path, "train")
    raw = train[0]["image"]
    assert raw.dtype == torch.uint8 and raw.shape == (3, 32, 32)
    aug = DartsAugment(train)
    seeds = list(range(16))
    out = aug(torch.stack([raw] * 16), seeds, "cpu")
    assert torch.equal(out, aug(torch.stack([raw] * 16), seeds, "cpu")) and out.dtype == torch.float32
    padded = F.pad(raw, (CROP_PADDING,) * 4)
    for k, seed in enumerate(seeds):
        y0, x0, flip = aug.sample_params(seed)
        crop = padded[:, y0:y0 + 32, x0:x0 + 32]
        assert torch.equal(out[k], train.normalize(crop.flip(-1) if flip else crop))
    params = [aug.sample_params(s) for s in range(1000)]
    offsets = np.array([(y, x) for y, x, _ in params])
    assert offsets.min() == 0 and offsets.max() == 2 * CROP_PADDING
    assert np.abs(np.bincount(offsets[:, 0], minlength=9) / 1000 - 1 / 9).max() < 0.04
    assert abs(np.mean([f for _, _, f in params]) - 0.5) < 0.05


def test_cifar10_missing_batch_is_a_user_error(tmp_path):
    _write_fake_cifar(tmp_path)
    (tmp_path / "data_batch_3").unlink()
    with pytest.raises(UserError, match="data_batch_3"):
        build_darts_dataset("cifar10", tmp_path, "train")


class _Payload:
    """Unpickling this calls ``os.system`` (a real payload): the test checks that it never runs."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("where", ["batch", "meta", "labels"])
def test_cifar10_batch_with_a_pickle_payload_is_refused_and_never_runs(tmp_path, where):
    _write_fake_cifar(tmp_path)
    marker = tmp_path / "pwned"
    with open(tmp_path / "data_batch_1", "rb") as f:
        batch = pickle.load(f)
    if where == "batch":
        target, content = "data_batch_1", _Payload(marker)
    elif where == "meta":
        target, content = "batches.meta", {b"label_names": [_Payload(marker)]}
    else:
        target, content = "data_batch_1", {**batch, b"labels": [_Payload(marker)]}
    with open(tmp_path / target, "wb") as f:
        pickle.dump(content, f)
    # the payload is live: a plain pickle.load does create the marker
    with open(tmp_path / target, "rb") as f:
        pickle.load(f)
    assert marker.exists()
    marker.unlink()
    with pytest.raises(UserError, match=rf"{target}: refused to load: posix.system"):
        build_darts_dataset("cifar10", tmp_path, "train")
    assert not marker.exists()


def test_cifar10_reads_python2_numpy1_pickles(tmp_path):
    """The real CIFAR-10 files were pickled by Python 2 with numpy 1's module name (numpy.core.multiarray)."""
    _write_fake_cifar(tmp_path)
    with open(tmp_path / "data_batch_2", "rb") as f:
        batch = pickle.load(f)
    blob = pickle.dumps(batch, protocol=2).replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    assert b"numpy.core.multiarray\n_reconstruct" in blob
    (tmp_path / "data_batch_2").write_bytes(blob)
    train = build_darts_dataset("cifar10", tmp_path, "train", augment=False)
    np.testing.assert_array_equal(train.images[2:4], batch[b"data"].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))


@pytest.mark.parametrize("content,words", [
    ({b"data": np.zeros((2, 5), np.uint8), b"labels": [0, 1]}, "expected N×3072"),
    ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 11]}, "labels outside 0..9"),
    ({b"data": np.array([object()] * 2), b"labels": [0, 1]}, "refused to load"),
    ([1, 2], "expected a pickled dict"),
])
def test_cifar10_malformed_batch_is_one_line(tmp_path, content, words):
    _write_fake_cifar(tmp_path)
    with open(tmp_path / "data_batch_4", "wb") as f:
        pickle.dump(content, f)
    with pytest.raises(UserError, match="data_batch_4") as info:
        build_darts_dataset("cifar10", tmp_path, "train")
    assert words in str(info.value) and "\n" not in str(info.value)


def _write_idx(path, array):
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_fashion_mnist_idx_layout_and_missing_hint(tmp_path):
    images = np.arange(3 * 28 * 28).reshape(3, 28, 28) % 256
    _write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", images)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.array([9, 0, 4]))
    data = build_darts_dataset("fashion-mnist", tmp_path, "test")
    assert len(data) == 3 and data[2]["image"].shape == (3, 28, 28) and int(data[2]["label"]) == 4
    assert data.classes[9] == "Ankle boot"
    with pytest.raises(UserError, match="apt-get install dataset-fashion-mnist"):
        build_darts_dataset("fashion-mnist", tmp_path, "train")


def test_digits_dataset_is_real_and_split():
    train, test = build_darts_dataset("digits", split="train"), build_darts_dataset("digits", split="test")
    assert (len(train), len(test)) == (1437, 360)
    sample = train[0]
    assert sample["image"].shape == (3, 16, 16) and -1.0 <= float(sample["image"].min()) < float(sample["image"].max()) <= 1.0
    assert np.bincount(test.labels).min() >= 35  # stratified: every digit in the test split


def test_unknown_dataset_is_a_user_error():
    with pytest.raises(UserError, match="mnist"):
        build_darts_dataset("mnist")


# --- plot ----------------------------------------------------------------------------------------------------
def test_plot_genotype_writes_png_and_never_overwrites(tmp_path):
    geno = _tiny("s1").genotype()
    assert isinstance(geno, Genotype)
    path = plot_genotype(geno, tmp_path / "cells.png", title="S1")
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size[0] > 2 * image.size[1]
        assert len(np.unique(np.asarray(image.convert("L")))) > 10  # something was drawn
    with pytest.raises(UserError, match="exists"):
        plot_genotype(geno, path)
