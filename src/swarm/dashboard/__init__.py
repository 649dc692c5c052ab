"""The web dashboard and Prometheus ``/metrics`` of a cluster, served by a process of its own.

    swarm start --head / init(include_dashboard=True)
        │ launch.start_dashboard(): ``python -m swarm.dashboard --address HEAD ...`` (server.py)
        ▼
    dashboard process = a light driver attached to the cluster (swarm.init(address=...))
        ├─ data.py      ClusterData: the state API (swarm.util.state) and the node's cluster view,
        │               each read cached for a second and run in a worker thread
        ├─ history.py   a ring of cluster samples (the "last minutes" charts)
        ├─ metrics_api  /metrics: a prometheus_client collector over ClusterData plus the users'
        │               metrics that swarm.util.metrics writes to the internal KV ("_metrics")
        ├─ auth.py      the cluster token: open reads on loopback, token for everything else
        └─ app.py       Starlette routes: HTML pages (static/: plain HTML + vanilla JS polling the JSON
                        API), /api/... with server-side pagination, jobs_api's routes when present
    browser ◀── HTTP (uvicorn) ──┘

The process exits on SIGTERM and when its connection to the cluster is lost, so it never outlives
the cluster it serves.
"""
