"""The dashboard in a real browser: headless Chromium (Debian's /usr/bin/chromium) driven by Playwright
against a running cluster. It must show the node, a live actor (one created after the page loaded
appears without a reload) and a failed task with its traceback. Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

import swarm

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
TIMEOUT = 60
UI_TIMEOUT_MS = 30_000

# `make test` installs both (the test extra, and Chromium through `make sysdeps`): missing, this fails
# rather than skipping, so a run without a browser cannot pass for one that checked the dashboard
if not os.path.exists(CHROMIUM):
    raise RuntimeError(f"{CHROMIUM} is not installed: run `make sysdeps` (Debian package 'chromium')")
from playwright import sync_api  # noqa: E402


@swarm.remote
def failing_task():
    raise RuntimeError("browser-visible failure")


@swarm.remote
def chatty_task():
    print("browser-visible output", flush=True)
    ctx = swarm.get_runtime_context()
    return ctx.get_worker_id(), os.getpid()


@swarm.remote
class BrowserKeeper:
    def ping(self):
        return "pong"


@pytest.fixture(scope="module")
def dashboard_url():
    """(URL, (worker id, pid) of a worker that printed a marker line)."""
    if swarm.is_initialized():
        swarm.shutdown()
    ctx = swarm.init(num_cpus=2, include_dashboard=True, dashboard_port=0)
    keeper = BrowserKeeper.options(name="browser-keeper").remote()
    assert swarm.get(keeper.ping.remote(), timeout=TIMEOUT) == "pong"
    with pytest.raises(swarm.exceptions.TaskError):
        swarm.get(failing_task.remote(), timeout=TIMEOUT)
    chatty_worker = swarm.get(chatty_task.remote(), timeout=TIMEOUT)
    yield ctx.dashboard_url, chatty_worker
    del keeper
    swarm.shutdown()


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        # --no-sandbox: Chromium's sandbox cannot start as root (CI containers run as root)
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    yield pg
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"dashboard-{name}.png"), full_page=True)


def test_overview_shows_the_node(dashboard_url, page):
    dashboard_url, _ = dashboard_url
    node_id = swarm.get_runtime_context().get_node_id()
    page.goto(dashboard_url + "/")
    row = page.locator("[data-table=nodes] tbody tr", has_text=node_id[:16])
    sync_api.expect(row).to_be_visible(timeout=UI_TIMEOUT_MS)
    sync_api.expect(row).to_contain_text("ALIVE")
    sync_api.expect(page.locator(".card", has_text="CPU (logical)")).to_contain_text("/ 2")
    sync_api.expect(page.locator("#status")).to_contain_text("live")
    shot(page, "overview")


def test_actors_page_shows_live_actors_without_reload(dashboard_url, page):
    dashboard_url, _ = dashboard_url
    page.goto(dashboard_url + "/actors")
    row = page.locator("[data-table=actors] tbody tr", has_text="browser-keeper")
    sync_api.expect(row).to_be_visible(timeout=UI_TIMEOUT_MS)
    sync_api.expect(row).to_contain_text("BrowserKeeper")
    sync_api.expect(row).to_contain_text("ALIVE")
    # an actor created now shows up by polling: the page is not reloaded
    page.evaluate("window.__same_page = true")
    late = BrowserKeeper.options(name="late-keeper").remote()
    assert swarm.get(late.ping.remote(), timeout=TIMEOUT) == "pong"
    sync_api.expect(page.locator("[data-table=actors] tbody tr", has_text="late-keeper")).to_be_visible(
        timeout=UI_TIMEOUT_MS)
    assert page.evaluate("window.__same_page") is True
    shot(page, "actors")
    swarm.kill(late)


def test_tasks_page_shows_the_failure_with_its_traceback(dashboard_url, page):
    dashboard_url, _ = dashboard_url
    page.goto(dashboard_url + "/tasks")
    failure = page.locator("details.failure", has_text="failing_task")
    sync_api.expect(failure).to_be_visible(timeout=UI_TIMEOUT_MS)
    failure.locator("summary").click()
    traceback = failure.locator("pre.traceback")
    sync_api.expect(traceback).to_be_visible()
    sync_api.expect(traceback).to_contain_text("browser-visible failure")
    sync_api.expect(traceback).to_contain_text(re.compile("Traceback"))
    summary_row = page.locator("table tr", has_text="failing_task").first
    sync_api.expect(summary_row).to_be_visible()
    shot(page, "tasks")


def test_logs_page_shows_what_a_worker_printed(dashboard_url, page):
    dashboard_url, (worker_id, pid) = dashboard_url
    page.goto(dashboard_url + "/logs")
    link = page.locator(".filelist a", has_text=f"worker-{worker_id}-{pid}.out")
    sync_api.expect(link).to_be_visible(timeout=UI_TIMEOUT_MS)
    link.click()
    sync_api.expect(page.locator("pre.log")).to_contain_text("browser-visible output", timeout=UI_TIMEOUT_MS)
    shot(page, "logs")


def test_jobs_and_objects_pages_render(dashboard_url, page):
    dashboard_url, _ = dashboard_url
    page.goto(dashboard_url + "/jobs")
    sync_api.expect(page.locator("main")).to_contain_text(re.compile("no jobs|not part"),
                                                          timeout=UI_TIMEOUT_MS)
    big = swarm.put(b"x" * (3 << 20))
    page.goto(dashboard_url + "/objects")
    row = page.locator("[data-table=objects] tbody tr", has_text=big.hex())
    sync_api.expect(row).to_be_visible(timeout=UI_TIMEOUT_MS)
    sync_api.expect(row).to_contain_text("3.0 MiB")
    shot(page, "objects")
