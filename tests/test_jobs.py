"""Studies' sub-runs in parallel processes and from the results store (studies/jobs.py, studies/store.py).

Tiny configs as in test_studies; ``demo_root`` (conftest) is the small demo dataset."""
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from ssnas.cli import main
from ssnas.config import load_config
from ssnas.studies.common import StudyDir
from ssnas.studies.jobs import PENDING
from test_studies import SEARCH, TINY

SRC = Path(__file__).resolve().parents[1] / "src"
TWO_STAGE = {"seeds": [0], "search_protocol": SEARCH, "retrain_epochs": 2, "search_entropy": 1.0,
             "flops_size": [64, 128]}


def _config(folder, demo_root, name, study, **changes):
    data = {**TINY, "name": name, "study": study, **changes}
    data["data"] = {**TINY["data"], "root": str(demo_root)}
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _study(name, config, out, store, jobs=None):
    args = ["study", name, "--config", str(config), "--out", str(out), "--results", str(store)]
    return main(args + (["--jobs", str(jobs)] if jobs else []))


def _results(out):
    return json.loads((out / "results.json").read_text())


def _numbers(store, run):
    """A record's measured numbers (not where or when they were made)."""
    r = json.loads((store / f"{run}.json").read_text())
    s = r["summary"]
    return {"miou": s["miou"], "entropy": s["entropy"], "steps": s["steps"], "measures": r["measures"],
            "metrics": [{k: v for k, v in m.items() if k != "time"} for m in r["metrics"]]}


def _models(out):
    return _results(out)["models"]


def test_parallel_equals_serial_and_the_store_replaces_the_run_folders(demo_root, tmp_path, capsys):
    from ssnas.studies import plan_study

    config = _config(tmp_path, demo_root, "two-stage", TWO_STAGE)
    runs = ["search-s0", "single-stage-s0", "retrain-s0", "search-entropy-s0", "retrain-entropy-s0"]
    # --plan before anything ran: the first wave to run, the retrains waiting for its checkpoints; no files
    cfg = load_config(str(config))
    plan = plan_study("two-stage", cfg, tmp_path / "a", tmp_path / "sa")
    assert plan["done"] == 0 and plan["seconds_per_epoch"] == []
    assert sorted(j["name"] for j in plan["to_run"]) == ["search-entropy-s0", "search-s0", "single-stage-s0"]
    assert {j["name"]: j["needs"] for j in plan["waiting"]} == {"retrain-s0": ["search-s0"],
                                                                 "retrain-entropy-s0": ["search-entropy-s0"]}
    assert main(["study", "two-stage", "--config", str(config), "--out", str(tmp_path / "a"), "--results",
                 str(tmp_path / "sa"), "--plan", "--jobs", "2"]) == 0
    assert "two-stage: 0 finished; 3 to run now, 2 waiting for their checkpoints" in capsys.readouterr().out
    assert not (tmp_path / "a").exists() and not (tmp_path / "sa").exists()
    assert _study("two-stage", config, tmp_path / "a", tmp_path / "sa", jobs=1) == 0
    assert _study("two-stage", config, tmp_path / "b", tmp_path / "sb", jobs=2) == 0
    assert sorted(_results(tmp_path / "b")["runs"]["started"]) == sorted(runs)
    assert _models(tmp_path / "a") == _models(tmp_path / "b")
    for run in runs:  # retrain-s0 built on search-s0's checkpoint in both
        assert _numbers(tmp_path / "sa", run) == _numbers(tmp_path / "sb", run), run
    record = json.loads((tmp_path / "sb" / "retrain-s0.json").read_text())
    assert {"finished", "platform", "cpu", "torch", "git_commit", "wall_time_s", "key"} <= set(record)
    assert "checkpoint" not in record["summary"] and "per_class_iou" not in record["metrics"][-1]

    # another machine: only the store came along; the report is built from it, nothing runs
    assert _study("two-stage", config, tmp_path / "c", tmp_path / "sa") == 0
    r = _results(tmp_path / "c")
    assert r["runs"]["started"] == [] and sorted(r["runs"]["reused"]) == sorted(runs)
    assert r["models"] == _models(tmp_path / "a") and not (tmp_path / "c" / "runs").exists()
    plan = plan_study("two-stage", cfg, tmp_path / "e", tmp_path / "sa")
    assert plan["done"] == len(runs) and not plan["to_run"] and not plan["waiting"]
    assert len(plan["seconds_per_epoch"]) == len(runs) and all(r > 0 for r in plan["seconds_per_epoch"])
    assert not (tmp_path / "e").exists()   # a finished study's figures went to the plan's scratch folder

    # a sub-run missing from the store needs a checkpoint that only exists as a record: it is re-trained
    before = _numbers(tmp_path / "sa", "search-s0")
    (tmp_path / "sa" / "retrain-s0.json").unlink()
    assert _study("two-stage", config, tmp_path / "d", tmp_path / "sa", jobs=2) == 0
    assert sorted(_results(tmp_path / "d")["runs"]["started"]) == ["retrain-s0", "search-s0"]
    assert _numbers(tmp_path / "sa", "search-s0") == before
    assert _numbers(tmp_path / "sa", "retrain-s0") == _numbers(tmp_path / "sb", "retrain-s0")


def test_a_failed_sub_run_is_reported_and_redone_alone(demo_root, tmp_path, capsys):
    config = _config(tmp_path, demo_root, "splits", {"rows": ["split", "coarse-weights"], "seeds": [0]})
    out, store = tmp_path / "out", tmp_path / "store"
    StudyDir(out).claim("splits", load_config(str(config)))
    (out / "runs").mkdir()
    (out / "runs" / "split-s0").write_text("in the way")  # this sub-run cannot write its run folder
    assert _study("splits", config, out, store, jobs=2) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "1 sub-run(s)" in err
    assert "split-s0: " in err and "exists and is not a folder" in err and "run the same command again" in err
    assert (store / "coarse-weights-s0.json").is_file() and not (store / "split-s0.json").exists()
    assert not (out / "results.json").exists()
    stamp = (store / "coarse-weights-s0.json").stat().st_mtime_ns

    (out / "runs" / "split-s0").unlink()
    assert _study("splits", config, out, store, jobs=2) == 0
    r = _results(out)
    assert r["runs"]["started"] == ["split-s0"] and r["runs"]["reused"] == ["coarse-weights-s0"]
    assert (store / "coarse-weights-s0.json").stat().st_mtime_ns == stamp


def test_sigterm_stops_every_sub_run_resumably(demo_root, tmp_path):
    """`nohup ssnas study ... &` then `kill PID`: the running sub-runs checkpoint, the same command resumes."""
    long = {**SEARCH, "epochs": 40}
    config = _config(tmp_path, demo_root, "entropy-table", {"seeds": [0, 1], "search_protocol": long})
    out, store = tmp_path / "out", tmp_path / "store"
    cmd = [sys.executable, "-m", "ssnas", "study", "entropy-table", "--config", str(config), "--out", str(out),
           "--results", str(store), "--jobs", "2"]
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ckpts = [out / "runs" / f"search-s{s}" / "checkpoints" / "last.pt" for s in (0, 1)]
    deadline = time.time() + 240
    while not all(c.is_file() for c in ckpts) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.5)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=240)
    assert proc.returncode == 2, stdout + stderr
    assert "stopped" in stderr and "run the same command again to resume" in stderr
    assert not list(store.glob("*.json"))  # nothing finished, nothing recorded
    steps = [json.loads(c.with_name("last.pt").parent.parent.joinpath("metrics.jsonl").read_text().splitlines()[-1])
             ["epoch"] for c in ckpts]
    assert all(0 < s < 40 for s in steps)

    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    for s in (0, 1):
        metrics = [json.loads(line)["epoch"]
                   for line in (out / "runs" / f"search-s{s}" / "metrics.jsonl").read_text().splitlines()]
        assert metrics == list(range(1, 41))  # resumed where it stopped: every epoch once
        assert json.loads((store / f"search-s{s}.json").read_text())["summary"]["steps"] == 40


def test_pending_lets_a_planning_pass_run_through():
    p = PENDING
    assert p["entropy"]["beta"]["end"] is p and p.get("x") is p and (p + 1) / 2 - 3 is p
    assert math.isnan(float(p)) and not p and not (p < 0) and f"{p:.3f}" == "…"
    assert [x for x in p] == [p] and "hessian_eigenvalue" in p and (p.get("early_stop") or {}) == {}


def test_a_pass_runs_its_longest_sub_runs_first(monkeypatch, tmp_path):
    """Longest first: on n workers the pass ends sooner, and a stopped session has its long run furthest along."""
    from types import SimpleNamespace

    import ssnas.studies.jobs as jobs

    order = []
    monkeypatch.setattr(jobs, "run_all", lambda js, n, progress: order.extend(j.name for j in js) or
                        {j.name: ("done", None) for j in js})
    scheduler = jobs.Scheduler(SimpleNamespace(progress=lambda msg: None, path=tmp_path), store=None, jobs=2)
    scheduler.begin_pass()

    def job(name, kind, epochs):
        cfg = SimpleNamespace(protocol=SimpleNamespace(epochs=epochs))
        return jobs.SubRun(kind, name, cfg, tmp_path / name, None)

    for name, kind, epochs in [("s0", "train", 800), ("eval", "evaluation", 0), ("s1", "train", 800),
                               ("x2", "train", 1600), ("short", "train", 40)]:
        scheduler.pending[name] = job(name, kind, epochs)
    scheduler.run_pending()
    assert order == ["x2", "s0", "s1", "short", "eval"]
    assert scheduler.ran_now == {"x2", "s0", "s1", "short", "eval"}


@pytest.mark.parametrize("name", list(__import__("ssnas.studies", fromlist=["STUDIES"]).STUDIES))
def test_the_first_planning_pass_asks_for_every_seed(name, demo_root, tmp_path):
    """A study's code must run through a pass on placeholders: one that stops at the first seed (the two-stage
    study once unpacked a pending summary) leaves --jobs N with nothing to run beside it."""
    from ssnas.cli.reproduce import study_config
    from ssnas.studies import plan_study

    cfg = load_config(study_config(name, "mini"), [f"data.root={demo_root}", "data.make_demo=false"])
    plan = plan_study(name, cfg, tmp_path / "out", tmp_path / "store")
    names = [j["name"] for j in plan["to_run"]]
    for seed in cfg.study["seeds"]:
        assert any(n.endswith(f"-s{seed}") for n in names), (seed, names)
    assert not (tmp_path / "out").exists() and not (tmp_path / "store").exists()


def test_records_call_a_checkout_dirty_for_code_changes_not_for_the_reproductions_own_outputs(tmp_path):
    """``ssnas reproduce`` rewrites docs/reproduction*.md and results/reproduction/ in the checkout it runs
    from: sub-runs after a rebuild must not be recorded as ``+dirty`` for that, but a code change must be."""
    from ssnas.studies.store import _git_commit

    def git(*args):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path, check=True,
                       capture_output=True)

    files = {"src/code.py": "x = 1\n", "docs/reproduction.md": "old\n", "docs/img/reproduction/a.txt": "a\n",
             "results/reproduction/proxy/s/r.json": "{}\n", "docs/design.md": "d\n"}
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    git("init", "-q")
    git("add", "-A")
    git("commit", "-qm", "init")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True, text=True).stdout.strip()
    here = tmp_path / "src"
    assert _git_commit(here) == head
    for name in ("docs/reproduction.md", "docs/img/reproduction/a.txt", "results/reproduction/proxy/s/r.json"):
        (tmp_path / name).write_text("rewritten by ssnas reproduce\n")
    assert _git_commit(here) == head
    for name in ("src/code.py", "docs/design.md"):
        (tmp_path / name).write_text("changed by hand\n")
        assert _git_commit(here) == head + "+dirty", name
        git("checkout", "--", name)
