"""Experiment configuration: YAML files under ``configs/`` with ``--set key=value`` overrides.

A config is a tree of dataclasses, so every key has a type, a default and a docstring-like comment here,
and a wrong key or value is reported as one line naming it (``protocol.split: 'x' is not one of ...``).
Defaults are the paper's settings (§4.1); experiment files only say what differs.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from ssnas.errors import UserError
from ssnas.registry import Choices

CONFIG_DIR = Path(__file__).resolve().parent / "configs"


@dataclass
class ModelConfig:
    """Which supernet: a registered search space (``space``), a named variant (``configs/variants/<name>.yaml``)
    plus per-key overrides; ``options`` holds the keys of spaces other than the grid (checked by the space)."""
    space: str = "grid"                    # a registered search space (ssnas.space.list_spaces())
    variant: str = "small"
    layers: Optional[int] = None
    filters: Optional[int] = None
    expansion: Optional[float] = None
    sampling: Optional[float] = None
    kernel_sizes: Optional[list[int]] = None
    mixture: Optional[str] = None          # kernel | output (space/cell.py: MIXTURES)
    head_channels: Optional[int] = None
    squeeze_excite: Optional[bool] = None
    shared_kernels: Optional[bool] = None
    init_checkpoint: Optional[str] = None    # start from this checkpoint's weights AND architecture
    architecture_from: Optional[str] = None  # take only alpha, beta and masks from this checkpoint (fresh weights)
    discretize_edges: Optional[int] = None   # keep the top-k incoming edges of every cell by beta-hat
    discretize_ops: bool = False             # keep the top kernel of every cell by alpha-hat
    prune_edges: float = 0.0                 # drop this fraction of edges with the weakest beta-hat (§4.2)
    options: dict = field(default_factory=dict)   # space-specific keys (e.g. a dense space's k), see the space


@dataclass
class DataConfig:
    format: str = "folder"                 # a registered format: folder | cityscapes (ssnas.data.formats)
    root: str = ""
    make_demo: bool = False                # write the embedded demo dataset at `root` when it is missing
    demo_preset: str = "demo"              # which demo dataset make_demo writes (data/demo_presets.py)
    train_split: str = "train"
    val_split: str = "val"
    labels: str = "fine"                   # fine | coarse | both (annotations of the training split)
    crop_size: tuple[int, int] = (512, 1024)         # (H, W)
    scale_range: tuple[float, float] = (0.5, 2.0)
    hflip: float = 0.5
    color_jitter: float = 0.4
    gauss_noise: float = 0.2
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    ignore_index: int = 255
    batch_size: int = 16
    eval_batch_size: int = 1
    workers: int = 4
    cache_mib: int = 256                   # decoded samples kept in memory per process up to this size (0: off)


@dataclass
class ProtocolConfig:
    """The single-stage searching protocol (§3.2): phases as fractions of ``epochs``."""
    epochs: int = 600
    warmup: float = 0.05                   # weights only
    search: float = 0.35                   # alternating weight / architecture updates
    finetune: float = 0.60                 # architecture frozen; warmup+search+finetune must be 1
    entropy_start: float = 0.15            # entropy regularization from this fraction of epochs
    split: str = "joint"                   # joint | split | half  (Table 7)
    weight_labels: str = "fine"            # fine | coarse | both: annotations the weights train on
    arch_labels: str = "fine"              # fine | coarse | both: annotations the architecture trains on
    iters_per_epoch: Optional[int] = None  # default: len(loader A)


@dataclass
class OptimConfig:
    """SGD for the weights w (§4.1)."""
    lr: float = 0.003
    momentum: float = 0.9
    weight_decay: float = 5e-4
    poly_power: float = 0.9
    min_lr: float = 0.0
    grad_clip: Optional[float] = None
    nesterov: bool = False
    schedule: str = "poly"                 # poly | cosine (RobustDARTS: lr → min_lr along half a cosine)


@dataclass
class ArchOptimConfig:
    """Adam for the architecture alpha, beta (§4.1).

    ``reference_steps`` scales ``lr`` to this run's number of architecture steps N ("equal Adam travel"):
    the effective rate is ``lr * reference_steps / N``. Adam moves a logit by at most about its rate per
    step, so a run with N << the paper's ~38,850 steps at 0.003 could otherwise not move alpha, beta as far
    as the paper's search could (docs/design.md). ``null`` keeps ``lr`` as given."""
    lr: float = 0.003
    weight_decay: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    reference_steps: Optional[int] = None


@dataclass
class EntropyConfig:
    """Entropy regularization, Eq. 4 with the sign of its intent: L_ent = c * f(t) * H(p)."""
    c_alpha: float = 0.0
    c_beta: float = 0.0
    scaling: str = "linear"                # constant | linear
    reduction: str = "mean"                # mean | sum over cells


@dataclass
class CostConfig:
    """Cost-aware search (docs/cost-aware.md): a penalty on E[cost], the expected cost of the fused network
    under alpha-hat and beta-hat, added to L_B in the architecture step; off while ``weight`` is 0."""
    metric: str = "flops"                  # flops | params | latency (latency reads `table`)
    target: Optional[str] = None           # the budget T: e.g. 20G (FLOPs), 3M (params), 15ms (latency)
    weight: float = 0.0                    # hinge/linear: lambda; log: FBNet's alpha (0.2); 0: no cost term
    penalty: str = "hinge"                 # hinge: lambda*max(0, E/T-1) | linear: lambda*E/T | log: L_B*(1+alpha*ln(E/T))^power
    power: float = 0.6                     # log: FBNet's beta
    table: Optional[str] = None            # latency table JSON of `ssnas profile --latency` (metric latency)
    input_size: Optional[tuple[int, int]] = None   # H, W the FLOPs are counted at (default: data.crop_size)
    budget: Optional[str] = None           # discretize the built model greedily to this budget (export --budget)


@dataclass
class EvalConfig:
    interval: int = 1                      # evaluate every N epochs (and always at the end)
    flip: bool = False
    scales: tuple[float, ...] = (1.0,)
    max_images: Optional[int] = None       # evaluate on at most N val images (None: all)


@dataclass
class RunConfig:
    device: str = "auto"                   # auto | cpu | cuda | cuda:N
    deterministic: bool = False
    checkpoint_interval: int = 1           # epochs between checkpoints
    keep_every: int = 0                    # also keep checkpoints/epoch_NNNN.pt every N epochs (0: never)
    tensorboard: bool = True
    progress: bool = True
    channels_last: bool = True             # NHWC; on CPU the NCHW depthwise backward is far slower
    amp: str = "none"                      # none | bf16 | fp16 | auto (faster of fp32/bf16: engine/precision.py)
    compile: bool = False
    max_bad_steps: int = 5                 # stop after this many consecutive non-finite steps
    threads: Optional[int] = None          # torch.set_num_threads on CPU
    steady_allocator: bool = True          # CPU: fix glibc's malloc thresholds in this process (hardware.py)
    hessian_every: int = 0                 # dominant eigenvalue of ∇²_{arch} L_B every k epochs, any task (0: off)


@dataclass
class DartsConfig:
    """DARTS / RobustDARTS search (§4.5, Fig. 4; read when ``task: darts``); defaults are RobustDARTS's."""
    space: str = "darts"                   # darts | s1 | s2 | s3 | s4
    channels: int = 16
    layers: int = 8                        # >= 3, else no normal cell
    topology: str = "none"                 # none | dots (DOTS pair topology, temperature 10 → 0.02)
    dataset: str = "cifar10"               # cifar10 | digits | fashion-mnist
    data_root: str = ""                    # cifar10: the cifar-10-batches-py folder
    batch_size: int = 64
    hessian_batch: int = 64                # images of the fixed validation batch
    hessian_method: str = "auto"           # auto | exact | power (exact above 128 dims falls back to power)
    early_stop: bool = False               # DARTS-ES: stop when the local-average eigenvalue grows > factor
    early_stop_factor: float = 1.3         # RobustDARTS: λ̄(now) / λ̄(earlier) > 1.3 (i.e. earlier/now < 0.75)
    early_stop_window: int = 5             # λ̄: mean of this many consecutive measurements
    early_stop_delta: int = 4              # "earlier" = this many measurements before now
    early_stop_start: int = 10             # the earlier λ̄'s epoch must be >= this


@dataclass
class ExperimentConfig:
    name: str = "experiment"
    seed: int = 0
    task: str = "segmentation"             # a registered task: segmentation | darts (ssnas.tasks)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    protocol: ProtocolConfig = field(default_factory=ProtocolConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    arch_optim: ArchOptimConfig = field(default_factory=ArchOptimConfig)
    entropy: EntropyConfig = field(default_factory=EntropyConfig)
    cost: CostConfig = field(default_factory=CostConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    run: RunConfig = field(default_factory=RunConfig)
    darts: DartsConfig = field(default_factory=DartsConfig)
    study: dict = field(default_factory=dict)   # free-form section read by `ssnas study`


def _spaces():
    from ssnas.space.base import SPACES
    return SPACES


def _mixtures():
    from ssnas.space.cell import MIXTURES
    return MIXTURES


def _formats():
    from ssnas.data.formats import FORMATS
    return FORMATS


def _tasks():
    from ssnas.tasks import TASKS
    return TASKS


# Registry-backed choices (``Choices``) are read from the registry when a key is checked: a new space, mixture
# mode, dataset format or task is one registered module, and appears here without an edit.
CHOICES = {
    "model.space": Choices(_spaces),
    "model.mixture": Choices(_mixtures),
    "data.format": Choices(_formats),
    "data.labels": ("fine", "coarse", "both"),
    "protocol.split": ("joint", "split", "half"),
    "protocol.weight_labels": ("fine", "coarse", "both", "none"),
    "protocol.arch_labels": ("fine", "coarse", "both", "none"),
    "entropy.scaling": ("constant", "linear"),
    "entropy.reduction": ("mean", "sum"),
    "run.amp": ("none", "bf16", "fp16", "auto"),
    "task": Choices(_tasks),
    "optim.schedule": ("poly", "cosine"),
    "darts.space": ("darts", "s1", "s2", "s3", "s4"),   # = ssnas.darts.genotypes.SPACES (a test checks)
    "darts.topology": ("none", "dots"),
    "darts.dataset": ("cifar10", "digits", "fashion-mnist"),
    "darts.hessian_method": ("auto", "exact", "power"),
    "cost.metric": ("flops", "params", "latency"),     # = ssnas.cost.units.METRICS
    "cost.penalty": ("hinge", "linear", "log"),        # = ssnas.cost.term.PENALTIES
}


# Allowed values of every numeric key (of each element, for lists), as intervals: "[" / "]" include the end,
# "(" / ")" exclude it. Every float must be finite besides. Checked once, here, for files, --set and options.
INF = float("inf")
BOUNDS = {
    "seed": "[0, 4294967295]",                     # numpy's seed range
    "model.layers": "[1, 1000]", "model.filters": "[1, 4096]", "model.expansion": "(0, 64]",
    "model.sampling": "(0, 1]", "model.kernel_sizes": "[1, 31]", "model.head_channels": "[1, 4096]",
    "model.discretize_edges": "[1, inf)", "model.prune_edges": "[0, 1)",
    "data.crop_size": "[1, 16384]", "data.scale_range": "(0, 16]", "data.hflip": "[0, 1]",
    "data.color_jitter": "[0, 1]", "data.gauss_noise": "[0, 1]", "data.mean": "[0, 1]", "data.std": "(0, 1]",
    "data.ignore_index": "[0, 255]", "data.batch_size": "[1, inf)", "data.eval_batch_size": "[1, inf)",
    "data.workers": "[0, 256]", "data.cache_mib": "[0, inf)",
    "protocol.epochs": "[1, inf)", "protocol.warmup": "[0, 1]", "protocol.search": "[0, 1]",
    "protocol.finetune": "[0, 1]", "protocol.entropy_start": "[0, 1]", "protocol.iters_per_epoch": "[1, inf)",
    "optim.lr": "(0, inf)", "optim.momentum": "[0, 1)", "optim.weight_decay": "[0, inf)",
    "optim.poly_power": "[0, inf)", "optim.min_lr": "[0, inf)", "optim.grad_clip": "(0, inf)",
    "arch_optim.lr": "(0, inf)", "arch_optim.weight_decay": "[0, inf)", "arch_optim.betas": "[0, 1)",
    "arch_optim.reference_steps": "[1, inf)",
    "entropy.c_alpha": "[0, inf)", "entropy.c_beta": "[0, inf)",
    "cost.weight": "[0, inf)", "cost.power": "(0, inf)", "cost.input_size": "[1, 16384]",
    "eval.interval": "[1, inf)", "eval.scales": "(0, 16]", "eval.max_images": "[1, inf)",
    "run.checkpoint_interval": "[1, inf)", "run.keep_every": "[0, inf)", "run.max_bad_steps": "[1, inf)",
    "run.threads": "[1, 4096]", "run.hessian_every": "[0, inf)",
    "darts.channels": "[1, 4096]", "darts.layers": "[3, 1000]", "darts.batch_size": "[1, inf)",
    "darts.hessian_batch": "[1, inf)", "darts.early_stop_factor": "(1, inf)",
    "darts.early_stop_window": "[1, inf)", "darts.early_stop_delta": "[1, inf)", "darts.early_stop_start": "[0, inf)",
}


def _interval(spec: str) -> tuple:
    """``"[0, 1)"`` → (0.0, 1.0, True, False): low, high, low included, high included."""
    low, high = (float(v) for v in spec[1:-1].split(","))
    return low, high, spec[0] == "[", spec[-1] == "]"


def _check_bounds(key: str, value) -> None:
    spec = BOUNDS.get(key)
    if spec is None or value is None:
        return
    low, high, low_in, high_in = _interval(spec)
    for v in value if isinstance(value, (list, tuple)) else (value,):
        if not ((low <= v if low_in else low < v) and (v <= high if high_in else v < high)):
            what = "every element" if isinstance(value, (list, tuple)) else "the value"
            raise UserError(f"{key}: {v!r} is out of range, expected {what} in {spec}")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp`` (element types and lengths of lists included); return it
    converted. Floats must be finite: NaN and inf are never a setting."""
    origin = typing.get_origin(tp)
    if origin is typing.Union:  # Optional[X]
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return None if value is None else _coerce(value, args[0], key)
    if tp in (tuple, list) or origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise UserError(f"{key}: expected a list, got {value!r}")
        args = typing.get_args(tp)
        fixed = origin is tuple and args and args[-1] is not Ellipsis   # tuple[int, int]: exactly two
        if fixed and len(value) != len(args):
            raise UserError(f"{key}: {list(value)!r} has {len(value)} elements, expected {len(args)}")
        if args:
            types = args if fixed else (args[0],) * len(value)
            value = [_coerce(v, t, f"{key}[{i}]") for i, (v, t) in enumerate(zip(value, types))]
        return (origin or tp)(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise UserError(f"{key}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise UserError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UserError(f"{key}: expected a number, got {value!r}")
        if not math.isfinite(value):
            raise UserError(f"{key}: {value!r} is not a finite number, expected a finite number")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise UserError(f"{key}: expected a string, got {value!r}")
        return value
    if tp is dict:
        if not isinstance(value, dict):
            raise UserError(f"{key}: expected a mapping, got {value!r}")
        return value
    return value


def _field_type(key: str):
    """The annotation of a dotted key (``"eval.scales"``) in :class:`ExperimentConfig`."""
    cls = ExperimentConfig
    *sections, name = key.split(".")
    for section in sections:
        cls = typing.get_type_hints(cls)[section]
    return typing.get_type_hints(cls)[name]


def check_value(key: str, value: Any, flag: str | None = None) -> Any:
    """Validate one value as the schema would for ``key`` (type, element types, finiteness, range), for
    command-line options that mean a config key: ``check_value("eval.scales", args.scales, "--scales")``."""
    try:
        value = _coerce(value, _field_type(key), key)
        _check_bounds(key, value)
    except UserError as exc:
        raise UserError(str(exc).replace(key, flag, 1) if flag else str(exc)) from None
    return value


# Keys that were renamed: old → new. A file (or a run's saved config.yaml) with the old key still loads: a set
# old key is read as the new one, with a one-line note saying what changed; old and new both set differently
# is a one-line error. ``config_hash`` keeps the old spelling where results were stored under it (HASH_SPELLING).
RENAMED = {
    "darts.hessian_every": "run.hessian_every",   # one key for every task's Hessian tracking
}
# (task, new key) → the key config_hash spells it with: the DARTS study's stored results are keyed by hashes
# computed when that task read darts.hessian_every, so a renamed key must not move them.
HASH_SPELLING = {("darts", "run.hessian_every"): "darts.hessian_every"}


def _get(data: dict, key: str, default=None):
    node = data
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def _pop(data: dict, key: str) -> None:
    *sections, name = key.split(".")
    node = data
    for part in sections:
        node = node.get(part) if isinstance(node, dict) else None
    if isinstance(node, dict):
        node.pop(name, None)


def _set(data: dict, key: str, value) -> None:
    *sections, name = key.split(".")
    node = data
    for part in sections:
        node = node.setdefault(part, {})
    node[name] = value


def _rename_keys(data: dict, where: str) -> dict:
    """Read renamed keys (``RENAMED``) under their new names; see there."""
    import copy
    import warnings

    missing = object()
    for old, new in RENAMED.items():
        value = _get(data, old, missing)
        if value is missing:
            continue
        data = copy.deepcopy(data)
        _pop(data, old)
        default = _get(to_dict(ExperimentConfig()), new)
        current = _get(data, new, missing)
        if value == default:            # e.g. the 0 every saved config.yaml of an older version holds
            continue
        if current is not missing and current != default and current != value:
            raise UserError(f"{where}{old}: renamed {new}, and both are set ({value!r} and {current!r}); "
                            f"expected only {new}")
        _set(data, new, value)
        warnings.warn(f"{where}{old} is now {new} (one key for every task); read as {new}: {value!r}",
                      FutureWarning, stacklevel=3)
    return data


def _from_dict(cls, data: dict, prefix: str = ""):
    if not isinstance(data, dict):
        raise UserError(f"{prefix.rstrip('.') or 'config'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = unknown_keys(data, names)
    if unknown:
        raise UserError(f"{prefix}{unknown[0]}: unknown key, expected one of {', '.join(sorted(names))}")
    kwargs = {}
    for name, value in data.items():
        key = prefix + name
        tp = hints[name]
        if dataclasses.is_dataclass(tp):
            kwargs[name] = _from_dict(tp, value, key + ".")
        else:
            kwargs[name] = _coerce(value, tp, key)
            _check_bounds(key, kwargs[name])
            if key in CHOICES and kwargs[name] is not None and kwargs[name] not in CHOICES[key]:
                raise UserError(f"{key}: {value!r} is not one of {', '.join(CHOICES[key])}")
    return cls(**kwargs)


def to_dict(cfg) -> dict:
    """Plain dict (lists, not tuples) of a config, for YAML/JSON."""
    def plain(x):
        if isinstance(x, (list, tuple)):
            return [plain(v) for v in x]
        if isinstance(x, dict):
            return {k: plain(v) for k, v in x.items()}
        return x
    return plain(dataclasses.asdict(cfg))


def deep_merge(base: dict, update: dict) -> dict:
    out = dict(base)
    for k, v in update.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


# A config has a few hundred nodes; YAML aliases can make 500 bytes expand to billions (and a recursive alias
# to infinity) when dumped or walked. Anything beyond this many nodes, counted with aliases expanded, is refused.
YAML_MAX_NODES = 20_000


class _BoundedLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):   # libyaml's parser when installed
    """The safe loader, refusing recursive aliases and alias expansion beyond ``YAML_MAX_NODES``."""

    def get_single_data(self):
        node = self.get_single_node()
        if node is None:
            return None
        _expanded_size(node, {}, set())
        return self.construct_document(node)


def _expanded_size(node, sizes: dict, path: set) -> int:
    """Nodes under ``node`` with every alias expanded (memoized per node: linear in the file's size)."""
    key = id(node)
    if key in sizes:
        return sizes[key]
    if key in path:
        raise yaml.YAMLError("a recursive alias (an anchor used inside itself)")
    path.add(key)
    children = []
    if isinstance(node, yaml.SequenceNode):
        children = node.value
    elif isinstance(node, yaml.MappingNode):
        children = [n for pair in node.value for n in pair]
    total = 1 + sum(_expanded_size(child, sizes, path) for child in children)
    path.discard(key)
    if total > YAML_MAX_NODES:
        raise yaml.YAMLError(f"aliases expand to more than {YAML_MAX_NODES} nodes")
    sizes[key] = total
    return total


def parse_yaml(text: str, where: str):
    """YAML text → Python data with the safe, bounded loader; a problem is one line naming ``where``."""
    try:
        return yaml.load(text, Loader=_BoundedLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        detail = f" (line {mark.line + 1})" if mark else f" ({exc})" if not hasattr(exc, "problem") else ""
        raise UserError(f"{where}: not valid YAML{detail}") from None
    except RecursionError:
        raise UserError(f"{where}: nested too deeply, expected a config of sections and keys") from None


def parse_overrides(pairs: list[str] | None, flag: str = "--set", example: str = "protocol.epochs=10") -> dict:
    """``["protocol.epochs=3", "data.crop_size=[64,128]"]`` → nested dict (values parsed as YAML); a mistake
    names ``flag``, the option the pairs came from."""
    tree: dict = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise UserError(f"{flag} {pair}: expected key=value, e.g. {example}")
        key, raw = pair.split("=", 1)
        try:
            value = parse_yaml(raw, f"{flag} {pair}")
        except UserError:
            raise UserError(f"{flag} {pair}: the value is not valid YAML") from None
        node = tree
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise UserError(f"{flag} {key}: {part} is not a section")
        node[parts[-1]] = value
    return tree


def read_yaml(path: str | Path, what: str = "config") -> dict:
    """The one reader of YAML files (configs, variants, classes.yaml): UTF-8 text, bounded in alias
    expansion, a mapping at the top; anything else is one line naming the file."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: {what} file not found")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 text (byte {exc.start}), expected a YAML {what}") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if "\x00" in text:
        raise UserError(f"{path}: holds NUL bytes (a binary file?), expected a YAML {what}")
    data = parse_yaml(text, str(path)) or {}
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping of keys at the top level of a YAML {what}")
    return data


def unknown_keys(data: dict, names) -> list:
    """The keys of ``data`` not in ``names``, sorted by their text: a YAML key may be a number or null
    (an unknown key too), and ``sorted`` alone cannot order 1 and 'foo'."""
    return sorted((key for key in data if key not in names), key=str)


def resolve_config_path(name: str | Path) -> Path:
    """A path as given, or the name of a shipped config (``demo`` → ``configs/demo.yaml``)."""
    path = Path(name)
    if path.exists():
        return path
    shipped = CONFIG_DIR / (str(name) if str(name).endswith(".yaml") else f"{name}.yaml")
    return shipped if shipped.exists() else path


def load_config(path: str | Path | None = None, overrides: list[str] | dict | None = None) -> ExperimentConfig:
    """Load an experiment config: defaults ← YAML file (with optional ``base:`` chain) ← overrides."""
    data: dict = {}
    if path is not None:
        data = _load_with_base(resolve_config_path(path))
    if overrides:
        data = deep_merge(data, overrides if isinstance(overrides, dict) else parse_overrides(overrides))
    prefix = f"{path}: " if path is not None else ""
    try:
        data = _rename_keys(data, prefix) if isinstance(data, dict) else data
        cfg = _from_dict(ExperimentConfig, data)
    except UserError as exc:
        raise UserError(f"{prefix}{exc}") from None
    validate(cfg, prefix)
    return cfg


def _load_with_base(path: Path, seen: tuple = ()) -> dict:
    """``base: other.yaml`` at the top of a config inherits from that file (relative to this one)."""
    if path.resolve() in seen:
        raise UserError(f"{path}: circular 'base:' chain")
    data = read_yaml(path)
    data.pop("_meta", None)  # a run folder's config.yaml carries its hash there (rundir.py): not a setting
    base = data.pop("base", None)
    if base is None:
        return data
    if not isinstance(base, str) or not base:
        raise UserError(f"{path}: base: {base!r}, expected the path or name of another config")
    base_path = (path.parent / base) if not Path(base).is_absolute() else Path(base)
    if not base_path.exists():
        base_path = resolve_config_path(base)
    return deep_merge(_load_with_base(base_path, seen + (path.resolve(),)), data)


def validate(cfg: ExperimentConfig, prefix: str = "") -> None:
    """Cross-field checks that the types and ``BOUNDS`` alone cannot express."""
    def bad(key, msg):
        raise UserError(f"{prefix}{key}: {msg}")

    p = cfg.protocol
    if abs(p.warmup + p.search + p.finetune - 1.0) > 1e-6:
        bad("protocol", f"warmup + search + finetune = {p.warmup + p.search + p.finetune:g}, expected 1")
    from ssnas.data.demo_presets import PRESETS as DEMO_PRESETS   # here: the data package is heavy to import
    if cfg.data.demo_preset not in DEMO_PRESETS:
        bad("data.demo_preset", f"{cfg.data.demo_preset!r} is not one of {', '.join(DEMO_PRESETS)}")
    if not cfg.data.scale_range[0] <= cfg.data.scale_range[1]:
        bad("data.scale_range", f"{list(cfg.data.scale_range)} must be [min, max] with 0 < min <= max")
    if not cfg.eval.scales:
        bad("eval.scales", "must be a non-empty list of positive scales")
    if cfg.model.kernel_sizes is not None and (not cfg.model.kernel_sizes
                                               or any(k % 2 == 0 for k in cfg.model.kernel_sizes)):
        bad("model.kernel_sizes", f"{list(cfg.model.kernel_sizes)}, expected a non-empty list of odd sizes")
    if cfg.darts.early_stop and cfg.run.hessian_every == 0:
        bad("darts.early_stop", "needs the eigenvalue, expected run.hessian_every > 0")
    _validate_cost(cfg, prefix)


def _validate_cost(cfg: ExperimentConfig, prefix: str) -> None:
    """``cost``: a target (and, for latency, a table) when the term is on; budgets that parse."""
    from ssnas.cost.units import parse_cost

    c = cfg.cost
    try:
        if c.weight > 0:
            if c.target is None:
                raise UserError("cost.target: missing, expected the budget of cost.weight > 0, e.g. 20G (flops)")
            parse_cost(c.target, c.metric, "cost.target")
        if c.budget is not None:
            parse_cost(c.budget, c.metric, "cost.budget")
        if c.metric == "latency" and (c.weight > 0 or c.budget is not None) and not c.table:
            raise UserError("cost.table: missing, expected the latency table of `ssnas profile --latency` "
                            "(cost.metric: latency)")
    except UserError as exc:
        raise UserError(f"{prefix}{exc}") from None


def config_hash(cfg: ExperimentConfig) -> str:
    """A short stable hash of everything that defines a run (used to refuse mixing runs in one folder, and as
    the key of a sub-run's stored results). Keys at their default value are left out, so that a new key
    whose default keeps the old behaviour does not change the hash of earlier runs (a reproduction's stored
    results stay valid across versions); changing a default's *value* therefore needs care."""
    return digest(identity(cfg))


def digest(data) -> str:
    """The short hash of JSON-able ``data`` that config hashes and results-store keys are made of."""
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def identity(cfg: ExperimentConfig) -> dict:
    """What defines a run: the config's keys that differ from their defaults (see :func:`config_hash`), renamed
    keys spelled as when results were first stored under them (``HASH_SPELLING``)."""
    out = _non_default(to_dict(cfg), to_dict(ExperimentConfig()))
    for (task, new), old in HASH_SPELLING.items():
        value = _get(out, new, _MISSING)
        if cfg.task == task and value is not _MISSING:
            _pop(out, new)
            if not out.get(new.split(".")[0]):
                out.pop(new.split(".")[0], None)
            _set(out, old, value)
    return out


def _non_default(data: dict, default: dict) -> dict:
    out = {}
    for key, value in data.items():
        ref = default.get(key, _MISSING)
        if isinstance(value, dict) and isinstance(ref, dict):
            sub = _non_default(value, ref)
            if sub:
                out[key] = sub
        elif value != ref:
            out[key] = value
    return out


_MISSING = object()


def dump_config(cfg: ExperimentConfig) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)
