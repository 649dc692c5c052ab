"""Optuna-backed search: ``from swarm.tune.search.optuna import OptunaSearch`` (needs ``pip install
optuna``; the library is imported when an ``OptunaSearch`` is created, not before)."""

from swarm.tune.search.optuna.optuna_search import OptunaSearch

__all__ = ["OptunaSearch"]
