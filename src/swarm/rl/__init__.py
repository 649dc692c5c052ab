"""Distributed reinforcement learning on swarm's public API (``put``/``get``/``wait``, actors, ``kill``).

- :mod:`swarm.rl.policy`: a NumPy MLP policy over one flat float32 parameter vector;
- :mod:`swarm.rl.worker`: the rollout worker actor, which keeps a Gymnasium environment across calls;
- :mod:`swarm.rl.es` / :mod:`swarm.rl.pg`: evolution strategies (OpenAI-ES) and policy gradient learners;
- :mod:`swarm.rl.trainer`: the loop that broadcasts parameters through the object store, consumes
  rollouts with ``wait`` as they finish, and replaces rollout workers that die.

Gymnasium is needed only to run environments (``pip install gymnasium``), not to import this package.

    from swarm.rl import TrainConfig, train
    result = train(TrainConfig(env_id="CartPole-v1", algo="es", num_workers=2), log=print)
"""

from swarm.rl.base import Adam, Job, Learner
from swarm.rl.es import ESConfig, ESLearner, centered_ranks
from swarm.rl.noise import make_noise_table
from swarm.rl.pg import PGConfig, PGLearner
from swarm.rl.policy import MLPPolicy
from swarm.rl.presets import PRESETS, config_for
from swarm.rl.trainer import HEADER, IterationRecord, TrainConfig, Trainer, TrainResult, train
from swarm.rl.worker import RolloutWorker, start_worker

__all__ = ["Adam", "Job", "Learner", "ESConfig", "ESLearner", "centered_ranks", "make_noise_table",
           "PGConfig", "PGLearner", "MLPPolicy", "PRESETS", "config_for", "HEADER", "IterationRecord",
           "Trainer", "TrainConfig", "TrainResult", "train", "RolloutWorker", "start_worker"]
