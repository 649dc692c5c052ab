// swarm dashboard: one small vanilla-JS file, no build step.
// Each page renders its sections once, then polls the JSON API (about every 1.5 s) and re-fills them.
// All text from the cluster goes into the DOM as text nodes (never as HTML): task errors and actor
// names are user data.
"use strict";

const POLL_MS = 1500;
const PAGE_SIZE = 50;

// -- small helpers -------------------------------------------------------------------------------
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

function fill(node, ...children) {
  node.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined));
}

function fmtBytes(n) {
  if (n === null || n === undefined) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (Math.abs(n) >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : String(n)) + " " + units[i];
}

function fmtNum(x, digits) {
  if (x === null || x === undefined) return "–";
  return Number.isInteger(x) ? String(x) : Number(x).toFixed(digits === undefined ? 1 : digits);
}

function fmtTime(t) {
  if (!t) return "–";
  return new Date(t * 1000).toLocaleTimeString();
}

function fmtDuration(s) {
  if (s === null || s === undefined) return "–";
  if (s < 1) return (s * 1000).toFixed(1) + " ms";
  if (s < 120) return s.toFixed(2) + " s";
  return (s / 60).toFixed(1) + " min";
}

// Node and worker ids are 16 hex digits; task and actor ids begin with their owner's id, so they are
// shown whole (a prefix would be the same for every task of one driver).
function shortId(id) {
  return id ? String(id).slice(0, 16) : "–";
}

function fullId(id) {
  return id ? String(id) : "–";
}

function badge(state) {
  return el("span", { class: "badge " + (state || ""), text: state || "?" });
}

const statusNode = () => document.getElementById("status");

async function api(path) {
  const resp = await fetch(path, { credentials: "same-origin", headers: { Accept: "application/json" } });
  if (resp.status === 401) {
    window.location.href = "/login?next=" + encodeURIComponent(window.location.pathname);
    throw new Error("login needed");
  }
  const body = await resp.json();
  if (!resp.ok) throw new Error(body.error || resp.statusText);
  return body;
}

// Calls fn now and then every POLL_MS after each run finishes (never two at once).
function poll(fn) {
  let timer = null;
  async function run() {
    clearTimeout(timer);
    try {
      if (!document.hidden) await fn();
      const s = statusNode();
      s.textContent = "live · " + new Date().toLocaleTimeString();
      s.classList.remove("error");
    } catch (e) {
      const s = statusNode();
      s.textContent = "cannot reach the cluster: " + e.message;
      s.classList.add("error");
    }
    timer = setTimeout(run, POLL_MS);
  }
  run();
  return run;   // call it to refresh now (after a filter or page change)
}

// A table with server-side pagination. cols: [{title, cell: row => node|string, cls}]
function pagedTable(opts) {
  const state = { offset: 0, limit: opts.limit || PAGE_SIZE, total: 0 };
  const box = el("div", { class: "paged", "data-table": opts.name || "" });
  const info = el("span");
  const prev = el("button", { onclick: () => { state.offset = Math.max(0, state.offset - state.limit); refresh(); } }, "‹ Prev");
  const next = el("button", { onclick: () => { state.offset += state.limit; refresh(); } }, "Next ›");
  const pager = el("div", { class: "pager" }, prev, info, next);
  const tableBox = el("div");
  box.append(pager, tableBox);
  let refresh = () => {};
  async function load() {
    const params = new URLSearchParams(Object.assign({}, opts.params ? opts.params() : {},
      { offset: state.offset, limit: state.limit }));
    const data = await api(opts.url + "?" + params.toString());
    if (data.total && state.offset >= data.total) { state.offset = Math.max(0, data.total - state.limit); }
    state.total = data.total;
    const first = data.rows.length ? data.offset + 1 : 0;
    info.textContent = `${first}–${data.offset + data.rows.length} of ${data.total}`;
    prev.disabled = data.offset === 0;
    next.disabled = data.offset + data.rows.length >= data.total;
    if (opts.onData) opts.onData(data);
    if (!data.rows.length) { fill(tableBox, el("div", { class: "empty", text: opts.empty || "nothing here" })); return; }
    const head = el("tr", {}, opts.cols.map((c) => el("th", { class: c.cls || null, text: c.title })));
    const body = data.rows.map((r) => el("tr", {}, opts.cols.map((c) => {
      const v = c.cell(r);
      return el("td", { class: c.cls || null }, v instanceof Node ? v : (v === null || v === undefined ? "–" : String(v)));
    })));
    fill(tableBox, el("table", {}, el("thead", {}, head), el("tbody", {}, body)));
  }
  box.load = load;
  box.setRefresh = (fn) => { refresh = fn; };
  box.resetOffset = () => { state.offset = 0; };
  return box;
}

function card(label, value, sub, extra) {
  return el("div", { class: "card" }, el("div", { class: "label", text: label }),
    el("div", { class: "value", text: value }), sub ? el("div", { class: "sub", text: sub }) : null, extra || null);
}

function bar(frac) {
  const inner = el("div");
  inner.style.width = Math.max(0, Math.min(100, (frac || 0) * 100)).toFixed(1) + "%";
  return el("div", { class: "bar" }, inner);
}

function sparkline(values, max) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", "0 0 100 40");
  svg.setAttribute("preserveAspectRatio", "none");
  const vals = values.filter((v) => v !== null && v !== undefined);
  if (vals.length > 1) {
    const top = max || Math.max(...vals, 1e-9);
    const pts = vals.map((v, i) => `${(i / (vals.length - 1)) * 100},${40 - (v / top) * 38 - 1}`);
    const line = document.createElementNS(ns, "polyline");
    line.setAttribute("points", pts.join(" "));
    svg.append(line);
  }
  return svg;
}

// -- pages ---------------------------------------------------------------------------------------
const pages = {};

pages.overview = function (main) {
  const cards = el("div", { class: "cards" });
  const demand = el("div");
  const nodes = pagedTable({
    name: "nodes", url: "/api/nodes", empty: "no nodes",
    cols: [
      { title: "Node", cls: "id", cell: (n) => shortId(n.node_id) },
      { title: "State", cell: (n) => badge(n.state) },
      { title: "Address", cell: (n) => n.node_ip + (n.is_head_node ? " (head)" : "") },
      { title: "CPU", cls: "num", cell: (n) => `${fmtNum((n.resources_used || {}).CPU || 0)} / ${fmtNum((n.resources_total || {}).CPU || 0)}` },
      { title: "GPU", cls: "num", cell: (n) => `${fmtNum((n.resources_used || {}).GPU || 0)} / ${fmtNum((n.resources_total || {}).GPU || 0)}` },
      { title: "Host CPU %", cls: "num", cell: (n) => fmtNum((n.stats || {}).cpu_percent) },
      { title: "Memory", cls: "num", cell: (n) => `${fmtBytes((n.stats || {}).mem_used_bytes)} / ${fmtBytes((n.stats || {}).mem_total_bytes)}` },
      { title: "Object store", cls: "num", cell: (n) => `${fmtBytes((n.stats || {}).object_store_used_bytes)} / ${fmtBytes((n.stats || {}).object_store_capacity_bytes)}` },
      { title: "Spilled", cls: "num", cell: (n) => fmtBytes((n.stats || {}).object_store_spilled_bytes) },
      { title: "Workers", cls: "num", cell: (n) => fmtNum((n.stats || {}).workers) },
    ],
  });
  fill(main, el("h2", { text: "Cluster" }), cards, el("h2", { text: "Nodes" }), nodes, demand);
  const refresh = poll(async () => {
    const [ov, hist] = await Promise.all([api("/api/overview"), api("/api/history")]);
    const now = ov.now, h = hist.rows;
    const series = (k) => h.map((s) => s[k]);
    const frac = (a, b) => (b ? a / b : 0);
    const join = (o) => Object.entries(o).map(([k, v]) => `${v} ${k.toLowerCase()}`).join(", ") || "none";
    fill(cards,
      card("Nodes", String(ov.nodes.alive), ov.nodes.dead ? `${ov.nodes.dead} dead` : "all alive"),
      card("CPU (logical)", `${fmtNum(now.cpu_used)} / ${fmtNum(now.cpu_total)}`,
        now.cpu_percent === null ? "" : `host CPU ${fmtNum(now.cpu_percent)} %`,
        [bar(frac(now.cpu_used, now.cpu_total)), sparkline(series("cpu_used"), now.cpu_total)]),
      card("GPU", `${fmtNum(now.gpu_used)} / ${fmtNum(now.gpu_total)}`, "",
        [bar(frac(now.gpu_used, now.gpu_total)), sparkline(series("gpu_used"), now.gpu_total)]),
      card("Memory", `${fmtBytes(now.mem_used_bytes)}`, `of ${fmtBytes(now.mem_total_bytes)}`,
        [bar(frac(now.mem_used_bytes, now.mem_total_bytes)), sparkline(series("mem_used_bytes"), now.mem_total_bytes)]),
      card("Object store", `${fmtBytes(now.store_used_bytes)}`,
        `of ${fmtBytes(now.store_capacity_bytes)}, ${fmtBytes(now.store_spilled_bytes)} spilled`,
        [bar(frac(now.store_used_bytes, now.store_capacity_bytes)), sparkline(series("store_used_bytes"), now.store_capacity_bytes)]),
      card("Actors", String(Object.values(ov.actors_by_state).reduce((a, b) => a + b, 0)), join(ov.actors_by_state)),
      card("Tasks", String(Object.values(ov.tasks_by_state).reduce((a, b) => a + b, 0)), join(ov.tasks_by_state)),
    );
    fill(demand, ov.pending_demand.length
      ? [el("h2", { text: "Waiting for resources" }),
         el("div", { class: "notice", text: `${ov.pending_demand.length} lease request(s) queued, needing: ` +
           ov.pending_demand.map((d) => JSON.stringify(d)).join(", ") })]
      : []);
    await nodes.load();
  });
  nodes.setRefresh(refresh);
};

pages.actors = function (main) {
  const select = el("select", { name: "state" }, ["", "ALIVE", "PENDING_CREATION", "RESTARTING", "DEAD"].map(
    (s) => el("option", { value: s, text: s || "any state" })));
  const table = pagedTable({
    name: "actors", url: "/api/actors", empty: "no actors",
    params: () => (select.value ? { state: select.value } : {}),
    cols: [
      { title: "Actor", cls: "id", cell: (a) => fullId(a.actor_id) },
      { title: "Class", cell: (a) => a.class_name },
      { title: "Name", cell: (a) => a.name || "" },
      { title: "State", cell: (a) => badge(a.state) },
      { title: "PID", cls: "num", cell: (a) => a.pid },
      { title: "Node", cls: "id", cell: (a) => shortId(a.node_id) },
      { title: "Restarts", cls: "num", cell: (a) => a.num_restarts || 0 },
      { title: "Death cause", cell: (a) => a.death_cause || "" },
    ],
  });
  fill(main, el("h2", { text: "Actors" }), el("div", { class: "filters" }, "State:", select), table);
  const refresh = poll(() => table.load());
  table.setRefresh(refresh);
  select.addEventListener("change", () => { table.resetOffset(); refresh(); });
};

pages.tasks = function (main) {
  const summary = el("div");
  const failures = el("div");
  const pending = el("div");
  const select = el("select", { name: "state" }, ["", "PENDING", "RUNNING", "FINISHED", "FAILED"].map(
    (s) => el("option", { value: s, text: s || "any state" })));
  const table = pagedTable({
    name: "tasks", url: "/api/tasks", empty: "no tasks",
    params: () => (select.value ? { state: select.value } : {}),
    cols: [
      { title: "Task", cls: "id", cell: (t) => fullId(t.task_id) },
      { title: "Function", cell: (t) => t.name },
      { title: "State", cell: (t) => badge(t.state) },
      { title: "Type", cell: (t) => (t.type === "ACTOR_TASK" ? "actor call" : "task") },
      { title: "Started", cell: (t) => fmtTime(t.start_time) },
      { title: "Duration", cls: "num", cell: (t) => fmtDuration(t.duration_s) },
      { title: "PID", cls: "num", cell: (t) => t.pid },
      { title: "Node", cls: "id", cell: (t) => shortId(t.node_id) },
      { title: "Detail", cell: (t) => (t.error ? String(t.error).split("\n").filter(Boolean).pop() : t.detail || "") },
    ],
  });
  fill(main, el("h2", { text: "Tasks by function and state" }), summary,
    el("h2", { text: "Recent failures" }), failures,
    el("h2", { text: "Pending: why they wait" }), pending,
    el("h2", { text: "All tasks" }), el("div", { class: "filters" }, "State:", select), table);
  const open = new Set();   // failure rows the user expanded stay expanded across refreshes
  const refresh = poll(async () => {
    const [sum, failed, waiting] = await Promise.all([
      api("/api/tasks/summary"), api("/api/tasks?state=FAILED&limit=10"), api("/api/tasks?state=PENDING&limit=20")]);
    const states = ["PENDING", "RUNNING", "FINISHED", "FAILED"];
    fill(summary, sum.rows.length
      ? el("table", {}, el("thead", {}, el("tr", {}, el("th", { text: "Function" }),
          states.map((s) => el("th", { class: "num", text: s })), el("th", { class: "num", text: "total" }))),
        el("tbody", {}, sum.rows.map((r) => el("tr", {}, el("td", { text: r.name }),
          states.map((s) => el("td", { class: "num", text: String(r.counts[s] || 0) })),
          el("td", { class: "num", text: String(r.total) })))))
      : el("div", { class: "empty", text: "no tasks yet" }));
    fill(failures, failed.rows.length ? failed.rows.map((t) => {
      const d = el("details", { class: "failure", "data-task-id": t.task_id },
        el("summary", {}, badge("FAILED"), " ", el("strong", { text: t.name }), " ",
          el("span", { class: "muted", text: `${fullId(t.task_id)} · ${fmtTime(t.start_time)} · pid ${t.pid || "–"}` })),
        el("pre", { class: "traceback", text: t.error || "(no error recorded)" }));
      if (open.has(t.task_id)) d.open = true;
      d.addEventListener("toggle", () => { if (d.open) open.add(t.task_id); else open.delete(t.task_id); });
      return d;
    }) : el("div", { class: "empty", text: "no failed tasks" }));
    fill(pending, waiting.rows.length
      ? el("table", {}, el("thead", {}, el("tr", {}, el("th", { text: "Task" }), el("th", { text: "Function" }),
          el("th", { text: "Why it waits" }))),
        el("tbody", {}, waiting.rows.map((t) => el("tr", {}, el("td", { class: "id", text: fullId(t.task_id) }),
          el("td", { text: t.name }), el("td", { text: t.detail || "queued" })))))
      : el("div", { class: "empty", text: "nothing is waiting" }));
    await table.load();
  });
  table.setRefresh(refresh);
  select.addEventListener("change", () => { table.resetOffset(); refresh(); });
};

pages.objects = function (main) {
  const total = el("div", { class: "muted" });
  const table = pagedTable({
    name: "objects", url: "/api/objects", empty: "no objects",
    onData: (d) => { total.textContent = `${d.total} objects, ${fmtBytes(d.total_bytes)}`; },
    cols: [
      { title: "Object", cls: "id", cell: (o) => o.object_id },
      { title: "Size", cls: "num", cell: (o) => fmtBytes(o.size) },
      { title: "Owner", cls: "id", cell: (o) => shortId(o.owner) },
      { title: "Where", cell: (o) => o.where || "" },
      { title: "Pins", cls: "num", cell: (o) => o.pins },
      { title: "State", cell: (o) => (o.spilled ? badge("SPILLED") : o.referenced ? "referenced" : o.pins ? "pinned" : "") },
      { title: "Refs", cls: "num", cell: (o) => o.local_refs },
    ],
  });
  fill(main, el("h2", { text: "Objects" }), total, table);
  table.setRefresh(poll(() => table.load()));
};

pages.jobs = function (main) {
  const box = el("div");
  fill(main, el("h2", { text: "Jobs" }), box);
  poll(async () => {
    const data = await api("/api/jobs");
    const rows = Array.isArray(data) ? data : (data.rows || data.jobs || data.items || []);
    if (!rows.length) {
      fill(box, el("div", { class: data.available === false ? "notice" : "empty",
        text: data.message || "no jobs submitted yet" }));
      return;
    }
    fill(box, el("table", {}, el("thead", {}, el("tr", {}, ["Job", "Status", "Entrypoint", "Started", "Ended", "Message"]
      .map((t) => el("th", { text: t })))),
      el("tbody", {}, rows.map((j) => el("tr", {},
        el("td", { class: "id", text: j.submission_id || j.job_id || "" }), el("td", {}, badge(j.status)),
        el("td", { text: j.entrypoint || "" }), el("td", { text: fmtTime(j.start_time && j.start_time / 1000) }),
        el("td", { text: fmtTime(j.end_time && j.end_time / 1000) }), el("td", { text: j.message || "" }))))));
  });
};

pages.logs = function (main) {
  const nodeSel = el("select", { name: "node" });
  const files = el("div", { class: "filelist" });
  const viewer = el("pre", { class: "log", text: "pick a log file" });
  const title = el("div", { class: "muted" });
  let current = null;
  fill(main, el("h2", { text: "Logs" }), el("div", { class: "filters" }, "Node:", nodeSel),
    el("div", { class: "cols" }, files, el("div", {}, title, viewer)));
  let nodesLoaded = false;
  const refresh = poll(async () => {
    if (!nodesLoaded) {
      const nodes = await api("/api/nodes?limit=1000");
      fill(nodeSel, nodes.rows.map((n) => el("option", { value: n.node_id,
        text: `${shortId(n.node_id)} ${n.node_ip}${n.is_head_node ? " (head)" : ""}` })));
      nodesLoaded = true;
    }
    const listing = await api("/api/logs?node_id=" + encodeURIComponent(nodeSel.value));
    if (!listing.available) { fill(files, el("div", { class: "notice", text: listing.message })); return; }
    fill(files, listing.rows.map((r) => el("a", { href: "#", class: current === r.filename ? "active" : null,
      onclick: (e) => { e.preventDefault(); current = r.filename; refresh(); } },
      (r.category ? r.category + ": " : "") + r.filename)));
    if (current) {
      const log = await api(`/api/logs/file?node_id=${encodeURIComponent(nodeSel.value)}&filename=${encodeURIComponent(current)}&lines=500`);
      title.textContent = current + " (last 500 lines)";
      const atBottom = viewer.scrollTop + viewer.clientHeight >= viewer.scrollHeight - 4;
      viewer.textContent = log.text || "(empty)";
      if (atBottom) viewer.scrollTop = viewer.scrollHeight;
    }
  });
  nodeSel.addEventListener("change", () => { current = null; refresh(); });
};

document.addEventListener("DOMContentLoaded", () => {
  const page = document.body.dataset.page;
  for (const a of document.querySelectorAll("[data-nav]")) {
    if (a.dataset.nav === page) a.classList.add("active");
  }
  const main = document.getElementById("main");
  (pages[page] || pages.overview)(main);
});
