"""`ssnas reproduce`: run every study's miniature and write the reproduction document from the results."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from ssnas.errors import UserError

DEFAULT_DOC = "docs/reproduction.md"
MARKER = "<!-- written by `ssnas reproduce`: edits are lost on the next run -->"


def register(sub) -> None:
    p = sub.add_parser("reproduce", help="run every study's miniature and write docs/reproduction.md",
                       description="Run the miniature of every paper study (configs/studies/*-mini.yaml) and "
                                   "write the reproduction document from their results; finished sub-runs in "
                                   "--out are reused.")
    p.add_argument("--out", required=True, help="folder for the studies' results (one sub-folder per study)")
    p.add_argument("--doc", default=DEFAULT_DOC, help=f"the document to write (default {DEFAULT_DOC}); "
                   "its figures go to img/reproduction/ beside it")
    p.add_argument("--only", nargs="+", metavar="NAME", help="run only these studies (the document still lists "
                   "every study with results in --out)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a key of every miniature config (e.g. run.threads=2)")
    p.set_defaults(func=run)


def mini_config(name: str) -> Path:
    from ssnas.config import CONFIG_DIR
    return CONFIG_DIR / "studies" / f"{name}-mini.yaml"


def run(args) -> int:
    from ssnas.config import load_config
    from ssnas.studies import STUDIES, get_study, run_study

    names = args.only or list(STUDIES)
    for name in names:
        get_study(name)
        if not mini_config(name).is_file():
            raise UserError(f"{mini_config(name)}: the miniature config of study {name!r} is missing")
    doc = Path(args.doc)
    if doc.exists() and MARKER not in doc.read_text():
        raise UserError(f"{doc}: exists and was not written by `ssnas reproduce`; use another --doc")
    out = Path(args.out)
    for name in names:
        cfg = load_config(mini_config(name), args.overrides)
        print(f"[reproduce] {name}", flush=True)
        run_study(name, cfg, out / name, progress=lambda msg, n=name: print(f"[{n}] {msg}", flush=True))
    write_document(out, doc)
    print(f"written: {doc}")
    return 0


LEARNED_IOU = 0.05   # a class counts as segmented when its IoU exceeds 5%


def _learned_classes(out: Path) -> list[str]:
    """A measured line on how far the miniatures' segmentation runs got (per-class IoU of their summaries)."""
    import statistics

    mious, learned, names = [], [], None
    for path in sorted(out.glob("*/runs/*/summary.json")):
        s = json.loads(path.read_text())
        if s.get("miou") is None or not s.get("per_class_iou") or not s.get("class_names"):
            continue
        mious.append(s["miou"])
        learned.append(sum(1 for v in s["per_class_iou"] if v == v and v > LEARNED_IOU))
        names = s["class_names"]
    if not mious:
        return []
    return [f"Measured over the {len(mious)} segmentation runs below: mIoU {100 * min(mious):.1f}–"
            f"{100 * max(mious):.1f}% (median {100 * statistics.median(mious):.1f}%), and a median of "
            f"{statistics.median(learned):g} of the {len(names)} classes with an IoU above {100 * LEARNED_IOU:.0f}%: "
            f"the miniatures stop far from convergence.", ""]


def write_document(out: Path, doc: Path) -> None:
    """Assemble the document from every ``<out>/<study>/results.json`` (in registry order)."""
    from ssnas.studies import STUDIES

    img_dir = doc.parent / "img" / "reproduction"
    img_dir.mkdir(parents=True, exist_ok=True)
    rel = os.path.relpath(img_dir, doc.parent)
    parts = [MARKER, "# Reproduction: the paper's studies in miniature", "",
             "Every number below was measured by `ssnas reproduce` with the miniature configs "
             "`configs/studies/<study>-mini.yaml` on CPU; the paper's numbers are from full-scale runs. Each "
             "verdict is computed from the numbers; a trend that does not show at this scale is reported as such. "
             "No miniature was tuned after its results were seen.", "",
             "The segmentation miniatures run on the embedded demo dataset: a 2-layer supernet with 20 edges (the "
             "paper's small one has 10 layers), 64×128 crops, batch 4, tens of architecture steps where the paper "
             "has tens of thousands, one to three seeds. Read a difference between settings against the ± "
             "(seed-to-seed std) of the tables with several seeds.", ""]
    parts += _learned_classes(out)
    total = 0.0
    for name in STUDIES:
        path = out / name / "results.json"
        if not path.is_file():
            continue
        r = json.loads(path.read_text())
        total += r["train_time_s"]
        parts += [f"## {r['title']}", "", f"`ssnas study {name} --config configs/studies/{name}-mini.yaml` — "
                  f"{len(r['runs']['started']) + len(r['runs']['reused'])} sub-runs and evaluations; its training "
                  f"runs took {r['train_time_s'] / 60:.1f} min on this machine.", "",
                  f"**Paper:** {r['paper']}", "", "**Measured:**", "", r["markdown"], ""]
        for fig in r["figures"]:
            target = f"{name}-{fig}"
            shutil.copyfile(out / name / fig, img_dir / target)
            parts += [f"![{name} {fig}]({rel}/{target})", ""]
        parts += ["**Verdict:**", "", r["verdict"], ""]
    parts += [f"Total training time of the runs above: {total / 60:.1f} min.", ""]
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text("\n".join(parts))
