// anywidget glue of durable_nb's RunWidget and RunsWidget.
//
// durable_nb/widgets/assets.py concatenates run_graph.js and this file into each widget's ESM
// (anywidget loads one module per widget, so relative imports are not available) and adds
// `export default {render: ...}`. Free names used here (renderRunGraph, loadRun, h, badge,
// statusKind, formatDuration, formatTime, shortId, TERMINAL) come from run_graph.js.
//
// Talking to the engine: when the widget's kernel uses the engine of the Jupyter server that
// serves this page (same engine instance), the browser calls the server's REST API itself
// (cookie + XSRF, so jupyter-server's user is recorded as the approver, and it works while
// the kernel is busy). Otherwise (VS Code, a standalone engine) requests go through the
// kernel as custom widget messages.

function jupyterBaseUrl() {
  const el = document.getElementById("jupyter-config-data");
  if (!el) return null;
  try {
    const base = JSON.parse(el.textContent).baseUrl;
    return base ? (base.endsWith("/") ? base : `${base}/`) : null;
  } catch (e) {
    return null;
  }
}

function xsrfToken() {
  const m = document.cookie.match(/(?:^|;\s*)_xsrf=([^;]*)/);
  return m ? decodeURIComponent(m[1]) : null;
}

function errorText(status, body) {
  if (body && body.error) return body.error;
  return `the durable_nb API answered HTTP ${status}`;
}

function restTransport(base) {
  const root = `${base}durable/api`;
  const call = async (method, path, body) => {
    const headers = { "Content-Type": "application/json" };
    const token = xsrfToken();
    if (token && method !== "GET") headers["X-XSRFToken"] = token;
    const resp = await fetch(root + path, {
      method, headers, credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    let json = null;
    try {
      json = await resp.json();
    } catch (e) { /* empty body */ }
    if (!resp.ok) throw new Error(errorText(resp.status, json));
    return json;
  };
  return { kind: "rest", call };
}

function kernelTransport(model, pending) {
  let seq = 0;
  const call = (method, path, body) => new Promise((resolve, reject) => {
    const id = `${Date.now()}-${seq++}`;
    const timer = setTimeout(() => {
      pending.delete(id);
      reject(new Error("the kernel did not answer within 30 s (is it busy, or gone?)"));
    }, 30000);
    pending.set(id, (msg) => {
      clearTimeout(timer);
      if (msg.status >= 400) reject(new Error(errorText(msg.status, msg.body)));
      else resolve(msg.body);
    });
    model.send({ type: "api", id, method, path, body: body === undefined ? null : body });
  });
  return { kind: "kernel", call };
}

// One transport per widget model (shared by its views).
const TRANSPORTS = new WeakMap();

function transportFor(model, key, pending) {
  let t = TRANSPORTS.get(key);
  if (!t) {
    t = (async () => {
      const engine = model.get("engine") || {};
      const base = jupyterBaseUrl();
      if (engine.server && engine.instance && base) {
        try {
          const resp = await fetch(`${base}durable/api/health`, { credentials: "same-origin" });
          if (resp.ok && (await resp.json()).instance === engine.instance) {
            return restTransport(base);
          }
        } catch (e) { /* fall back to the kernel */ }
      }
      return kernelTransport(model, pending);
    })();
    TRANSPORTS.set(key, t);
  }
  return t;
}

function apiFor(model, key, pending) {
  const call = async (method, path, body) => (await transportFor(model, key, pending)).call(
    method, path, body);
  return {
    call,
    getJson: (path) => call("GET", path),
    decide: (runId, approved, wait, comment, values) => call(
      "POST", `/runs/${encodeURIComponent(runId)}/${approved ? "approve" : "reject"}`,
      values ? { wait: wait.name, comment: comment || null, values }
        : { wait: wait.name, comment: comment || null }),
  };
}

// Views of one model get different proxies; key shared state by the model's id.
const MODEL_KEYS = new Map();

function keyFor(model) {
  const id = model.get("_mid") || "";
  if (!MODEL_KEYS.has(id)) MODEL_KEYS.set(id, {});
  return MODEL_KEYS.get(id);
}

// Replies to kernel-transport requests, per model key.
const PENDING = new WeakMap();

function pendingFor(key) {
  let p = PENDING.get(key);
  if (!p) {
    p = new Map();
    PENDING.set(key, p);
  }
  return p;
}

function attachHint(runId) {
  return `%durable attach ${runId}`;
}

// Watch the widget's comm: after a kernel restart the model is no longer live.
function watchKernel(model, onChange) {
  const id = model.get("_mid");
  const mgr = model.widget_manager;
  if (!id || !mgr || !mgr.get_model) return () => {};
  let real = null;
  const check = () => onChange(real ? real.comm_live !== false : true);
  Promise.resolve(mgr.get_model(id)).then((m) => {
    real = m;
    if (real && real.on) real.on("comm_live_update", check);
    check();
  }).catch(() => {});
  return () => {
    if (real && real.off) real.off("comm_live_update", check);
  };
}

// A run id link: ask the page to open the run (the JupyterLab panel listens for this
// event on the document and calls preventDefault()); false when nobody did.
function openRun(from, runId) {
  const event = new CustomEvent("durable-nb:open-run", {
    bubbles: true, composed: true, cancelable: true, detail: { runId },
  });
  from.dispatchEvent(event);
  return event.defaultPrevented ? true : false;
}

function mountGraph(model, box, { key, trait, pending, runIdOf }) {
  const api = apiFor(model, key, pending);
  let live = true;
  const notice = () => {
    const run = model.get(trait) || {};
    const id = run.id || runIdOf();
    if (!live) {
      return {
        kind: "warning",
        text: "The kernel behind this view restarted or stopped, so it no longer updates. "
          + "To follow the run again (and get a cell's variables back), run ",
        code: attachHint(id),
      };
    }
    const text = model.get("notice");
    return text ? { kind: "warning", text } : null;
  };
  let fresh = null; // newer data a dead (kernel-less) view fetched itself
  // A refused decision: say who decided instead (and show it, when the view is stale).
  const decide = async (approved, w, comment, values) => {
    const run = model.get(trait) || {};
    try {
      return await api.decide(run.id, approved, w, comment, values);
    } catch (err) {
      let now = null;
      try {
        const latest = await loadRun(api.getJson, run.id, { logs: 0 });
        now = (latest.waits || []).find((x) => x.wait_key === w.wait_key);
        if (!live) {
          fresh = { ...latest, logs: run.logs || [] };
          draw();
        }
      } catch (e) { /* keep the engine's message */ }
      if (now && now.resolved_at != null) {
        const by = now.resolved_by ? ` by ${now.resolved_by}` : "";
        const note = now.comment ? ` (“${now.comment}”)` : "";
        throw new Error(`Not recorded: “${w.name}” was already ${String(now.outcome)
          .replace("_", " ")}${by}${note}. An approval is decided once.`);
      }
      throw err;
    }
  };
  const options = {
    onApprove: (w, comment, values) => decide(true, w, comment, values),
    onReject: (w, comment, values) => decide(false, w, comment, values),
    loadChild: (id) => loadRun(api.getJson, id, { logs: 0 }),
    onOpenChild: (id) => openRun(box, id),
    getJson: api.getJson, // a clicked step's arguments and output
  };
  model.on(`change:${trait}`, () => { fresh = null; });
  const draw = () => {
    const run = fresh || model.get(trait);
    if (!run || !run.id) {
      box.replaceChildren();
      return;
    }
    options.notice = notice();
    options.stale = !live && !fresh; // the kernel is gone: in-progress states are "as of"
    options.outputsInCell = !!model.get("outputs_in_cell");
    options.now = clockOf(run);
    renderRunGraph(box, run, options);
  };
  const stop = watchKernel(model, (isLive) => {
    if (isLive !== live) {
      live = isLive;
      draw();
    }
  });
  return { draw, stop };
}

function onCustom(model, pending) {
  const handler = (msg) => {
    if (msg && msg.type === "api_reply" && pending.has(msg.id)) {
      const done = pending.get(msg.id);
      pending.delete(msg.id);
      done(msg);
    }
  };
  model.on("msg:custom", handler);
  return () => model.off("msg:custom", handler);
}

// The engine's clock as seen from here: data carries the kernel's time of its fetch (`now`);
// the difference is measured when that data first arrives (skew + a little latency).
const SKEWS = new WeakMap();

function clockOf(data) {
  let skew = 0;
  if (data && typeof data === "object" && data.now) {
    if (!SKEWS.has(data)) SKEWS.set(data, Date.now() / 1000 - data.now);
    skew = SKEWS.get(data);
  }
  return () => Date.now() / 1000 - skew;
}

// ---------------------------------------------------------------------------- run widget

function renderRunView({ model, el }) {
  const key = keyFor(model);
  const pending = pendingFor(key);
  const box = document.createElement("div");
  box.className = "dng-widget";
  el.append(box);
  const graph = mountGraph(model, box, {
    key, trait: "run", pending, runIdOf: () => model.get("run_id"),
  });
  const offMsg = onCustom(model, pending);
  model.on("change:run", graph.draw);
  model.on("change:notice", graph.draw);
  graph.draw();
  return () => {
    model.off("change:run", graph.draw);
    model.off("change:notice", graph.draw);
    offMsg();
    graph.stop();
  };
}

// ---------------------------------------------------------------------------- runs widget

// The groups copy durable_nb/core/status.py (FILTER_GROUPS); tests/core/test_status.py checks them.
// EXPIRED (never started before its ttl) is canceled, not failed: nothing ran.
const STATUS_FILTERS = [
  ["", "all statuses"], ["QUEUED,DELAYED,EXECUTING,WAITING", "active"],
  ["QUEUED", "queued"], ["DELAYED", "delayed"], ["EXECUTING", "executing"],
  ["WAITING", "waiting"], ["COMPLETED", "completed"],
  ["FAILED,CRASHED,TIMED_OUT", "failed"], ["CANCELED,EXPIRED", "canceled / expired"],
];

function renderRunsView({ model, el }) {
  const modelKey = keyFor(model);
  const pending = pendingFor(modelKey);
  const root = h("div", { class: "dng-root dng-runs" });
  const toolbar = h("div", { class: "dng-toolbar" });
  const table = h("div", { class: "dng-table-wrap" });
  const detail = h("div", { class: "dng-detail" });
  root.append(toolbar, table, detail);
  el.append(root);

  const graph = mountGraph(model, detail, {
    key: modelKey, trait: "detail", pending, runIdOf: () => model.get("selected"),
  });
  const offMsg = onCustom(model, pending);
  const set = (changes) => {
    for (const [k, v] of Object.entries(changes)) model.set(k, v);
    model.save_changes();
  };

  const drawToolbar = () => {
    const status = h("select", {
      class: "dng-select", "aria-label": "status",
      onchange: (e) => set({ status: e.target.value, offset: 0 }),
    }, STATUS_FILTERS.map(([v, label]) => h("option", { value: v }, label)));
    status.value = model.get("status") || "";
    const tasks = model.get("tasks") || [];
    const task = h("select", {
      class: "dng-select", "aria-label": "task",
      onchange: (e) => set({ task: e.target.value, offset: 0 }),
    }, h("option", { value: "" }, "all tasks"), tasks.map((t) => h("option", { value: t }, t)));
    task.value = model.get("task") || "";
    const offset = model.get("offset") || 0;
    const limit = model.get("limit") || 25;
    const rows = model.get("rows") || [];
    const total = model.get("total");
    const known = total != null && total >= 0;
    const range = rows.length
      ? `${(offset + 1).toLocaleString()}–${(offset + rows.length).toLocaleString()}`
        + (known ? ` of ${total.toLocaleString()}` : "")
      : (known && total === 0 ? "no runs" : "");
    const more = known ? offset + rows.length < total : rows.length === limit;
    toolbar.replaceChildren(...[
      h("span", { class: "dng-title" }, "Runs"), status, task,
      h("span", { class: "dng-spacer" }),
      model.get("error") ? h("span", { class: "dng-error-msg" }, model.get("error")) : null,
      h("span", { class: "dng-meta dng-range" }, range),
      h("button", {
        class: "dng-page", disabled: offset <= 0, title: "newer runs", "aria-label": "previous page",
        onclick: () => set({ offset: Math.max(0, offset - limit) }),
      }, "‹"),
      h("button", {
        class: "dng-page", disabled: !more, title: "older runs", "aria-label": "next page",
        onclick: () => set({ offset: offset + limit }),
      }, "›")].filter(Boolean));
  };

  const drawTable = () => {
    const rows = model.get("rows") || [];
    const selected = model.get("selected");
    const approvals = model.get("approvals") || {};
    const nowS = clockOf(rows[0])();
    const body = rows.map((r) => {
      const waiting = approvals[r.id] || [];
      const running = !TERMINAL.has(r.status) && r.started_at;
      const dur = r.duration != null ? formatDuration(r.duration)
        : running ? formatDuration(nowS - r.started_at) : "";
      return h("tr", {
        class: `dng-tr ${r.id === selected ? "dng-selected" : ""}`, tabindex: "0",
        dataset: { runId: r.id },
        onclick: () => set({ selected: r.id === selected ? "" : r.id }),
        onkeydown: (e) => {
          if (e.key === "Enter") set({ selected: r.id === selected ? "" : r.id });
        },
      },
      h("td", {}, h("span", { class: `dng-dot dng-small dng-k-${statusKind(r.status)}` }), " ",
        badge(r.status)),
      h("td", { class: "dng-name" }, r.task_id || ""),
      h("td", {}, h("code", { class: "dng-id", title: r.id }, r.id)),
      h("td", { class: "dng-meta" }, formatTime(r.created_at)),
      h("td", { class: "dng-meta dng-num" }, dur),
      h("td", { class: "dng-meta dng-num" }, String(r.attempts || 0)),
      h("td", {}, waiting.length ? h("span", {
        class: "dng-badge dng-k-wait", title: "pending approvals",
      }, waiting.join(", ")) : null,
      r.duration_warning ? h("span", {
        class: "dng-badge dng-warn", title: "exceeded its max_duration",
      }, "⚠ over max_duration") : null));
    });
    const t = h("table", { class: "dng-table" },
      h("thead", {}, h("tr", {}, ["status", "task", "run", "created", "duration", "attempts",
        "approvals"].map((c) => h("th", {}, c)))),
      h("tbody", {}, body.length ? body : h("tr", {}, h("td", { colspan: "7", class: "dng-muted" },
        model.get("loading") ? "loading…" : "no runs match"))));
    table.replaceChildren(t);
  };

  const drawAll = () => {
    drawToolbar();
    drawTable();
    graph.draw();
  };
  const events = ["change:rows", "change:total", "change:tasks", "change:status", "change:task",
    "change:offset", "change:selected", "change:approvals", "change:error", "change:loading"];
  const onRows = () => {
    drawToolbar();
    drawTable();
  };
  events.forEach((e) => model.on(e, onRows));
  model.on("change:detail", graph.draw);
  model.on("change:notice", graph.draw);
  drawAll();
  const timer = setInterval(() => {
    if (!el.isConnected) return;
    if ((model.get("rows") || []).some((r) => !TERMINAL.has(r.status) && r.started_at)) drawTable();
  }, 1000);
  return () => {
    clearInterval(timer);
    events.forEach((e) => model.off(e, onRows));
    model.off("change:detail", graph.draw);
    model.off("change:notice", graph.draw);
    offMsg();
    graph.stop();
  };
}
