"""Trial schedulers (``ray.tune.schedulers``): after each result, go on or stop early.

    result ──▶ scheduler.on_trial_result(controller, trial, result) ──▶ CONTINUE | STOP
                 FIFOScheduler        never stops a trial
                 ASHAScheduler        asynchronous successive halving (rungs at grace_period·rf^k)
                 MedianStoppingRule   best-so-far below the median of the others' running means
"""

from swarm.tune.schedulers.async_hyperband import ASHAScheduler, AsyncHyperBandScheduler
from swarm.tune.schedulers.median_stopping_rule import MedianStoppingRule
from swarm.tune.schedulers.trial_scheduler import FIFOScheduler, TrialScheduler

__all__ = ["TrialScheduler", "FIFOScheduler", "AsyncHyperBandScheduler", "ASHAScheduler",
           "MedianStoppingRule"]
