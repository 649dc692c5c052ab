"""Search algorithms: where trial configs come from (``ray.tune.search``).

    param_space ──▶ BasicVariantGenerator (grid × random samples, built in)   ─┐
                └─▶ Searcher (OptunaSearch, ConcurrencyLimiter, your own)      │ next_config(trial_id)
                      └─ wrapped in SearchGenerator (counts num_samples)       ─┴──▶ controller

``sample.py`` holds the domains (``uniform``, ``choice``, ...), ``variant_generator.py`` resolves them.
"""

from swarm.tune.search.basic_variant import BasicVariantGenerator
from swarm.tune.search.search_algorithm import SearchAlgorithm, SearchGenerator
from swarm.tune.search.searcher import ConcurrencyLimiter, Searcher

__all__ = ["BasicVariantGenerator", "SearchAlgorithm", "SearchGenerator", "Searcher", "ConcurrencyLimiter"]
