// raptor web: the fleet, live. Plain script, no framework and no build step: the wheel
// ships this file as it is, nothing is fetched from elsewhere, and the page runs under a
// Content-Security-Policy without inline script. Every name shown comes from Redis and
// is untrusted: it only ever reaches the page through textContent, never as HTML.
//
// How the page stays right (see raptor/web/app.py and hub.py):
// 1. GET api/fleet: every host's processes, its listener's (run_id, seq), and the
//    history stream's position taken before the snapshots were read.
// 2. EventSource api/events?after=position: every entry after it, in stream order.
//    A reconnecting EventSource sends Last-Event-ID: the server resumes after it.
// 3. Per host, (run_id, seq) judges each message as raptor.consumer.seq does: a seq
//    already seen is dropped; a gap or a new listener run reloads that host (messages
//    arriving meanwhile wait, and those the reload does not cover are applied after).
// 4. "reset" (retention dropped entries the page never saw, or the stream was
//    recreated): reload everything and follow on from there.
"use strict";

(() => {
  const ROW = 28; // px: every row of the virtual list has this height (app.css agrees)
  const OVERSCAN = 10;
  const SUMMARY_EVERY = 5000; // ms between polls of snapshot ages, restarts, listener health
  const STATES = ["RUNNING", "STARTING", "BACKOFF", "STOPPING", "STOPPED", "EXITED", "FATAL", "UNKNOWN"];
  const MAX_HISTORY_ROWS = 1000;

  const $ = (id) => document.getElementById(id);
  const model = {
    hosts: new Map(), // name -> host record (hostRecord)
    duplicates: new Map(), // name -> [other names of the same supervisord]
    skew: 0, // server clock - this clock, s
    staleAfter: 120, // s without a snapshot refresh: STALE (the server's --stale-after)
    history: null, // the process view's transitions
    loaded: false,
  };
  // For tests and benchmarks: what the page has applied, and how late (see bench/web.py).
  // What the page did, for the tests and the benchmark; `loadedFrom`: the position of the last full load.
  const stats = {
    entries: 0, applied: 0, duplicates: 0, reloads: 0, resets: 0, latencies: [], ids: [], lastEntry: null, loadedFrom: null,
    disconnects: 0,
  };
  window.raptorStats = stats;
  let pendingLatency = [];
  let source = null;
  let retryDelay = 500;
  let renderQueued = false;

  // -- the URL: view and filter ------------------------------------------------------

  function readView() {
    const p = new URLSearchParams(location.search);
    return {
      view: p.get("view") || "fleet",
      host: p.get("host") || "",
      process: p.get("process") || "",
      hostGlob: p.get("hosts") || "",
      app: p.get("app") || "",
      state: p.get("state") || "",
      q: p.get("q") || "",
    };
  }
  let view = readView();

  function urlFor(changes) {
    const v = Object.assign({}, view, changes);
    const p = new URLSearchParams();
    if (v.view !== "fleet") p.set("view", v.view);
    if (v.view !== "fleet" && v.host) p.set("host", v.host);
    if (v.view === "process" && v.process) p.set("process", v.process);
    if (v.hostGlob) p.set("hosts", v.hostGlob);
    if (v.app) p.set("app", v.app);
    if (v.state) p.set("state", v.state);
    if (v.q) p.set("q", v.q);
    const query = p.toString();
    return query ? "?" + query : "./";
  }

  function globRegExp(glob) {
    // fnmatch's rules (as raptor status --host): * ? [seq] [!seq]; everything else literal.
    let out = "";
    for (let i = 0; i < glob.length; i++) {
      const c = glob[i];
      if (c === "*") out += ".*";
      else if (c === "?") out += ".";
      else if (c === "[") {
        const end = glob.indexOf("]", i + 2);
        if (end < 0) out += "\\[";
        else {
          let body = glob.slice(i + 1, end).replace(/\\/g, "\\\\");
          if (body[0] === "!") body = "^" + body.slice(1);
          out += "[" + body + "]";
          i = end;
        }
      } else out += c.replace(/[.*+?^${}()|[\]\\/-]/g, "\\$&");
    }
    try {
      return new RegExp("^" + out + "$", "s");
    } catch (e) {
      return /^$/;
    }
  }

  function filters() {
    const hostRe = view.hostGlob ? globRegExp(view.hostGlob) : null;
    const q = view.q.toLowerCase();
    const procFilter = view.app || view.state || q;
    const procOk = (host, p) => {
      if (view.app && p.app_name !== view.app) return false;
      if (view.state) {
        if (view.state === "!RUNNING") {
          if (p.statename === "RUNNING") return false;
        } else if (p.statename !== view.state) return false;
      }
      if (q) {
        const text = (host + " " + p.name + " " + (p.group || "") + " " + (p.description || "")).toLowerCase();
        if (!text.includes(q)) return false;
      }
      return true;
    };
    return { hostOk: (name) => !hostRe || hostRe.test(name), procOk, procFilter };
  }

  // -- talking to the server --------------------------------------------------------------

  async function api(path) {
    const response = await fetch(path, { cache: "no-store", credentials: "same-origin" });
    let body = null;
    try {
      body = await response.json();
    } catch (e) {
      body = null;
    }
    if (!response.ok) throw new Error((body && body.error) || response.status + " " + response.statusText);
    return body;
  }

  function hostRecord(json) {
    const procs = new Map();
    for (const p of json.procs || []) procs.set(p.name, p);
    return {
      name: json.host,
      procs,
      runId: json.run_id || null,
      seq: json.seq || 0,
      reloading: null, // messages waiting while the host reloads
      summary: json,
    };
  }

  function setSummary(report) {
    model.skew = report.server_time - Date.now() / 1000;
    if (typeof report.stale_after === "number") model.staleAfter = report.stale_after;
    model.duplicates = new Map();
    for (const [a, b] of report.duplicates || []) {
      if (!model.duplicates.has(a)) model.duplicates.set(a, []);
      if (!model.duplicates.has(b)) model.duplicates.set(b, []);
      model.duplicates.get(a).push(b);
      model.duplicates.get(b).push(a);
    }
  }

  async function loadFleet() {
    if (source) source.close();
    source = null;
    setConn("loading", "loading the fleet");
    let report;
    try {
      report = await api("api/fleet");
    } catch (e) {
      setConn("down", "cannot load the fleet: " + e.message + "; retrying");
      setTimeout(loadFleet, nextRetry());
      return;
    }
    model.hosts = new Map();
    for (const h of report.hosts) model.hosts.set(h.host, hostRecord(h));
    setSummary(report);
    model.loaded = true;
    retryDelay = 500;
    stats.loadedFrom = report.position;
    follow(report.position);
    if (view.view === "process") loadHistory();
    scheduleRender();
  }

  function nextRetry() {
    const delay = retryDelay;
    retryDelay = Math.min(10000, retryDelay * 2);
    return delay;
  }

  function follow(position) {
    source = new EventSource("api/events?after=" + encodeURIComponent(position));
    const mine = source;
    source.addEventListener("open", () => {
      if (mine === source) setConn("up", "live");
    });
    source.addEventListener("entries", (event) => {
      if (mine !== source) return;
      applyEntries(JSON.parse(event.data));
    });
    source.addEventListener("status", (event) => {
      const status = JSON.parse(event.data);
      if (status.redis === "down") setConn("down", "the server cannot reach Redis: " + (status.error || ""));
      else setConn("up", "live");
    });
    source.addEventListener("reset", () => {
      stats.resets++;
      loadFleet();
    });
    source.addEventListener("error", () => {
      if (mine !== source) return;
      stats.disconnects++;
      if (source.readyState === EventSource.CLOSED) {
        // Refused (an HTTP error): the browser will not retry by itself.
        setConn("down", "the event stream was refused; reloading");
        setTimeout(loadFleet, nextRetry());
      } else setConn("down", "reconnecting");
    });
  }

  async function reloadHost(host) {
    stats.reloads++;
    host.reloading = [];
    let json = null;
    try {
      json = await api("api/hosts/" + encodeURIComponent(host.name));
    } catch (e) {
      json = null;
    }
    const waiting = host.reloading;
    host.reloading = null;
    if (json && json.hosts.length) {
      const fresh = hostRecord(json.hosts[0]);
      host.procs = fresh.procs;
      host.runId = fresh.runId;
      host.seq = fresh.seq;
      host.summary = Object.assign({}, host.summary, json.hosts[0]);
    }
    for (const message of waiting) applyMessage(message);
    scheduleRender();
  }

  // -- applying messages ------------------------------------------------------------------

  function judge(host, runId, seq) {
    // raptor.consumer.seq.SeqTracker.observe: "duplicate", "next", or "resync".
    if (typeof seq !== "number" || typeof runId !== "string") return "next";
    let verdict;
    if (runId === host.runId) {
      if (seq <= host.seq) return "duplicate";
      verdict = seq === host.seq + 1 ? "next" : "resync";
    } else verdict = host.runId !== null || seq !== 1 ? "resync" : "next";
    host.runId = runId;
    host.seq = seq;
    return verdict;
  }

  function applyMessage(m) {
    if (typeof m.host !== "string" || typeof m.name !== "string" || typeof m.event !== "string") return;
    let host = model.hosts.get(m.host);
    if (!host) {
      host = hostRecord({ host: m.host, procs: [], run_id: null, seq: 0, stale: false, counts: {} });
      model.hosts.set(m.host, host);
    }
    if (host.reloading) {
      host.reloading.push(m);
      return;
    }
    const verdict = judge(host, m.run_id, m.seq);
    if (verdict === "duplicate") {
      stats.duplicates++;
      return;
    }
    if (m.event === "PROCESS_GROUP_REMOVED") host.procs.delete(m.name);
    else if (m.event.startsWith("PROCESS_STATE_")) host.procs.set(m.name, m);
    else return;
    stats.applied++;
    if (view.view === "process" && m.host === view.host && model.history && matchesProcess(m)) {
      model.history.push(liveTransition(m));
    }
    if (verdict === "resync") reloadHost(host);
  }

  function applyEntries(messages) {
    const arrived = Date.now();
    for (const m of messages) {
      stats.entries++;
      applyMessage(m);
      if (m.entry_id) {
        stats.lastEntry = m.entry_id;
        if (stats.ids.length < 200000) stats.ids.push(m.entry_id);
        pendingLatency.push(parseInt(m.entry_id, 10));
      }
    }
    stats.lastBatchAt = arrived;
    scheduleRender();
  }

  // -- drawing ------------------------------------------------------------------------------

  function scheduleRender() {
    if (renderQueued) return;
    renderQueued = true;
    requestAnimationFrame(() => {
      renderQueued = false;
      render();
      if (pendingLatency.length) {
        // On screen: this frame shows them. Entry ids carry Redis' clock in ms, so this is
        // a latency only where the browser's clock is Redis' (the benchmark: one machine).
        const shown = Date.now();
        for (const ms of pendingLatency) stats.latencies.push(shown - ms);
        if (stats.latencies.length > 100000) stats.latencies.splice(0, 50000);
        pendingLatency = [];
      }
    });
  }

  function setConn(kind, text) {
    const conn = $("conn");
    conn.className = "conn " + kind;
    conn.textContent = text;
  }

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function link(text, changes, className) {
    const a = el("a", className, text);
    a.href = urlFor(changes);
    a.addEventListener("click", (event) => {
      if (event.ctrlKey || event.metaKey || event.shiftKey || event.button !== 0) return;
      event.preventDefault();
      navigate(changes);
    });
    return a;
  }

  function navigate(changes) {
    history.pushState(null, "", urlFor(changes));
    view = readView();
    onViewChange();
  }

  function now() {
    return Date.now() / 1000 + model.skew;
  }

  function age(host) {
    const refreshed = host.summary.refreshed;
    if (refreshed === null || refreshed === undefined) return null;
    return Math.max(0, now() - refreshed);
  }

  function ageText(seconds) {
    if (seconds === null) return "never";
    if (seconds < 120) return Math.round(seconds) + "s ago";
    if (seconds < 7200) return Math.round(seconds / 60) + "m ago";
    return Math.round(seconds / 3600) + "h ago";
  }

  function duration(seconds) {
    seconds = Math.max(0, Math.floor(seconds));
    const d = Math.floor(seconds / 86400);
    const h = Math.floor((seconds % 86400) / 3600);
    const m = Math.floor((seconds % 3600) / 60);
    const s = seconds % 60;
    const clock = h + ":" + String(m).padStart(2, "0") + ":" + String(s).padStart(2, "0");
    return d ? d + "d " + clock : clock;
  }

  function startEpoch(p) {
    if (p.start_time) return Date.parse(p.start_time) / 1000;
    return p.start || null;
  }

  function uptime(p) {
    if (p.statename !== "RUNNING") return "";
    const start = startEpoch(p);
    return start ? duration(now() - start) : "";
  }

  function label(p) {
    return p.group && p.group !== p.name ? p.group + ":" + p.name : p.name;
  }

  function matchesProcess(m) {
    return m.name === view.process || label(m) === view.process;
  }

  function hostStatus(host) {
    const parts = [];
    const a = age(host);
    if (a === null || a > model.staleAfter) parts.push("STALE");
    const dups = model.duplicates.get(host.name);
    if (dups && dups.length) parts.push("DUPLICATE-OF " + dups.join(", "));
    return parts.length ? parts.join(" ") : "ok";
  }

  function listenerText(host) {
    const l = host.summary.listener || {};
    const parts = [];
    if (l.ack_p99_ms !== undefined) parts.push("ack p99 " + Number(l.ack_p99_ms).toFixed(2) + " ms");
    if (l.discarded_by_supervisord) parts.push(l.discarded_by_supervisord + " discarded");
    if (l.coalesced) parts.push(l.coalesced + " coalesced");
    return parts.join(", ");
  }

  // The virtual list: a spacer as tall as every row, and only the rows in sight drawn.
  const list = {
    rows: [],
    columns: [],
    pool: [],
    draw: null,
  };

  function setColumns(columns) {
    list.columns = columns;
    const head = $("head");
    head.replaceChildren(...columns.map((c) => el("span", "c " + c.cls, c.title)));
    head.className = "row head cols-" + columns.length;
  }

  function drawList() {
    const box = $("list");
    const spacer = $("spacer");
    spacer.style.height = list.rows.length * ROW + "px";
    const first = Math.max(0, Math.floor(box.scrollTop / ROW) - OVERSCAN);
    const last = Math.min(list.rows.length, Math.ceil((box.scrollTop + box.clientHeight) / ROW) + OVERSCAN);
    const wanted = last - first;
    while (list.pool.length < wanted) {
      const row = el("div", "row");
      spacer.appendChild(row);
      list.pool.push(row);
    }
    for (let i = 0; i < list.pool.length; i++) {
      const row = list.pool[i];
      if (i >= wanted) {
        row.hidden = true;
        continue;
      }
      row.hidden = false;
      const index = first + i;
      row.style.transform = "translateY(" + index * ROW + "px)";
      row.className = "row cols-" + list.columns.length + (index % 2 ? " odd" : "");
      list.draw(row, list.rows[index]);
    }
  }

  function cells(row, values) {
    // values: [text | Node, class]; reuses the row's cells.
    while (row.childNodes.length > values.length) row.lastChild.remove();
    values.forEach(([value, cls], i) => {
      let cell = row.childNodes[i];
      if (!cell) {
        cell = el("span");
        row.appendChild(cell);
      }
      cell.className = "c " + (cls || "");
      if (value instanceof Node) cell.replaceChildren(value);
      else cell.textContent = value === null || value === undefined ? "" : String(value);
      cell.title = cell.textContent; // the whole text, where the column cuts it
    });
  }

  const FLEET_COLUMNS = [
    { title: "HOST", cls: "name" },
    { title: "PROCS", cls: "n" },
    ...STATES.map((s) => ({ title: s, cls: "n st-" + s })),
    { title: "RESTARTS", cls: "n" },
    { title: "SNAPSHOT", cls: "age" },
    { title: "STATUS", cls: "status" },
    { title: "LISTENER", cls: "listener" },
  ];

  function renderFleet() {
    const f = filters();
    const rows = [];
    const totals = { hosts: 0, procs: 0 };
    for (const s of STATES) totals[s] = 0;
    const names = [...model.hosts.keys()].sort();
    for (const name of names) {
      if (!f.hostOk(name)) continue;
      const host = model.hosts.get(name);
      const counts = {};
      let procs = 0;
      for (const p of host.procs.values()) {
        if (f.procFilter && !f.procOk(name, p)) continue;
        procs++;
        const s = STATES.includes(p.statename) ? p.statename : "UNKNOWN";
        counts[s] = (counts[s] || 0) + 1;
      }
      if (f.procFilter && !procs) continue;
      rows.push({ host, counts, procs });
      totals.hosts++;
      totals.procs += procs;
      for (const s of STATES) totals[s] += counts[s] || 0;
    }
    setColumns(FLEET_COLUMNS);
    list.rows = rows;
    list.draw = (row, r) => {
      const status = hostStatus(r.host);
      cells(row, [
        [link(r.host.name, { view: "host", host: r.host.name }), "name"],
        [r.procs, "n"],
        ...STATES.map((s) => [r.counts[s] || "", "n st-" + s + (r.counts[s] ? " some" : "")]),
        [r.host.summary.restarts_1h || "", "n"],
        [ageText(age(r.host)), "age"],
        [status, "status" + (status === "ok" ? "" : " bad")],
        [listenerText(r.host), "listener"],
      ]);
    };
    const summary = $("summary");
    const parts = [totals.hosts + " hosts", totals.procs + " processes"];
    for (const s of STATES) if (totals[s]) parts.push(totals[s] + " " + s);
    summary.textContent = parts.join(" · ");
    $("detail").replaceChildren();
    $("history").replaceChildren();
    setCrumbs([]);
    drawList();
  }

  const HOST_COLUMNS = [
    { title: "PROCESS", cls: "name" },
    { title: "STATE", cls: "state" },
    { title: "PID", cls: "n" },
    { title: "UPTIME", cls: "n" },
    { title: "RESTARTS", cls: "n" },
    { title: "DESCRIPTION", cls: "desc" },
  ];

  function renderHost() {
    const host = model.hosts.get(view.host);
    setCrumbs([view.host]);
    if (!host) {
      $("summary").textContent = model.loaded ? "no host of that name in this Redis" : "loading";
      list.rows = [];
      setColumns(HOST_COLUMNS);
      list.draw = () => {};
      drawList();
      return;
    }
    const f = filters();
    const procs = [...host.procs.values()].filter((p) => !f.procFilter || f.procOk(host.name, p));
    procs.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    const restarts = host.summary.process_restarts_1h || {};
    setColumns(HOST_COLUMNS);
    list.rows = procs;
    list.draw = (row, p) => {
      cells(row, [
        [link(label(p), { view: "process", host: host.name, process: label(p) }), "name"],
        [p.statename, "state st-" + p.statename],
        [p.pid || "", "n"],
        [uptime(p), "n"],
        [restarts[label(p)] || "", "n"],
        [p.description || "", "desc"],
      ]);
    };
    const status = hostStatus(host);
    $("summary").textContent =
      host.procs.size + " processes · snapshot " + ageText(age(host)) + " · " + status;
    const detail = $("detail");
    detail.replaceChildren(
      fact("listener", listenerText(host) || "no health record"),
      fact("run", (host.runId || "?") + " seq " + host.seq),
      fact("supervisord", host.summary.supervisord_id || "?"),
    );
    $("history").replaceChildren();
    drawList();
  }

  function fact(name, value) {
    const span = el("span", "fact");
    span.append(el("b", null, name + " "), el("span", null, value));
    return span;
  }

  function setCrumbs(parts) {
    const nav = $("crumbs");
    nav.replaceChildren();
    if (!parts.length) return;
    nav.append(link("fleet", { view: "fleet" }));
    nav.append(el("span", "sep", " / "));
    if (parts.length === 1) nav.append(el("span", "here", parts[0]));
    else {
      nav.append(link(parts[0], { view: "host", host: parts[0] }));
      nav.append(el("span", "sep", " / "));
      nav.append(el("span", "here", parts[1]));
    }
  }

  async function loadHistory() {
    model.history = [];
    const wanted = view.host + "\u0000" + view.process;
    let report;
    try {
      const params = new URLSearchParams({ host: view.host, program: view.process, since: "24h" });
      report = await api("api/history?" + params.toString());
    } catch (e) {
      model.history = [];
      model.historyError = e.message;
      scheduleRender();
      return;
    }
    if (wanted !== view.host + "\u0000" + view.process) return;
    model.historyError = null;
    // Entries that arrived live while the query ran are kept once (by entry id).
    const seen = new Set(report.transitions.map((t) => t.entry_id));
    const live = model.history.filter((t) => !seen.has(t.entry_id));
    model.history = report.transitions.concat(live);
    model.historySummary = report.processes;
    scheduleRender();
  }

  function liveTransition(m) {
    return {
      entry_id: m.entry_id,
      time: m.now,
      from_state: m.from_state,
      to_state: m.event === "PROCESS_GROUP_REMOVED" ? null : m.statename,
      pid: m.pid,
      exitstatus: m.exitstatus,
      expected: m.expected,
      resync: m.resync,
    };
  }

  function renderProcess() {
    setCrumbs([view.host, view.process]);
    const host = model.hosts.get(view.host);
    let proc = null;
    if (host) for (const p of host.procs.values()) if (label(p) === view.process || p.name === view.process) proc = p;
    setColumns([]);
    list.rows = [];
    list.draw = () => {};
    drawList();
    const detail = $("detail");
    if (!proc) {
      $("summary").textContent = model.loaded ? "no process of that name on this host (now)" : "loading";
      detail.replaceChildren();
    } else {
      $("summary").textContent = label(proc) + " on " + view.host;
      const state = el("span", "state st-" + proc.statename, proc.statename);
      const facts = [
        fact("state", ""),
        fact("pid", proc.pid || "-"),
        fact("uptime", uptime(proc) || "-"),
        fact("app", proc.app_name || ""),
        fact("description", proc.description || ""),
      ];
      facts[0].lastChild.replaceWith(state);
      if (proc.spawnerr) facts.push(fact("spawn error", proc.spawnerr));
      detail.replaceChildren(...facts);
    }
    const box = $("history");
    const table = el("table", "transitions");
    const head = el("tr");
    for (const t of ["TIME", "TRANSITION", "PID", "EXIT"]) head.append(el("th", null, t));
    table.append(head);
    const rows = (model.history || []).slice(-MAX_HISTORY_ROWS).reverse();
    for (const t of rows) {
      const tr = el("tr");
      const change = t.to_state === null ? "removed" : (t.from_state || "?") + " → " + t.to_state;
      let exit = "";
      if (t.to_state === "EXITED") exit = t.exitstatus + (t.expected === false ? " (unexpected)" : t.expected ? " (expected)" : "");
      tr.append(
        el("td", null, (t.time || "").replace("T", " ").slice(0, 19)),
        el("td", "st-" + (t.to_state || "removed"), change + (t.resync ? " [resync]" : "")),
        el("td", null, t.pid || "-"),
        el("td", null, exit),
      );
      table.append(tr);
    }
    const title = el("h2", null, "history (24 h, newest first)");
    const parts = [title];
    if (model.historyError) parts.push(el("p", "bad", model.historyError));
    const summaries = model.historySummary || [];
    for (const s of summaries) {
      parts.push(
        el(
          "p",
          "summary",
          s.process + ": " + s.restarts + " restarts, " + s.crashes + " crashes, not running " + duration(s.not_running_s),
        ),
      );
    }
    parts.push(table);
    box.replaceChildren(...parts);
  }

  function render() {
    document.body.dataset.view = view.view;
    if (view.view === "host") renderHost();
    else if (view.view === "process") renderProcess();
    else renderFleet();
    document.body.dataset.ready = model.loaded ? "1" : "0";
  }

  // -- wiring ---------------------------------------------------------------------------------

  function syncFilterInputs() {
    $("f-host").value = view.hostGlob;
    $("f-app").value = view.app;
    $("f-state").value = view.state;
    $("f-q").value = view.q;
  }

  function onViewChange() {
    syncFilterInputs();
    $("list").scrollTop = 0;
    model.history = null;
    model.historySummary = null;
    if (view.view === "process" && model.loaded) loadHistory();
    scheduleRender();
  }

  function onFilterInput() {
    const changes = {
      hostGlob: $("f-host").value,
      app: $("f-app").value,
      state: $("f-state").value,
      q: $("f-q").value,
    };
    history.replaceState(null, "", urlFor(changes));
    view = readView();
    scheduleRender();
  }

  async function pollSummary() {
    try {
      const report = await api("api/fleet?procs=0");
      setSummary(report);
      for (const h of report.hosts) {
        const host = model.hosts.get(h.host);
        if (host) host.summary = Object.assign({}, host.summary, h);
        else if (model.loaded) {
          // A host that published nothing since the page loaded (no entry yet): load it.
          const record = hostRecord({ host: h.host, procs: [], run_id: null, seq: 0 });
          record.summary = h;
          model.hosts.set(h.host, record);
          reloadHost(record);
        }
      }
      scheduleRender();
    } catch (e) {
      // The event stream's state already says what is wrong.
    }
  }

  function start() {
    syncFilterInputs();
    for (const id of ["f-host", "f-app", "f-q"]) $(id).addEventListener("input", onFilterInput);
    $("f-state").addEventListener("change", onFilterInput);
    $("filter").addEventListener("submit", (event) => event.preventDefault());
    $("home").addEventListener("click", (event) => {
      event.preventDefault();
      navigate({ view: "fleet", host: "", process: "" });
    });
    $("list").addEventListener("scroll", () => drawList(), { passive: true });
    window.addEventListener("resize", () => drawList());
    window.addEventListener("popstate", () => {
      view = readView();
      onViewChange();
    });
    setInterval(scheduleRender, 1000); // ages and uptimes move on
    setInterval(pollSummary, SUMMARY_EVERY);
    loadFleet();
  }

  start();
})();
