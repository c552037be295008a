"""ONNX export of a fused network (``model.fuse()``, e.g. the grid's ``FusedSegNet``), checked against onnxruntime.

``torch.onnx.export`` with the dynamo exporter (needs ``onnxscript``) is tried first; if it fails, the
TorchScript-based exporter (``dynamo=False``) is used. ``export_onnx`` returns which one wrote the file.
With ``dynamic=True`` batch, height and width are dynamic axes (any size: the model pads to /32 and crops).
"""
from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import torch
from torch import nn

from ssnas.engine.checkpoint import write_output
from ssnas.errors import UserError

OPSET = 18
INPUT_NAME, OUTPUT_NAME = "image", "logits"
PROVIDERS = ["CPUExecutionProvider"]


def _export(fused: nn.Module, path: Path, x: torch.Tensor, dynamic: bool, dynamo: bool) -> None:
    kwargs = dict(input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], opset_version=OPSET, dynamo=dynamo)
    if dynamo:
        kwargs.update(external_data=False, verbose=False)
    if dynamic and dynamo:
        dim = torch.export.Dim.AUTO
        kwargs["dynamic_shapes"] = ({0: dim, 2: dim, 3: dim},)
    elif dynamic:
        kwargs["dynamic_axes"] = {INPUT_NAME: {0: "batch", 2: "height", 3: "width"},
                                  OUTPUT_NAME: {0: "batch", 2: "height", 3: "width"}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # the exporters warn at length about things that do not apply here
        torch.onnx.export(fused, (x,), str(path), **kwargs)


EXPORTERS = {"dynamo": True, "torchscript": False}


def export_onnx(fused: nn.Module, path: str | Path, input_size: tuple[int, int], dynamic: bool = True,
                exporter: str = "auto") -> str:
    """Write ``fused`` (eval mode, traced at ``input_size``) to ``path`` atomically.

    ``exporter``: "auto" (dynamo, falling back to torchscript if it fails), "dynamo" or "torchscript".
    Returns the exporter that wrote the file. The dynamo exporter is slow on CPU (tens of seconds even
    for the tiny variant: torch.export's symbolic shapes); the TorchScript one takes seconds."""
    if exporter not in ("auto", *EXPORTERS):
        raise UserError(f"exporter {exporter!r}: expected auto, dynamo or torchscript")
    fused = fused.eval()
    # batch 2 when dynamic: torch.export specializes a dimension whose example size is 1
    x = torch.randn(2 if dynamic else 1, fused.spec["in_channels"], *input_size)
    names = list(EXPORTERS) if exporter == "auto" else [exporter]
    errors = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp) / "model.onnx"
        for name in names:
            try:
                _export(fused, tmp_path, x, dynamic, EXPORTERS[name])
            except Exception as exc:  # the exporter's own failure: try the next one
                errors.append(f"{name}: {str(exc).strip().splitlines()[0][:200] if str(exc).strip() else exc!r}")
                continue
            write_output(path, tmp_path.read_bytes(), "the ONNX model")
            return name
    raise RuntimeError("ONNX export failed: " + "; ".join(errors))


def check_onnx(path: str | Path, fused: nn.Module, x: torch.Tensor) -> float:
    """Max |logits_onnxruntime − logits_torch| for the input ``x`` (CPUExecutionProvider)."""
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(str(path), providers=PROVIDERS)
    except Exception as exc:
        raise UserError(f"{path}: onnxruntime cannot load it ({str(exc).strip()[:160]})") from None
    (onnx_out,) = session.run(None, {session.get_inputs()[0].name: x.detach().cpu().numpy()})
    with torch.no_grad():
        ref = fused.eval()(x)
    return float((torch.from_numpy(onnx_out) - ref).abs().max())
