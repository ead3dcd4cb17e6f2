"""What every suite shares: declarative plans, the seed loop, ranking fits, and results output."""

from thawrec.suites.common.plan import Entry, slug
from thawrec.suites.common.runner import Outcome, SeedLog, run_plan

__all__ = ["Entry", "slug", "Outcome", "SeedLog", "run_plan"]
