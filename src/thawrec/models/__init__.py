"""Models: rankers, cold-start systems, their baselines and the clustering methods.

Importing this package registers every built-in model with :mod:`thawrec.registry` (each module
registers its classes with ``@register``); the registry imports it by name on the first lookup.
"""

from thawrec.models import dauc, mail, poso, uie  # noqa: F401 - registration
from thawrec.models.baselines import (completer, dccae, dec, melu, meta_embedding, mwuf,  # noqa: F401
                                      shallow_clusterers)
from thawrec.models.rankers import base_dnn, dmr, ple, ple_cl, ple_tl  # noqa: F401
from thawrec.models.retrievers import couple, dssm  # noqa: F401
