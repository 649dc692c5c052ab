"""Every error swarm raises, all under :class:`SwarmError`, each with Ray's name as an alias.

Errors cross process boundaries pickled, so each keeps only plain data (strings, ints) plus, for
:class:`TaskError`, the user's original exception when it pickles.
"""

from __future__ import annotations

from typing import Any


class SwarmError(Exception):
    """Base class of every error swarm raises."""


class TaskError(SwarmError):
    """A task or actor method raised; re-raised at ``get`` with the remote traceback.

    ``get`` raises an instance of a subclass of both ``TaskError`` and the user's exception class, so
    ``except ValueError`` works as it does locally.
    """

    def __init__(self, function_name: str, traceback_str: str, cause: BaseException | None = None,
                 pid: int | None = None, node: str | None = None, cause_repr: str | None = None,
                 cause_class: type | None = None):
        self.function_name = function_name
        self.cause_class = cause_class if cause_class is not None else (
            type(cause) if cause is not None else None)
        self.traceback_str = traceback_str
        self.cause = cause
        self.pid = pid
        self.node = node
        self.cause_repr = cause_repr if cause_repr is not None else repr(cause)
        Exception.__init__(self, self._message())  # not super(): the MRO may hold the cause's class

    def _message(self) -> str:
        where = f"pid={self.pid}" + (f", node={self.node}" if self.node else "")
        return f"{self.function_name}() failed ({where}):\n{self.traceback_str.rstrip()}"

    def __str__(self) -> str:
        return self._message()

    def __reduce__(self) -> Any:
        return (_rebuild_task_error, (self.function_name, self.traceback_str, self.cause, self.pid,
                                      self.node, self.cause_repr, self.cause_class))

    def as_instanceof_cause(self) -> TaskError:
        """This error as an instance of ``TaskError`` *and* of the cause's class (when possible)."""
        cause_cls, cause = self.cause_class, self.cause
        # a task that failed because a task it waited on failed: the innermost user error decides, so
        # `except ValueError` (or DeadlockError) works however deep it was raised
        while cause_cls is not None and issubclass(cause_cls, TaskError) and isinstance(cause, TaskError):
            cause_cls, cause = cause.cause_class, cause.cause
        if cause_cls is None or isinstance(self, cause_cls) or issubclass(cause_cls, TaskError):
            return self
        try:
            cls = _dual_class(cause_cls)
            err = cls.__new__(cls)  # type: ignore[call-overload]
            TaskError.__init__(err, self.function_name, self.traceback_str, self.cause, self.pid,
                               self.node, self.cause_repr, cause_cls)
            err.args = cause.args if cause is not None else (self.cause_repr,)
            return err
        except Exception:  # an exotic exception class (e.g. with __slots__ conflicts)
            return self


_DUAL_CLASSES: dict[type, type] = {}


def _dual_class(cause_cls: type) -> type:
    cls = _DUAL_CLASSES.get(cause_cls)
    if cls is None:
        def __reduce__(self: TaskError) -> Any:
            return TaskError.__reduce__(self)

        def __str__(self: TaskError) -> str:
            return TaskError._message(self)

        cls = type(f"TaskError({cause_cls.__name__})", (TaskError, cause_cls),
                   {"__reduce__": __reduce__, "__str__": __str__, "__module__": __name__})
        _DUAL_CLASSES[cause_cls] = cls
    return cls


def _rebuild_task_error(function_name: str, tb: str, cause: BaseException | None, pid: int | None,
                        node: str | None, cause_repr: str | None,
                        cause_class: type | None = None) -> TaskError:
    return TaskError(function_name, tb, cause, pid, node, cause_repr, cause_class)


class GetTimeoutError(SwarmError, TimeoutError):
    """``get`` or ``wait`` gave up after its ``timeout``."""


class WorkerCrashedError(SwarmError):
    """The worker process running a task died (signal, exit, out of memory) and retries ran out."""


class ActorDiedError(SwarmError):
    """The actor is dead: its process died, it was killed, or its constructor raised."""


class ActorUnavailableError(SwarmError):
    """The actor cannot be reached right now (e.g. it is restarting)."""


class TaskCancelledError(SwarmError):
    """The task was cancelled with ``cancel``."""


class ObjectLostError(SwarmError):
    """Every copy of the object is gone and it cannot be rebuilt."""


class OwnerDiedError(ObjectLostError):
    """The process that owned the object (called ``put`` or submitted its task) died."""


class ObjectStoreFullError(SwarmError):
    """The object store has no room for the object."""


class OutOfMemoryError(SwarmError):
    """A worker was killed because the node ran low on memory."""


class NodeDiedError(SwarmError):
    """The node running the task died."""


class AuthenticationError(SwarmError):
    """The peer does not know the cluster token (or we don't)."""


class ProtocolVersionError(SwarmError):
    """The peer speaks an incompatible version of the wire protocol."""


class TaskUnschedulableError(SwarmError):
    """No node of the cluster could ever satisfy the task's resource request."""


class DeadlockError(SwarmError):
    """Actors wait on each other in a cycle (each blocked in ``get`` on a call to the next)."""


class RuntimeEnvSetupError(SwarmError):
    """The runtime_env of a task, actor or job could not be set up (its package is missing, ...)."""


class SerializationError(SwarmError, TypeError):
    """An argument or return value cannot be pickled; the message names the offending attribute."""


# Ray's names, so `except ray.exceptions.RayTaskError` keeps working after `import swarm as ray`.
RayError = SwarmError
RayTaskError = TaskError
RayActorError = ActorDiedError
RaySystemError = SwarmError
ObjectFetchTimedOutError = GetTimeoutError
