"""Errors of ``swarm.serve``, with Ray Serve's names.

A replica that dies under a request surfaces as ``swarm.exceptions.ActorDiedError`` (what Ray raises
too); the errors here are Serve's own decisions: no replica can take the request, or too many wait.
"""

from __future__ import annotations

from swarm.exceptions import SwarmError


class RayServeException(SwarmError):
    """A misuse of the Serve API or a Serve-level failure (e.g. an application failed to deploy)."""


class BackPressureError(RayServeException):
    """The deployment's queue of waiting requests is full (``max_queued_requests``): retry later."""

    def __init__(self, num_queued_requests: int, max_queued_requests: int, deployment: str = "") -> None:
        self.num_queued_requests = num_queued_requests
        self.max_queued_requests = max_queued_requests
        super().__init__(f"Request dropped: {num_queued_requests} requests already wait for a replica of "
                         f"deployment {deployment!r} (max_queued_requests={max_queued_requests}); retry "
                         f"later or raise max_queued_requests / num_replicas")

    def __reduce__(self) -> tuple:
        return (_rebuild_backpressure, (self.num_queued_requests, self.max_queued_requests, str(self)))


def _rebuild_backpressure(num: int, limit: int, message: str) -> BackPressureError:
    err = BackPressureError.__new__(BackPressureError)
    err.num_queued_requests, err.max_queued_requests = num, limit
    Exception.__init__(err, message)
    return err


class DeploymentUnavailableError(RayServeException):
    """The deployment cannot take requests: it was deleted, failed to deploy, or Serve shut down."""


class RequestCancelledError(RayServeException):
    """The request was cancelled (``DeploymentResponse.cancel()``) before it finished."""


ServeException = RayServeException
