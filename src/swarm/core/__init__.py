"""The runtime inside every swarm process (driver or worker): its core worker.

    user code ──▶ core_worker.CoreWorker ──▶ submitter.TaskSubmitter ──lease──▶ node manager
                      │  refs, values, waiters        │ PUSH_TASK (batched)
                      │                               ▼
                      │                       a leased worker: worker_main.TaskExecutor
                      │                               │ TASK_DONE
                      ◀───────────────────────────────┘
                  actor_submitter (caller side) ──ACTOR_TASK──▶ actor_host (actor side)
                  shm.ArenaAccess: read-only views of the node's arena (pinned while alive)

Modules: ``protocol`` (message kinds, framing), ``connection`` (authenticated sockets),
``serialization`` (pickle 5 with out-of-band buffers), ``ids``, ``shm``, ``core_worker``,
``submitter``, ``actor_submitter``, ``worker_main``, ``actor_host``, ``local_mode``,
``pickle_inspect`` (names the unpicklable attribute).
"""
