"""The Python API: ``create_model``, ``list_variants``, ``load``, ``predict`` (``import ssnas``).

Like timm's ``create_model`` / mmsegmentation's ``init_model`` + ``inference_model``: one call builds or
loads a network, one call segments an image. :func:`load` accepts every file ssnas writes — a training
checkpoint, a run folder (its last checkpoint), a fused ``.pt`` or a ``.safetensors`` release — and returns
an eval-mode ``nn.Module`` that carries what inference needs: ``.classes`` (names, colours, ignore index)
and ``.preprocessing`` (mean, std of the RGB input scaled to [0, 1]).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence, Union

import numpy as np
import torch
from torch import nn

from ssnas.errors import UserError
from ssnas.space.variants import create_model, list_variants

# Preprocessing of a model whose file does not say (old fused files): the config's defaults (ImageNet's).
DEFAULT_MEAN = (0.485, 0.456, 0.406)
DEFAULT_STD = (0.229, 0.224, 0.225)

ImageLike = Union[str, Path, np.ndarray, torch.Tensor, Any]  # Any: a PIL image

__all__ = ["create_model", "list_variants", "load", "predict", "load_with_info", "preprocessing_from_config"]


def preprocessing_from_config(config: dict | None) -> dict:
    """The input normalization a model was trained with, from its experiment config (dict)."""
    from ssnas.config import check_value

    data = (config or {}).get("data") or {}
    data = data if isinstance(data, dict) else {}
    mean, std = (check_value(f"data.{key}", data.get(key, default), f"the model's config data.{key}")
                 for key, default in (("mean", DEFAULT_MEAN), ("std", DEFAULT_STD)))
    return {"mean": [float(v) for v in mean], "std": [float(v) for v in std],
            "input": "RGB scaled to [0, 1], then (x - mean) / std per channel"}


def load_with_info(path: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """(eval-mode model with ``.classes`` / ``.preprocessing`` / ``.num_classes``, the file's dict): the
    dict of a checkpoint holds its ``config``; a released model's holds ``spec``, ``classes`` etc."""
    from ssnas.engine.checkpoint import FORMAT as CHECKPOINT
    from ssnas.engine.checkpoint import check_checkpoint, read_weights_only, resolve_checkpoint_path
    from ssnas.export.fuse import FORMAT as FUSED, fused_from_payload
    from ssnas.export.safetensors_io import SUFFIX, read_safetensors
    from ssnas.tasks.segmentation import model_from_checkpoint

    path = resolve_checkpoint_path(path)
    if path.suffix.lower() == SUFFIX:
        payload = read_safetensors(path)
    else:
        payload = read_weights_only(path)
    kind = payload.get("format")
    if kind == CHECKPOINT:
        payload = check_checkpoint(payload, path)
        model = model_from_checkpoint(payload, path)
        model.classes = payload.get("classes")
        model.preprocessing = preprocessing_from_config(payload.get("config"))
        model.num_classes = model.cfg.num_classes
    elif kind == FUSED:
        model = fused_from_payload(payload, path)
        model.preprocessing = model.preprocessing or preprocessing_from_config(None)
        model.architecture = payload.get("architecture")
        model.num_classes = int(model.spec["num_classes"])
    else:
        raise UserError(f"{path}: not an ssnas checkpoint or model (format {kind!r}, expected "
                        f"'{CHECKPOINT}' or '{FUSED}')")
    if not model.classes or not model.classes.get("names"):
        model.classes = {"names": [f"class{i}" for i in range(model.num_classes)], "colors": None,
                         "ignore_index": 255}
    return model.to(device).eval(), payload


def load(path: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """An eval-mode model from a checkpoint, a run folder, a fused ``.pt`` or a ``.safetensors`` file.

    It carries ``.classes`` ({"names", "colors", "ignore_index"}) and ``.preprocessing`` ({"mean", "std"}),
    so that :func:`predict` needs nothing else. Loading never executes code from the file."""
    return load_with_info(path, device)[0]


def _to_batch(image: ImageLike, preprocessing: dict, device: torch.device) -> torch.Tensor:
    """1×3×H×W normalized float tensor from a path, a PIL image, an H×W×3 uint8 array or a 3×H×W tensor
    in [0, 1] (RGB)."""
    if isinstance(image, (str, Path)):
        from ssnas.data.dataset import read_image
        image = read_image(image)
    if not isinstance(image, (np.ndarray, torch.Tensor)) and hasattr(image, "convert"):  # PIL
        image = np.asarray(image.convert("RGB"))
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3:
            raise UserError(f"image array of shape {image.shape}, expected H×W×3 RGB")
        scale = 255.0 if image.dtype == np.uint8 else 1.0
        x = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float() / scale
    elif isinstance(image, torch.Tensor):
        if image.ndim != 3 or image.shape[0] != 3:
            raise UserError(f"image tensor of shape {tuple(image.shape)}, expected 3×H×W RGB in [0, 1]")
        x = image.float()
    else:
        raise UserError(f"image of type {type(image).__name__}, expected a path, a PIL image, an H×W×3 array "
                        f"or a 3×H×W tensor")
    mean = torch.tensor(preprocessing["mean"]).view(3, 1, 1)
    std = torch.tensor(preprocessing["std"]).view(3, 1, 1)
    return ((x - mean) / std).unsqueeze(0).to(device)


@torch.no_grad()
def predict(model: nn.Module, image: ImageLike, scales: Sequence[float] = (1.0,), flip: bool = False) -> np.ndarray:
    """H×W label map (int64 class indices) of one RGB image, with the model's own preprocessing.

    ``scales`` / ``flip``: test-time augmentation (probabilities averaged over the views)."""
    from ssnas.evaluation.inference import predict_logits

    preprocessing = getattr(model, "preprocessing", None) or preprocessing_from_config(None)
    device = next(iter(model.parameters()), torch.empty(0)).device
    was_training = model.training
    model.eval()
    try:
        logits = predict_logits(model, _to_batch(image, preprocessing, device), tuple(scales), flip)
    finally:
        model.train(was_training)
    return logits.argmax(1)[0].cpu().numpy()
