"""Every registered extension point works (timm's tests over ``list_models()``): each search space builds,
runs forward/backward, gives every weight a gradient, folds into a fused network with the same outputs that
reloads from its spec, and is counted by ``profile``; each candidate operation builds and folds exactly."""
import pytest
import torch

from helpers_models import randomize
from ssnas.ops import OPS, build_op
from ssnas.ops.fold import fuse_module
from ssnas.space import SPACES, SearchSpace, create_model, list_spaces
from ssnas.space.base import fused_class
from ssnas.space.profile import profile

TOL = 1e-4
SIZE = 64


def tiny(name, seed=0, num_classes=3):
    torch.manual_seed(seed)
    return create_model(space=name, num_classes=num_classes, **SPACES.entry(name).meta["tiny"])


def test_the_grid_is_registered_and_default():
    assert list_spaces()[0] == "grid"
    from ssnas.config import CHOICES, ModelConfig
    assert ModelConfig().space == "grid"
    assert tuple(CHOICES["model.space"]) == tuple(list_spaces())


@pytest.mark.parametrize("name", list_spaces())
def test_space_forward_backward_every_weight_has_a_gradient(name):
    model = tiny(name).train()
    assert isinstance(model, SearchSpace) and model.space_name == name
    x = torch.randn(2, 3, SIZE, SIZE)
    logits = model(x)
    assert logits.shape == (2, 3, SIZE, SIZE)
    logits.square().mean().backward()
    arch = {id(p) for p in model.arch_parameters()}
    assert arch and all(p.grad is not None for p in model.arch_parameters())
    missing = [n for n, p in model.named_parameters() if id(p) not in arch and (p.grad is None or not p.grad.any())]
    assert not missing, f"weights without a gradient: {missing[:5]}"
    assert {id(p) for p in model.weight_parameters()} | arch == {id(p) for p in model.parameters()}


@pytest.mark.parametrize("name", list_spaces())
def test_space_fused_export_matches_and_reloads(name):
    model = randomize(tiny(name, seed=1))
    fused = model.fuse().eval()
    x = torch.randn(1, 3, SIZE, SIZE + 32)
    with torch.no_grad():
        ref = model(x)
        assert float((fused(x) - ref).abs().max()) < TOL
        rebuilt = fused_class(fused.spec)(fused.spec)
        rebuilt.load_state_dict(fused.state_dict())
        assert float((rebuilt.eval()(x) - ref).abs().max()) < TOL
    assert fused.spec.get("space", "grid") == name and fused.num_edges() == model.num_edges()
    shared = {id(q) for q in model.parameters()}   # a set: re-listing model.parameters() per p is quadratic
    assert not any(id(p) in shared for p in fused.parameters())


@pytest.mark.parametrize("name", list_spaces())
def test_space_discretized_export_matches(name):
    model = randomize(tiny(name, seed=2))
    before = model.num_edges()
    model.discretize(edges_per_cell=1, ops=True)
    assert model.num_edges() < before
    x = torch.randn(1, 3, SIZE, SIZE)
    with torch.no_grad():
        assert float((model.fuse().eval()(x) - model(x)).abs().max()) < TOL


@pytest.mark.parametrize("name", list_spaces())
def test_space_profile_counts_everything(name):
    model = tiny(name)
    r = profile(model, (SIZE, SIZE))
    assert r["params"] == sum(p.numel() for p in model.parameters())
    assert r["arch_params"] == sum(p.numel() for p in model.arch_parameters())
    assert r["flops"] > 0 and r["macs"] * 2 == r["flops"]
    comps = r["components"]
    assert comps and all(c["params"] > 0 and c["flops"] > 0 for c in comps.values())
    assert sum(c["params"] for c in comps.values()) + r["arch_params"] == r["params"]
    assert 0 <= r["other_flops"] <= 0.01 * r["flops"]


def _strides(name):
    return OPS.entry(name).meta.get("strides", (1, 2))


@pytest.mark.parametrize("name, stride", [(n, s) for n in OPS.names() for s in _strides(n)])
def test_op_builds_and_folds_exactly(name, stride):
    torch.manual_seed(0)
    op = build_op(name, 4, stride)
    x = torch.randn(2, 4, 8, 8)
    op.train()(x)   # BN statistics move away from their initial values
    randomize_bn = [m for m in op.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    with torch.no_grad():
        for m in randomize_bn:
            m.running_var.uniform_(0.5, 2.0)
    op.eval()
    fused = fuse_module(op).eval()
    with torch.no_grad():
        torch.manual_seed(1)
        y = op(x)
        torch.manual_seed(1)   # the noise op draws: the same draws from both
        yf = fused(x)
    assert y.shape == (2, 4, 8 // stride, 8 // stride)
    assert float((yf - y).abs().max()) < 1e-5
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())


@pytest.mark.parametrize("mixture", list(__import__("ssnas.space.cell", fromlist=["MIXTURES"]).MIXTURES.names()))
def test_every_mixture_mode_builds_and_fuses_exactly(mixture):
    from ssnas.config import CHOICES
    assert mixture in CHOICES["model.mixture"]
    torch.manual_seed(0)
    model = randomize(create_model("tiny", num_classes=3, mixture=mixture))
    x = torch.randn(1, 3, SIZE, SIZE)
    with torch.no_grad():
        assert float((model.fuse().eval()(x) - model(x)).abs().max()) < TOL


# ------------------------------------------------------------------------------- dataset formats and tasks
def _format_trees():
    from helpers_data import make_cityscapes_tree, make_folder_tree
    return {"folder": make_folder_tree, "cityscapes": make_cityscapes_tree}


def _formats():
    from ssnas.data.formats import FORMATS
    return FORMATS.names()


@pytest.mark.parametrize("name", _formats())
def test_every_dataset_format_is_a_config_choice_and_reads_its_layout(name, tmp_path):
    from ssnas.config import CHOICES, load_config
    from ssnas.data import build_dataset
    from ssnas.data.check import check_dataset
    from ssnas.data.formats import detect_format

    assert name in CHOICES["data.format"]
    trees = _format_trees()
    assert name in trees, f"dataset format {name!r} has no tiny tree in this test: add its builder"
    root = trees[name](tmp_path / name)
    assert detect_format(root) == name
    cfg = load_config(None, {"data": {"format": name, "root": str(root), "crop_size": [16, 16],
                                      "ignore_index": 255}})
    ds = build_dataset(cfg.data, "val", train=False)
    assert len(ds) > 0 and ds[0]["image"].shape[0] == 3
    report = check_dataset(root, name)
    assert report.format == name and report.splits and report.classes is not None


def _tasks():
    from ssnas.tasks import TASKS
    return TASKS.names()


@pytest.mark.parametrize("name", _tasks())
def test_every_task_is_a_config_choice_and_builds(name):
    from ssnas.config import CHOICES, load_config
    from ssnas.tasks import Task, build_task

    assert name in CHOICES["task"]
    task = build_task(load_config(None, {"task": name}))
    assert isinstance(task, Task) and type(task).__module__.startswith("ssnas.tasks.")
    assert all(hasattr(h, "epoch_end") for h in task.hooks())


def test_a_wrong_name_is_one_line_naming_the_choices():
    from ssnas.config import load_config
    from ssnas.errors import UserError
    for key, section in (("space", "model"), ("format", "data"), ("mixture", "model")):
        with pytest.raises(UserError, match=rf"{section}.{key}: 'nope' is not one of \w+"):
            load_config(None, {section: {key: "nope"}})
    with pytest.raises(UserError, match="task: 'nope' is not one of segmentation, darts"):
        load_config(None, {"task": "nope"})


@pytest.mark.parametrize("name", list_spaces())
def test_checkpoint_record_rebuilds_the_space_and_old_records_are_grids(name):
    from ssnas.errors import UserError
    from ssnas.tasks.segmentation import SegmentationTask, model_from_checkpoint

    model = randomize(tiny(name, seed=3))
    record = SegmentationTask.space_record(None, model)
    assert record["search_space"] == name
    payload = {"space": record, "model": model.state_dict()}
    rebuilt = model_from_checkpoint(payload, "ckpt.pt").eval()
    x = torch.randn(1, 3, SIZE, SIZE)
    with torch.no_grad():
        assert torch.equal(rebuilt(x), model(x))
    if name == "grid":   # written before spaces were registered: no search_space, read as the grid
        old = {"space": {k: v for k, v in record.items() if k != "search_space"}, "model": model.state_dict()}
        assert type(model_from_checkpoint(old, "old.pt")) is type(model)
    with pytest.raises(UserError, match="ckpt.pt: written by a search space 'nope' this ssnas does not have"):
        model_from_checkpoint({"space": {**record, "search_space": "nope"}, "model": model.state_dict()}, "ckpt.pt")


def test_registry_decorator_default_first_and_one_line_errors():
    from ssnas.errors import UserError
    from ssnas.registry import Choices, Registry

    reg = Registry("widget", key="model.widget", default="b")

    @reg.register("a", size=1)
    def build_a():
        return "A"

    reg.register("b", lambda: "B")
    assert reg.names() == ["b", "a"] and list(Choices(lambda: reg)) == ["b", "a"] and "a" in Choices(lambda: reg)
    assert reg.build("a") == "A" and reg.entry("a").meta == {"size": 1}
    reg.register("a", build_a)   # the same builder again (a module imported twice): fine
    with pytest.raises(ValueError, match="widget 'a' is registered twice"):
        reg.register("a", lambda: "other")
    with pytest.raises(UserError, match="^model.widget: 'c' is not a registered widget, expected one of b, a$"):
        reg.get("c")


@pytest.mark.parametrize("name", list_spaces())
def test_space_cost_model_is_exact_or_refused_in_one_line(name):
    """A ``CostAware`` space's E[cost] of a one-hot architecture is the FLOP counter's count of its fused
    network; a space without a cost model is refused with a line naming ``model.space``."""
    from ssnas.cost import cost_table, discrete_cost, expected_cost
    from ssnas.errors import UserError
    from ssnas.space.base import CostAware
    from ssnas.space.profile import forward_flops

    model = randomize(tiny(name, seed=4))
    if not isinstance(model, CostAware):
        with pytest.raises(UserError, match=f"^model.space: {name!r} has no cost model"):
            cost_table(model, "flops", (SIZE, SIZE))
        return
    model.discretize(edges_per_cell=1, ops=True)
    table = cost_table(model, "flops", (SIZE, SIZE))
    with torch.no_grad():
        e = float(expected_cost(model, table.tensors()))
    counted = forward_flops(model.fuse().eval(), (SIZE, SIZE))
    assert e == discrete_cost(model, table) == counted


@pytest.mark.parametrize("sets", [["cost.weight=1", "cost.target=1G"], ["cost.budget=1G"]])
def test_cost_options_on_a_space_without_a_cost_model_fail_before_the_run_folder(sets, demo_root, tmp_path,
                                                                                    capsys):
    from ssnas.cli import main
    from ssnas.space.base import CostAware

    names = [n for n in list_spaces() if not isinstance(tiny(n), CostAware)]
    if not names:
        pytest.skip("every registered space has a cost model")
    code = main(["search", "--config", "smoke", "--out", str(tmp_path / "r"), "--set", f"data.root={demo_root}",
                 "--set", f"model.space={names[0]}", *[a for s in sets for a in ("--set", s)]])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "model.space" in err and "\n" not in err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("name", list_spaces())
def test_space_architecture_graph_is_drawn(name, tmp_path):
    """Every space describes itself as a graph over (layer, level) that ``plot_architecture`` draws: its kept
    edges are the model's, their weights are β̂ in [0, 1], and the strongest path moves along edges."""
    from ssnas.engine.plots import plot_architecture

    model = randomize(tiny(name, seed=5))
    model.prune_edges(0.3)
    g = model.architecture_graph()
    L, levels = g["layers"], len(g["levels"])
    assert sum(e[5] for e in g["edges"]) == model.num_edges()
    for x0, y0, x1, y1, w, kept in g["edges"]:
        assert 0 <= x0 < x1 <= L and 0 <= y0 < levels and 0 <= y1 < levels and 0.0 <= w <= 1.0 + 1e-6
        assert kept or w == 0.0
    if g.get("ops"):
        assert len(g["ops"]) == L * levels and all(len(w) == len(g["op_labels"]) for *_, w in g["ops"])
    links = {(x0, y0, x1, y1) for x0, y0, x1, y1, *_ in g["edges"]}
    for (x0, y0), (x1, y1) in zip(g.get("path", []), g.get("path", [])[1:]):
        assert (x0, y0, x1, y1) in links
    out = plot_architecture(g, tmp_path / "a.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
