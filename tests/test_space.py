"""The search space (§3.1): shapes, gradients, normalization axes, freezing, discretization, variants."""
import math

import pytest
import torch

from ssnas.arch import arch_entropies, entropy, masked_softmax, normalized_entropy
from ssnas.errors import UserError
from ssnas.space import create_model, list_variants
from ssnas.space.supernet import SpaceConfig, SuperNet

TEST_VARIANTS = [
    dict(mixture="kernel", sampling=1.0),
    dict(mixture="output", sampling=1.0),
    dict(mixture="kernel", sampling=0.5),
    dict(mixture="kernel", sampling=1.0, shared_kernels=False),
]


def tiny(**kw):
    torch.manual_seed(0)
    return create_model("tiny", num_classes=3, **kw)


@pytest.mark.parametrize("kw", TEST_VARIANTS, ids=lambda d: "-".join(f"{k}={v}" for k, v in d.items()))
def test_every_parameter_gets_a_gradient(kw):
    model = tiny(**kw)
    model.train()
    x = torch.randn(2, 3, 64, 64)
    model(x).logsumexp(1).mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_arch_and_weight_parameters_are_disjoint_and_complete():
    model = tiny()
    arch = {id(p) for p in model.arch_parameters()}
    weights = {id(p) for p in model.weight_parameters()}
    assert not arch & weights
    assert arch | weights == {id(p) for p in model.parameters()}
    assert model.alpha.shape == (2, 4, 3) and model.beta.shape == (2, 4, 3)


@pytest.mark.parametrize("size", [(64, 128), (50, 70), (33, 97)])
def test_output_shape_equals_input_shape(size):
    model = tiny().eval()
    y = model(torch.randn(1, 3, *size))
    assert y.shape == (1, 3, *size)


def test_softmax_axes():
    model = tiny()
    with torch.no_grad():
        model.alpha.normal_()
        model.beta.normal_()
    a, b = model.alpha_hat(), model.beta_hat()
    assert torch.allclose(a.sum(-1), torch.ones(2, 4))
    assert torch.allclose(b.sum(-1), torch.ones(2, 4))
    # border levels have only two incoming edges: from s/2 missing at level 0, from 2s missing at level 3
    assert (b[:, 0, 0] == 0).all() and (b[:, 3, 2] == 0).all()
    expected = torch.softmax(model.beta[:, 1], -1)
    assert torch.allclose(b[:, 1], expected)
    expected0 = torch.softmax(model.beta[:, 0, 1:], -1)
    assert torch.allclose(b[:, 0, 1:], expected0)


def test_masked_softmax_has_finite_gradients_and_entropy():
    logits = torch.tensor([[0.3, -1.0, 2.0], [1.0, 1.0, 5.0]], requires_grad=True)
    valid = torch.tensor([[True, True, False], [True, True, True]])
    p = masked_softmax(logits, valid)
    assert p[0, 2] == 0
    h = entropy(p, valid)
    h.sum().backward()
    assert torch.isfinite(logits.grad).all()
    uniform = torch.full((1, 3), 1 / 3)
    assert normalized_entropy(uniform, torch.ones(1, 3, dtype=torch.bool)).item() == pytest.approx(1.0)
    assert entropy(uniform, torch.ones(1, 3, dtype=torch.bool)).item() == pytest.approx(math.log(3))


def test_freeze_really_freezes():
    model = tiny()
    model.freeze_architecture()
    assert model.arch_frozen
    before = [p.clone() for p in model.arch_parameters()]
    model(torch.randn(2, 3, 64, 64)).sum().backward()
    assert all(p.grad is None for p in model.arch_parameters())
    opt = torch.optim.Adam(model.arch_parameters(), lr=1.0)
    opt.step()
    assert all(torch.equal(a, b) for a, b in zip(before, model.arch_parameters()))
    # the frozen flag survives a state-dict round trip
    other = tiny()
    other.load_state_dict(model.state_dict())
    assert other.arch_frozen and not other.alpha.requires_grad


def test_discretize_keeps_top_edge_and_op_and_runs():
    model = tiny()
    with torch.no_grad():
        model.beta.normal_()
        model.alpha.normal_()
    top_edge = model.beta_hat().argmax(-1)
    top_op = model.alpha_hat().argmax(-1)
    model.discretize(edges_per_cell=1, ops=True)
    assert model.num_edges() == 2 * 4
    assert (model.edge_mask.sum(-1) == 1).all() and (model.op_mask.sum(-1) == 1).all()
    assert torch.equal(model.beta_hat().argmax(-1), top_edge)
    assert torch.equal(model.alpha_hat().argmax(-1), top_op)
    assert torch.allclose(model.beta_hat().max(-1).values, torch.ones(2, 4))
    y = model(torch.randn(1, 3, 64, 64))
    assert torch.isfinite(y).all()
    ent = arch_entropies(model)
    assert ent["alpha"]["raw"] == pytest.approx(0.0, abs=1e-6)
    assert ent["beta"]["normalized"] == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("fraction,expected", [(0.0, 0), (0.25, 5), (0.5, 10), (1.0, 12)])
def test_prune_edges_counts(fraction, expected):
    model = tiny()  # 2 layers × (2 + 3 + 3 + 2) = 20 edges; never below one edge per cell (8 cells)
    with torch.no_grad():
        model.beta.normal_()
    weakest = model.beta_hat().masked_fill(~model.edge_mask, 2.0).reshape(-1).argmin()
    dropped = model.prune_edges(fraction)
    assert dropped == expected
    assert model.num_edges() == 20 - expected
    assert (model.edge_mask.sum(-1) >= 1).all()
    if expected:
        assert not model.edge_mask.reshape(-1)[weakest]
    assert torch.isfinite(model.eval()(torch.randn(1, 3, 32, 32))).all()


def test_mixture_modes_agree_with_one_kernel_candidate():
    torch.manual_seed(0)
    a = create_model("tiny", num_classes=3, kernel_sizes=[3], mixture="kernel").eval()
    b = create_model("tiny", num_classes=3, kernel_sizes=[3], mixture="output").eval()
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 3, 64, 64)
    assert torch.allclose(a(x), b(x), atol=1e-5)


def test_superkernel_equals_sum_of_depthwise_outputs():
    from ssnas.space.operations import MixedDepthwise
    torch.manual_seed(0)
    for shared in (True, False):
        dw = MixedDepthwise(4, (3, 5, 7), shared=shared)
        mix = torch.softmax(torch.randn(3), 0)
        x = torch.randn(1, 4, 16, 16)
        y = dw(x, mix)
        ref = 0
        for i, k in enumerate((3, 5, 7)):
            onehot = torch.zeros(3)
            onehot[i] = 1.0
            kern = dw.superkernel(onehot)
            p = (7 - k) // 2
            kern = kern[..., p:p + k, p:p + k]
            ref = ref + mix[i] * torch.nn.functional.conv2d(x, kern, padding=k // 2, groups=4)
        assert torch.allclose(y, ref, atol=1e-5)


def test_squeeze_excite_mean_is_bit_identical_to_torch_mean():
    """SE computes its mean as sum / (H·W) (a cheaper gradient on channels-last tensors): the same bits as
    ``mean`` in value and gradient."""
    import torch.nn.functional as F
    from ssnas.space.operations import SqueezeExcite
    torch.manual_seed(0)
    se = SqueezeExcite(8).to(memory_format=torch.channels_last)
    x = torch.randn(2, 8, 7, 10).contiguous(memory_format=torch.channels_last)
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    ya = se(a)
    yb = b * (F.relu6(se.expand(F.relu(se.reduce(b.mean((2, 3), keepdim=True)))) + 3.0) / 6.0)
    assert torch.equal(ya, yb)
    g = torch.randn_like(ya)
    assert torch.equal(torch.autograd.grad(ya, a, g)[0], torch.autograd.grad(yb, b, g)[0])


def test_channel_sampling_only_touches_sampled_channels():
    model = tiny(sampling=0.5)
    cell = model.backbone.cells[0][0]
    assert cell.op_channels == 2 and cell.channels == 4


def test_variants_are_data():
    assert {"small", "deep", "medium", "large", "tiny"} <= set(list_variants())


@pytest.mark.parametrize("kw,match", [
    (dict(variant="nope"), "unknown variant"),
    (dict(sampling=0.0), "sampling"),
    (dict(sampling=1.5), "sampling"),
    (dict(sampling=0.3), "whole, equal groups"),
    (dict(layers=0), "layers"),
    (dict(filters=-4), "filters"),
    (dict(mixture="bogus"), "mixture"),
    (dict(kernel_sizes=[4]), "kernel_sizes"),
])
def test_bad_variant_values(kw, match):
    variant = kw.pop("variant", "tiny")
    with pytest.raises(UserError, match=match):
        create_model(variant, **kw)


def test_malformed_variant_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("layers: [1\n")
    with pytest.raises(UserError, match="not valid YAML"):
        create_model(str(bad))
    bad.write_text("layers: 2\nfilters: 4\nwidth: 3\n")
    with pytest.raises(UserError, match="unknown key 'width'"):
        create_model(str(bad))


def test_space_config_widths():
    assert SpaceConfig(layers=1, filters=16, expansion=3).widths == [16, 32, 64, 128]
    assert isinstance(SuperNet(SpaceConfig(layers=1, filters=2, expansion=1, head_channels=4)), SuperNet)


def test_per_element_entropy_is_the_unit_of_the_papers_table1():
    """Table 1's 0.260 for DARTS's 8 uniform operations is ln 8 / 8: the mean of -p ln p over elements."""
    from types import SimpleNamespace
    uniform8 = (torch.full((14, 8), 1 / 8), torch.ones(14, 8, dtype=torch.bool))
    # two rows with 2 and 3 valid choices (a border cell and an inner one), uniform over the valid ones
    ragged = (torch.tensor([[0.5, 0.5, 0.0], [1 / 3, 1 / 3, 1 / 3]]), torch.tensor([[True, True, False], [True] * 3]))
    model = SimpleNamespace(arch_distributions=lambda: {"alpha": uniform8, "beta": ragged})
    ent = arch_entropies(model)
    assert ent["alpha"]["raw"] == pytest.approx(math.log(8))
    assert ent["alpha"]["per_element"] == pytest.approx(0.260, abs=5e-4)
    assert ent["beta"]["per_element"] == pytest.approx((math.log(2) + math.log(3)) / 5)


def test_keep_strongest_is_the_decode_of_every_space():
    """Top-k per row among the unmasked entries; ties to the lower index (an undecided row keeps its first
    choices, as argmax did); a row with fewer unmasked entries than k keeps them all."""
    from ssnas.arch import keep_strongest

    mask = torch.tensor([[True, True, True, True], [True, False, True, True], [False, True, False, False]])
    scores = torch.tensor([[0.1, 0.4, 0.4, 0.1], [0.9, 0.9, 0.05, 0.05], [0.5, 0.2, 0.3, 0.0]])
    assert keep_strongest(mask, scores, 1).tolist() == [[False, True, False, False], [True, False, False, False],
                                                        [False, True, False, False]]
    assert keep_strongest(mask, scores, 2).tolist() == [[False, True, True, False], [True, False, True, False],
                                                        [False, True, False, False]]
    uniform = torch.full((5, 7), 1 / 7)
    assert keep_strongest(torch.ones(5, 7, dtype=torch.bool), uniform, 1)[:, 0].all()
