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


def test_renamed_hessian_key_still_reads_and_keeps_the_hash(tmp_path):
    """darts.hessian_every became run.hessian_every (one key for every task): an old config loads with a
    one-line note and the same config hash; both keys set differently is a one-line error."""
    import warnings

    import yaml

    from ssnas.config import config_hash
    from ssnas.errors import UserError

    new = load_config(CONFIG_DIR / "darts" / "digits-mini.yaml")
    assert new.run.hessian_every == 2
    old_data = yaml.safe_load((CONFIG_DIR / "darts" / "digits-mini.yaml").read_text())
    old_data["base"] = str(CONFIG_DIR / "darts" / "cifar10-s1.yaml")
    old_data["run"].pop("hessian_every")
    old_data["darts"]["hessian_every"] = 2
    old = tmp_path / "old.yaml"
    old.write_text(yaml.safe_dump(old_data))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cfg = load_config(old)
    notes = [str(w.message) for w in caught if issubclass(w.category, FutureWarning)]
    assert any("darts.hessian_every is now run.hessian_every" in n for n in notes) and len(notes[0].splitlines()) == 1
    assert cfg.run.hessian_every == 2 and config_hash(cfg) == config_hash(new)
    # the identity spells it as the DARTS task first stored it; a segmentation run keeps run.hessian_every
    from ssnas.config import identity
    assert identity(cfg)["darts"]["hessian_every"] == 2 and "hessian_every" not in identity(cfg).get("run", {})
    seg = load_config(None, {"run": {"hessian_every": 3}})
    assert identity(seg)["run"]["hessian_every"] == 3
    # an older run's saved config.yaml holds the default darts.hessian_every: 0: read silently
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_config(None, {"darts": {"hessian_every": 0}}).run.hessian_every == 0
    with pytest.raises(UserError, match="darts.hessian_every: renamed run.hessian_every, and both are set"):
        load_config(None, {"darts": {"hessian_every": 2}, "run": {"hessian_every": 3}})
