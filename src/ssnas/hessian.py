"""The Hessian of a loss w.r.t. a few parameters (the architecture α) and its dominant eigenvalue.

RobustDARTS tracks the dominant eigenvalue of ∇²_α L_valid as a sign of architecture degeneration (paper §4.5,
Fig. 4). It builds the *exact* Hessian by double autograd (56–224 dims for DARTS's α) and adds the arch weight
decay to it (+wd·I). For larger α, Hessian-vector products with power iteration give the same eigenvalue without
ever forming the matrix. Both are here; ``method="auto"`` picks the exact one when it is cheap.
"""
from __future__ import annotations

from typing import Callable, Sequence, Tuple

import torch

MAX_EXACT_DIM = 128
HESSIAN_ROWS_PER_PASS = 16
POWER_ITERS = 500
POWER_TOL = 1e-4  # residual tolerance: the eigenvalue error is about tol²·λ²/gap, at most tol·|λ|
POWER_SEED = 0
METHODS = ("auto", "exact", "power")
WHICH = ("largest", "magnitude")


def _flat_grad(outputs: torch.Tensor, params: Sequence[torch.Tensor], **kwargs) -> torch.Tensor:
    grads = torch.autograd.grad(outputs, list(params), allow_unused=True, materialize_grads=True, **kwargs)
    return torch.cat([g.reshape(g.shape[0], -1) if kwargs.get("is_grads_batched") else g.reshape(-1)
                      for g in grads], dim=-1)


def hessian_matrix(loss: torch.Tensor, params: Sequence[torch.Tensor],
                   rows_per_pass: int = HESSIAN_ROWS_PER_PASS) -> torch.Tensor:
    """Exact Hessian (n, n) of scalar ``loss`` w.r.t. the flattened ``params`` by double autograd.

    Row i is ∂(∇loss)_i/∂params; ``rows_per_pass`` rows share one vectorised backward (``is_grads_batched``),
    which is several times faster than one backward per row but holds that many backward graphs in memory.
    """
    grad = _flat_grad(loss, params, create_graph=True)
    n = grad.numel()
    if not grad.requires_grad:  # loss is (at most) linear in params
        return grad.new_zeros(n, n)
    eye = torch.eye(n, dtype=grad.dtype, device=grad.device)
    return torch.cat([_flat_grad(grad, params, grad_outputs=eye[i:i + rows_per_pass], is_grads_batched=True,
                                 retain_graph=True) for i in range(0, n, rows_per_pass)])


def _power_iteration(hvp: Callable[[torch.Tensor], torch.Tensor], v: torch.Tensor, shift: float, iters: int,
                     tol: float) -> float:
    """Eigenvalue of largest magnitude of (H − shift·I) by power iteration; stops when the residual
    ‖(H − shift)v − λv‖ ≤ tol·|λ| (then λ is within tol·|λ| of an eigenvalue)."""
    v = v / v.norm()
    lam = 0.0
    for _ in range(iters):
        w = hvp(v) - shift * v
        lam = float(v @ w)  # Rayleigh quotient
        residual = float((w - lam * v).norm())
        norm = w.norm()
        if residual <= tol * abs(lam) or norm == 0:
            break
        v = w / norm
    return lam


def dominant_eigenvalue(loss_fn: Callable[[], torch.Tensor], params: Sequence[torch.Tensor], method: str = "auto",
                        max_exact: int = MAX_EXACT_DIM, iters: int = POWER_ITERS, tol: float = POWER_TOL,
                        weight_decay: float = 0.0, which: str = "largest",
                        seed: int = POWER_SEED) -> Tuple[float, str]:
    """Dominant eigenvalue of ∇²loss (+ ``weight_decay``·I, as RobustDARTS logs it) and the method used.

    ``which="largest"`` returns the largest (algebraic) eigenvalue, RobustDARTS's number; ``"magnitude"`` the
    one of largest magnitude. ``"exact"`` runs ``torch.linalg.eigvalsh`` on :func:`hessian_matrix`; ``"power"``
    runs power iteration on Hessian-vector products from a start vector drawn with ``torch.Generator(seed)``
    (for ``"largest"`` with a negative dominant eigenvalue λ_d it reruns on H − λ_d·I, which is positive
    semidefinite with top eigenvalue λ_max − λ_d). ``"auto"``: exact when ≤ ``max_exact`` scalars, else power.
    """
    if method not in METHODS:
        raise ValueError(f"method {method!r}, expected one of {METHODS}")
    if which not in WHICH:
        raise ValueError(f"which {which!r}, expected one of {WHICH}")
    params = list(params)
    n = sum(p.numel() for p in params)
    if method == "auto":
        method = "exact" if n <= max_exact else "power"
    loss = loss_fn()
    if method == "exact":
        h = hessian_matrix(loss, params)
        h = 0.5 * (h + h.T) + weight_decay * torch.eye(n, dtype=h.dtype, device=h.device)
        eig = torch.linalg.eigvalsh(h)
        value = eig[-1] if which == "largest" else eig[torch.argmax(eig.abs())]
        return float(value), method

    grad = _flat_grad(loss, params, create_graph=True)

    def hvp(v: torch.Tensor) -> torch.Tensor:
        hv = _flat_grad(grad @ v, params, retain_graph=True) if grad.requires_grad else torch.zeros_like(v)
        return hv + weight_decay * v

    generator = torch.Generator().manual_seed(seed)
    start = torch.randn(n, generator=generator, dtype=torch.float64).to(dtype=grad.dtype, device=grad.device)
    dominant = _power_iteration(hvp, start, 0.0, iters, tol)
    if which == "largest" and dominant < 0:
        dominant = dominant + _power_iteration(hvp, start, dominant, iters, tol)
    return dominant, method
