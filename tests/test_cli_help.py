"""The CLI explains itself: every subcommand has a description, and `ssnas config show` lists every key."""

import pytest
import yaml

from ssnas.cli import build_parser, main
from ssnas.config import ExperimentConfig, load_config, to_dict


def _subparsers(parser):
    for action in parser._actions:
        if action.__class__.__name__ == "_SubParsersAction":
            for name, sub in action.choices.items():
                yield name, sub
                yield from ((f"{name} {n}", s) for n, s in _subparsers(sub))


def test_every_subcommand_has_a_description():
    subs = dict(_subparsers(build_parser()))
    assert {"search", "evaluate", "predict", "export", "config", "config show", "data check"} <= set(subs)
    for name, sub in subs.items():
        assert sub.description and len(sub.description) > 40, f"ssnas {name} has no description"


def test_search_help_names_the_three_phases(capsys):
    with pytest.raises(SystemExit):
        main(["search", "--help"])
    out = capsys.readouterr().out
    for phase in ("warmup", "search", "finetune"):
        assert f"  {phase} " in out


def _leaves(d, prefix=""):
    for k, v in d.items():
        if isinstance(v, dict) and k != "study":
            yield from _leaves(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}"


def test_config_show_is_the_resolved_config_with_every_key_and_default(capsys):
    assert main(["config", "show", "--config", "smoke", "--set", "protocol.epochs=7"]) == 0
    out = capsys.readouterr().out
    shown = yaml.safe_load(out)  # valid YAML: one can save it as a config
    cfg = load_config("smoke", ["protocol.epochs=7"])
    assert shown == to_dict(cfg)
    assert set(_leaves(shown)) == set(_leaves(to_dict(ExperimentConfig())))
    line = next(ln for ln in out.splitlines() if ln.strip().startswith("epochs:"))
    assert "epochs: 7" in line and "*" in line and "default: 600 (int)" in line
    line = next(ln for ln in out.splitlines() if ln.strip().startswith("momentum:"))
    assert "*" not in line and "default: 0.9" in line
    assert "default: null (int or null)" in out


def test_config_show_bad_key_is_one_line(capsys):
    assert main(["config", "show", "--set", "protocol.nope=1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "protocol.nope" in err
