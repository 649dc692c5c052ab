"""A joblib parallel backend named ``"swarm"``: ``Parallel`` batches run as swarm tasks.

    import joblib
    from swarm.util.joblib import register_swarm

    register_swarm()
    with joblib.parallel_backend("swarm"):
        squares = joblib.Parallel(n_jobs=-1)(joblib.delayed(square)(x) for x in range(1000))
        GridSearchCV(SVC(), grid, n_jobs=-1).fit(X, y)      # scikit-learn's n_jobs too

How it runs: joblib groups calls into batches (sized automatically, ``AutoBatchingMixin``: about
0.2-2 s of work each) and hands each batch to ``submit``; a batch is one swarm task, submitted
through ``swarm.util.executor.Executor`` with at most ``n_jobs`` in flight, and joblib's completion
callback runs on that executor's relay thread (never on swarm's own threads). ``n_jobs=-1`` means
the cluster's CPUs. joblib (1.3 or later: the ``submit`` backend API) is an optional dependency,
imported by ``register_swarm()``.
"""

from __future__ import annotations

from typing import Any

import swarm

__all__ = ["register_swarm"]

_BACKEND_CLASS: Any = None


def register_swarm() -> None:
    """Register the ``"swarm"`` joblib backend (``joblib.parallel_backend("swarm")``)."""
    try:
        import joblib
    except ImportError:
        raise ImportError("swarm.util.joblib needs joblib, which is not installed: "
                          "`pip install joblib`") from None
    joblib.register_parallel_backend("swarm", _backend_class())


def _cluster_cpus() -> int:
    if not swarm.is_initialized():
        swarm.init()
    return max(1, int(swarm.cluster_resources().get("CPU", 1)))


def _backend_class() -> Any:
    """The backend class, defined on first use (it subclasses joblib's, which may be absent)."""
    global _BACKEND_CLASS
    if _BACKEND_CLASS is not None:
        return _BACKEND_CLASS
    from joblib._parallel_backends import AutoBatchingMixin, ParallelBackendBase

    from swarm.util.executor import Executor

    class SwarmBackend(AutoBatchingMixin, ParallelBackendBase):
        """joblib backend running each batch of calls as one swarm task.

        Keyword arguments (``parallel_backend("swarm", **kwargs)``): ``swarm_remote_args`` (alias
        ``ray_remote_args``), task options for the batches (``num_cpus``, ``resources``, ...).
        """

        supports_retrieve_callback = True
        supports_sharedmem = False
        uses_threads = False
        default_n_jobs = -1

        def __init__(self, nesting_level: int | None = None, inner_max_num_threads: int | None = None,
                     swarm_remote_args: dict | None = None, ray_remote_args: dict | None = None,
                     **backend_kwargs: Any) -> None:
            super().__init__(nesting_level=nesting_level, inner_max_num_threads=inner_max_num_threads,
                             **backend_kwargs)
            self._task_options = {**(ray_remote_args or {}), **(swarm_remote_args or {})}
            self._executor: Executor | None = None
            self._n_jobs = 1

        def effective_n_jobs(self, n_jobs: int | None) -> int:
            if n_jobs == 0:
                raise ValueError("n_jobs == 0 in Parallel has no meaning")
            if n_jobs is None:
                return 1
            if n_jobs < 0:
                return max(_cluster_cpus() + 1 + n_jobs, 1)
            return n_jobs

        def configure(self, n_jobs: int | None = 1, parallel: Any = None, prefer: Any = None,
                      require: Any = None, **backend_kwargs: Any) -> int:
            self._n_jobs = self.effective_n_jobs(n_jobs)
            self.parallel = parallel
            if self._executor is None:
                self._executor = Executor(max_workers=self._n_jobs, **self._task_options)
            return self._n_jobs

        def submit(self, func: Any, callback: Any = None) -> Any:
            if self._executor is None:
                self.configure(self._n_jobs, self.parallel)
            assert self._executor is not None
            fut = self._executor.submit(func)
            if callback is not None:
                fut.add_done_callback(callback)
            return fut

        def retrieve_result_callback(self, out: Any) -> Any:
            return out.result()

        def retrieve_result(self, out: Any, timeout: float | None = None) -> Any:
            return out.result(timeout)

        def terminate(self) -> None:
            executor, self._executor = self._executor, None
            if executor is not None:
                executor.shutdown(wait=False, cancel_futures=True)
            self.reset_batch_stats()

        def abort_everything(self, ensure_ready: bool = True) -> None:
            """A call failed: drop the batches not started yet (running ones finish, unread)."""
            self.terminate()
            if ensure_ready and self.parallel is not None:
                self.configure(n_jobs=self.parallel.n_jobs, parallel=self.parallel)

    SwarmBackend.__module__ = __name__
    _BACKEND_CLASS = SwarmBackend
    return SwarmBackend
