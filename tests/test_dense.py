"""The dense search space (issue 15, the paper's future work): connectivity, gradients, the grid as its k=1,
span=1 case, discretization over its larger edge set, exact fused export, its cost, and its keys' checks."""
import pytest
import torch

from helpers_models import randomize
from ssnas.errors import UserError
from ssnas.space import create_model
from ssnas.space.dense import DenseSuperNet, dense_slots, dense_valid_mask
from ssnas.space.profile import profile

TOL = 1e-4


def dense(seed=0, **kw):
    torch.manual_seed(seed)
    return create_model("tiny", space="dense", num_classes=3, **kw)


def randomized(seed=0, **kw):
    return randomize(dense(seed, **kw))


def test_k1_span1_is_the_grid():
    """Same parameters (names and shapes), same logits in train and eval mode, bit for bit."""
    torch.manual_seed(0)
    grid = create_model("tiny", num_classes=3, sampling=0.5)
    with torch.no_grad():
        grid.beta.normal_(0, 1)
        grid.alpha.normal_(0, 1)
    model = dense(k=1, level_span=1, sampling=0.5)
    assert {k: v.shape for k, v in model.state_dict().items()} == {k: v.shape for k, v in grid.state_dict().items()}
    model.load_state_dict(grid.state_dict())
    assert torch.equal(model.edge_mask, grid.edge_mask)
    x = torch.randn(2, 3, 64, 64)
    for train in (True, False):
        grid.train(train), model.train(train)
        with torch.no_grad():
            assert torch.equal(model(x), grid(x)), f"train={train}"


@pytest.mark.parametrize("layers, k, span, edges", [
    (3, 2, 1, 10 + 20 + 20),           # layer 1 reads the stem only (2+3+3+2), then 2 layers back
    (2, 2, 3, 16 + 32),                # every level: 4 per cell and layer back
    (3, 3, 0, 4 + 8 + 12),             # same level only, every layer back as far as the stem
])
def test_transmissions_per_cell(layers, k, span, edges):
    model = dense(layers=layers, k=k, level_span=span)
    assert model.beta.shape == (layers, 4, k * (2 * span + 1))
    assert model.num_edges() == edges == int(dense_valid_mask(layers, k, span).sum())
    b = model.beta_hat()
    assert torch.allclose(b.sum(-1), torch.ones(layers, 4))        # β̂: one softmax over all incoming
    assert (b[~model.edge_mask] == 0).all()
    assert dense_slots(1, 1) == [(1, -1), (1, 0), (1, 1)]          # the grid's slot order


@pytest.mark.parametrize("kw", [dict(), dict(mixture="output"), dict(sampling=0.5), dict(layers=3, level_span=1)],
                         ids=["kernel", "output", "S=0.5", "L3-span1"])
def test_every_parameter_gets_a_gradient(kw):
    model = dense(**kw).train()
    model(torch.randn(2, 3, 64, 64)).logsumexp(1).mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name
    assert model.beta.grad[~model.edge_mask].abs().sum() == 0     # masked transmissions learn nothing


@pytest.mark.parametrize("kw", [dict(), dict(mixture="output"), dict(sampling=0.5), dict(layers=3, k=3),
                                dict(layers=3, level_span=0)],
                         ids=["k2-span3", "output", "S=0.5", "L3-k3", "span0"])
def test_fused_equals_supernet(kw):
    model = randomized(**kw)
    x = torch.randn(2, 3, 64, 96)
    fused = model.fuse()
    with torch.no_grad():
        assert float((model(x) - fused(x)).abs().max()) <= TOL
        assert float(model(x).std()) > 1e-2
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
    assert not any("alpha" in n or "beta" in n for n, _ in fused.named_parameters())
    # discretized and pruned: fewer edges, a smaller network, still exact (also at a size not divisible by 32)
    model.prune_edges(0.5)
    model.discretize(edges_per_cell=2, ops=True)
    small = model.fuse()
    x = torch.randn(1, 3, 50, 70)
    with torch.no_grad():
        assert float((model(x) - small(x)).abs().max()) <= TOL
    assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in fused.parameters())


def test_fused_drops_cells_that_reach_no_output():
    """One edge per cell, all from two layers back at the same level: layer 1's cells feed nothing."""
    model = randomized(layers=2, k=2, level_span=0)
    with torch.no_grad():
        model.beta[1, :, 0] = -30.0      # d=1 (from layer 1) weak, d=2 (from the stem) strong
    model.discretize(edges_per_cell=1, ops=False)
    fused = model.fuse()
    assert all(c is None for c in fused.spec["cells"][0])
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert float((model(x) - fused(x)).abs().max()) <= TOL


def test_discretize_and_prune_over_the_larger_edge_set():
    model = dense(layers=3, k=2, level_span=3)
    with torch.no_grad():
        model.beta.normal_(0, 1)
    valid = model.edge_mask.clone()
    kept = model.edge_mask.sum(-1)
    dropped = model.prune_edges(0.5)
    assert dropped == round(0.5 * int(valid.sum()))
    assert (model.edge_mask.sum(-1) >= 1).all()                    # never a cell's last edge
    assert not (model.edge_mask & ~valid).any()
    model.discretize(edges_per_cell=3, ops=True)
    assert (model.edge_mask.sum(-1) <= torch.minimum(kept, torch.tensor(3))).all()
    assert (model.op_mask.sum(-1) == 1).all()
    # the kept edges are the strongest of each cell's transmissions
    b = torch.nn.functional.softmax(model.beta.masked_fill(~valid, float("-inf")), -1)
    for cell_b, cell_m in zip(b.reshape(-1, b.shape[-1]), model.edge_mask.reshape(-1, b.shape[-1])):
        if (~cell_m).any():
            assert cell_b[cell_m].min() >= cell_b[~cell_m].max() - 1e-12 or cell_m.sum() < 3


def test_profile_counts_the_extra_transmissions():
    """Stem, cells and head cost what the grid's do; P adds one 1×1 conv + BN per transmission at the target
    resolution, β one logit per slot."""
    L, k, span, H, W = 3, 2, 3, 64, 128
    grid = profile(create_model("tiny", num_classes=5, layers=L), (H, W))
    model = create_model("tiny", space="dense", num_classes=5, layers=L, k=k, level_span=span)
    r = profile(model, (H, W))
    for c in ("stem", "cells", "head"):
        assert r["components"][c] == grid["components"][c], c
    widths = model.cfg.widths
    params = macs = 0
    valid = dense_valid_mask(L, k, span)
    for l in range(L):
        for i, c in enumerate(widths):
            hw = (H // 2 ** (i + 2)) * (W // 2 ** (i + 2))
            for s, (_, off) in enumerate(dense_slots(k, span)):
                if valid[l, i, s]:
                    params += widths[i + off] * c + 2 * c
                    macs += widths[i + off] * c * hw
    assert r["components"]["P"] == {"params": params, "flops": 2 * macs}
    assert r["arch_params"] == L * 4 * (3 + k * (2 * span + 1))
    assert r["params"] == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("kw, key", [
    (dict(k=0), "model.options.k"), (dict(k=3), "model.options.k"), (dict(k=1.5), "model.options.k"),
    (dict(k=True), "model.options.k"), (dict(level_span=4), "model.options.level_span"),
    (dict(level_span=-1), "model.options.level_span"), (dict(level_span="all"), "model.options.level_span"),
    (dict(span=2), "model.options.span: not a key of the dense space"),
])
def test_bad_keys_are_one_line_errors(kw, key):
    with pytest.raises(UserError, match=key) as err:
        create_model("tiny", space="dense", **kw)      # tiny has 2 layers: k=3 reaches before the stem
    assert "\n" not in str(err.value)


def test_checkpoint_space_record_rebuilds_the_same_space():
    model = dense(layers=3, k=3, level_span=1)
    record = {**model.cfg.to_dict(), "search_space": "dense"}     # what a checkpoint stores
    again = create_model(record, space="dense")
    assert isinstance(again, DenseSuperNet) and again.cfg == model.cfg
    again.load_state_dict(model.state_dict())


# ---------------------------------------------------------------------------- through the CLI (smoke scale)
@pytest.fixture(scope="module")
def dense_run(demo_root, tmp_path_factory):
    """The smoke config (3 epochs: warmup, search, fine-tune) on the dense space (k=2, every level)."""
    from ssnas.cli import main

    out = tmp_path_factory.mktemp("runs") / "dense"
    code = main(["search", "--config", "smoke", "--out", str(out), "--set", f"data.root={demo_root}",
                 "--set", "model.space=dense", "--set", "model.options={k: 2, level_span: 3}",
                 "--set", "run.tensorboard=false", "--set", "run.keep_every=1"])
    assert code == 0
    return out


def test_single_stage_protocol_runs_end_to_end(dense_run):
    import json

    from ssnas.engine.checkpoint import load_checkpoint
    from ssnas.tasks.segmentation import load_model

    states = [load_checkpoint(dense_run / "checkpoints" / f"epoch_{e:04d}.pt")["model"] for e in range(4)]
    for e, phase in enumerate(["warmup", "search", "finetune"]):
        changed = not torch.equal(states[e]["beta"], states[e + 1]["beta"])
        assert changed == (phase == "search"), phase          # β moves in the search phase only
    model, payload = load_model(dense_run / "checkpoints" / "last.pt")
    assert isinstance(model, DenseSuperNet) and model.arch_frozen
    assert (model.cfg.k, model.cfg.level_span) == (2, 3) and payload["space"]["search_space"] == "dense"
    summary = json.loads((dense_run / "summary.json").read_text())
    assert 0 <= summary["miou"] <= 1
    arch = json.loads((dense_run / "architecture.json").read_text())
    assert arch["space"] == "dense" and len(arch["cells"]) == 2 * 4
    assert sum(len(c["edges"]) for c in arch["cells"]) == model.num_edges() == 48
    assert summary["costs"]["fused"]["gflops"] > 0


@pytest.mark.parametrize("fmt", ["pt", "safetensors"])
def test_export_round_trip(dense_run, tmp_path, fmt, capsys):
    import ssnas
    from ssnas.cli import main
    from ssnas.tasks.segmentation import load_model

    out = tmp_path / f"dense.{fmt}"
    assert main(["export", "--checkpoint", str(dense_run), "--out", str(out), "--input-size", "64x128"]) == 0
    assert "max |fused - supernet|" in capsys.readouterr().out
    model = load_model(dense_run / "checkpoints" / "last.pt")[0].eval()
    released = ssnas.load(out)
    x = torch.randn(1, 3, 64, 128)
    with torch.no_grad():
        assert float((released(x) - model(x)).abs().max()) <= TOL


def test_onnx_export_is_checked_against_onnxruntime(dense_run, tmp_path, capsys):
    """``ssnas export`` compares ONNX Runtime with torch itself (and fails beyond its tolerance)."""
    from ssnas.cli import main

    out = tmp_path / "dense.onnx"
    assert main(["export", "--checkpoint", str(dense_run), "--out", str(out), "--input-size", "64x128",
                 "--exporter", "torchscript"]) == 0
    assert "max |onnxruntime - torch|" in capsys.readouterr().out and out.stat().st_size > 0


@pytest.mark.parametrize("override, match", [
    ("model.options={k: 0}", "model.options.k"), ("model.options={level_span: 4}", "model.options.level_span"),
    ("model.options={k: 3}", "model.options.k"), ("model.space=ring", "model.space"),
])
def test_bad_config_values_are_one_line(override, match, demo_root, tmp_path, capsys):
    """``model.options`` is checked by the space's builder (``Task.check``, on the meta device) before the run
    folder is made: nothing is left behind, so the corrected command can use the same folder."""
    from ssnas.cli import main

    code = main(["search", "--config", "smoke", "--out", str(tmp_path / "r"), "--set", f"data.root={demo_root}",
                 "--set", "model.space=dense", "--set", override])
    err = capsys.readouterr().err.strip()
    assert code == 2 and match in err and "\n" not in err
    assert not (tmp_path / "r").exists()


def test_dense_keys_are_refused_for_the_grid_and_leave_grid_hashes_alone(demo_root, tmp_path, capsys):
    from ssnas.cli import main
    from ssnas.config import config_hash, load_config

    code = main(["search", "--config", "smoke", "--out", str(tmp_path / "r"), "--set", f"data.root={demo_root}",
                 "--set", "model.options={k: 2}"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "'k'" in err and "\n" not in err
    assert config_hash(load_config("smoke")) == config_hash(load_config("smoke", ["model.space=grid"]))


def test_space_compare_study_at_a_tiny_scale(demo_root, tmp_path):
    """grid vs dense over two seeds, 3 one-step epochs each: the report, rows and CIs are written."""
    import json

    import yaml

    from ssnas.cli import main

    cfg = yaml.safe_load(open("configs/smoke.yaml"))
    cfg.update(name="space-compare-tiny", study={"seeds": [0, 1], "spaces": {
        "grid": {}, "dense": {"model.space": "dense", "model.options": {"k": 2, "level_span": 1}}}})
    cfg["data"]["root"] = str(demo_root)
    cfg["protocol"]["iters_per_epoch"] = 1
    cfg["eval"] = {"interval": 1000, "max_images": 2}
    cfg["run"]["tensorboard"] = False
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    assert main(["study", "space-compare", "--config", str(path), "--out", str(tmp_path / "s")]) == 0
    results = json.loads((tmp_path / "s" / "results.json").read_text())
    assert [r["space"] for r in results["rows"]] == ["grid", "grid", "dense", "dense"]
    grid, dense_ = results["spaces"]["grid"], results["spaces"]["dense"]
    assert dense_["edges"]["mean"] > grid["edges"]["mean"] and dense_["flops"]["mean"] > grid["flops"]["mean"]
    assert grid["miou"]["low"] <= grid["miou"]["mean"] <= grid["miou"]["high"]
    report = (tmp_path / "s" / "report.md").read_text()
    assert "dense − grid mIoU" in report and "95% CI" in report
