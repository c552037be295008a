"""The Python API (``ssnas.create_model``, ``list_variants``, ``load``, ``predict``) and the safetensors release:
every file ssnas writes loads into an eval-mode model with its classes and preprocessing, without pickle."""
import json
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

import ssnas
from ssnas.cli import main
from ssnas.engine.checkpoint import save_checkpoint

TOL = 1e-5
CLASSES = {"names": ["a", "b", "c"], "colors": [[10, 20, 30], [40, 50, 60], [70, 80, 90]], "ignore_index": 255}
MEAN, STD = [0.3, 0.4, 0.5], [0.2, 0.25, 0.3]   # not ImageNet's: proves the file's own values are used


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A trained-looking checkpoint in a run folder, and its torch and safetensors exports."""
    root = tmp_path_factory.mktemp("api")
    torch.manual_seed(0)
    model = ssnas.create_model("tiny", num_classes=3)
    with torch.no_grad():
        model.alpha.normal_()
        model.beta.normal_()
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    model.discretize(edges_per_cell=2, ops=False)
    model.freeze_architecture()
    run = root / "run"
    save_checkpoint(run / "checkpoints" / "last.pt", {
        "space": model.cfg.to_dict(), "model": model.state_dict(), "classes": CLASSES,
        "config": {"data": {"mean": MEAN, "std": STD}}})
    files = {"run": run, "checkpoint": run / "checkpoints" / "last.pt"}
    for fmt, name in (("torch", "model.pt"), ("safetensors", "model.safetensors")):
        files[fmt] = root / name
        assert main(["export", "--checkpoint", str(run), "--out", str(files[fmt]), "--input-size", "64x64"]) == 0
    return model.eval(), files


def test_create_model_and_list_variants():
    names = ssnas.list_variants()
    assert {"tiny", "small", "medium", "large"} <= set(names)
    model = ssnas.create_model("tiny", num_classes=5)
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 5, 64, 64)
    with pytest.raises(ssnas.UserError, match="unknown variant 'nope'"):
        ssnas.create_model("nope")
    assert set(ssnas.__all__) >= {"create_model", "list_variants", "load", "predict"}


@pytest.mark.parametrize("kind", ["run", "checkpoint", "torch", "safetensors"])
def test_load_any_file_carries_classes_and_preprocessing(exported, kind):
    reference, files = exported
    model = ssnas.load(files[kind])
    assert not model.training
    assert model.classes["names"] == CLASSES["names"] and model.classes["colors"] == CLASSES["colors"]
    assert model.preprocessing["mean"] == MEAN and model.preprocessing["std"] == STD
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        assert float((model(x) - reference(x)).abs().max()) <= 1e-4  # fused vs supernet: fp32 folding


def test_safetensors_equals_fused_torch_file_and_reads_without_pickle(exported, monkeypatch):
    _, files = exported
    fused_pt = ssnas.load(files["torch"])

    def refuse(*args, **kwargs):
        raise AssertionError("pickle used while loading a safetensors file")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    released = ssnas.load(files["safetensors"])
    monkeypatch.undo()
    x = torch.randn(1, 3, 70, 50)
    with torch.no_grad():
        assert float((released(x) - fused_pt(x)).abs().max()) <= TOL
    from safetensors import safe_open
    with safe_open(str(files["safetensors"]), "pt") as f:  # any safetensors reader sees the description
        meta = f.metadata()
    assert meta["format"] == "ssnas-fused" and json.loads(meta["classes"]) == CLASSES
    assert json.loads(meta["spec"]) == fused_pt.spec
    assert json.loads(meta["preprocessing"])["mean"] == MEAN
    assert len(json.loads(meta["architecture"])["strongest_path"]["levels"]) == len(fused_pt.spec["cells"]) + 1


def test_predict_uses_the_model_preprocessing_and_takes_any_image_form(exported, tmp_path):
    _, files = exported
    model = ssnas.load(files["safetensors"])
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, size=(48, 80, 3), dtype=np.uint8)
    x = torch.from_numpy(rgb.transpose(2, 0, 1)).float() / 255
    x = (x - torch.tensor(MEAN).view(3, 1, 1)) / torch.tensor(STD).view(3, 1, 1)
    with torch.no_grad():
        want = model(x.unsqueeze(0)).argmax(1)[0].numpy()
    label = ssnas.predict(model, rgb)
    assert label.shape == (48, 80) and np.array_equal(label, want)
    path = tmp_path / "img.png"
    Image.fromarray(rgb).save(path)
    for form in (path, str(path), Image.open(path), torch.from_numpy(rgb.transpose(2, 0, 1)).float() / 255):
        assert np.array_equal(ssnas.predict(model, form), want)
    with pytest.raises(ssnas.UserError, match="expected H×W×3"):
        ssnas.predict(model, rgb[..., 0])


def test_cli_predict_accepts_a_safetensors_release(exported, tmp_path, capsys):
    _, files = exported
    rgb = np.random.default_rng(1).integers(0, 256, size=(40, 60, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "a.png")
    outs = {}
    for kind in ("checkpoint", "safetensors"):
        out = tmp_path / kind
        assert main(["predict", str(tmp_path / "a.png"), "--checkpoint", str(files[kind]), "--out", str(out),
                     "--device", "cpu"]) == 0
        outs[kind] = np.asarray(Image.open(out / "a_label.png"))
    assert np.array_equal(outs["checkpoint"], outs["safetensors"])
    color = np.asarray(Image.open(tmp_path / "safetensors" / "a_color.png"))
    assert {tuple(c) for c in color.reshape(-1, 3)} <= {tuple(c) for c in CLASSES["colors"]}


@pytest.mark.parametrize("content, message", [
    (b"", "not a readable safetensors file"),
    (b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}      ", "not a readable safetensors file"),
])
def test_bad_safetensors_is_one_line(tmp_path, content, message, capsys):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    with pytest.raises(ssnas.UserError, match=message):
        ssnas.load(path)
    assert main(["predict", str(path), "--checkpoint", str(path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(path) in err


def test_foreign_safetensors_is_refused(tmp_path):
    from safetensors.torch import save_file
    path = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, str(path))
    with pytest.raises(ssnas.UserError, match="not an ssnas model"):
        ssnas.load(path)
