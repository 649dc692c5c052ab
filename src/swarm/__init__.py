"""swarm: distributed execution for Python with Ray's programming model and API.

    import swarm as ray
    ray.init()
    @ray.remote
    def f(x): return x * 2
    ray.get([f.remote(i) for i in range(4)])

Packages: ``core`` (the runtime in every process: submission, objects, references, wire protocol),
``node`` (the per-node manager: leases, worker pool, shared-memory object store), ``util``
(drop-ins and helpers). This module re-exports the public API from ``api.py``.
"""

from swarm import actor, exceptions
from swarm.actor import ActorClass, ActorHandle, method
from swarm.api import (
    available_resources,
    cancel,
    cluster_resources,
    get,
    get_actor,
    get_runtime_context,
    init,
    is_initialized,
    kill,
    nodes,
    put,
    remote,
    shutdown,
    wait,
)
from swarm.object_ref import ObjectRef
from swarm.timeline import timeline

__version__ = "0.1.0"

__all__ = ["init", "shutdown", "is_initialized", "remote", "get", "wait", "put", "get_runtime_context",
           "cluster_resources", "available_resources", "nodes", "ObjectRef", "exceptions", "__version__",
           "kill", "get_actor", "cancel", "timeline", "method", "actor", "ActorClass", "ActorHandle"]
