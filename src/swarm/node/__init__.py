"""The node: one node manager process per machine (or per test node), and what it starts.

    drivers, workers ──▶ node_manager.NodeManager (single thread, selector loop)
                            ├─ resources.LeaseScheduler   which request gets which worker (pure)
                            ├─ arena.Allocator            the shared-memory arena (pure) + spilling
                            ├─ cluster.NodeTable / route  cluster view, spillback, bundles (pure)
                            ├─ process.fork_worker        workers forked from this process
                            ├─ actor_directory            actors: the head's directory, deadlocks
                            ├─ log_service                workers' log files, read by id from anywhere
                            ├─ control.ControlStore       (head) KV, task history, persistent tables
                            └─ object_server              streams objects to other nodes
    launcher / discovery: start a node manager, find a running cluster and its token.
"""
