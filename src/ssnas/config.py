"""Experiment configuration: YAML files under ``configs/`` with ``--set key=value`` overrides.

A config is a tree of dataclasses, so every key has a type, a default and a docstring-like comment here,
and a wrong key or value is reported as one line naming it (``protocol.split: 'x' is not one of ...``).
Defaults are the paper's settings (§4.1); experiment files only say what differs.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from ssnas.errors import UserError

CONFIG_DIR = Path(__file__).resolve().parent / "configs"


@dataclass
class ModelConfig:
    """Which supernet: a named variant (``configs/variants/<name>.yaml``) plus per-key overrides."""
    variant: str = "small"
    layers: Optional[int] = None
    filters: Optional[int] = None
    expansion: Optional[float] = None
    sampling: Optional[float] = None
    kernel_sizes: Optional[list] = None
    mixture: Optional[str] = None          # kernel | output
    head_channels: Optional[int] = None
    squeeze_excite: Optional[bool] = None
    shared_kernels: Optional[bool] = None
    init_checkpoint: Optional[str] = None    # start from this checkpoint's weights AND architecture
    architecture_from: Optional[str] = None  # take only alpha, beta and masks from this checkpoint (fresh weights)
    discretize_edges: Optional[int] = None   # keep the top-k incoming edges of every cell by beta-hat
    discretize_ops: bool = False             # keep the top kernel of every cell by alpha-hat
    prune_edges: float = 0.0                 # drop this fraction of edges with the weakest beta-hat (§4.2)


@dataclass
class DataConfig:
    format: str = "folder"                 # folder | cityscapes
    root: str = ""
    make_demo: bool = False                # write the embedded demo dataset at `root` when it is missing
    train_split: str = "train"
    val_split: str = "val"
    labels: str = "fine"                   # fine | coarse | both (annotations of the training split)
    crop_size: tuple = (512, 1024)         # (H, W)
    scale_range: tuple = (0.5, 2.0)
    hflip: float = 0.5
    color_jitter: float = 0.4
    gauss_noise: float = 0.2
    mean: tuple = (0.485, 0.456, 0.406)
    std: tuple = (0.229, 0.224, 0.225)
    ignore_index: int = 255
    batch_size: int = 16
    eval_batch_size: int = 1
    workers: int = 4


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
    """Adam for the architecture alpha, beta (§4.1)."""
    lr: float = 0.003
    weight_decay: float = 1e-3
    betas: tuple = (0.9, 0.999)


@dataclass
class EntropyConfig:
    """Entropy regularization, Eq. 4 with the sign of its intent: L_ent = c * f(t) * H(p)."""
    c_alpha: float = 0.0
    c_beta: float = 0.0
    scaling: str = "linear"                # constant | linear
    reduction: str = "mean"                # mean | sum over cells


@dataclass
class EvalConfig:
    interval: int = 1                      # evaluate every N epochs (and always at the end)
    flip: bool = False
    scales: tuple = (1.0,)
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
    hessian_every: int = 0                 # segmentation: eigenvalue of ∇²_{α,β} L_B every k epochs (0: off)


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
    hessian_every: int = 0                 # dominant eigenvalue of ∇²_α L_valid every k epochs (0: off)
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
    task: str = "segmentation"             # segmentation | darts
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    protocol: ProtocolConfig = field(default_factory=ProtocolConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    arch_optim: ArchOptimConfig = field(default_factory=ArchOptimConfig)
    entropy: EntropyConfig = field(default_factory=EntropyConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    run: RunConfig = field(default_factory=RunConfig)
    darts: DartsConfig = field(default_factory=DartsConfig)
    study: dict = field(default_factory=dict)   # free-form section read by `ssnas study`


CHOICES = {
    "model.mixture": ("kernel", "output"),
    "data.format": ("folder", "cityscapes"),
    "data.labels": ("fine", "coarse", "both"),
    "protocol.split": ("joint", "split", "half"),
    "protocol.weight_labels": ("fine", "coarse", "both", "none"),
    "protocol.arch_labels": ("fine", "coarse", "both", "none"),
    "entropy.scaling": ("constant", "linear"),
    "entropy.reduction": ("mean", "sum"),
    "run.amp": ("none", "bf16", "fp16", "auto"),
    "task": ("segmentation", "darts"),
    "optim.schedule": ("poly", "cosine"),
    "darts.space": ("darts", "s1", "s2", "s3", "s4"),   # = ssnas.darts.genotypes.SPACES (a test checks)
    "darts.topology": ("none", "dots"),
    "darts.dataset": ("cifar10", "digits", "fashion-mnist"),
    "darts.hessian_method": ("auto", "exact", "power"),
}


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp`` (as a string or type); return it converted."""
    origin = typing.get_origin(tp)
    if origin is typing.Union:  # Optional[X]
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return None if value is None else _coerce(value, args[0], key)
    if tp in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise UserError(f"{key}: expected a list, got {value!r}")
        return tp(value)
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


def _from_dict(cls, data: dict, prefix: str = ""):
    if not isinstance(data, dict):
        raise UserError(f"{prefix.rstrip('.') or 'config'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
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


def parse_overrides(pairs: list[str] | None) -> dict:
    """``["protocol.epochs=3", "data.crop_size=[64,128]"]`` → nested dict (values parsed as YAML)."""
    tree: dict = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise UserError(f"--set {pair}: expected key=value, e.g. protocol.epochs=10")
        key, raw = pair.split("=", 1)
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            raise UserError(f"--set {pair}: the value is not valid YAML") from None
        node = tree
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise UserError(f"--set {key}: {part} is not a section")
        node[parts[-1]] = value
    return tree


def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        raise UserError(f"{path}: not valid YAML{where}") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping of sections at the top level")
    return data


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
    base_path = (path.parent / base) if not Path(base).is_absolute() else Path(base)
    if not base_path.exists():
        base_path = resolve_config_path(base)
    return deep_merge(_load_with_base(base_path, seen + (path.resolve(),)), data)


def validate(cfg: ExperimentConfig, prefix: str = "") -> None:
    """Cross-field checks that the types alone cannot express."""
    def bad(key, msg):
        raise UserError(f"{prefix}{key}: {msg}")

    p = cfg.protocol
    if p.epochs <= 0:
        bad("protocol.epochs", f"{p.epochs} must be a positive integer")
    for key in ("warmup", "search", "finetune", "entropy_start"):
        v = getattr(p, key)
        if not 0.0 <= v <= 1.0:
            bad(f"protocol.{key}", f"{v} must be a fraction in [0, 1]")
    if abs(p.warmup + p.search + p.finetune - 1.0) > 1e-6:
        bad("protocol", f"warmup + search + finetune = {p.warmup + p.search + p.finetune:g}, expected 1")
    if p.iters_per_epoch is not None and p.iters_per_epoch <= 0:
        bad("protocol.iters_per_epoch", "must be a positive integer")
    d = cfg.data
    if len(d.crop_size) != 2 or any((not isinstance(s, int)) or s <= 0 for s in d.crop_size):
        bad("data.crop_size", f"{list(d.crop_size)} must be two positive integers [H, W]")
    if len(d.scale_range) != 2 or not 0 < d.scale_range[0] <= d.scale_range[1]:
        bad("data.scale_range", f"{list(d.scale_range)} must be [min, max] with 0 < min <= max")
    for key in ("batch_size", "eval_batch_size"):
        if getattr(d, key) <= 0:
            bad(f"data.{key}", "must be a positive integer")
    if d.workers < 0:
        bad("data.workers", "must be >= 0")
    for key in ("hflip", "gauss_noise"):
        if not 0.0 <= getattr(d, key) <= 1.0:
            bad(f"data.{key}", "is a probability, expected a value in [0, 1]")
    if cfg.optim.lr <= 0 or cfg.arch_optim.lr <= 0:
        bad("optim.lr" if cfg.optim.lr <= 0 else "arch_optim.lr", "must be positive")
    if not 0.0 <= cfg.model.prune_edges < 1.0:
        bad("model.prune_edges", f"{cfg.model.prune_edges} must be a fraction in [0, 1)")
    if cfg.model.discretize_edges is not None and not 1 <= cfg.model.discretize_edges <= 3:
        bad("model.discretize_edges", f"{cfg.model.discretize_edges} must be 1, 2 or 3")
    if cfg.entropy.c_alpha < 0 or cfg.entropy.c_beta < 0:
        bad("entropy", "c_alpha and c_beta must be >= 0")
    if cfg.eval.interval <= 0:
        bad("eval.interval", "must be a positive integer")
    if not cfg.eval.scales or any(s <= 0 for s in cfg.eval.scales):
        bad("eval.scales", "must be a non-empty list of positive scales")
    if cfg.run.hessian_every < 0:
        bad("run.hessian_every", f"{cfg.run.hessian_every} must be >= 0 (0: off)")
    _validate_darts(cfg.darts, bad)


def _validate_darts(g: "DartsConfig", bad) -> None:
    for key in ("channels", "batch_size", "hessian_batch", "early_stop_window", "early_stop_delta"):
        if getattr(g, key) <= 0:
            bad(f"darts.{key}", f"{getattr(g, key)} must be a positive integer")
    if g.layers < 3:
        bad("darts.layers", f"{g.layers} leaves no normal cell, expected >= 3")
    if g.hessian_every < 0:
        bad("darts.hessian_every", f"{g.hessian_every} must be >= 0 (0: off)")
    if g.early_stop and g.hessian_every == 0:
        bad("darts.early_stop", "needs the eigenvalue, expected darts.hessian_every > 0")
    if g.early_stop_factor <= 1.0:
        bad("darts.early_stop_factor", f"{g.early_stop_factor} must be > 1")


def config_hash(cfg: ExperimentConfig) -> str:
    """A short stable hash of everything that defines a run (used to refuse mixing runs in one folder)."""
    blob = json.dumps(to_dict(cfg), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def dump_config(cfg: ExperimentConfig) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)
