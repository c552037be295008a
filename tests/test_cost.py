"""Cost-aware search (docs/cost-aware.md): cost tables, E[cost], the penalty, budgets and latency tables.

Exactness is checked against the FLOP counter and the parameter count of the fused network itself
(``fuse_supernet``), never against numbers written here."""
import itertools
import json

import numpy as np
import pytest
import torch

from helpers_models import randomize
from ssnas.cli import main
from ssnas.config import CONFIG_DIR, identity, load_config
from ssnas.cost import CostTable, parse_cost
from ssnas.cost import cost_table
from ssnas.cost.expected import discrete_cost, expected_cost, kept_choices, live_probabilities
from ssnas.cost.latency import CALIBRATION_SEEDS, random_one_hot
from ssnas.engine.checkpoint import save_checkpoint
from ssnas.engine.trainer import Trainer
from ssnas.errors import UserError
from ssnas.hardware import STEADY_ALLOCATOR
from ssnas.export import fuse_supernet
from ssnas.export.budget import discretize_to_budget
from ssnas.space.fused import live_cells
from ssnas.space.topology import EDGE_SLOTS
from ssnas.space import create_model
from ssnas.space.backbone import EDGE_OFFSETS
from ssnas.space.profile import forward_flops

SIZE = (64, 96)          # not a multiple of 32: the fused net pads, the table must count that too
VARIANTS = {"kernel": {}, "output": {"mixture": "output"}, "S=0.5": {"sampling": 0.5},
            "dense": {"space": "dense"}}   # dense: 2 layers back, every level (long pools, several up convs)


def randomized(seed=0, **kw):
    torch.manual_seed(seed)
    return randomize(create_model("tiny", num_classes=3, **kw))


def measured(model, metric):
    fused = fuse_supernet(model)
    if metric == "flops":
        return forward_flops(fused, SIZE)
    return sum(p.numel() for p in fused.parameters())


def random_masks(model, seed):
    """Drop random edges (a cell keeps >= 1) and kernels (>= 1): cells die, down+same edges merge, kernels vary."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        keep = (torch.rand(model.edge_mask.shape, generator=g) < 0.6) & model.edge_mask
        first = (model.edge_mask.cumsum(-1) == 1) & model.edge_mask        # each cell's first valid edge
        keep |= first & ~keep.any(-1, keepdim=True)
        model.edge_mask.copy_(keep)
        ops = torch.rand(model.op_mask.shape, generator=g) < 0.5
        ops[..., 0] |= ~ops.any(-1)
        model.op_mask.copy_(ops)


@pytest.fixture(scope="module")
def tables():
    """The FLOP and parameter tables of each variant (counted once: ~1-3 s each on a loaded machine)."""
    out = {}
    for name, kw in VARIANTS.items():
        model = randomized(**kw)
        out[name] = {m: cost_table(model, m, SIZE) for m in ("flops", "params")}
    return out


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("metric", ["flops", "params"])
def test_table_sum_is_the_fused_networks_cost(tables, variant, metric):
    """Any masked supernet (dead cells, merged edges, several kernels): the table's sum = the fused net's count."""
    table = tables[variant][metric]
    for seed in range(2):
        model = randomized(**VARIANTS[variant])
        if seed:
            random_masks(model, seed)
        assert discrete_cost(table, *kept_choices(model), model.slots) == measured(model, metric)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_expected_cost_of_a_one_hot_architecture_is_exact(tables, variant):
    for seed in range(2):
        model = randomized(seed, **VARIANTS[variant])
        model.discretize(edges_per_cell=1, ops=True)
        for metric in ("flops", "params"):
            e = expected_cost(tables[variant][metric].tensors(), model.alpha_hat(), model.beta_hat(), model.slots)
            # exactly, as an integer count: `forward_flops` of the fused net is summary.json's "fused" GFLOPs
            assert float(e.detach()) == measured(model, metric)


@pytest.mark.parametrize("space", [{}, {"space": "dense", "k": 2, "level_span": 1}])
def test_expected_cost_is_the_expectation_over_sampled_architectures(space):
    """Brute force over every single-edge choice of the 2-layer tiny grid (36² architectures) and of the tiny
    dense space reaching 2 layers back (36 · 576: the second layer's cells also pick from the stem)."""
    model = randomized(3, **space).double()   # double: β̂ rows sum to 1 to 1e-16 (dead cells' picks sum out)
    table = cost_table(model, "flops", SIZE)
    t = table.tensors()
    a_hat, b_hat = model.alpha_hat().detach(), model.beta_hat().detach()
    op_mean = (a_hat * t["ops"]).sum(-1)
    S = len(model.slots)
    choices = [[j for j in range(S) if model.edge_mask[l, i, j]] for l in range(2) for i in range(4)]
    total = 0.0
    for pick in itertools.product(*choices):
        on = np.zeros((2, 4, S), dtype=bool)
        p = 1.0
        for cell, j in enumerate(pick):
            l, i = divmod(cell, 4)
            on[l, i, j] = True
            p *= float(b_hat[l, i, j])
        live = live_cells(on, model.slots)
        cost = table.head + sum(c for c, v in zip(table.stem, live[0]) if v)
        cost += sum(table.edges[l][i][pick[4 * l + i]] + float(op_mean[l, i])
                    for l in range(2) for i in range(4) if live[l + 1][i])
        total += p * cost
    assert float(expected_cost(t, a_hat, b_hat, model.slots)) == pytest.approx(total, rel=1e-12)
    live, stem = live_probabilities(b_hat, model.slots)
    assert torch.all(live[-1] == 1) and torch.all((stem >= 0) & (stem <= 1))
    assert 0 < float(live[0].min()) < 1        # cells that may die: a vacuous walk would give all 1


def test_expected_cost_gradient_matches_finite_differences(tables):
    model = randomized(5).double()
    t = {k: v / 1e6 for k, v in tables["kernel"]["flops"].tensors().items()}   # MFLOPs: O(1) numbers
    alpha, beta = model.alpha.detach().clone(), model.beta.detach().clone()

    def e_of(a, b):
        with torch.no_grad():
            model.alpha.copy_(a)
            model.beta.copy_(b)
        return expected_cost(t, model.alpha_hat(), model.beta_hat(), model.slots)

    e = e_of(alpha, beta)
    ga, gb = torch.autograd.grad(e, [model.alpha, model.beta])
    h = 1e-6
    for grad, which in ((ga, 0), (gb, 1)):
        base = (alpha, beta)[which]
        fd = torch.zeros_like(base)
        for idx in itertools.product(*map(range, base.shape)):
            plus, minus = base.clone(), base.clone()
            plus[idx] += h
            minus[idx] -= h
            args_p = (plus, beta) if which == 0 else (alpha, plus)
            args_m = (minus, beta) if which == 0 else (alpha, minus)
            fd[idx] = (e_of(*args_p) - e_of(*args_m)) / (2 * h)
        valid = model.edge_mask if which else torch.ones_like(base, dtype=torch.bool)
        assert grad.abs()[valid].max() > 1e-3          # not a vacuous comparison
        assert torch.allclose(grad, fd, rtol=1e-6, atol=1e-8)


# ---------------------------------------------------------------------------- config and the training step
def test_parse_cost_units():
    assert parse_cost("20G", "flops", "k") == 20e9
    assert parse_cost("3M", "params", "k") == 3e6
    assert parse_cost("1.5k", "flops", "k") == 1500
    assert parse_cost("15ms", "latency", "k") == 15.0
    assert parse_cost("500us", "latency", "k") == 0.5
    assert parse_cost("2s", "latency", "k") == 2000.0
    for bad, metric in (("20X", "flops"), ("-3M", "params"), ("15ms", "flops"), ("20G", "latency"), ("", "flops"),
                        ("0", "flops"), ("nanG", "flops")):
        with pytest.raises(UserError, match=r"^mykey: .*e\.g\. "):
            parse_cost(bad, metric, "mykey")


@pytest.mark.parametrize("sets, key", [
    (["cost.weight=1", "cost.target=20Q"], "cost.target"),
    (["cost.weight=1"], "cost.target"),
    (["cost.weight=1", "cost.metric=latency", "cost.target=15ms"], "cost.table"),
    (["cost.budget=abc"], "cost.budget"),
    (["cost.penalty=square"], "cost.penalty"),
    (["cost.weight=-1"], "cost.weight"),
    (["model.space=dense", "cost.weight=1", "cost.target=15ms", "cost.metric=latency", "cost.table=lat.json"],
     "cost.metric: 'latency', model.space 'dense'"),
    (["model.space=dense", "model.layers=4", "model.options={k: 4}", "cost.weight=1", "cost.target=20M"],
     "model.options.k: 4, cost-aware search"),
])
def test_bad_cost_config_is_one_line_naming_the_key(sets, key, demo_root, tmp_path, capsys):
    assert main(["search", "--config", "smoke", "--out", str(tmp_path / "r"), "--set", f"data.root={demo_root}",
                 *[a for s in sets for a in ("--set", s)]]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and key in err
    assert not (tmp_path / "r").exists()


def test_shipped_configs_keep_their_hashes():
    """The cost section is at its defaults in every shipped config, so config_hash leaves it out (no hash moves)."""
    paths = [p for p in CONFIG_DIR.rglob("*.yaml") if "variants" not in p.parts and "cost-" not in p.name]
    assert len(paths) > 20
    for path in paths:
        assert "cost" not in identity(load_config(path)), path


def _steps(demo_root, tmp_path, name, *sets):
    """Two weight steps and two architecture steps of the smoke config; (losses, state dict)."""
    cfg = load_config("smoke", [f"data.root={demo_root}", "arch_optim.lr=0.1", *sets])
    trainer = Trainer(cfg, tmp_path / name)
    trainer._setup()
    try:
        losses = []
        for _ in range(2):
            losses.append(trainer.weight_step(trainer._to_device(trainer.streams["a"].next())))
            losses.append(trainer.arch_step(trainer._to_device(trainer.streams["b"].next()), 1.0))
        return losses, {k: v.clone() for k, v in trainer.model.state_dict().items()}, trainer
    finally:
        trainer.run_dir.unlock()


def test_cost_term_off_is_bitwise_identical_and_on_moves_the_architecture(demo_root, tmp_path):
    base_losses, base, t0 = _steps(demo_root, tmp_path, "default")
    off_losses, off, t1 = _steps(demo_root, tmp_path, "off", "cost.metric=params", "cost.target=1k",
                                 "cost.penalty=log", "cost.weight=0")
    assert t0.cost_term is None and t1.cost_term is None
    assert base_losses == off_losses
    assert all(torch.equal(base[k], off[k]) for k in base)
    on_losses, on, t2 = _steps(demo_root, tmp_path, "on", "cost.metric=params", "cost.target=1k", "cost.weight=5")
    assert t2.cost_term is not None and t2.state["acc"]["expected_cost"][1] == 2
    assert on_losses[0] == base_losses[0]                   # the first weight step comes before any cost term
    assert not torch.equal(on["beta"], base["beta"]) and not torch.equal(on["alpha"], base["alpha"])
    # the penalty pushed E[params] down relative to the run without it
    e_on = float(t2.cost_term.expected(t2.model).detach())
    t2.model.load_state_dict(base)
    assert e_on < float(t2.cost_term.expected(t2.model).detach())


def test_cost_term_moves_a_dense_search(demo_root, tmp_path):
    """The dense space searches under the cost term too: E[params] (its own table, its 2-layer reach) ends
    lower than without the term, from the same start."""
    _, base, _ = _steps(demo_root, tmp_path, "dense", "model.space=dense")
    _, on, t = _steps(demo_root, tmp_path, "dense-on", "model.space=dense", "cost.metric=params",
                      "cost.target=1k", "cost.weight=5")
    assert t.model.space_name == "dense" and t.state["acc"]["expected_cost"][1] == 2
    e_on = float(t.cost_term.expected(t.model).detach())
    t.model.load_state_dict(base)
    assert e_on < float(t.cost_term.expected(t.model).detach())


@pytest.mark.parametrize("penalty", ["hinge", "linear", "log"])
def test_penalty_forms(demo_root, penalty):
    from ssnas.cost.term import CostTerm

    cfg = load_config("smoke", [f"data.root={demo_root}", "cost.metric=params", "cost.target=20k",
                                "cost.weight=0.5", f"cost.penalty={penalty}", "cost.power=0.6"])
    model = randomized()
    model.head.classifier = torch.nn.Conv2d(16, 3, 1)
    term = CostTerm(cfg, model)
    loss, ent = torch.tensor(2.0), torch.tensor(0.25)
    total, e = term.objective(model, loss, ent)
    r = float(e) / 20e3
    want = {"hinge": 2.0 + 0.5 * max(0.0, r - 1), "linear": 2.0 + 0.5 * r,
            "log": 2.0 * (1 + 0.5 * np.log(r)) ** 0.6}[penalty] + 0.25
    assert r > 1 and float(total.detach()) == pytest.approx(want, rel=1e-6)


# ---------------------------------------------------------------------------- budgets
@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("fraction", [0.7, 0.45])
def test_budget_discretization_meets_the_budget_exactly_counted(tables, variant, fraction):
    model = randomized(1, **VARIANTS[variant])
    table = tables[variant]["flops"]
    full = measured(model, "flops")
    report = discretize_to_budget(model, table, fraction * full)
    assert report["cost"] <= fraction * full and report["cost"] == measured(model, "flops")
    assert report["cost_before"] == full and report["steps"]
    # each step saved something, and the rule never leaves a cell without an edge or a kernel
    assert all(s["saved"] > 0 for s in report["steps"])
    assert model.edge_mask.any(-1).all() and model.op_mask.any(-1).all()
    if fraction < 0.5:   # down in the single-path range: only switches of a cell's last edge or kernel get there
        assert {"switch", "reroute"} & {s["drop"] for s in report["steps"]}
    with pytest.raises(UserError, match="below the cheapest network"):
        discretize_to_budget(randomized(1, **VARIANTS[variant]), table, 1e3)


@pytest.mark.parametrize("space", ["grid", "dense"])
def test_export_budget_cli(space, tmp_path, demo_root, capsys):
    model = randomized(2, space=space)
    model.head.classifier = torch.nn.Conv2d(16, 9, 1)
    model.cfg.num_classes = 9
    cfg = load_config("smoke", [f"data.root={demo_root}", f"model.space={space}"])
    from ssnas.config import to_dict
    ckpt = tmp_path / "last.pt"
    save_checkpoint(ckpt, {"space": {**model.cfg.to_dict(), "search_space": space}, "model": model.state_dict(),
                           "config": to_dict(cfg)})
    full = forward_flops(fuse_supernet(model), (64, 128))
    out = tmp_path / "b.pt"
    assert main(["export", "--checkpoint", str(ckpt), "--out", str(out), "--budget", f"{0.6 * full / 1e6:.3f}M",
                 "--input-size", "64x64"]) == 0
    text = capsys.readouterr().out
    assert "measured" in text and "val mIoU of the budgeted network" in text
    from ssnas.export import load_fused
    assert forward_flops(load_fused(out), (64, 128)) <= 0.6 * full
    for argv, key in ((["--budget", "lots"], "--budget"), (["--budget", "1k"], "--budget"),
                      (["--budget", "5ms"], "--table"), (["--metric", "params"], "--budget"),
                      (["--budget", "1M", "--cost-size", "64"], "--cost-size")):
        assert main(["export", "--checkpoint", str(ckpt), "--out", str(tmp_path / "x.pt"), *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and key in err, err
        assert not (tmp_path / "x.pt").exists()


# ---------------------------------------------------------------------------- latency tables
def test_latency_table_structure_and_sum(tmp_path, capsys):
    """Structure only (no timing claims): every candidate has a positive entry, invalid edges none, and the
    one-hot sum is the sum of exactly the parts the fused network runs."""
    out = tmp_path / "lat.json"
    assert main(["profile", "--latency", "--variant", "tiny", "--num-classes", "3", "--input-size", "64x64",
                 "--rounds", "1", "--out", str(out)]) == 0
    table = CostTable.load(out)
    assert table.metric == "latency" and table.input_size == [64, 64] and table.measured["device"] == "cpu"
    assert table.measured["allocator"] in (STEADY_ALLOCATOR, "default")
    t = table.tensors()
    model = randomized()
    valid = model.edge_mask
    assert t["edges"].shape == (2, 4, 3) and t["ops"].shape == (2, 4, 3)
    assert torch.all(t["edges"][valid] > 0) and torch.all(t["edges"][~valid] == 0) and torch.all(t["ops"] > 0)
    assert table.head > 0 and all(s > 0 for s in table.stem)
    model.discretize(edges_per_cell=1, ops=True)
    edge_on, op_kept = kept_choices(model)
    live = live_cells(edge_on, EDGE_SLOTS)
    by_hand = table.head + sum(s for s, v in zip(table.stem, live[0]) if v) + sum(
        table.cell[l][i] + table.edges[l][i][j] + table.ops[l][i][k]
        for l in range(2) for i in range(4) if live[l + 1][i]
        for j in range(3) if edge_on[l, i, j] for k in range(3) if op_kept[l, i, k])
    assert discrete_cost(table, edge_on, op_kept, EDGE_SLOTS) == pytest.approx(by_hand, rel=1e-12)
    assert float(expected_cost(t, model.alpha_hat(), model.beta_hat(), EDGE_SLOTS).detach()) == pytest.approx(
        by_hand, rel=1e-12)
    # calibrated: the stored entries add up to the measured reference networks (Σ over them), the raw sums
    # times the recorded scale
    cal = table.measured["calibration"]
    refs = [random_one_hot(create_model("tiny", num_classes=3), seed) for seed in CALIBRATION_SEEDS]
    sums = [discrete_cost(table, *kept_choices(m), EDGE_SLOTS) for m in refs]
    assert len(cal["network_ms"]) == len(CALIBRATION_SEEDS) and cal["scale"] > 0
    assert sum(sums) == pytest.approx(sum(cal["network_ms"]), rel=1e-9)
    assert sums == pytest.approx([cal["scale"] * raw for raw in cal["parts_sum_ms"]], rel=1e-9)
    # a table of another space is refused, in one line naming the key
    with pytest.raises(UserError, match="^cost.table: the table was made for layers=2"):
        table.check_space(create_model("tiny", num_classes=3, layers=3).cfg.to_dict())
    with pytest.raises(UserError, match="^cost.table: the table was made for k=None, this model has k=2"):
        table.check_space(create_model("tiny", space="dense", num_classes=3).cfg.to_dict())
    data = json.loads(out.read_text())
    data["format"] = "x"
    out.write_text(json.dumps(data))
    with pytest.raises(UserError, match="not an ssnas cost table"):
        CostTable.load(out)
    assert main(["profile", "--latency", "--variant", "tiny", "--device", "tpu", "--out", str(tmp_path / "y")]) == 2
    assert len(EDGE_OFFSETS) == 3


@pytest.mark.parametrize("allocator", [STEADY_ALLOCATOR, "default"])
def test_a_budget_times_the_network_in_the_allocator_state_of_its_table(allocator, monkeypatch):
    """``export --budget`` checks a latency budget by timing the fused network *like the table*: in the
    allocator state the table was measured in (hardware.steady_allocator), and only then."""
    import ssnas.hardware
    from ssnas.cost.latency import measure_table
    from ssnas.export import fuse_supernet
    from ssnas.export.budget import measure

    calls = []
    monkeypatch.setattr(ssnas.hardware, "steady_allocator", lambda: calls.append(1) or True)
    model = create_model("tiny", num_classes=3).eval()
    table = measure_table(model, (32, 32), rounds=1, warmup=0, calibrate=False)
    table.measured["allocator"] = allocator
    assert measure(fuse_supernet(random_one_hot(model, 0)), table) > 0
    assert calls == ([1] if allocator == STEADY_ALLOCATOR else [])
