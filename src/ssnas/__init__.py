"""ssnas: single-stage differentiable neural architecture search for semantic segmentation.

The layout follows the paper ("The devil is in discretization discrepancy", Subbotko et al.):
``space`` holds the search space of §3.1 (Eq. 1-3), ``engine`` the single-stage protocol of §3.2-3.3,
``data`` and ``evaluation`` the Cityscapes/your-own-data pipeline, ``studies`` the experiments of §4,
``darts`` the DARTS/RobustDARTS spaces of §4.5, ``export`` deployment of a trained supernet.
"""
import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # albumentations would phone home on import

__version__ = "0.1.0"

from ssnas.errors import UserError  # noqa: E402

__all__ = ["UserError", "__version__"]
