"""Tune's own errors."""

from __future__ import annotations

from swarm.exceptions import SwarmError


class TuneError(SwarmError):
    """An experiment-level failure: bad configuration, unrestorable state, or trials that failed."""
