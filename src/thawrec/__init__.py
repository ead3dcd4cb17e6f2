"""thawrec: cold-start recommendation systems, their baselines and their papers' protocols."""

from thawrec.errors import ThawrecError

__version__ = "0.1.0"
__all__ = ["ThawrecError", "__version__"]
