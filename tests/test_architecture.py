"""architecture.json: the strongest path (checked against brute force), the per-cell choices, the printout."""
import itertools
import math

import pytest
import torch

from ssnas.space.architecture import (describe_architecture, format_architecture, network_costs, strongest_path,
                                      summarize_architecture)
from ssnas.space.backbone import EDGE_OFFSETS, LEVELS, edge_valid_mask
from ssnas.space.variants import create_model


def _brute_force(beta, mask):
    """Every level sequence stem → layer L, its product of β̂ (0 if it uses a missing or pruned edge)."""
    layers = beta.shape[0]
    best, best_path = -1.0, None
    for path in itertools.product(range(LEVELS), repeat=layers + 1):
        product = 1.0
        for l in range(layers):
            off = path[l] - path[l + 1]  # source level minus target level
            if off not in EDGE_OFFSETS:
                product = 0.0
                break
            j = EDGE_OFFSETS.index(off)
            product *= float(beta[l, path[l + 1], j]) if mask[l, path[l + 1], j] else 0.0
        if product > best:
            best, best_path = product, list(path)
    return best_path, best


@pytest.mark.parametrize("seed", range(5))
def test_strongest_path_is_the_max_product_path(seed):
    g = torch.Generator().manual_seed(seed)
    layers = 4
    mask = edge_valid_mask(layers)
    if seed % 2:  # some pruned edges too (never a cell's last one)
        mask[1, 2, 1] = False
        mask[2, 0, 1] = False
    logits = torch.randn(layers, LEVELS, 3, generator=g) * 2
    beta = torch.where(mask, torch.softmax(logits.masked_fill(~mask, -math.inf), -1), torch.zeros(()))
    path, product = strongest_path(beta, mask)
    want_path, want = _brute_force(beta, mask)
    assert product == pytest.approx(want, rel=1e-9)
    assert path == want_path
    assert len(path) == layers + 1


def test_describe_architecture_reports_the_model_choices():
    torch.manual_seed(0)
    model = create_model("tiny", num_classes=3)
    with torch.no_grad():
        model.alpha.normal_()
        model.beta.normal_()
    model.discretize(edges_per_cell=2, ops=False)
    arch = describe_architecture(model)
    a_hat, b_hat = model.alpha_hat().detach(), model.beta_hat().detach()
    assert len(arch["cells"]) == model.cfg.layers * LEVELS
    for cell in arch["cells"]:
        l, i = cell["layer"] - 1, cell["level"]
        assert cell["stride"] == 4 * 2 ** i
        assert cell["kernel"] == model.cfg.kernel_sizes[int(a_hat[l, i].argmax())]
        assert sum(cell["alpha_hat"].values()) == pytest.approx(1.0, abs=1e-6)
        assert len(cell["edges"]) == (2 if i in (0, LEVELS - 1) else 3)
        for name, edge in cell["edges"].items():
            j = ("down", "same", "up").index(name)
            assert edge["beta_hat"] == pytest.approx(float(b_hat[l, i, j]))
            assert edge["kept"] == bool(model.edge_mask[l, i, j])
            assert edge["from_stride"] == 4 * 2 ** (i + EDGE_OFFSETS[j])
    sp = arch["strongest_path"]
    path, product = strongest_path(b_hat, model.edge_mask)
    assert sp["levels"] == path and sp["beta_product"] == pytest.approx(product)
    text = format_architecture(summarize_architecture(arch))
    rows = [line for line in text.splitlines() if line.strip().startswith("stride")]
    assert len(rows) == LEVELS
    assert text.count("*") - 1 == model.cfg.layers  # one starred cell per layer (+ the legend's star)
    assert "stem " + " -> ".join(str(4 * 2 ** i) for i in path) in text


def test_network_costs_fused_is_smaller_than_the_supernet():
    torch.manual_seed(0)
    model = create_model("tiny", num_classes=3).eval()
    costs = network_costs(model, (64, 128))
    assert costs["supernet"]["params"] == sum(p.numel() for p in model.parameters())
    assert 0 < costs["fused"]["params"] < costs["supernet"]["params"]
    assert 0 < costs["fused"]["gflops"] < costs["supernet"]["gflops"]
