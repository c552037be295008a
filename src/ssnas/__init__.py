"""ssnas: single-stage differentiable neural architecture search for semantic segmentation.

The layout follows the paper ("The devil is in discretization discrepancy", Subbotko et al.):
``space`` holds the search space of §3.1 (Eq. 1-3), ``engine`` the single-stage protocol of §3.2-3.3,
``data`` and ``evaluation`` the Cityscapes/your-own-data pipeline, ``studies`` the experiments of §4,
``darts`` the DARTS/RobustDARTS spaces of §4.5, ``export`` deployment of a trained supernet.

The Python API (``ssnas.api``) is imported on first use, so that ``import ssnas`` (and the CLI's start)
stays light: ``ssnas.create_model``, ``ssnas.list_variants``, ``ssnas.load``, ``ssnas.predict``.
"""
from typing import TYPE_CHECKING

__version__ = "0.1.0"

from ssnas.errors import UserError  # noqa: E402

if TYPE_CHECKING:  # type checkers see the real signatures (py.typed)
    from ssnas.api import create_model, list_variants, load, predict  # noqa: F401

_API = ("create_model", "list_variants", "load", "predict")
__all__ = ["UserError", "__version__", *_API]


def __getattr__(name):
    if name in _API:
        from ssnas import api
        return getattr(api, name)
    raise AttributeError(f"module 'ssnas' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_API))
