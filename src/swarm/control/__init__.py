"""The control store: what the cluster knows about itself, kept on the head.

    node managers ──CONTROL [req, op, args]──▶ head node manager ──▶ ControlStore.handle(op, args)
    (relayed for their drivers and workers)                                │  kv, actors, nodes,
                                                                           │  task history, live tasks
                                          storage (memory | Redis) ◀───────┘  write-behind, one flush
                                                                              per loop turn

- ``store.ControlStore``: the tables and the requests on them; pure state, no sockets. The head's node
  manager owns one and routes CONTROL / TASK_EVENTS messages to it.
- ``kv.KVTable``: namespaced keys → bytes (``swarm.experimental.internal_kv``; jobs and runtime-env
  packages live here too). Namespaces starting with ``_`` are volatile: never written to storage.
- ``task_log.TaskLog``: the cluster's task history (a bounded ring fed by every owner) and what each owner
  has running now.
- ``storage``: where persistent tables go. ``MemoryStorage`` by default; ``RedisStorage`` when the head
  is started with ``--storage redis://HOST:PORT/DB``, so a restarted head loads its node table, actor
  directory (named and detached actors) and KV back.
"""
