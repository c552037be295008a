"""`ssnas reproduce`: run every study at one scale and write the reproduction document from the results.

Scales: ``proxy`` (the calibrated proxy scale, hours on a CPU; ``configs/studies/<study>-proxy.yaml``) and
``mini`` (minutes; far from convergence, for a quick look and the tests; ``<study>-mini.yaml``). Each scale
has its own results store and document, so the two never mix.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from ssnas.cli.study import add_jobs_arguments
from ssnas.errors import UserError

DEFAULT_RESULTS = "results/reproduction"   # committed: one record per finished sub-run, <scale>/<study>/<run>.json
# scale -> (default document, what the document's numbers are)
SCALES = {
    "proxy": ("docs/reproduction.md",
              "Every number below was measured by `ssnas reproduce` at the **proxy scale** "
              "(`configs/studies/<study>-proxy.yaml`, based on `proxy-base.yaml`) on CPU; the paper's numbers are "
              "from full-scale runs. The proxy: a 6-layer supernet (F=8) on the `proxy` demo dataset (400 train / "
              "100 val frames of 128×256, 9 classes), 96×192 crops, batch 8, the paper's phase fractions, and the "
              "architecture step size scaled to its number of architecture steps by the equal-travel rule; its "
              "length is in `proxy-base.yaml`. The first section, the calibration, checks the scale: whether it "
              "converged (plateau test), its level, its seed noise and the seeds each comparison needs. "
              "No proxy config was tuned after its results were seen. The calibration concerns the segmentation "
              "studies only: the Fig. 4 study (DARTS, `hessian-proxy.yaml`) runs at the DARTS miniature's scale "
              "(3 cells of 2 channels, 120 steps on scikit-learn's digits, 3 seeds), far from the paper's full CIFAR-10 "
              "searches (RobustDARTS' protocol: 50 epochs), so its verdicts say little about Fig. 4 itself."),
    "mini": ("docs/reproduction-mini.md",
             "Every number below was measured by `ssnas reproduce --scale mini` with the miniature configs "
             "`configs/studies/<study>-mini.yaml` on CPU: a 2-layer supernet, 64×128 crops, batch 4, tens of "
             "steps. The miniatures stop far from convergence: they exercise every study in minutes, and most "
             "of their verdicts are inconclusive."),
}
MARKER = "<!-- written by `ssnas reproduce`: edits are lost on the next run -->"


def register(sub) -> None:
    p = sub.add_parser("reproduce", help="run every study at the proxy (or mini) scale and write docs/reproduction.md",
                       description="Run every paper study at the calibrated proxy scale (configs/studies/*-proxy.yaml; "
                                   "--scale mini: the miniatures) and write the reproduction document from their "
                                   "results; sub-runs whose numbers are in the results store are not run again.")
    p.add_argument("--out", required=True, help="folder for the studies' results (one sub-folder per study)")
    p.add_argument("--scale", default="proxy", choices=tuple(SCALES), help="proxy: the calibrated proxy scale "
                   "(hours on a CPU); mini: the miniatures (minutes, far from convergence)")
    p.add_argument("--doc", help="the document to write (default: docs/reproduction.md for proxy, "
                   "docs/reproduction-mini.md for mini); its figures go to img/reproduction[-mini]/ beside it")
    p.add_argument("--only", nargs="+", metavar="NAME", help="run only these studies (the document still lists "
                   "every study with results in --out)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a key of every study config (e.g. run.threads=2)")
    add_jobs_arguments(p, f"{DEFAULT_RESULTS}/<scale>, one sub-folder per study")
    p.set_defaults(func=run)


def study_config(name: str, scale: str) -> Path:
    from ssnas.config import CONFIG_DIR
    return CONFIG_DIR / "studies" / f"{name}-{scale}.yaml"


def run(args) -> int:
    from ssnas.config import load_config
    from ssnas.studies import NOT_REPRODUCED, STUDIES, get_study, run_study
    from ssnas.studies.jobs import StudyStopped

    names = args.only or [n for n in STUDIES if n not in NOT_REPRODUCED]
    for name in names:
        get_study(name)
        if not study_config(name, args.scale).is_file():
            raise UserError(f"{study_config(name, args.scale)}: the {args.scale} config of study {name!r} is missing")
    doc = Path(args.doc or SCALES[args.scale][0])
    check_document(doc)
    out, store = Path(args.out), Path(args.results or Path(DEFAULT_RESULTS) / args.scale)
    if args.plan:
        from ssnas.cli.study import print_plans
        from ssnas.studies import default_jobs, plan_study
        cfgs = {name: load_config(study_config(name, args.scale), args.overrides) for name in names}
        print_plans([plan_study(name, cfgs[name], out / name, store / name) for name in names],
                    args.jobs or default_jobs(cfgs[names[0]]))
        return 0
    failed = []
    for name in names:
        cfg = load_config(study_config(name, args.scale), args.overrides)
        print(f"[reproduce] {name}", flush=True)
        try:
            run_study(name, cfg, out / name, progress=lambda msg, n=name: print(f"[{n}] {msg}", flush=True),
                      jobs=args.jobs, store=store / name)
        except StudyStopped:
            raise
        except UserError as exc:  # the other studies go on; this one is listed at the end
            print(f"[{name}] did not finish: {exc}", flush=True)
            failed.append(name)
    if write_document(out, doc, store, args.scale):
        print(f"written: {doc} and {results_file(doc)}", flush=True)
    else:
        print(f"not written: {doc} (no study in {out} has finished)", flush=True)
    if failed:
        raise UserError(f"studies {', '.join(failed)} did not finish (see above; the document lists the others); "
                        f"run the same command again to re-do only what is missing")
    return 0


def check_document(doc: Path) -> None:
    """Before any study runs: ``doc`` and its :func:`results_file` are either new or ``ssnas reproduce``'s own
    (the document carries :data:`MARKER`), so the run can never overwrite a user's file."""
    if doc.is_dir():
        raise UserError(f"--doc {doc}: is a folder, expected the path of a Markdown file")
    ours = False
    if doc.exists():
        try:
            ours = MARKER in doc.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            pass
        if not ours:
            raise UserError(f"{doc}: exists and was not written by `ssnas reproduce`; use another --doc")
    results = results_file(doc)
    if results.is_dir() or (results.exists() and not ours):
        raise UserError(f"{results}: exists and was not written by `ssnas reproduce` beside {doc.name}; "
                        f"use another --doc")


def _study_results(path: Path) -> dict:
    """A study's ``results.json`` (its report's numbers); a damaged one names itself and how to rebuild it."""
    from ssnas.studies.store import read_json

    expected = (f"the results `ssnas study` writes; delete it and run that study again (`--only "
                f"{path.parent.name}`: finished sub-runs are kept in the results store)")
    data = read_json(path, expected)
    if not isinstance(data.get("runs"), dict):
        raise UserError(f"{path}: has no runs, expected {expected}")
    return data


def results_file(doc: Path) -> Path:
    """Every raw per-run number behind ``doc``, beside it (``reproduction-results.json``)."""
    return doc.with_name(f"{doc.stem}-results.json")


LEARNED_IOU = 0.05   # a class counts as segmented when its IoU exceeds 5%


def _learned_classes(records: list[dict]) -> list[str]:
    """A measured line on how far the segmentation runs got (per-class IoU of their summaries)."""
    import statistics

    mious, learned, names = [], [], None
    for r in records:
        s = r.get("summary", {})
        if s.get("miou") is None or not s.get("per_class_iou") or not s.get("class_names"):
            continue
        mious.append(s["miou"])
        learned.append(sum(1 for v in s["per_class_iou"] if v == v and v > LEARNED_IOU))
        names = s["class_names"]
    if not mious:
        return []
    return [f"Measured over the {len(mious)} segmentation runs below: mIoU {100 * min(mious):.1f}–"
            f"{100 * max(mious):.1f}% (median {100 * statistics.median(mious):.1f}%), and a median of "
            f"{statistics.median(learned):g} of the {len(names)} classes with an IoU above {100 * LEARNED_IOU:.0f}%.", ""]


def _used_records(out: Path, store: Path) -> dict:
    """study -> {run: record} of the sub-runs each study's report was built from (its results.json)."""
    from ssnas.studies import STUDIES
    from ssnas.studies.store import ResultStore

    used = {}
    for name in STUDIES:
        path = out / name / "results.json"
        if path.is_file():
            runs = _study_results(path)["runs"]
            records = ResultStore(store / name)
            used[name] = {run: records.load(run) for run in dict.fromkeys(runs["started"] + runs["reused"])}
    return used


def _head(records: list[dict]) -> list[str]:
    """Where and when the numbers were made, from the records themselves."""
    from ssnas.studies.store import provenance_head

    h = provenance_head(records)
    if not h["records"]:
        return []
    return ["| | |", "|---|---|",
            f"| Sub-runs | {h['records']} (each one's numbers: `{{results}}/<study>/<run>.json`)"
            + (f"; {h['computations']} computations: studies that ask for the same training share one run "
               f"(`reused_from` in the record)" if h["computations"] < h["records"] else "") + " |",
            f"| Dates (UTC) | {h['first'][:16].replace('T', ' ')} to {h['last'][:16].replace('T', ' ')} |",
            f"| Machines | {'; '.join(h['machines'])} |",
            f"| Wall time of the sub-runs | {h['wall_time_s'] / 3600:.2f} h in all (summed over processes, a shared "
            f"run once) |",
            f"| ssnas git commit(s) | {', '.join(f'`{c}`' for c in h['git_commits'])} |", ""]


def write_document(out: Path, doc: Path, store: Path, scale: str = "proxy") -> bool:
    """Assemble the document from every ``<out>/<study>/results.json`` (in registry order), and write every
    raw per-run number it rests on (the store's records) to :func:`results_file`; False (nothing written)
    when no study has finished."""
    from ssnas.studies import STUDIES
    from ssnas.studies.store import write_json

    used = _used_records(out, store)
    if not used:
        return False
    records = [r for runs in used.values() for r in runs.values() if r is not None]

    img_dir = doc.parent / "img" / ("reproduction" if scale == "proxy" else f"reproduction-{scale}")
    img_dir.mkdir(parents=True, exist_ok=True)
    rel = os.path.relpath(img_dir, doc.parent)
    title = "at the proxy scale" if scale == "proxy" else "in miniature"
    parts = [MARKER, f"# Reproduction: the paper's studies {title}", "", SCALES[scale][1], "",
             "Every verdict prints the difference with its 95% confidence interval (paired by seed) and reads held, "
             "did not hold or inconclusive by the rules of docs/studies.md (Verdicts), fixed before any result was "
             "seen.", ""]
    parts += [line.replace("{results}", str(store)) for line in _head(records)]
    parts += [f"Every raw per-run number: [`{results_file(doc).name}`]({results_file(doc).name}).", ""]
    parts += _learned_classes(records)
    total = 0.0
    for name in STUDIES:
        path = out / name / "results.json"
        if not path.is_file():
            continue
        r = _study_results(path)
        total += r["train_time_s"]
        parts += [f"## {r['title']}", "", f"`ssnas study {name} --config configs/studies/{name}-{scale}.yaml --out studies/{name}` — "
                  f"{len(used[name])} sub-runs and evaluations; its training runs took {r['train_time_s'] / 60:.1f} min "
                  f"(see the head for where and when).", "",
                  f"**Paper:** {r['paper']}", "", "**Measured:**", "", r["markdown"], ""]
        for fig in r["figures"]:
            target = f"{name}-{fig}"
            shutil.copyfile(out / name / fig, img_dir / target)
            parts += [f"![{name} {fig}]({rel}/{target})", ""]
        parts += ["**Verdict:**", "", r["verdict"], ""]
    parts += [f"Total training time of the runs above: {total / 60:.1f} min.", ""]
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text("\n".join(parts))
    write_json(results_file(doc), {"store": str(store), "studies": used})
    return True
