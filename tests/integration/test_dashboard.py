"""The web dashboard and /metrics, over real HTTP against a running cluster.

One local cluster with ``include_dashboard=True`` for the module, carrying a known workload: a live
named actor, a failed task (with its traceback), finished tasks to page through, and user metrics
(Counter, Gauge, Histogram) recorded inside tasks and an actor. Separate tests start their own
dashboard bound beyond loopback (token required), a cluster through the CLI, and a driver that is
SIGKILLed (its dashboard must not outlive it).
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.parse
from pathlib import Path

import psutil
import pytest

import swarm
from swarm.util import metrics

prometheus_parser = pytest.importorskip("prometheus_client.parser")
pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

TIMEOUT = 60
NUM_SQUARES = 30
SRC = str(Path(__file__).resolve().parents[2] / "src")

REQUESTS = metrics.Counter("dash_requests", "requests served by the test's tasks", tag_keys=("route",))
DEPTH = metrics.Gauge("dash_queue_depth", "queue depth reported by the test's actor", tag_keys=("queue",))
LATENCY = metrics.Histogram("dash_latency_s", "latencies observed by the test's tasks",
                            boundaries=[0.1, 1.0, 10.0], tag_keys=("op",))


@swarm.remote
def square(x):
    return x * x


@swarm.remote
def explode():
    raise ValueError("dashboard-visible failure 42")


@swarm.remote
def serve_request(route, amount):
    REQUESTS.inc(amount, tags={"route": route})
    return route


@swarm.remote
def observe(value):
    LATENCY.observe(value, tags={"op": "read"})
    return value


@swarm.remote
class Keeper:
    def set_depth(self, n):
        DEPTH.set(n, tags={"queue": "inbox"})
        return n

    def ping(self):
        return "pong"


# -- HTTP helpers ---------------------------------------------------------------------------------
def request(url: str, method: str = "GET", headers: dict | None = None, body: bytes | None = None):
    """(status, headers, body) without following redirects."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=TIMEOUT)
    try:
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def get_json(url: str, headers: dict | None = None):
    status, _, body = request(url, headers=headers)
    assert status == 200, f"{url}: {status} {body[:300]!r}"
    return json.loads(body)


def wait_for(predicate, timeout: float = TIMEOUT, interval: float = 0.2):
    """The predicate's first truthy value; the last value (falsy) when it never comes."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


def scrape(url: str) -> dict:
    """{(sample name, frozenset(labels)): value} from /metrics, parsed with prometheus_client."""
    status, headers, body = request(url + "/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain")
    out = {}
    for family in prometheus_parser.text_string_to_metric_families(body.decode()):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def sample(samples: dict, name: str, **labels) -> float | None:
    want = set(labels.items())
    found = [v for (n, ls), v in samples.items() if n == name and want <= set(ls)]
    return sum(found) if found else None


# -- the module's cluster -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def dash():
    """(dashboard URL, workload facts) for a local cluster started with include_dashboard=True."""
    if swarm.is_initialized():
        swarm.shutdown()
    ctx = swarm.init(num_cpus=2, include_dashboard=True, dashboard_port=0)
    url = ctx.dashboard_url
    keeper = Keeper.options(name="dash-keeper").remote()
    assert swarm.get(keeper.set_depth.remote(7), timeout=TIMEOUT) == 7
    assert swarm.get([square.remote(i) for i in range(NUM_SQUARES)], timeout=TIMEOUT) == \
        [i * i for i in range(NUM_SQUARES)]
    failed = explode.remote()
    with pytest.raises(swarm.exceptions.TaskError):
        swarm.get(failed, timeout=TIMEOUT)
    swarm.get([serve_request.remote("/a", 1) for _ in range(10)] +
              [serve_request.remote("/b", 2.5) for _ in range(5)], timeout=TIMEOUT)
    swarm.get([observe.remote(v) for v in (0.05, 0.5, 5.0, 50.0)], timeout=TIMEOUT)
    REQUESTS.inc(100, tags={"route": "/a"})   # the driver's series of the same counter: summed in
    # owners report finished tasks to the head about once a second: wait until it has them all
    expected = {"square": {"FINISHED": NUM_SQUARES}, "explode": {"FAILED": 1},
                "serve_request": {"FINISHED": 15}, "observe": {"FINISHED": 4}}

    def reported():
        summary = {r["name"]: r["counts"] for r in get_json(url + "/api/tasks/summary")["rows"]}
        return all(summary.get(name, {}).get(st) == n for name, want in expected.items()
                   for st, n in want.items())
    assert wait_for(reported), f"the workload never showed: {get_json(url + '/api/tasks/summary')}"
    metrics.flush()
    # and the workers' metrics, before a test kills a worker (one may host a later actor): what a
    # SIGKILLed process had not written yet is lost
    assert wait_for(lambda: sample(scrape(url), "dash_latency_s_count", op="read") == 4)
    facts = {"keeper": keeper, "actor_id": keeper._actor_id.hex(),
             "dashboard_pid": swarm.api._dashboard_proc.pid}
    yield url, facts
    swarm.shutdown()
    assert wait_for(lambda: not psutil.pid_exists(facts["dashboard_pid"]) or
                    psutil.Process(facts["dashboard_pid"]).status() == psutil.STATUS_ZOMBIE, 15), \
        "the dashboard outlived shutdown()"


# -- pages and the JSON API -----------------------------------------------------------------------
def test_pages_are_served_as_html_with_their_script(dash):
    url, _ = dash
    for path, page in (("/", "overview"), ("/actors", "actors"), ("/tasks", "tasks"), ("/objects", "objects"),
                       ("/jobs", "jobs"), ("/logs", "logs")):
        status, headers, body = request(url + path)
        assert status == 200 and headers["content-type"].startswith("text/html")
        assert f'data-page="{page}"' in body.decode() and "/static/app.js" in body.decode()
    status, headers, body = request(url + "/static/app.js")
    assert status == 200 and b"/api/tasks" in body


def test_nodes_and_overview_show_the_node(dash):
    url, _ = dash
    nodes = get_json(url + "/api/nodes")
    assert nodes["total"] == 1
    node = nodes["rows"][0]
    assert node["state"] == "ALIVE" and node["is_head_node"] and node["resources_total"]["CPU"] == 2
    assert node["node_id"] == swarm.get_runtime_context().get_node_id()
    assert node["stats"]["object_store_capacity_bytes"] > 0 and node["stats"]["mem_total_bytes"] > 0
    overview = get_json(url + "/api/overview")
    assert overview["nodes"] == {"alive": 1, "dead": 0}
    assert overview["now"]["cpu_total"] == 2
    assert overview["actors_by_state"].get("ALIVE", 0) >= 1
    assert overview["tasks_by_state"].get("FAILED", 0) >= 1
    history = wait_for(lambda: get_json(url + "/api/history")["rows"])
    assert history and history[-1]["cpu_total"] == 2 and history[-1]["store_capacity_bytes"] > 0


def test_actors_show_the_live_actor(dash):
    url, facts = dash
    rows = get_json(url + "/api/actors?state=ALIVE&limit=1000")["rows"]
    mine = [a for a in rows if a["actor_id"] == facts["actor_id"]]
    assert mine, f"actor {facts['actor_id']} missing from {rows}"
    assert mine[0]["class_name"] == "Keeper" and mine[0]["name"] == "dash-keeper" and mine[0]["pid"]
    assert get_json(url + f"/api/actors/{facts['actor_id']}")["state"] == "ALIVE"
    assert request(url + "/api/actors/" + "0" * 40)[0] == 404


def test_killed_actor_shows_its_death_cause(dash):
    url, _ = dash
    victim = Keeper.remote()
    assert swarm.get(victim.ping.remote(), timeout=TIMEOUT) == "pong"
    actor_id = victim._actor_id.hex()
    swarm.kill(victim)

    def dead():
        status, _, body = request(url + f"/api/actors/{actor_id}")
        row = json.loads(body) if status == 200 else {}
        return row if row.get("state") == "DEAD" else None
    row = wait_for(dead)
    assert row, "the killed actor never showed as DEAD"
    assert "swarm.kill" in row["death_cause"]


def test_failed_task_is_listed_with_its_traceback(dash):
    url, _ = dash
    failed = get_json(url + "/api/tasks?state=FAILED&limit=100")["rows"]
    mine = [t for t in failed if t["name"] == "explode"]
    assert mine, f"no failed 'explode' task in {failed}"
    assert "dashboard-visible failure 42" in mine[0]["error"] and "Traceback" in mine[0]["error"]
    one = get_json(url + f"/api/tasks/{mine[0]['task_id']}")
    assert one["state"] == "FAILED" and "dashboard-visible failure 42" in one["error"]
    summary = {r["name"]: r["counts"] for r in get_json(url + "/api/tasks/summary")["rows"]}
    assert summary["explode"].get("FAILED") == 1
    assert summary["square"].get("FINISHED") == NUM_SQUARES
    assert request(url + "/api/tasks/ffffffffffffffffffffffffffffffff")[0] == 404


def test_tasks_page_on_the_server(dash):
    url, _ = dash
    first = get_json(url + "/api/tasks?name=square&limit=7")
    second = get_json(url + "/api/tasks?name=square&limit=7&offset=7")
    assert first["total"] == NUM_SQUARES and (first["offset"], first["limit"]) == (0, 7)
    assert len(first["rows"]) == 7 and len(second["rows"]) == 7
    ids = [t["task_id"] for t in first["rows"] + second["rows"]]
    assert len(set(ids)) == 14, "two pages overlap"
    everything = get_json(url + f"/api/tasks?name=square&limit={NUM_SQUARES}")["rows"]
    assert [t["task_id"] for t in everything[:14]] == ids
    last = get_json(url + f"/api/tasks?name=square&limit=7&offset={NUM_SQUARES - 2}")
    assert len(last["rows"]) == 2


@pytest.mark.parametrize("query, complaint", [("limit=0", "limit"), ("limit=100000", "limit"),
                                              ("offset=-1", "offset"), ("limit=ten", "integer")])
def test_bad_paging_parameters_get_a_clear_400(dash, query, complaint):
    url, _ = dash
    status, _, body = request(url + "/api/tasks?" + query)
    assert status == 400
    assert complaint in json.loads(body)["error"]


def test_objects_list_sizes_and_owners(dash):
    url, _ = dash
    big = swarm.put(b"x" * (2 << 20))   # lands in the shared-memory store
    big_id = big.hex()
    rows = wait_for(lambda: [o for o in get_json(url + "/api/objects?limit=1000")["rows"]
                             if o["object_id"] == big_id])
    assert rows and rows[0]["size"] >= 2 << 20 and rows[0]["owner"]


def test_timeline_downloads_as_a_chrome_trace(dash):
    url, _ = dash
    status, headers, body = request(url + "/api/timeline")
    assert status == 200 and "attachment" in headers["content-disposition"]
    events = [e for e in json.loads(body) if e["name"] == "square"]
    assert len(events) >= NUM_SQUARES and all(e["ph"] == "X" and e["dur"] >= 0 for e in events)


def test_jobs_and_logs_endpoints_answer(dash):
    url, _ = dash
    status, _, body = request(url + "/api/jobs")
    assert status == 200 and isinstance(json.loads(body), (list, dict))
    logs = get_json(url + "/api/logs")
    if logs["available"]:
        names = [r["filename"] for r in logs["rows"]]
        assert "node_manager.log" in names and "dashboard.log" in names
        text = get_json(url + "/api/logs/file?" + urllib.parse.urlencode(
            {"node_id": logs["rows"][0]["node_id"], "filename": "dashboard.log", "lines": 20}))["text"]
        assert "dashboard serving" in text and len(text.splitlines()) <= 20
    else:
        assert "list_logs" in logs["message"]


# -- /metrics -------------------------------------------------------------------------------------
def test_metrics_export_the_cluster_state(dash):
    url, _ = dash
    samples = scrape(url)
    assert sample(samples, "swarm_tasks", Name="explode", State="FAILED") == 1
    assert sample(samples, "swarm_tasks", Name="square", State="FINISHED") == NUM_SQUARES
    assert sample(samples, "swarm_actors", Name="Keeper", State="ALIVE") >= 1
    assert sample(samples, "swarm_nodes", State="ALIVE") == 1
    node_id = swarm.get_runtime_context().get_node_id()
    assert sample(samples, "swarm_object_store_capacity_bytes", NodeId=node_id) > 0
    assert sample(samples, "swarm_object_store_used_bytes", NodeId=node_id) is not None
    assert sample(samples, "swarm_object_store_spilled_bytes", NodeId=node_id) is not None
    assert sample(samples, "swarm_workers", NodeId=node_id) >= 1
    assert sample(samples, "swarm_node_mem_total_bytes", NodeId=node_id) > 0
    assert sample(samples, "swarm_node_cpu_percent", NodeId=node_id) is not None
    assert sample(samples, "swarm_resources_total", NodeId=node_id, Resource="CPU") == 2
    # lease waits, as the node reports them with its heartbeat (tasks ran: leases were granted)
    waited = wait_for(lambda: sample(scrape(url), "swarm_scheduling_latency_seconds_count", NodeId=node_id))
    assert waited and waited >= 1


def test_user_metrics_from_tasks_are_merged(dash):
    url, facts = dash

    def merged():
        s = scrape(url)
        ready = (sample(s, "dash_requests_total", route="/a") == 110
                 and sample(s, "dash_requests_total", route="/b") == 12.5
                 and sample(s, "dash_latency_s_count", op="read") == 4
                 and sample(s, "dash_queue_depth", queue="inbox") == 7)
        return s if ready else None
    s = wait_for(merged)
    assert s, f"user metrics never reached /metrics: {[k for k in scrape(url) if k[0].startswith('dash_')]}"
    assert sample(s, "dash_latency_s_bucket", op="read", le="0.1") == 1
    assert sample(s, "dash_latency_s_bucket", op="read", le="1.0") == 2
    assert sample(s, "dash_latency_s_bucket", op="read", le="10.0") == 3
    assert sample(s, "dash_latency_s_bucket", op="read", le="+Inf") == 4
    assert sample(s, "dash_latency_s_sum", op="read") == pytest.approx(55.55)
    gauges = [dict(labels) for (name, labels) in s if name == "dash_queue_depth"]
    assert gauges and all(g.get("WorkerId") for g in gauges), "a gauge is one series per process"


def test_user_metric_api_rejects_bad_input():
    with pytest.raises(ValueError, match="Empty name"):
        metrics.Counter("")
    with pytest.raises(ValueError, match="Invalid metric name"):
        metrics.Counter("has space")
    with pytest.raises(TypeError, match="tuple"):
        metrics.Gauge("dash_bad_tags", tag_keys=["route"])
    with pytest.raises(ValueError, match="boundaries"):
        metrics.Histogram("dash_no_bounds")
    with pytest.raises(ValueError, match="positive"):
        metrics.Histogram("dash_neg_bounds", boundaries=[-1.0, 2.0])
    with pytest.raises(ValueError, match=">0"):
        REQUESTS.inc(0, tags={"route": "/a"})
    with pytest.raises(ValueError, match="Unrecognized tag"):
        REQUESTS.inc(1, tags={"route": "/a", "colour": "red"})
    with pytest.raises(ValueError, match="Missing value for tag"):
        REQUESTS.inc(1)
    with pytest.raises(ValueError, match="Unrecognized tag"):
        metrics.Counter("dash_defaults", tag_keys=("a",)).set_default_tags({"b": "x"})
    with pytest.raises(ValueError, match="already exists"):
        metrics.Gauge("dash_requests")   # a Counter has that name in this process
    m = metrics.Counter("dash_with_defaults", "d", tag_keys=("a", "b")).set_default_tags({"a": "1"})
    m.inc(tags={"b": "2"})
    assert m.info == {"name": "dash_with_defaults", "description": "d", "tag_keys": ("a", "b"),
                      "default_tags": {"a": "1"}}


def test_missing_dashboard_dependencies_are_named_with_the_fix(monkeypatch):
    from swarm.dashboard import launch
    monkeypatch.setattr(launch, "REQUIRED", launch.REQUIRED + ("swarm_no_such_web_framework",))
    with pytest.raises(launch.DashboardStartError, match=r"swarm_no_such_web_framework.*swarm\[dashboard\]"):
        launch.start_dashboard("auto", port=0)


# -- authentication -------------------------------------------------------------------------------
def test_changes_need_the_token_even_on_loopback(dash):
    url, _ = dash
    status, _, body = request(url + "/api/jobs", "POST", {"content-type": "application/json"}, b"{}")
    assert status == 401 and "token" in json.loads(body)["error"]
    token = swarm.api._worker.token.decode()
    status, _, _ = request(url + "/api/jobs", "POST", {"content-type": "application/json",
                                                       "authorization": f"Bearer {token}"}, b"{}")
    assert status != 401


@pytest.fixture
def exposed_dashboard(dash):
    """A second dashboard of the module's cluster, listening on every interface."""
    from swarm.dashboard import launch
    info = swarm.api._worker.node_info
    proc, url = launch.start_dashboard(info["unix_address"], host="0.0.0.0", port=0,
                                       token_file=os.path.join(info["session_dir"], "cluster_token"))
    yield url.replace("0.0.0.0", "127.0.0.1"), swarm.api._worker.token.decode()
    launch.stop_dashboard(proc)
    assert proc.returncode == 0


def test_beyond_loopback_every_request_needs_the_token(exposed_dashboard):
    url, token = exposed_dashboard
    status, _, body = request(url + "/api/nodes")
    assert status == 401 and "Bearer" in json.loads(body)["error"]
    assert request(url + "/metrics")[0] == 401
    assert request(url + "/api/nodes", headers={"authorization": "Bearer not-the-token"})[0] == 401
    status, _, body = request(url + "/api/nodes", headers={"authorization": f"Bearer {token}"})
    assert status == 200 and json.loads(body)["total"] == 1
    # a browser is sent to the login form, which sets a cookie that is not the token itself
    status, headers, _ = request(url + "/tasks", headers={"accept": "text/html"})
    assert status == 303 and headers["location"].startswith("/login?next=")
    status, _, body = request(url + "/login")
    assert status == 200 and b'name="token"' in body
    form = {"content-type": "application/x-www-form-urlencoded"}
    status, _, _ = request(url + "/login", "POST", form, urllib.parse.urlencode(
        {"token": "wrong", "next": "/tasks"}).encode())
    assert status == 401
    status, headers, _ = request(url + "/login", "POST", form, urllib.parse.urlencode(
        {"token": token, "next": "/tasks"}).encode())
    assert status == 303 and headers["location"] == "/tasks"
    cookie = headers["set-cookie"].split(";")[0]
    assert token not in cookie and "httponly" in headers["set-cookie"].lower()
    status, _, body = request(url + "/api/nodes", headers={"cookie": cookie})
    assert status == 200 and json.loads(body)["total"] == 1
    assert request(url + "/tasks", headers={"cookie": cookie, "accept": "text/html"})[0] == 200
    assert request(url + "/api/nodes", headers={"cookie": cookie[:-4] + "0000"})[0] == 401
    # the login form only sends people back to this site
    status, headers, _ = request(url + "/login", "POST", form, urllib.parse.urlencode(
        {"token": token, "next": "//evil.example/"}).encode())
    assert status == 303 and headers["location"] == "/"


# -- lifetimes ------------------------------------------------------------------------------------
def test_dashboard_dies_with_a_sigkilled_driver(tmp_path):
    script = tmp_path / "driver.py"
    script.write_text(textwrap.dedent("""
        import sys, time, swarm
        swarm.init(num_cpus=1, include_dashboard=True, dashboard_port=0)
        print(swarm.api._dashboard_proc.pid, flush=True)
        time.sleep(600)
    """))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")]))
    driver = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, env=env)
    try:
        line = driver.stdout.readline()
        assert line.strip().isdigit(), f"the driver did not start its dashboard: {line!r}"
        dashboard = psutil.Process(int(line))
        assert "swarm.dashboard" in " ".join(dashboard.cmdline())
        driver.send_signal(signal.SIGKILL)
        driver.wait()

        def gone():
            try:
                return dashboard.status() == psutil.STATUS_ZOMBIE
            except psutil.NoSuchProcess:
                return True
        assert wait_for(gone, 20), "the dashboard outlived its SIGKILLed driver"
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
        driver.stdout.close()


def test_cli_head_serves_a_dashboard_until_swarm_stop(tmp_path):
    env = dict(os.environ, SWARM_TEMP_DIR=str(tmp_path / "swarm"),
               PYTHONPATH=os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")]))
    env.pop("SWARM_ADDRESS", None)
    cli = [sys.executable, "-m", "swarm.cli"]

    def run(*args):
        return subprocess.run(cli + list(args), env=env, capture_output=True, text=True, timeout=120)
    started = run("start", "--head", "--port", "0", "--dashboard-port", "0", "--num-cpus", "1")
    try:
        assert started.returncode == 0, started.stderr
        shown = run("dashboard")
        assert shown.returncode == 0, shown.stderr
        url = shown.stdout.strip()
        assert f"dashboard: {url}" in started.stdout
        assert f"dashboard: {url}" in run("status").stdout
        nodes = get_json(url + "/api/nodes")
        assert nodes["total"] == 1 and nodes["rows"][0]["state"] == "ALIVE"
        dashboard_pids = [p.pid for p in psutil.process_iter(["cmdline"])
                          if "swarm.dashboard" in " ".join(p.info["cmdline"] or []) and
                          str(tmp_path) in " ".join(p.info["cmdline"] or [])]
        assert len(dashboard_pids) == 1
    finally:
        stopped = run("stop")
    assert stopped.returncode == 0, stopped.stderr

    def gone(pid):
        try:
            return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True
    assert wait_for(lambda: all(gone(p) for p in dashboard_pids), 20), "swarm stop left the dashboard"
    after = run("dashboard")
    assert after.returncode == 1 and "no swarm head node" in after.stderr


def test_cli_head_without_dashboard(tmp_path):
    env = dict(os.environ, SWARM_TEMP_DIR=str(tmp_path / "swarm"),
               PYTHONPATH=os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")]))
    cli = [sys.executable, "-m", "swarm.cli"]
    started = subprocess.run(cli + ["start", "--head", "--port", "0", "--no-dashboard", "--num-cpus", "1"],
                             env=env, capture_output=True, text=True, timeout=120)
    try:
        assert started.returncode == 0, started.stderr
        assert "dashboard:" not in started.stdout
        shown = subprocess.run(cli + ["dashboard"], env=env, capture_output=True, text=True, timeout=60)
        assert shown.returncode == 1 and "runs no dashboard" in shown.stderr
    finally:
        subprocess.run(cli + ["stop"], env=env, capture_output=True, timeout=120)
