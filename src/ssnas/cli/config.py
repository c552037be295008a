"""`ssnas config show`: the resolved config, every key with its value, its default and what it means.

The output is YAML (a config file one can save and edit): each line ``key: value`` is followed by a comment
with the default (and the key's note from ``ssnas/config.py``), and ``*`` marks values that differ from it.
"""
from __future__ import annotations

import dataclasses
import inspect
import re
import typing

import yaml

_NOTE = re.compile(r"^\s+(\w+)\s*:[^#]*#\s*(.+?)\s*$")


def register(sub) -> None:
    from ssnas.cli.search import add_config_arguments

    p = sub.add_parser("config", help="show the resolved config: every key, its value and its default",
                       description="Inspect experiment configs. 'show' prints the config that --config and "
                                   "--set resolve to, as YAML: every key a --set may name, its value, and "
                                   "its default (values that differ from it are marked *).")
    actions = p.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    show = actions.add_parser("show", help="print the resolved config with every key, value and default",
                              description="Print the resolved config (defaults <- --config <- --set) as YAML, "
                                          "one key per line, with its default and meaning as a comment.")
    add_config_arguments(show, required=False)
    show.set_defaults(func=run_show)


def _notes(cls) -> dict:
    """The trailing ``# comment`` of each field in a config dataclass's source: what the key means."""
    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):
        return {}
    return {m.group(1): m.group(2) for m in map(_NOTE.match, source.splitlines()) if m}


def _scalar(value) -> str:
    return yaml.safe_dump(value, default_flow_style=True, width=10 ** 6).strip().removesuffix("\n...").strip()


def show_lines(cfg, default, indent: str = "") -> list[str]:
    """YAML lines of dataclass ``cfg``: ``key: value  # default: d; note`` (``*`` where value != default)."""
    from ssnas.config import to_dict

    lines = []
    notes = _notes(type(cfg))
    for f in dataclasses.fields(cfg):
        value, base = getattr(cfg, f.name), getattr(default, f.name)
        if dataclasses.is_dataclass(value):
            doc = (inspect.getdoc(type(value)) or "").split("\n")[0]
            lines.append(f"{indent}{f.name}:" + (f"  # {doc}" if doc and not doc.startswith(type(value).__name__)
                                                 else ""))
            lines.extend(show_lines(value, base, indent + "  "))
            continue
        plain = to_dict(cfg)[f.name]
        plain_base = to_dict(default)[f.name]
        mark = "*" if plain != plain_base else " "
        note = notes.get(f.name)
        kind = _type_name(typing.get_type_hints(type(cfg))[f.name])
        comment = f"{mark} default: {_scalar(plain_base)} ({kind})" + (f"; {note}" if note else "")
        lines.append(f"{indent}{f.name}: {_scalar(plain)}  #{comment}")
    return lines


def _type_name(tp) -> str:
    """``int``, ``list``, ``int or null`` (Optional), as a YAML user reads them."""
    if typing.get_origin(tp) is typing.Union:
        return " or ".join("null" if a is type(None) else _type_name(a) for a in typing.get_args(tp))
    return {"tuple": "list", "dict": "mapping"}.get(getattr(tp, "__name__", str(tp)), getattr(tp, "__name__", str(tp)))


def run_show(args) -> int:
    from ssnas.config import ExperimentConfig, load_config

    cfg = load_config(args.config, args.overrides)
    source = f"{args.config}" if args.config else "the defaults"
    if args.overrides:
        source += " with " + " ".join(f"--set {o}" for o in args.overrides)
    print(f"# resolved config: {source}\n# '*' marks a value that differs from its default")
    print("\n".join(show_lines(cfg, ExperimentConfig())))
    return 0
