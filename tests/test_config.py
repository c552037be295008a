"""The config schema: shipped configs load, overrides parse, errors name the key."""
from pathlib import Path

import pytest

from ssnas.config import CONFIG_DIR, config_hash, load_config, parse_overrides
from ssnas.errors import UserError

SHIPPED = sorted(p for p in CONFIG_DIR.rglob("*.yaml") if "variants" not in p.parts)


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(CONFIG_DIR)))
def test_every_shipped_config_loads(path):
    cfg = load_config(path)
    assert cfg.protocol.epochs > 0


def test_overrides_and_types():
    tree = parse_overrides(["protocol.epochs=7", "data.crop_size=[32, 64]", "entropy.scaling=constant"])
    assert tree == {"protocol": {"epochs": 7}, "data": {"crop_size": [32, 64]}, "entropy": {"scaling": "constant"}}
    cfg = load_config("smoke", ["protocol.epochs=6", "optim.lr=1"])
    assert cfg.protocol.epochs == 6 and cfg.optim.lr == 1.0 and isinstance(cfg.optim.lr, float)
    assert config_hash(cfg) != config_hash(load_config("smoke"))


@pytest.mark.parametrize("overrides,match", [
    (["protocol.epochs=ten"], "protocol.epochs: expected an integer"),
    (["run.amp=fp8"], "run.amp"),
    (["nosuchsection.x=1"], "unknown key"),
    (["protocol"], "expected key=value"),
    (["model.prune_edges=1.5"], "model.prune_edges"),
    (["eval.scales=[]"], "eval.scales"),
])
def test_bad_values_name_the_key(overrides, match):
    with pytest.raises(UserError, match=match):
        load_config("smoke", overrides)


def test_base_chain_and_bad_yaml(tmp_path):
    base = tmp_path / "base.yaml"
    base.write_text("protocol:\n  epochs: 9\nseed: 4\n")
    child = tmp_path / "child.yaml"
    child.write_text("base: base.yaml\nseed: 5\n")
    cfg = load_config(child)
    assert cfg.protocol.epochs == 9 and cfg.seed == 5
    bad = tmp_path / "bad.yaml"
    bad.write_text("protocol: [\n")
    with pytest.raises(UserError, match=r"bad.yaml: not valid YAML \(line"):
        load_config(bad)
    loop = tmp_path / "loop.yaml"
    loop.write_text("base: loop.yaml\n")
    with pytest.raises(UserError, match="circular"):
        load_config(loop)
    assert Path(CONFIG_DIR / "demo.yaml").is_file()
