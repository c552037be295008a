"""The one training engine: the single-stage searching protocol (§3.2-3.3).

    warmup   — weights only, on batches from A;
    search   — per iteration: update w by ∇_w L_A on a batch from A (SGD), then α, β by
               ∇_{α,β} (L_B + L_ent) on a *separate* batch from B (Adam);
    finetune — architecture frozen, weights only (the supernet is the final model: no decoding).

A classic search-only run is ``finetune: 0``; a fixed-architecture (re)training is ``warmup: 0,
search: 0, finetune: 1`` (with ``model.architecture_from`` / ``discretize_*`` for the two-stage
baseline); DARTS is another task. Everything is configuration of this loop.

The engine knows no task and no search space: the task (``ssnas.tasks``, chosen by ``cfg.task`` from the
task registry) builds the model and the data; hooks (``engine/hooks.py``) act at named points of the loop.
"""
from __future__ import annotations

import json
import math
import random
import signal
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch

from ssnas.arch import arch_entropies, entropy_loss
from ssnas.config import config_hash, to_dict
from ssnas.engine import distributed
from ssnas.engine.checkpoint import atomic_write_bytes, load_checkpoint, save_checkpoint
from ssnas.engine.hooks import Hook, as_hook
from ssnas.engine.logger import RunLogger, keep_records
from ssnas.engine.precision import resolve_amp
from ssnas.engine.rundir import RunDir
from ssnas.engine.schedule import (FINETUNE, SEARCH, Phases, arch_steps, cosine_lr_factor, entropy_scale,
                                  poly_lr_factor, scaled_arch_lr)
from ssnas.errors import UserError
from ssnas.hardware import STEADY_ALLOCATOR, steady_allocator


class RunStopped(UserError):
    """The run stopped itself (diverged); the last good checkpoint is intact."""


class Trainer:
    def __init__(self, cfg, out_dir: str | Path, task=None, resume: bool = False, overwrite: bool = False,
                 hooks=(), costs: bool = True):
        self.cfg = cfg
        if task is None:
            from ssnas.tasks import build_task
            task = build_task(cfg)   # the registered task cfg.task names
        self.task = task
        self.run_dir = RunDir(out_dir)
        self.resume, self.overwrite = resume, overwrite
        # the caller's, the task's own (Hessian tracking included), then the plots at the end of the run
        self.hooks = [as_hook(h) for h in hooks] + [as_hook(h) for h in self.task.hooks()] + [PlotHook()]
        self.phases = Phases.from_config(cfg.protocol)
        self._stop_signal = None
        self.costs = costs  # params/GFLOPs of supernet and fused net at the end (1-3 s; studies skip them)

    # ================================================================== set-up
    def _setup(self) -> None:
        cfg = self.cfg
        self.ctx = distributed.init(cfg.run.device)
        self.device = self.ctx.device
        if cfg.run.threads and self.device.type == "cpu":
            torch.set_num_threads(cfg.run.threads)
        # large activations reused from the heap, not mapped and page-faulted anew each step (docs/benchmarks.md)
        self.allocator = STEADY_ALLOCATOR if (cfg.run.steady_allocator and self.device.type == "cpu"
                                              and steady_allocator()) else "default"
        if cfg.run.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False
        # Every input is checked before the run folder is made or an old run replaced (RunDir.check): the
        # folder's refusals, then the task's config, the data, the checkpoints the model starts from, the cost
        # table; the folder is prepared last.
        if self.ctx.is_main:
            self.run_dir.check(cfg, self.resume, self.overwrite)
        self.task.check()
        seed_everything(cfg.seed)  # identical initial weights and α, β on every rank
        model = self.task.build_model()
        model = distributed.convert_batchnorm(model, self.ctx).to(self.device)
        if cfg.run.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        self.forward_model = distributed.wrap_ddp(model, self.ctx)
        if cfg.run.compile:
            self.forward_model = torch.compile(self.forward_model)
        o, a = cfg.optim, cfg.arch_optim
        # the hot path's lists, built once: ~860 weight tensors and the BN statistics the NaN guard restores
        self._weights, self._arch = model.weight_parameters(), model.arch_parameters()
        self._guarded = [b for b in model.buffers() if b.dtype != torch.bool]
        self._snapshot = None
        # fused: one kernel over all ~860 tensors instead of a Python loop (CPU and CUDA have one)
        fused = self.device.type in ("cpu", "cuda")
        self.opt_w = torch.optim.SGD(self._weights, lr=o.lr, momentum=o.momentum,
                                     weight_decay=o.weight_decay, nesterov=o.nesterov, fused=fused)
        self.streams = self.task.build_streams(self.ctx.rank, self.ctx.world)
        p = cfg.protocol
        self.iters = p.iters_per_epoch or self.streams["a"].batches_per_pass
        self.arch_lr = scaled_arch_lr(a.lr, a.reference_steps, arch_steps(self.phases, self.iters))
        self.opt_a = torch.optim.Adam(self._arch, lr=self.arch_lr, betas=tuple(a.betas),
                                      weight_decay=a.weight_decay)
        self.total_steps = p.epochs * self.iters
        from ssnas.cost.term import build_cost_term
        self.cost_term = build_cost_term(cfg, model)   # cost-aware search (cost/term.py); None: off (default)
        self.state = {"epoch": 0, "iter": 0, "step": 0, "bad_steps": 0, "skipped_steps": 0,
                      "best_score": -math.inf, "acc": {}, "entropy_search_start": None,
                      "entropy_search_end": None, "wall_time": 0.0, "initial_entropy": arch_entropies(model)}
        # mixed precision: bf16 autocast (CPU or CUDA) or fp16 with a gradient scaler (CUDA); ``auto`` never
        # picks fp16, so the scaler depends on the setting alone
        amp = cfg.run.amp
        self.scaler = torch.amp.GradScaler("cuda") if amp == "fp16" and self.device.type == "cuda" else None
        has_ckpt = self.run_dir.prepare(cfg, self.resume, self.overwrite) if self.ctx.is_main else False
        if distributed.broadcast_flag(has_ckpt, self.ctx):
            self._load(self.run_dir.last)
        if "amp" not in self.state:  # resolved once per run (a resumed run keeps it); rank 0 decides for all
            main = self.ctx.is_main or amp != "auto"
            used, reason = resolve_amp(amp, self.device) if main else ("none", "chosen by rank 0")
            if amp == "auto" and distributed.broadcast_flag(used == "bf16", self.ctx):
                used = "bf16"
            self.state["amp"], self.state["amp_reason"] = used, reason
        self.autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.state["amp"])
        if self.resume and self.ctx.is_main:
            keep_records(self.run_dir.path / "metrics.jsonl", self.state["epoch"])
        self.logger = RunLogger(self.run_dir.path, self.ctx.is_main, cfg.run.tensorboard, cfg.run.progress,
                                self.total_steps, self.state["step"])

    def _autocast(self):
        if self.autocast_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    # ================================================================== steps
    def _to_device(self, batch: dict) -> dict:
        if "seed" in batch:  # a training batch: augmented on the device
            batch = self.task.augment(batch, self.device)
        out = dict(batch)
        for k in ("image", "label"):
            out[k] = batch[k].to(self.device, non_blocking=True)
        if self.cfg.run.channels_last:
            out["image"] = out["image"].contiguous(memory_format=torch.channels_last)
        return out

    def _set_lr(self) -> tuple[float, float]:
        o = self.cfg.optim
        if o.schedule == "cosine":
            lr = o.lr * cosine_lr_factor(self.state["step"], self.total_steps, o.lr, o.min_lr)
        else:
            lr = o.lr * poly_lr_factor(self.state["step"], self.total_steps, o.poly_power, o.lr, o.min_lr)
        for g in self.opt_w.param_groups:
            g["lr"] = lr
        return lr, self.arch_lr

    def weight_step(self, batch: dict) -> float | None:
        """w ← w − lr·∇_w L_A (SGD); returns the loss, or None if the step was skipped as non-finite."""
        model, arch = self.model, self._arch
        model.train()
        self._snapshot_buffers()
        saved = [p.requires_grad for p in arch]
        for p in arch:  # no architecture gradients in the weight step
            p.requires_grad_(False)
        try:
            with self._autocast():
                logits = self.forward_model(batch["image"])
                loss = self.task.loss(logits.float(), batch)
            self.opt_w.zero_grad(set_to_none=True)
            if self.scaler is not None:
                self.scaler.scale(loss).backward()
                self.scaler.unscale_(self.opt_w)
            else:
                loss.backward()
        finally:
            for p, s in zip(arch, saved):
                p.requires_grad_(s)
        clip = self.cfg.optim.grad_clip
        norm = torch.nn.utils.clip_grad_norm_(self._weights, clip if clip else math.inf)
        finite, value = to_host(torch.isfinite(loss.detach()) & torch.isfinite(norm), loss)  # the step's one sync
        if not finite:
            self.opt_w.zero_grad(set_to_none=True)
            self._restore_buffers()
            if self.scaler is not None:
                self.scaler.update()
            return None
        if self.scaler is not None:
            self.scaler.step(self.opt_w)
            self.scaler.update()
        else:
            self.opt_w.step()
        return value

    def _snapshot_buffers(self) -> None:
        """Copy the BN running statistics aside: a skipped step's forward pass (which may have met an inf or
        NaN) must not reach them either. One foreach copy into tensors kept from step to step (no ~700
        clones per step)."""
        with torch.no_grad():
            if self._snapshot is None:
                self._snapshot = [b.detach().clone() for b in self._guarded]
            else:
                torch._foreach_copy_(self._snapshot, self._guarded)

    def _restore_buffers(self) -> None:
        with torch.no_grad():
            torch._foreach_copy_(self._guarded, self._snapshot)

    def arch_step(self, batch: dict, f_t: float) -> tuple[float, float] | None:
        """α, β ← Adam(∇_{α,β} [L_B + c·f(t)·H]) on a separate batch; gradients averaged over ranks."""
        model, arch = self.model, self._arch
        e = self.cfg.entropy
        model.train()
        self._snapshot_buffers()
        with self._autocast():
            logits = model(batch["image"])
            loss = self.task.loss(logits.float(), batch)
        ent = entropy_loss(model, e.c_alpha, e.c_beta, f_t, e.reduction).to(loss.device)
        total, extra = loss + ent, ()
        if self.cost_term is not None:   # L_B with the cost penalty (+ L_ent), and E[cost] to log
            total, expected = self.cost_term.objective(model, loss, ent)
            extra = (expected,)
        grads = torch.autograd.grad(total, arch, allow_unused=True)
        grads = [torch.zeros_like(p) if g is None else g for p, g in zip(arch, grads)]
        grads = distributed.average_gradients(grads, self.ctx)
        finite = torch.isfinite(total.detach())
        for g in grads:
            finite = finite & torch.isfinite(g).all()
        finite, loss_value, ent_value, *extra = to_host(finite, loss, ent, *extra)  # the step's one sync
        if not finite:
            self._restore_buffers()
            return None
        if extra:
            self._add("expected_cost", extra[0])
        self.opt_a.zero_grad(set_to_none=True)
        for p, g in zip(arch, grads):
            p.grad = g
        self.opt_a.step()
        return loss_value, ent_value

    # ================================================================== loop
    def run(self) -> dict:
        self._install_signal_handlers()
        try:
            self._setup()
            return self._loop()
        finally:
            self._restore_signal_handlers()
            if hasattr(self, "logger"):
                self.logger.close()
            self.run_dir.unlock()
            distributed.cleanup(getattr(self, "ctx", None))

    def _loop(self) -> dict:
        cfg, st, ph = self.cfg, self.state, self.phases
        started = time.time() - st["wall_time"]
        record = None
        if cfg.run.keep_every and st["step"] == 0:
            self._save(self.run_dir.checkpoints / "epoch_0000.pt")
        for hook in self.hooks:
            hook.run_start(self)
        while st["epoch"] < ph.epochs and not st.get("early_stop"):
            epoch = st["epoch"]
            for hook in self.hooks:  # e.g. DOTS's temperature for this epoch (also on resume)
                hook.epoch_start(self, epoch)
            phase = ph.phase(epoch)
            if phase == SEARCH and st["entropy_search_start"] is None:
                st["entropy_search_start"] = arch_entropies(self.model)
            if phase == FINETUNE and not self.model.arch_frozen:
                if st["entropy_search_end"] is None and ph.search_end > ph.warmup_end:
                    st["entropy_search_end"] = arch_entropies(self.model)
                self.model.freeze_architecture()
            stream_w = self.streams["finetune"] if phase == FINETUNE else self.streams["a"]
            epoch_start = time.time()
            while st["iter"] < self.iters:
                t = epoch + st["iter"] / self.iters
                lr, arch_lr = self._set_lr()
                loss_w = self.weight_step(self._to_device(stream_w.next()))
                self._account("loss_w", loss_w)
                f_t, out = 0.0, None
                if phase == SEARCH and not self.model.arch_frozen:
                    f_t = entropy_scale(cfg.entropy.scaling, t, ph)
                    out = self.arch_step(self._to_device(self.streams["b"].next()), f_t)
                    self._account("loss_a", None if out is None else out[0])
                    if out is not None:
                        self._add("entropy_loss", out[1])
                st["iter"] += 1
                st["step"] += 1
                if self.hooks:
                    info = {"epoch": epoch, "iter": st["iter"], "step": st["step"], "phase": phase,
                            "loss_w": loss_w, "loss_a": None if out is None else out[0]}
                    for hook in self.hooks:
                        hook.after_step(self, info)
                total, count = st["acc"].get("loss_w", (0.0, 0))
                self.logger.step(f"{phase} {epoch + 1}/{ph.epochs}", {"loss": f"{total / max(1, count):.3f}"})
                # all ranks stop at the same step (the checkpoint's barrier), whichever got the signal;
                # in an epoch's last step, only after the epoch's bookkeeping (below)
                if st["iter"] < self.iters and distributed.any_rank(self._stop_signal is not None, self.ctx):
                    return self._stop_now()
            st["epoch"] += 1
            st["iter"] = 0
            record = self._end_epoch(epoch, phase, lr, arch_lr, f_t, time.time() - epoch_start)
            st["wall_time"] = time.time() - started
            if st["epoch"] % cfg.run.checkpoint_interval == 0 or st["epoch"] == ph.epochs or st.get("early_stop"):
                self._save(self.run_dir.last)
            if cfg.run.keep_every and st["epoch"] % cfg.run.keep_every == 0:
                self._save(self.run_dir.checkpoints / f"epoch_{st['epoch']:04d}.pt")
            if (st["epoch"] < ph.epochs and not st.get("early_stop")
                    and distributed.any_rank(self._stop_signal is not None, self.ctx)):
                return self._stop_now()
        if ph.search_end > ph.warmup_end and ph.search_end == ph.epochs and st["entropy_search_end"] is None:
            st["entropy_search_end"] = arch_entropies(self.model)
        return self._finish(record)

    def _account(self, key: str, value: float | None) -> None:
        """Sum a step's loss into the epoch's accumulators, or count a skipped (non-finite) step."""
        st = self.state
        if value is None:
            st["skipped_steps"] += 1
            st["bad_steps"] += 1
            self.logger.message(f"[ssnas] non-finite {key} at step {st['step']}: step skipped "
                                f"({st['bad_steps']} in a row)")
            if st["bad_steps"] >= self.cfg.run.max_bad_steps:
                raise RunStopped(f"{st['bad_steps']} non-finite steps in a row at epoch {st['epoch'] + 1} "
                                 f"(run.max_bad_steps={self.cfg.run.max_bad_steps}); stopped, the last good "
                                 f"checkpoint {self.run_dir.last} is intact — lower optim.lr or check the data")
            return
        st["bad_steps"] = 0
        self._add(key, value)

    def _add(self, key: str, value: float) -> None:
        acc = self.state["acc"].setdefault(key, [0.0, 0])
        acc[0] += value
        acc[1] += 1

    def _end_epoch(self, epoch: int, phase: str, lr: float, arch_lr: float, f_t: float, seconds: float) -> dict:
        cfg, st = self.cfg, self.state
        means = {k: distributed.mean_scalar(s / max(1, n), self.ctx) for k, (s, n) in st["acc"].items()}
        st["acc"] = {}
        record = {"epoch": epoch + 1, "phase": phase, "lr": lr,
                  "arch_lr": arch_lr if phase == SEARCH else 0.0, "entropy_scale": f_t,
                  **means, "entropy": arch_entropies(self.model), "skipped_steps": st["skipped_steps"],
                  "time": seconds}
        if (epoch + 1) % cfg.eval.interval == 0 or epoch + 1 == self.phases.epochs:
            metrics = self.task.evaluate(self.model, self.ctx.rank, self.ctx.world)
            record.update({k: v for k, v in metrics.items() if k != "score"})
            record["score"] = metrics["score"]
            # every rank decides (the metrics are reduced, so all agree): _save holds a barrier
            if metrics["score"] > st["best_score"]:
                st["best_score"] = metrics["score"]
                self._save(self.run_dir.best)
        for hook in self.hooks:
            extra = hook.epoch_end(self, epoch, record)
            if extra:
                record.update(extra)
        self.logger.log(record, st["step"])
        score = f" score {record['score']:.4f}" if "score" in record else ""
        ents = " ".join(f"H({k}) {v['normalized']:.3f}" for k, v in record["entropy"].items())
        self.logger.message(f"epoch {epoch + 1}/{self.phases.epochs} {phase:<8} loss_w "
                            f"{record.get('loss_w', math.nan):.4f}{score} {ents} ({seconds:.1f}s)")
        return record

    # ================================================================== checkpoints
    def _payload(self) -> dict:
        st = dict(self.state)
        return {
            "space": self.task.space_record(self.model),
            **self.task.describe(),
            "model": self.model.state_dict(),
            "config": to_dict(self.cfg),
            "config_hash": config_hash(self.cfg),
            "train": {
                "optim_w": self.opt_w.state_dict(),
                "optim_a": self.opt_a.state_dict(),
                "scaler": self.scaler.state_dict() if self.scaler is not None else None,
                "state": st,
                "streams": {k: s.state_dict() for k, s in self.streams.items() if s is not None},
                "rng": rng_state(),
            },
        }

    def _save(self, path: Path) -> None:
        if self.ctx.is_main:
            save_checkpoint(path, self._payload())
        distributed.barrier(self.ctx)

    def _load(self, path: Path) -> None:
        payload = load_checkpoint(path, map_location=self.device, require=("model", "train"))
        if payload.get("config_hash") != config_hash(self.cfg):
            raise UserError(f"{path}: checkpoint of a different config, expected the run's own config")
        try:
            self.model.load_state_dict(payload["model"])
        except RuntimeError as exc:
            raise UserError(f"{path}: weights do not fit this model ({str(exc).splitlines()[0][:160]})") from None
        train = payload["train"]
        try:
            self.opt_w.load_state_dict(train["optim_w"])
            self.opt_a.load_state_dict(train["optim_a"])
            if self.scaler is not None and train.get("scaler"):
                self.scaler.load_state_dict(train["scaler"])
            self.state.update(train["state"])
            for k, s in self.streams.items():
                if s is not None and k in train["streams"]:
                    s.load_state_dict(train["streams"][k])
            set_rng_state(train["rng"])
        except (KeyError, TypeError, ValueError, RuntimeError, AttributeError, IndexError) as exc:
            raise UserError(f"{path}: damaged training state in the checkpoint ({type(exc).__name__}: "
                            f"{str(exc).splitlines()[0][:120] if str(exc) else ''}), expected what ssnas "
                            f"search writes; start again without --resume") from None

    def _stop_now(self) -> dict:
        self._save(self.run_dir.last)
        self._stop_signal = self._stop_signal or signal.SIGTERM  # a rank the signal did not reach
        name = signal.Signals(self._stop_signal).name
        self.logger.message(f"[ssnas] {name}: checkpoint written at epoch {self.state['epoch'] + 1}, step "
                            f"{self.state['step']}; continue with --resume")
        return {"stopped": name, "exit_code": 128 + int(self._stop_signal)}

    # ================================================================== the end
    def _finish(self, record: dict | None) -> dict:
        st = self.state
        final = record if record is not None and "score" in record else None
        if final is None:
            metrics = self.task.evaluate(self.model, self.ctx.rank, self.ctx.world)
            final = {k: v for k, v in metrics.items()}
        summary = {
            "score": final.get("score"),
            "miou": final.get("miou"),
            "accuracy": final.get("accuracy"),   # classification tasks (DARTS)
            "per_class_iou": final.get("per_class_iou"),
            "class_names": self.task.describe().get("classes", {}).get("names"),
            "best_score": st["best_score"],
            "phases": self.phases.ranges(),
            "epochs": self.phases.epochs,
            "steps": st["step"],
            "arch_steps": arch_steps(self.phases, self.iters),
            "arch_lr": self.arch_lr,
            "skipped_steps": st["skipped_steps"],
            "early_stop": st.get("early_stop"),   # set by a hook (DARTS-ES, engine/tracking.py)
            "entropy": _entropy_summary(st),
            "wall_time_s": st["wall_time"],
            "amp": {"setting": self.cfg.run.amp, "used": st["amp"], "reason": st["amp_reason"]},
            "allocator": self.allocator,
            "config_hash": config_hash(self.cfg),
            "checkpoint": str(self.run_dir.last),
        }
        if self.ctx.is_main:
            summary.update(self._describe_result())
            (self.run_dir.path / "summary.json").write_text(json.dumps(summary, indent=2))
        for hook in self.hooks:
            extra = hook.run_end(self, summary)
            if extra:
                summary.update(extra)
        return summary

    def _describe_result(self) -> dict:
        """Write ``architecture.json`` (space/architecture.py); the summary's ``architecture`` / ``costs``."""
        from ssnas.space.architecture import describe_architecture, network_costs, summarize_architecture

        arch = describe_architecture(self.model)
        text = json.dumps(arch, indent=2).encode()
        atomic_write_bytes(self.run_dir.path / "architecture.json", lambda f: f.write(text))
        from ssnas.space.base import SearchSpace
        crop = getattr(getattr(self.cfg, "data", None), "crop_size", None)
        if self.costs and crop and isinstance(self.model, SearchSpace):
            costs = network_costs(self.model, tuple(crop))
        else:
            costs = {"input_size": None, "supernet": {"params": sum(p.numel() for p in self.model.parameters())}}
        return {"architecture": summarize_architecture(arch), "costs": costs}

    # ================================================================== signals
    def _install_signal_handlers(self) -> None:
        self._old_handlers = {}

        def handler(signum, frame):
            if self._stop_signal is not None:  # second signal: give up at once
                raise KeyboardInterrupt
            self._stop_signal = signum

        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._old_handlers[sig] = signal.signal(sig, handler)
            except ValueError:  # not the main thread
                pass

    def _restore_signal_handlers(self) -> None:
        for sig, old in getattr(self, "_old_handlers", {}).items():
            signal.signal(sig, old)


class PlotHook(Hook):
    """The run's figures (``engine/plots.py``: entropy, training curves, the architecture) when it finishes, on
    the main rank; a failure is a message, never a lost run."""

    def run_end(self, trainer, summary: dict) -> dict | None:
        if not trainer.ctx.is_main:
            return None
        try:
            from ssnas.engine.plots import plot_run
            return {"plots": plot_run(trainer.run_dir, trainer.model, trainer.phases)}
        except Exception as exc:  # plots are a convenience: never lose a finished run over them
            trainer.logger.message(f"[ssnas] plots failed: {exc}")
            return None


def _entropy_summary(st: dict) -> dict:
    """Entropy of each architecture distribution at the start and the end of the search phase (Table 1)."""
    start = st.get("entropy_search_start") or st.get("initial_entropy") or {}
    end = st.get("entropy_search_end") or start
    return {name: {"start": start[name], "end": end.get(name, start[name])} for name in start}


def to_host(*values: torch.Tensor) -> list:
    """Scalars of several device tensors in ONE transfer (each ``float(t)`` on CUDA is a sync of its own);
    bool-typed inputs come back as bools."""
    flat = torch.stack([v.detach().reshape(()).to(torch.float64) for v in values]).tolist()
    return [bool(x) if v.dtype == torch.bool else x for v, x in zip(values, flat)]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)


def rng_state() -> dict:
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), int(np_state[2]), int(np_state[3]),
                  float(np_state[4])],
        "python": _python_state_to_plain(random.getstate()),
    }


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"].cpu())
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
    n = state["numpy"]
    np.random.set_state((n[0], n[1].numpy().astype(np.uint32), n[2], n[3], n[4]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


def _python_state_to_plain(s):
    version, internal, gauss = s
    return [version, list(internal), gauss]
