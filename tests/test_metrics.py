"""Metrics: hand-computed IoU, the official Cityscapes evaluator's numbers, test-time augmentation."""
import math

import numpy as np
import pytest
import torch
import torch.nn as nn
from PIL import Image
from helpers_data import make_cityscapes_tree

from ssnas.config import DataConfig
from ssnas.data import build_dataset
from ssnas.evaluation import ConfusionMatrix, evaluate, predict_logits

# --- ConfusionMatrix ------------------------------------------------------------------------------

def test_miou_matches_hand_computation():
    target = torch.tensor([[0, 0, 1, 1], [2, 2, 255, 0]])
    pred = torch.tensor([[0, 1, 1, 1], [2, 0, 2, 3]])
    cm = ConfusionMatrix(5)
    cm.update(pred, target)
    # valid pixels (t, p): (0,0) (0,1) (1,1) (1,1) (2,2) (2,0) (0,3); the ignore pixel is dropped
    # class 0: TP 1, FP 1 (2->0), FN 2 (0->1, 0->3) -> 1/4;  class 1: TP 2, FP 1, FN 0 -> 2/3
    # class 2: TP 1, FP 0, FN 1 -> 1/2;  class 3: TP 0, FP 1 -> 0 (predicted only: counts);  class 4: NaN
    result = cm.compute()
    assert result["per_class_iou"][:4] == pytest.approx([1 / 4, 2 / 3, 1 / 2, 0.0])
    assert math.isnan(result["per_class_iou"][4])
    assert result["miou"] == pytest.approx((1 / 4 + 2 / 3 + 1 / 2 + 0) / 4)
    assert result["pixel_acc"] == pytest.approx(4 / 7)
    assert int(cm.matrix.sum()) == 7 and cm.matrix[0, 3] == 1


def test_update_accumulates_and_accepts_scores():
    rng = torch.Generator().manual_seed(0)
    target = torch.randint(0, 4, (3, 8, 8), generator=rng)
    scores = torch.randn(3, 4, 8, 8, generator=rng)
    whole, parts = ConfusionMatrix(4), ConfusionMatrix(4)
    whole.update(scores, target)                       # B×C×H×W scores: argmax over C
    for i in range(3):
        parts.update(scores[i:i + 1].argmax(1), target[i:i + 1])
    assert torch.equal(whole.matrix, parts.matrix) and int(whole.matrix.sum()) == 3 * 64
    with pytest.raises(ValueError, match="outside 0..3"):
        whole.update(torch.zeros(2, dtype=torch.long), torch.tensor([0, 7]))


def _reduce_worker(rank, world, init_file):
    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    cm = ConfusionMatrix(3)
    cm.update(torch.tensor([rank]), torch.tensor([rank]))
    cm.reduce_()
    assert cm.matrix.diagonal().tolist() == [1, 1, 0] and int(cm.matrix.sum()) == 2
    torch.distributed.destroy_process_group()


def test_reduce_sums_over_processes(tmp_path):
    assert ConfusionMatrix(3).reduce_().matrix.sum() == 0          # no process group: a no-op
    torch.multiprocessing.start_processes(_reduce_worker, args=(2, tmp_path / "init"), nprocs=2,
                                          start_method="fork")   # fork: no second torch import


# --- Agreement with cityscapesscripts' evaluator ---------------------------------------------------

class ColourLookup(nn.Module):
    """Classifies a pixel by the nearest trainId display colour (logit = -squared distance, a 1×1 conv),
    plus fixed per-pixel noise so that it makes mistakes: an evaluation target with a known answer."""

    def __init__(self, noise: float, seed: int = 0):
        super().__init__()
        from ssnas.data import ClassTable

        colors = torch.tensor(ClassTable.cityscapes().colors, dtype=torch.float32) / 255
        mean, std = torch.tensor(DataConfig.mean), torch.tensor(DataConfig.std)
        centers = (colors - mean) / std                                  # in normalised image space
        self.conv = nn.Conv2d(3, 19, 1)
        with torch.no_grad():
            self.conv.weight.copy_(2 * centers[:, :, None, None])
            self.conv.bias.copy_(-(centers ** 2).sum(1))
        self.noise, self.seed = noise, seed

    def forward(self, x):
        logits = self.conv(x)
        noise = torch.randn(logits.shape, generator=torch.Generator().manual_seed(self.seed))
        return logits + self.noise * noise


def _official(gt_root, pred_dir):
    """Run cityscapesscripts' pixel-level evaluator in-process on gtFine/val against ``pred_dir``."""
    from cityscapesscripts.evaluation import evalPixelLevelSemanticLabeling as official

    args = official.CArgs()
    args.__dict__.update(vars(official.args))
    args.predictionPath, args.predictionWalk = str(pred_dir), None
    args.evalInstLevelScore = False             # our tree has no *_instanceIds.png
    args.JSONOutput, args.quiet, args.colorized = False, True, False
    gts = sorted(str(p) for p in (gt_root / "gtFine" / "val").glob("*/*_gtFine_labelIds.png"))
    preds = [official.getPrediction(args, gt) for gt in gts]
    return official.evaluateImgLists(preds, gts, args)


@pytest.mark.parametrize("noise", [0.0, 3.0])
def test_miou_equals_official_cityscapes_evaluator(tmp_path, noise):
    from ssnas.data import ClassTable

    root = make_cityscapes_tree(tmp_path / "cs", cities={"val": ("frankfurt", "lindau")}, size=(64, 128),
                                n_per_city=2, coarse=False)
    for gt in (root / "gtFine" / "val").glob("*/*_labelIds.png"):    # no "train" (id 31, trainId 16) in the
        label = np.asarray(Image.open(gt))                          # ground truth: exercises absent classes
        Image.fromarray(np.where(label == 31, 0, label).astype(np.uint8)).save(gt)
    ds = build_dataset(DataConfig(format="cityscapes", root=str(root)), "val", train=False)
    loader = torch.utils.data.DataLoader(ds, batch_size=2)
    pred_dir = tmp_path / "results"
    ours = evaluate(ColourLookup(noise), loader, 19, write_label_ids_dir=pred_dir)
    theirs = _official(root, pred_dir)
    assert ours["images"] == 4 and len(list(pred_dir.glob("*.png"))) == 4
    assert ours["miou"] == pytest.approx(theirs["averageScoreClasses"], abs=1e-12)
    names = ClassTable.cityscapes().names
    for name, iou in zip(names, ours["per_class_iou"]):
        official = theirs["classScores"][name]
        assert (math.isnan(iou) and math.isnan(official)) or iou == pytest.approx(official, abs=1e-12), name
    if noise == 0:                                  # exact lookup: "train" is never predicted on a valid pixel
        assert ours["miou"] == 1.0 and math.isnan(ours["per_class_iou"][16])
    else:                                           # "train" predicted but absent: IoU 0, and it counts
        assert 0.1 < ours["miou"] < 0.9 and ours["per_class_iou"][16] == 0.0


def test_evaluate_refuses_a_non_empty_prediction_folder(tmp_path):
    from ssnas.errors import UserError

    (tmp_path / "mine.txt").write_text("keep me")
    with pytest.raises(UserError, match="not empty"):
        evaluate(ColourLookup(0.0), [], 19, write_label_ids_dir=tmp_path)
    assert (tmp_path / "mine.txt").read_text() == "keep me"


def test_a_full_disk_while_writing_label_ids_is_one_line(tmp_path, monkeypatch):
    import errno
    import os

    from PIL import Image as PILImage

    from ssnas.errors import UserError
    from ssnas.evaluation import write_label_ids

    def full(self, fp, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(PILImage.Image, "save", full)
    with pytest.raises(UserError, match=r"frankfurt_000000_labelIds\.png: cannot write \(No space left"):
        write_label_ids(torch.zeros(4, 8, dtype=torch.long), "frankfurt_000000", tmp_path)


# --- Test-time augmentation ------------------------------------------------------------------------

class PositionModel(nn.Module):
    """Not flip- or scale-equivariant: logits depend on the column index and the input width."""

    def forward(self, x):
        b, _, h, w = x.shape
        cols = torch.linspace(0, 1, w).expand(b, 1, h, w)
        return torch.cat([x[:, :1] * cols, x[:, 1:2] * (1 - cols), cols * w / 10], 1)


def test_predict_logits_flip_and_multiscale_average_probabilities():
    import torch.nn.functional as F

    model = PositionModel()
    image = torch.randn(2, 3, 8, 12, generator=torch.Generator().manual_seed(0))
    plain = predict_logits(model, image, num_classes=3)
    assert torch.allclose(plain, model(image).softmax(1), atol=1e-6)

    flipped = predict_logits(model, image, flip=True)
    expected = (model(image).softmax(1) + model(image.flip(-1)).flip(-1).softmax(1)) / 2
    assert torch.allclose(flipped, expected, atol=1e-6)

    multi = predict_logits(model, image, scales=(1.0, 0.5))
    small = F.interpolate(image, size=(4, 6), mode="bilinear", align_corners=False)
    upsampled = F.interpolate(model(small), size=(8, 12), mode="bilinear", align_corners=False)
    assert torch.allclose(multi, (model(image).softmax(1) + upsampled.softmax(1)) / 2, atol=1e-6)
    assert multi.shape == (2, 3, 8, 12) and not torch.allclose(multi, plain)
    with pytest.raises(ValueError, match="expected 5 classes"):
        predict_logits(model, image, num_classes=5)
