"""Deployment (issue "Speed and deployment"): the fused net equals the supernet in eval mode, is smaller
after discretization/pruning, exports to ONNX, and the `ssnas export` CLI round-trips and refuses to overwrite."""
import numpy as np
import pytest
import torch
from skimage import data as skdata

from helpers_models import randomize
from ssnas.cli import main
from ssnas.engine.checkpoint import save_checkpoint
from ssnas.export import FusedSegNet, fuse_supernet, load_fused
from ssnas.export.onnx import check_onnx, export_onnx
from ssnas.space import create_model

TOL = 1e-4
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def randomized(seed=0, **kw):
    torch.manual_seed(seed)
    return randomize(create_model("tiny", num_classes=3, **kw))


def photo(h=64, w=96):
    """A real photograph (scikit-image's astronaut), ImageNet-normalized, as a realistic input."""
    img = torch.from_numpy(skdata.astronaut()[100:100 + 4 * h:4, 100:100 + 4 * w:4].astype(np.float32) / 255)
    x = (img - torch.tensor(MEAN)) / torch.tensor(STD)
    return x.permute(2, 0, 1).unsqueeze(0)


def max_diff(a, b, x):
    with torch.no_grad():
        return float((a(x) - b(x)).abs().max())


def convs(net):
    return [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]


VARIANTS = [dict(), dict(mixture="output"), dict(sampling=0.5), dict(shared_kernels=False)]


CASES = [(kw, True) for kw in VARIANTS] + [(dict(sampling=0.5), False)]


@pytest.mark.parametrize("kw, merge_edges", CASES, ids=["kernel", "output", "S=0.5", "unshared", "S=0.5-separate"])
def test_fused_equals_supernet(kw, merge_edges):
    model = randomized(**kw)
    fused = fuse_supernet(model, merge_edges=merge_edges)
    x = torch.randn(2, 3, 64, 96)
    assert max_diff(model, fused, x) <= TOL
    assert max_diff(model, fused, photo()) <= TOL
    with torch.no_grad():
        assert float(model(x).std()) > 1e-2   # logits are not trivially constant
    names = [n for n, _ in fused.named_parameters()]
    assert not any("alpha" in n or "beta" in n for n in names)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())


@pytest.mark.parametrize("size", [(50, 70), (33, 97)])
def test_fused_handles_sizes_not_divisible_by_32(size):
    model = randomized(sampling=0.5)
    fused = fuse_supernet(model)
    x = torch.randn(1, 3, *size)
    assert fused(x).shape == (1, 3, *size)
    assert max_diff(model, fused, x) <= TOL


@pytest.mark.parametrize("mixture", ["kernel", "output"])
def test_discretized_fused_is_smaller_and_exact(mixture):
    model = randomized(mixture=mixture)
    with torch.no_grad():
        model.alpha[0, 0] = torch.tensor([5.0, 0.0, 0.0])   # this cell must end with a 3×3 kernel
    full = fuse_supernet(model)
    model.discretize(edges_per_cell=1, ops=True)
    fused = fuse_supernet(model)
    x = torch.randn(1, 3, 64, 64)
    assert max_diff(model, fused, x) <= TOL
    assert len(convs(fused)) < len(convs(full))
    assert sum(p.numel() for p in fused.parameters()) < sum(p.numel() for p in full.parameters())
    cells = fused.spec["cells"]
    live = [c for row in cells for c in row if c is not None]
    assert all(len(c["edges"]) == 1 and len(c["blocks"]) == 1 for c in live)
    chosen = model.alpha_hat().argmax(-1)
    for l, row in enumerate(cells):
        for i, c in enumerate(row):
            if c is not None:
                assert c["blocks"][0]["kernel"] == (3, 5, 7)[int(chosen[l, i])]
    if cells[0][0] is not None:
        assert fused.layers[0]["0"].blocks[0].dw.weight.shape[-1] == 3


def test_pruned_edges_are_dropped():
    model = randomized(seed=1)
    full = fuse_supernet(model, merge_edges=False)
    before = model.num_edges()
    dropped = model.prune_edges(0.5)
    assert dropped == round(0.5 * before)
    fused = fuse_supernet(model, merge_edges=False)
    assert max_diff(model, fused, torch.randn(1, 3, 64, 64)) <= TOL
    kept = sum(len(c["edges"]) for row in fused.spec["cells"] for c in row if c is not None)
    assert kept <= model.num_edges() == before - dropped
    assert len(convs(fused)) <= len(convs(full)) - dropped


def test_onnx_matches_torch_at_any_size(tmp_path):
    fused = fuse_supernet(randomized(sampling=0.5))
    path = tmp_path / "tiny.onnx"
    assert export_onnx(fused, path, (64, 64), dynamic=True, exporter="torchscript") == "torchscript"
    for size in [(64, 64), (50, 70)]:
        assert check_onnx(path, fused, torch.randn(2, 3, *size)) <= TOL


@pytest.fixture
def checkpoint(tmp_path):
    model = randomized()
    model.discretize(edges_per_cell=2, ops=True)
    model.freeze_architecture()
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"space": model.cfg.to_dict(), "model": model.state_dict(),
                           "classes": {"names": ["a", "b", "c"], "colors": [[0, 0, 0]] * 3, "ignore_index": 255}})
    return path, model


def test_cli_torch_round_trip_and_refusal_to_overwrite(tmp_path, checkpoint, capsys):
    ckpt, model = checkpoint
    out = tmp_path / "fused.pt"
    assert main(["export", "--checkpoint", str(ckpt), "--out", str(out), "--input-size", "64x64"]) == 0
    fused = load_fused(out)
    assert isinstance(fused, FusedSegNet) and fused.classes["names"] == ["a", "b", "c"]
    assert max_diff(model, fused, torch.randn(1, 3, 64, 96)) <= TOL
    torch.load(out, weights_only=True)   # a plain weights-only file
    stamp = out.read_bytes()
    capsys.readouterr()
    assert main(["export", "--checkpoint", str(ckpt), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "exists" in err and "--overwrite" in err and len(err.splitlines()) == 1
    assert out.read_bytes() == stamp
    assert main(["export", "--checkpoint", str(ckpt), "--out", str(out), "--overwrite", "--input-size", "32x32"]) == 0


def test_cli_onnx_round_trip(tmp_path, checkpoint, capsys):
    """TorchScript exporter: seconds. The default (dynamo) one takes ~30-60 s here, too slow for the suite."""
    ckpt, model = checkpoint
    out = tmp_path / "model.onnx"
    assert main(["export", "--checkpoint", str(ckpt), "--out", str(out), "--input-size", "64x64",
                 "--exporter", "torchscript"]) == 0
    text = capsys.readouterr().out
    assert "torchscript exporter" in text and "max |onnxruntime - torch|" in text
    assert check_onnx(out, fuse_supernet(model), torch.randn(1, 3, 50, 70)) <= TOL
    assert main(["export", "--checkpoint", str(ckpt), "--out", str(out), "--exporter", "torchscript"]) == 2


@pytest.mark.parametrize("argv, message", [
    (["--checkpoint", "{missing}"], "checkpoint not found"),
    (["--checkpoint", "{garbage}"], "garbage.pt"),
    (["--checkpoint", "{ckpt}", "--input-size", "64"], "expected HxW"),
])
def test_cli_bad_input_is_one_line(tmp_path, checkpoint, capsys, argv, message):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    paths = dict(missing=tmp_path / "nope.pt", garbage=garbage, ckpt=checkpoint[0])
    argv = [a.format(**paths) for a in argv]
    assert main(["export", *argv, "--out", str(tmp_path / "x.pt")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "x.pt").exists()
