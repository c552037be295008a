"""`ssnas profile`: FLOPs and parameters by torch's counter, checked against a hand count."""
import json

import pytest
import torch

from ssnas.cli import main
from ssnas.space import create_model
from ssnas.space.profile import PAPER_TABLE3, profile


def hand_count(L, F, exp, classes, head, H, W, k=7):
    """Parameters and multiply-adds of the design, written out by hand."""
    widths = [F * 2 ** i for i in range(4)]
    params = macs = 0
    # stem: per level, 3x3 convs 3→C/2 (s2), C/2→C/2, C/2→C (s2) on the image resized by 2^-i, + BN
    for i, c in enumerate(widths):
        h0, w0 = H // 2 ** i, W // 2 ** i
        for cin, cout, stride_before in ((3, c // 2, 2), (c // 2, c // 2, 1), (c // 2, c, 2)):
            h0, w0 = h0 // stride_before, w0 // stride_before
            params += 9 * cin * cout + 2 * cout
            macs += 9 * cin * cout * h0 * w0
    for _ in range(L):
        for i, c in enumerate(widths):
            hw = (H // 2 ** (i + 2)) * (W // 2 ** (i + 2))
            e = int(c * exp)
            s = e // 4
            # cell: expand 1x1 + BN, depthwise kxk (shared superkernel) + BN, SE (two 1x1 with bias), project + BN
            params += c * e + 2 * e + e * k * k + 2 * e + (e * s + s + s * e + e) + e * c + 2 * c
            macs += c * e * hw + e * k * k * hw + (e * s + s * e) + e * c * hw
            # P: one 1x1 conv + BN per incoming edge, at the target resolution
            for j in (i - 1, i, i + 1):
                if 0 <= j < 4:
                    params += widths[j] * c + 2 * c
                    macs += widths[j] * c * hw
    hw = (H // 4) * (W // 4)
    params += 15 * F * head + 2 * head + head * classes + classes
    macs += 15 * F * head * hw + head * classes * hw
    arch = L * 4 * 3 * 2
    return params + arch, macs


def test_profile_matches_hand_count():
    torch.manual_seed(0)
    model = create_model("tiny", num_classes=5)
    r = profile(model, (64, 128))
    params, macs = hand_count(2, 4, 4, 5, 16, 64, 128)
    assert r["params"] == params
    # the superkernel's α̂ mixing (an einsum over a few scalars per cell) is also counted: allow that alone
    assert 0 <= r["macs"] - macs <= 2 * 4 * 3 * 49
    assert r["flops"] == 2 * r["macs"]


def test_meta_and_real_device_agree():
    torch.manual_seed(0)
    a = profile(create_model("tiny", num_classes=5), (64, 64))
    with torch.device("meta"):
        m = create_model("tiny", num_classes=5)
    b = profile(m, (64, 64))
    assert a["flops"] == b["flops"] and a["params"] == b["params"]
    assert a["components"] == b["components"]
    from ssnas.space.profile import forward_flops
    cpu_model = create_model("tiny", num_classes=5)
    assert forward_flops(cpu_model, (64, 64)) == a["flops"]
    assert cpu_model.alpha.device.type == "cpu"  # counted on a meta copy, the model stays where it is


@pytest.mark.parametrize("variant", sorted(PAPER_TABLE3))
def test_table3_within_10_percent(variant, capsys):
    assert main(["profile", "--variant", variant, "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    paper_flops, paper_params = PAPER_TABLE3[variant]
    assert abs(r["params"] / paper_params - 1) < 0.10
    assert abs(r["flops"] / paper_flops - 1) < 0.10
    assert sum(c["flops"] for c in r["components"].values()) + r["other_flops"] == r["flops"]
    assert isinstance(r["params"], int) and isinstance(r["macs"], int)


@pytest.mark.parametrize("argv", [
    ["profile", "--variant", "nope"],
    ["profile", "--input-size", "0x64"],
    ["profile", "--input-size", "abc"],
])
def test_profile_bad_input(argv, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("ssnas: error:") and "Traceback" not in err and len(err.strip().splitlines()) == 1
