"""Exact Hessian vs finite differences, and exact vs power-iteration dominant eigenvalues (RobustDARTS, Fig. 4)."""
import pytest
import torch
import torch.nn.functional as F

from ssnas.darts.model_search import DartsSearchNetwork
from ssnas.hessian import dominant_eigenvalue, hessian_matrix

FD_STEP = 1e-5
FD_COLUMN_STRIDE = 5  # finite differences on every 5th column keep the test quick


def _known_quadratic(eigenvalues):
    """0.5·xᵀAx + bᵀx over x split into two tensors (2 + rest), with A = Q diag(eigenvalues) Qᵀ."""
    torch.manual_seed(0)
    n = len(eigenvalues)
    q, _ = torch.linalg.qr(torch.randn(n, n, dtype=torch.float64))
    a = q @ torch.diag(torch.tensor(eigenvalues, dtype=torch.float64)) @ q.T
    b = torch.randn(n, dtype=torch.float64)
    params = [torch.randn(2, dtype=torch.float64, requires_grad=True),
              torch.randn(n - 2, dtype=torch.float64, requires_grad=True)]

    def loss_fn():
        x = torch.cat(params)
        return 0.5 * x @ a @ x + b @ x

    return a, params, loss_fn


def _tiny_darts():
    torch.manual_seed(0)
    # layers=3: cell 0 normal, cells 1-2 reduce (with layers=2 both cells reduce and α_normal would be unused)
    model = DartsSearchNetwork(C=2, num_classes=3, layers=3, space="s1").double()
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    y = torch.tensor([0, 2])
    return model, lambda: F.cross_entropy(model(x), y)


def _finite_difference_hessian(loss_fn, params, columns=None):
    """Central differences of the autograd gradient: the Hessian's ``columns`` (all by default)."""
    def grad():
        return torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss_fn(), params, allow_unused=True,
                                                                    materialize_grads=True)])
    with torch.no_grad():
        flat = [(p.view(-1), i) for p in params for i in range(p.numel())]
    out = []
    for column in range(len(flat)) if columns is None else columns:
        p, i = flat[column]
        with torch.no_grad():
            p[i] += FD_STEP
        plus = grad()
        with torch.no_grad():
            p[i] -= 2 * FD_STEP
        minus = grad()
        with torch.no_grad():
            p[i] += FD_STEP
        out.append((plus - minus) / (2 * FD_STEP))
    return torch.stack(out, dim=1)


def test_hessian_of_quadratic_is_its_matrix():
    a, params, loss_fn = _known_quadratic([3.0, -1.0, 0.5, 2.0, 0.25])
    h = hessian_matrix(loss_fn(), params, rows_per_pass=2)  # 5 rows in passes of 2, 2, 1
    torch.testing.assert_close(h, a, rtol=0, atol=1e-12)
    torch.testing.assert_close(h, _finite_difference_hessian(loss_fn, params), rtol=0, atol=1e-7)


def test_hessian_of_linear_loss_is_zero():
    w = torch.ones(3, requires_grad=True)
    assert torch.equal(hessian_matrix((2 * w).sum(), [w]), torch.zeros(3, 3))


@pytest.mark.parametrize("method", ["exact", "power"])
def test_eigenvalues_of_known_matrix(method):
    _, params, loss_fn = _known_quadratic([-5.0, 2.0, 1.0, 0.5, -0.1])
    largest, used = dominant_eigenvalue(loss_fn, params, method=method, which="largest")
    magnitude, _ = dominant_eigenvalue(loss_fn, params, method=method, which="magnitude")
    shifted, _ = dominant_eigenvalue(loss_fn, params, method=method, weight_decay=1e-3)
    assert used == method
    assert largest == pytest.approx(2.0, rel=1e-5)
    assert magnitude == pytest.approx(-5.0, rel=1e-5)
    assert shifted == pytest.approx(2.001, rel=1e-5)  # RobustDARTS logs H + wd·I


def test_auto_picks_exact_below_max_exact_and_power_above():
    _, params, loss_fn = _known_quadratic([4.0, 1.0, 0.5])
    assert dominant_eigenvalue(loss_fn, params)[1] == "exact"
    value, used = dominant_eigenvalue(loss_fn, params, max_exact=2)
    assert used == "power" and value == pytest.approx(4.0, rel=1e-5)


def test_exact_hessian_of_tiny_darts_matches_finite_differences():
    model, loss_fn = _tiny_darts()
    params = model.arch_parameters()
    exact = hessian_matrix(loss_fn(), params)
    assert exact.shape == (56, 56)
    columns = list(range(0, 56, FD_COLUMN_STRIDE))  # both α_normal (0-27) and α_reduce (28-55)
    numeric = _finite_difference_hessian(loss_fn, params, columns)
    scale = exact.abs().max()
    assert scale > 1e-3  # a real curvature, not a zero matrix
    torch.testing.assert_close(exact[:, columns], numeric, rtol=0, atol=1e-6 * float(scale))
    torch.testing.assert_close(exact, exact.T, rtol=0, atol=1e-10 * float(scale))


def test_exact_and_power_dominant_eigenvalue_agree_on_tiny_darts():
    model, loss_fn = _tiny_darts()
    params = model.arch_parameters()
    exact, _ = dominant_eigenvalue(loss_fn, params, method="exact", weight_decay=1e-3)
    power, _ = dominant_eigenvalue(loss_fn, params, method="power", weight_decay=1e-3)
    again, _ = dominant_eigenvalue(loss_fn, params, method="power", weight_decay=1e-3)
    assert exact > 0
    assert power == pytest.approx(exact, rel=1e-3)
    assert again == power  # seeded start vector: deterministic
