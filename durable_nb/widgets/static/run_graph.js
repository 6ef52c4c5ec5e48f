// durable_nb run graph: a standalone ES module (no imports, no anywidget, no build step).
//
// Used by the anywidget run widget (durable_nb/widgets/run_widget.py) and by the JupyterLab panel's
// detail view. Pair it with run_graph.css (all classes are prefixed `dng-`; colors use
// JupyterLab's --jp-* theme variables with light fallbacks).
//
// Public API (stable):
//
//   renderRunGraph(el, run, options?)  -> void
//       Render `run` into `el` (its contents are replaced). Call it again with new data to
//       update: what the user opened (tracebacks, logs, child runs), typed (approval
//       comments) and focused survives re-renders. Durations of running items tick by
//       themselves.
//       run: the JSON of GET <base>/durable/api/runs/<id> (summary + attempt_list, steps,
//            waits, children), optionally with
//              checkpoints: [{statement, total, size, at}]   (cells; spans of kind checkpoint)
//              logs: [{at, stream, line}]                     (a tail of the output)
//              steps_omitted: number                          (older step rows left out)
//              step_groups: [{name, steps, tries, completed, failed, retrying, total_s,
//                             median_s, first_at}]            (every step by name, when
//                                                              rows were left out)
//            loadRun() builds exactly this from the REST API.
//            Its `progress` ({done, total, text}) shows as a bar under the title (without a
//            total, an indeterminate one while the run runs) and its `metadata` as key ->
//            compact JSON rows; a live caller may replace just those two between loads.
//       A run of more than 50 steps (or with step_groups) shows one node per step name that
//       repeats ("fetch × 3,333", counts by outcome, total and median time); a click lists
//       its steps 100 at a time ("show more"), from the run's rows when it has them all,
//       else from GET /runs/<id>/steps?name=... (through getJson).
//       options (all optional):
//         onApprove(wait, comment, values) -> Promise   resolve an approval; reject the
//         onReject(wait, comment)  -> Promise   promise with an Error whose message is shown
//                                               in the graph (e.g. "already approved by alice").
//                                               `wait` is the wait row ({wait_key, name, form,
//                                               ...}); `values`: what its typed form holds
//                                               (only when it has one, checked: Approve stays
//                                               disabled while a field is missing or wrong).
//                                               Without these, pending approvals show no buttons.
//         loadChild(runId) -> Promise<run>      lets child runs expand inline (nested graph).
//         onOpenChild(runId) -> false | any     makes child (and parent) run ids links, e.g. to
//                                               open a panel; returning false expands a child
//                                               inline instead.
//         childRuns: {[runId]: run}             child data the caller already has (wins over
//                                               loadChild).
//         notice: {kind: "info"|"warning"|"error", text: string, code?: string} | null
//                                               a banner above the graph (e.g. "kernel
//                                               restarted; re-attach with ...").
//         now: () => seconds                    clock for live durations (default: Date.now).
//         getJson(path) -> Promise<json>        the API (as for loadRun): clicking a step loads
//                                               its arguments and output from
//                                               /runs/<id>/steps/<key>. Runs that loadRun
//                                               fetched remember their getJson, so this is
//                                               needed only for data from elsewhere.
//         loadStep(runId, stepKey) -> Promise<json>   instead of getJson, for that one route.
//         outputsInCell: boolean                the run's output is printed in the cell below
//                                               the view too (a %%durable cell): the Output
//                                               section starts folded, so nothing shows twice.
//         stale: boolean                        the data no longer updates (its source, e.g. a
//                                               kernel, is gone): states in progress, such as
//                                               a step waiting to retry, say "as of" the
//                                               data's time (run.now, else its latest event).
//
//       A step's tries: each try shows once with its number (tries are grouped per step, per
//       task-level generation and, when the run had several attempts, per attempt). A failed
//       try that will be retried is "retrying" (amber) while the run runs; "retried" once a
//       later try exists. Log rows of stream "display" (rich output) show their text/plain;
//       a later "update" of the same display id replaces it in place; "clear" is skipped.
//
//   loadRun(getJson, runId, {logs = 200}?) -> Promise<run>
//       Fetch everything renderRunGraph shows. getJson(path) must return the parsed JSON of
//       GET <base>/durable/api<path> (path like "/runs/run_1/logs?limit=200"), so the caller
//       decides how to authenticate (ServerConnection, fetch with XSRF, a kernel ...).
//
//   renderForm(schema, store, {disabled, focusPrefix, onChange}) -> {node, check, update}
//   checkForm(schema, raw) -> {values, errors}        isForm(schema) -> boolean
//       An approval's typed form (a wait's `form`): its fields as inputs, checked in the
//       browser (required, type, bounds, length, pattern); see "typed forms" below.
//
//   STATUS_COLORS: {status: css color}, TERMINAL: Set of final statuses,
//   statusKind(status) -> "ok" | "bad" | "run" | "wait" | "idle" | "off"  (css suffix)
//
// The statuses and their groups copy durable_nb/core/status.py (TERMINAL, VIEW_KIND);
// tests/core/test_status.py checks that they agree.
//   formatDuration(seconds) -> string

export const TERMINAL = new Set([
  "COMPLETED", "FAILED", "CANCELED", "CRASHED", "TIMED_OUT", "EXPIRED",
]);

export const STATUS_COLORS = {
  COMPLETED: "#1a7f37", FAILED: "#cf222e", CRASHED: "#cf222e", TIMED_OUT: "#cf222e",
  ERRORED: "#cf222e", EXECUTING: "#0969da", RUNNING: "#0969da", WAITING: "#bf8700",
  PENDING: "#bf8700", DELAYED: "#8250df", QUEUED: "#6e7781", CANCELED: "#57606a",
  EXPIRED: "#57606a", SUSPENDED: "#6e7781", INTERRUPTED: "#6e7781",
};

const KIND_OF = {
  COMPLETED: "ok", APPROVED: "ok", EVENT: "ok", ELAPSED: "ok",
  FAILED: "bad", ERRORED: "bad", CRASHED: "bad", TIMED_OUT: "bad", REJECTED: "bad",
  EXECUTING: "run", RUNNING: "run",
  WAITING: "wait", PENDING: "wait", DELAYED: "wait",
  QUEUED: "idle", SUSPENDED: "idle", INTERRUPTED: "idle",
  CANCELED: "off", EXPIRED: "off", ABANDONED: "off",
};

/** The css suffix (dng-k-<kind>) of a run, step, attempt or wait status. */
export function statusKind(status) {
  return KIND_OF[String(status || "").toUpperCase()] || "idle";
}

/** "850 ms", "3.2 s", "4 min 05 s", "2 h 10 min". */
export function formatDuration(s) {
  if (s == null || !isFinite(s)) return "";
  if (s < 0) s = 0;
  if (s < 1) return `${Math.round(s * 1000)} ms`;
  if (s < 60) return `${s < 10 ? s.toFixed(2) : s.toFixed(1)} s`;
  if (s < 3600) {
    const m = Math.floor(s / 60);
    return `${m} min ${String(Math.floor(s % 60)).padStart(2, "0")} s`;
  }
  const h = Math.floor(s / 3600);
  return `${h} h ${String(Math.floor((s % 3600) / 60)).padStart(2, "0")} min`;
}

function formatTime(t) {
  if (!t) return "";
  const d = new Date(t * 1000);
  const today = new Date();
  const time = d.toLocaleTimeString([], { hour12: false });
  return d.toDateString() === today.toDateString()
    ? time : `${d.toLocaleDateString()} ${time}`;
}

function formatSize(n) {
  if (n == null) return "";
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}

function shortId(id) {
  return id && id.length > 14 ? `${id.slice(0, 12)}…` : id || "";
}

/** Build an element: h("div", {class: "x", onclick: f}, child, "text", [more]). */
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k === "value") el.value = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  const add = (c) => {
    if (c == null || c === false) return;
    if (Array.isArray(c)) c.forEach(add);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  };
  children.forEach(add);
  return el;
}

// a row that opens and closes on a click, Enter or Space
function toggleAttrs(open, toggle) {
  return {
    role: "button", tabindex: "0", "aria-expanded": open ? "true" : "false",
    onclick: toggle,
    onkeydown: (e) => {
      if (e.key === "Enter" || e.key === " ") {
        e.preventDefault();
        toggle();
      }
    },
  };
}

function badge(status, label) {
  return h("span", { class: `dng-badge dng-k-${statusKind(status)}` }, label || status);
}

function preview(value) {
  if (value == null) return "";
  if (typeof value === "string") return value;
  try {
    return JSON.stringify(value, null, 2);
  } catch (e) {
    return String(value);
  }
}

// ---------------------------------------------------------------------------- state

// Per-element UI state that survives re-renders.
const STATES = new WeakMap();

function stateOf(el) {
  let s = STATES.get(el);
  if (!s) {
    s = {
      open: new Map(),       // details key -> open?
      comments: new Map(),   // wait key -> typed comment
      forms: new Map(),      // wait key -> {raw, touched} of its typed form (renderForm)
      busy: new Set(),       // wait keys being resolved
      messages: new Map(),   // wait key -> {kind, text}
      expanded: new Set(),   // child run ids shown inline
      stepsOpen: new Set(),  // "<run id>/io/<step key>" of steps whose details show
      groupsOpen: new Map(), // "<run id>/group/<name>" -> steps of the group listed
      groupPages: new Map(), // the same keys -> {sig, rows, keys, total, loading, error}
      stepIO: new Map(),     // the same keys -> {sig, loading, data, error}
      children: new Map(),   // child run id -> {run, loading, error, at}
      timer: null,
      run: null,
      options: {},
      logsPinned: true,
    };
    STATES.set(el, s);
  }
  return s;
}

function details(state, key, summary, body, openByDefault, extraClass) {
  const open = state.open.has(key) ? state.open.get(key) : !!openByDefault;
  const d = h("details", { class: `dng-details ${extraClass || ""}`, open },
    h("summary", {}, summary), body);
  d.addEventListener("toggle", () => state.open.set(key, d.open));
  return d;
}

// ---------------------------------------------------------------------------- loading

// Step rows loadRun fetches at most (the newest); a bigger run's groups list their steps a
// page at a time.
const LOAD_STEPS = 500;

// getJson of the runs loadRun fetched: a clicked step loads its arguments with it.
const LOADERS = new WeakMap();

/** Fetch a run with its checkpoints and a tail of its logs (see the header). */
export async function loadRun(getJson, runId, { logs = 200 } = {}) {
  const id = encodeURIComponent(runId);
  // a big run comes with its newest step rows and every step grouped by name (step_groups)
  const [run, tail] = await Promise.all([
    getJson(`/runs/${id}?steps=${LOAD_STEPS}`),
    logs ? getJson(`/runs/${id}/logs?limit=${logs}`).catch(() => ({ logs: [] }))
      : Promise.resolve({ logs: [] }),
  ]);
  // checkpoints are a cell's spans (a task's spans, one per step, are not fetched)
  const spans = run.kind === "cell"
    ? await getJson(`/runs/${id}/spans`).catch(() => ({ spans: [] })) : { spans: [] };
  run.checkpoints = (spans.spans || [])
    .filter((s) => s.kind === "checkpoint")
    .map((s) => ({
      statement: (s.attributes || {}).statement, total: (s.attributes || {}).total,
      size: (s.attributes || {}).size, at: s.start_at,
    }));
  run.logs = tail.logs || [];
  LOADERS.set(run, getJson);
  return run;
}

// ---------------------------------------------------------------------------- model

// Turn the run's rows into graph items in time order: a big run's steps grouped by name,
// a small run's loops folded.
function buildItems(run) {
  const items = baseItems(run);
  return groupSteps(run, items) || foldRepeats(items);
}

// One item per step (its tries), wait, checkpoint, attempt and child trigger, in time order.
function baseItems(run) {
  const items = [];
  const retryWaits = new Map(); // "key|generation|try" -> the wait after that try
  const childTargets = new Set();
  for (const w of run.waits || []) {
    if (w.kind === "retry") {
      const r = retryOf(w);
      if (r) retryWaits.set(`${r.key}|${r.generation}|${r.attempt}`, w);
    } else if (w.kind === "child") {
      (w.target || []).forEach((t) => childTargets.add(t));
    }
  }
  const childWaitTasks = new Set(
    (run.waits || []).filter((w) => w.kind === "child").map((w) => w.name));
  // one node per step, task-level generation and (with several attempts) attempt, so each
  // try shows once, under the attempt it ran in
  const split = (run.attempt_list || []).length > 1;
  const groups = new Map();
  const last = new Map(); // "key|generation" -> its highest try; key -> its latest generation
  for (const s of run.steps || []) {
    const gen = s.generation || 0;
    const gid = s.step_key.startsWith("trigger:") ? s.step_key
      : `${s.step_key}|${gen}|${split ? s.run_attempt || 0 : 0}`;
    if (!groups.has(gid)) groups.set(gid, []);
    groups.get(gid).push(s);
    const kg = `${s.step_key}|${gen}`;
    last.set(kg, Math.max(last.get(kg) || 0, s.attempt || 0));
    last.set(s.step_key, Math.max(last.get(s.step_key) || 0, gen));
  }
  const children = run.children || [];
  for (const tries of groups.values()) {
    const key = tries[0].step_key;
    tries.sort((a, b) => (a.started_at || 0) - (b.started_at || 0) || a.attempt - b.attempt);
    if (key.startsWith("trigger:")) {
      const task = key.slice(8).replace(/#\d+$/, "");
      if (childWaitTasks.has(task)) continue; // shown by its child wait
      const ids = children.filter((c) => c.task_id === task && !childTargets.has(c.id))
        .map((c) => c.id);
      ids.forEach((i) => childTargets.add(i));
      items.push({ type: "trigger", at: tries[0].started_at, key, task, ids });
      continue;
    }
    const generation = tries[0].generation || 0;
    items.push({ type: "step", at: tries[0].started_at, key, tries, generation, retryWaits,
      lastTry: last.get(`${key}|${generation}`), superseded: last.get(key) > generation });
  }
  for (const w of run.waits || []) {
    if (w.kind === "retry") continue;
    items.push({ type: "wait", at: w.created_at, wait: w });
  }
  for (const c of run.checkpoints || []) {
    items.push({ type: "checkpoint", at: c.at, cp: c });
  }
  const attempts = run.attempt_list || [];
  if (attempts.length > 1) {
    for (const a of attempts) items.push({ type: "attempt", at: a.started_at, attempt: a });
  }
  const orphans = children.filter((c) => !childTargets.has(c.id));
  if (orphans.length) {
    items.push({ type: "trigger", at: Infinity, key: "children", task: null,
      ids: orphans.map((c) => c.id) });
  }
  // attempts sort before what they contain when times tie
  const rank = { attempt: 0, step: 1, trigger: 1, wait: 1, checkpoint: 2 };
  const at = (x) => (x.at == null || !isFinite(x.at) ? Number.MAX_VALUE : x.at);
  items.sort((a, b) => at(a) - at(b) || rank[a.type] - rank[b.type]);
  return items;
}

// Consecutive one-try completed calls of the same step (a loop) fold into one node.
const FOLD_AT = 4;

function plainStep(item) {
  return item.type === "step" && item.tries.length === 1 && item.tries[0].status === "COMPLETED";
}

function foldRepeats(items) {
  const out = [];
  for (let i = 0; i < items.length;) {
    let j = i;
    while (j < items.length && plainStep(items[j]) && plainStep(items[i])
      && items[j].tries[0].name === items[i].tries[0].name) j++;
    if (j - i >= FOLD_AT) {
      out.push({ type: "repeat", at: items[i].at, steps: items.slice(i, j) });
      i = j;
    } else {
      out.push(items[i]);
      i += 1;
    }
  }
  return out;
}

// ---------------------------------------------------------------------------- render

/** Render (or re-render) `run` into `el`; see the module header for `options`. */
export function renderRunGraph(el, run, options = {}) {
  const state = stateOf(el);
  state.run = run;
  state.options = options || {};
  const active = document.activeElement;
  const focus = active && el.contains(active) && active.dataset.focusKey
    ? { key: active.dataset.focusKey, start: active.selectionStart, end: active.selectionEnd }
    : null;
  const logScroll = el.querySelector(".dng-logs pre");
  if (logScroll) {
    state.logsPinned = logScroll.scrollTop + logScroll.clientHeight >= logScroll.scrollHeight - 4;
  }

  el.classList.add("dng-root");
  el.replaceChildren(renderRun(el, state, run, options, 0));

  if (focus) {
    const again = el.querySelector(`[data-focus-key="${CSS.escape(focus.key)}"]`);
    if (again) {
      again.focus();
      try {
        again.setSelectionRange(focus.start, focus.end);
      } catch (e) { /* not a text input */ }
    }
  }
  const pre = el.querySelector(".dng-logs pre");
  if (pre && state.logsPinned) pre.scrollTop = pre.scrollHeight;
  tick(el, state);
}

function now(options) {
  return options.now ? options.now() : Date.now() / 1000;
}

// Update running durations once a second while `el` is in the document.
function tick(el, state) {
  const update = () => {
    const t = now(state.options);
    for (const n of el.querySelectorAll("[data-since]")) {
      n.textContent = formatDuration(t - Number(n.dataset.since));
    }
  };
  update();
  if (state.timer) return;
  state.timer = setInterval(() => {
    if (!el.isConnected || !el.querySelector("[data-since]")) {
      clearInterval(state.timer);
      state.timer = null;
      return;
    }
    update();
  }, 1000);
}

function liveDuration(start, end) {
  if (start == null) return null;
  if (end != null) return h("span", { class: "dng-dur" }, formatDuration(end - start));
  return h("span", { class: "dng-dur", dataset: { since: String(start) } });
}

function renderRun(el, state, run, options, depth) {
  const status = run.status || "QUEUED";
  const finished = TERMINAL.has(status);
  const root = h("div", {
    class: `dng-run dng-k-${statusKind(status)} ${depth ? "dng-nested" : ""}`,
    dataset: { runId: run.id || "", status },
  });

  const n = run.attempts || (run.attempt_list || []).length || 0;
  // a single attempt has no row of its own: its Dask worker is named here
  const only = (run.attempt_list || []).length === 1 ? run.attempt_list[0] : null;
  const meta = [
    run.kind === "cell" ? "cell" : null,
    n ? `${n} attempt${n === 1 ? "" : "s"}` : null,
    only && only.worker ? `on Dask worker ${only.worker}` : null,
    run.queue && !String(run.queue).startsWith("task:") ? `queue ${run.queue}` : null,
    run.priority ? `priority ${run.priority}` : null,
    run.created_at ? `created ${formatTime(run.created_at)}` : null,
  ].filter(Boolean);
  const start = run.started_at;
  root.append(h("div", { class: "dng-head" },
    h("span", { class: `dng-dot dng-k-${statusKind(status)}` }),
    h("span", { class: "dng-title" }, run.task_id || "run"),
    versionBadge(run.version),
    badge(status),
    start ? liveDuration(start, finished ? run.finished_at || start : null) : null,
    run.duration_warning
      ? h("span", { class: "dng-badge dng-warn", title: "the run exceeded its max_duration" },
        "⚠ over max_duration") : null,
    h("span", { class: "dng-spacer" }),
    h("code", { class: "dng-id", title: run.id }, run.id),
  ));
  const sub = [h("span", {}, meta.join(" · "))];
  if (run.parent_run_id && depth === 0) {
    sub.push(h("span", {}, " · child of "), runLink(run.parent_run_id, options));
  }
  if (run.replay_of) sub.push(h("span", {}, ` · replay of ${shortId(run.replay_of)}`));
  if (run.fork_of && depth === 0) {
    sub.push(h("span", { class: "dng-fork-of" }, " · fork of "), runLink(run.fork_of, options),
      h("span", {}, forkStepText(run)));
  }
  if (run.hook_of && depth === 0) {
    sub.push(h("span", {}, ` · ${run.hook_kind || "hook"} hook of `), runLink(run.hook_of, options));
  }
  if (run.schedule_id) {
    const tick = run.schedule_tick ? formatTime(run.schedule_tick) : "?";
    sub.push(h("span", { class: "dng-schedule", title: `fired by schedule ${run.schedule_id}` },
      ` · schedule ${run.schedule_id}, tick ${tick}`));
  }
  if (run.tags && run.tags.length) sub.push(h("span", {}, ` · tags ${run.tags.join(", ")}`));
  root.append(h("div", { class: "dng-sub" }, sub));
  const forkTree = depth === 0 ? renderForkTree(el, state, run, options) : null;
  if (forkTree) root.append(forkTree);
  const reports = renderReports(state, run);
  if (reports) root.append(reports);

  if (options.notice && depth === 0) {
    root.append(h("div", { class: `dng-notice dng-notice-${options.notice.kind || "info"}` },
      options.notice.text, options.notice.code ? h("code", {}, options.notice.code) : null));
  }

  const items = buildItems(run);
  const list = h("ol", { class: "dng-graph" });
  if (run.steps_omitted && !run.step_groups) {
    list.append(h("li", { class: "dng-node dng-k-off dng-more" },
      h("span", { class: "dng-dot dng-k-off" }),
      h("div", { class: "dng-row" }, `${run.steps_omitted} earlier step records not shown`)));
  }
  for (const item of items) list.append(renderItem(el, state, run, item, options, depth));
  if (!items.length && !finished) {
    list.append(node("idle", h("span", { class: "dng-muted" },
      status === "QUEUED" ? "waiting for a worker…" : status === "DELAYED"
        ? `starts ${run.delay_until ? formatTime(run.delay_until) : "later"}` : "starting…")));
  }
  list.append(renderEnd(state, run, depth));
  // lifecycle hooks run after the end, drawn like child runs (expandable)
  if ((run.hooks || []).length) {
    list.append(renderChildren(el, state, run, run.hooks.map((k) => k.id), options, depth,
      run.hooks.map((k) => k.hook_kind).join(", "), null, "hooks"));
  }
  root.append(list);

  if (depth === 0 && run.logs && run.logs.length) root.append(renderLogs(state, run));
  return root;
}

// The code version the run ran: "v2" (its number among its task's code hashes), amber when
// a newer version was registered since; the title has the hash and the latest number.
function versionBadge(v) {
  if (!v || !v.number) return null;
  const hash = String(v.hash || "").slice(0, 7);
  const title = v.latest
    ? `code version v${v.number} (${hash}), the latest`
    : `code version v${v.number} (${hash}); v${v.latest_number || "?"} is the latest`;
  return h("span", { class: `dng-version${v.latest ? "" : " dng-version-old"}`, title },
    `v${v.number}`);
}

// ---------------------------------------------------------------- progress and metadata

const META_KEYS = 12; // metadata keys listed; the rest fold under "N more keys"
const META_CHARS = 120; // a value's compact JSON is cut after this (its title has it whole)

// The run's progress (dn.progress, or its outermost tqdm bar) as a bar: done / total and
// percent, or an indeterminate bar without a total; and its metadata (dn.metadata), key ->
// compact JSON. Null when the run reported neither.
function renderReports(state, run) {
  const p = run.progress && typeof run.progress === "object" ? run.progress : null;
  const meta = run.metadata && typeof run.metadata === "object"
    ? Object.entries(run.metadata) : [];
  if (!p && !meta.length) return null;
  const box = h("div", { class: "dng-reports" });
  if (p) box.append(renderProgress(p, TERMINAL.has(run.status)));
  if (meta.length) box.append(renderMetadata(state, run, meta));
  return box;
}

function renderProgress(p, finished) {
  const done = Number(p.done) || 0;
  const total = Number(p.total) > 0 ? Number(p.total) : null;
  const frac = total ? Math.max(0, Math.min(1, done / total)) : null;
  const pct = frac == null ? null : Math.floor(frac * 100);
  const label = total ? `${fmtCount(done)} / ${fmtCount(total)} · ${pct}%` : fmtCount(done);
  const moving = frac == null && !finished; // no total: an animated bar while it runs
  return h("div", {
    class: "dng-progress", title: p.text ? `${p.text}: ${label}` : label,
    dataset: { done: String(done), total: total == null ? "" : String(total) },
  },
  h("div", {
    class: `dng-progress-bar${moving ? " dng-indeterminate" : ""}`, role: "progressbar",
    "aria-valuemin": "0", "aria-valuemax": total == null ? null : String(total),
    "aria-valuenow": String(done), "aria-label": p.text || "progress",
  }, h("div", { class: "dng-progress-fill", style: frac == null ? null : `width: ${pct}%` })),
  h("span", { class: "dng-progress-label" }, label),
  p.text ? h("span", { class: "dng-progress-text" }, p.text) : null);
}

function compactJson(value) {
  try {
    return JSON.stringify(value);
  } catch (e) {
    return String(value);
  }
}

function metadataRows(entries) {
  return h("div", { class: "dng-metadata" }, entries.map(([k, v]) => {
    const text = compactJson(v);
    const cut = text.length > META_CHARS ? `${text.slice(0, META_CHARS)}…` : text;
    return h("div", { class: "dng-metadata-row", dataset: { key: k } },
      h("span", { class: "dng-metadata-key" }, k),
      h("code", { class: "dng-metadata-value", title: cut !== text ? text : null }, cut));
  }));
}

function renderMetadata(state, run, entries) {
  const rest = entries.slice(META_KEYS);
  if (!rest.length) return metadataRows(entries);
  return h("div", {}, metadataRows(entries.slice(0, META_KEYS)),
    details(state, `${run.id}/metadata`, `${rest.length} more key${rest.length === 1 ? "" : "s"}`,
      metadataRows(rest), false, "dng-metadata-more"));
}

function node(kind, ...content) {
  return h("li", { class: `dng-node dng-k-${kind}` },
    h("span", { class: `dng-dot dng-k-${kind}` }), h("div", { class: "dng-body" }, content));
}

function runLink(id, options, el, state) {
  if (options.onOpenChild) {
    return h("a", {
      class: "dng-link", href: "#", title: `open ${id}`,
      onclick: (e) => {
        e.preventDefault();
        // false: nobody could open it elsewhere, so show it here (children only)
        if (options.onOpenChild(id) === false && el && state && state.run
          && [...(state.run.children || []), ...(state.run.hooks || [])]
            .some((c) => c.id === id)) {
          state.expanded.add(id);
          rerender(el, state);
        }
      },
    }, shortId(id));
  }
  return h("code", { class: "dng-id", title: id }, shortId(id));
}

function errorBlock(state, key, type, message, traceback, open) {
  return h("div", { class: "dng-error" },
    h("div", { class: "dng-error-msg" }, h("b", {}, type || "Error"), message ? `: ${message}` : ""),
    traceback ? details(state, key, "traceback", h("pre", { class: "dng-tb" }, traceback), open)
      : null);
}

function renderItem(el, state, run, item, options, depth) {
  switch (item.type) {
    case "step": return renderStep(el, state, run, item, options);
    case "repeat": return renderRepeat(el, state, run, item, options);
    case "group": return renderGroup(el, state, run, item, options);
    case "wait": return renderWait(el, state, run, item.wait, options, depth);
    case "checkpoint": return renderCheckpoint(item.cp);
    case "trigger": return renderChildren(el, state, run, item.ids, options, depth,
      item.task ? `triggered ${item.task}` : "child runs", null);
    case "attempt": return renderAttempt(state, run, item.attempt);
    default: return h("li");
  }
}

// "<key> retry <try>[ g<generation>]": the durable wait before a step's next try
function retryOf(w) {
  const m = /^(.*) retry (\d+)(?: g(\d+))?$/.exec(String(w.name || ""));
  return m ? { key: m[1], attempt: Number(m[2]), generation: Number(m[3] || 0) } : null;
}

// What became of one try: ok, errored (raised into the task), failed (not retried: the
// run ended first), retried (a later try exists) or retrying (the run goes on to retry it).
function tryState(run, item, t) {
  if (t.status === "COMPLETED") return "ok";
  if (t.status === "ERRORED") return "errored";
  if (t.attempt < item.lastTry || item.superseded) return "retried";
  return TERMINAL.has(run.status) ? "failed" : "retrying";
}

const TRY_KIND = { ok: "ok", errored: "bad", failed: "bad", retried: "wait", retrying: "wait" };

// The time the data shows (a stale view says "as of" it).
function dataTime(run) {
  if (run.now) return run.now;
  let t = 0;
  for (const s of run.steps || []) t = Math.max(t, s.ended_at || s.started_at || 0);
  for (const w of run.waits || []) t = Math.max(t, w.resolved_at || w.created_at || 0);
  return t || null;
}

function tryRow(state, run, item, t, st) {
  const w = item.retryWaits.get(`${item.key}|${item.generation}|${t.attempt}`);
  const delay = w && w.resolved_at != null ? w.resolved_at - w.created_at
    : (w && w.deadline ? w.deadline - w.created_at : t.retry_delay);
  const dur = t.ended_at != null ? ` · ${formatDuration(t.ended_at - t.started_at)}` : "";
  let text;
  if (st === "ok") text = `✓ try ${t.attempt}${dur}`;
  else if (st === "retried") {
    text = `↻ try ${t.attempt} failed${delay != null ? ` · retried after ${formatDuration(delay)}` : " · retried"}`;
  } else if (st === "retrying") {
    text = `↻ try ${t.attempt} failed · retrying${delay != null ? ` after ${formatDuration(delay)}` : ""}`;
  } else text = `✕ try ${t.attempt}`;
  const label = h("span", { class: `dng-try-label dng-k-${TRY_KIND[st]}`,
    dataset: { try: String(t.attempt), state: st } }, text);
  if (st === "ok") return h("div", { class: "dng-try" }, label);
  const open = (st === "errored" || st === "failed") && run.status !== "COMPLETED";
  return h("div", { class: "dng-try" }, label,
    errorBlock(state, `${run.id}/step/${item.key}/${item.generation}/${t.attempt}`, t.error_type,
      t.error_message, t.traceback, open));
}

function renderStep(el, state, run, item, options) {
  const { key, tries } = item;
  const last = tries[tries.length - 1];
  const states = tries.map((t) => tryState(run, item, t));
  const st = states[states.length - 1];
  const pending = st === "retrying"
    ? item.retryWaits.get(`${key}|${item.generation}|${last.attempt}`) : null;
  const kind = { ok: "ok", errored: "bad", failed: "bad", retried: "idle", retrying: "wait" }[st];
  let label = { ok: "completed", errored: "errored", failed: "failed", retried: "retried" }[st];
  if (st === "retrying") {
    const asOf = options.stale ? dataTime(run) : null;
    label = asOf ? `retrying (state as of ${formatTime(asOf)})` : "retrying";
  }
  const dur = last.ended_at != null ? formatDuration(last.ended_at - last.started_at) : "";
  const ioKey = `${run.id}/io/${key}`;
  const open = state.stepsOpen.has(ioKey);
  const toggle = () => toggleStepIO(el, state, ioKey);
  const title = h("div", {
    class: "dng-row dng-step-title", ...toggleAttrs(open, toggle),
    title: "show the step's arguments and output",
  },
  h("span", { class: "dng-caret" }, open ? "▾" : "▸"),
  // in its name's group, a step is its key (fetch#12)
  h("span", { class: "dng-name" }, item.inGroup ? key : last.name || key),
  key !== `${last.name}#1` && !item.inGroup ? h("span", { class: "dng-key" }, key) : null,
  h("span", { class: `dng-badge dng-k-${kind}` }, label),
  reusedBadge(run, tries[0]),
  tries.length > 1 ? h("span", { class: "dng-meta" }, `${tries.length} tries`)
    : (last.attempt > 1 ? h("span", { class: "dng-meta" }, `try ${last.attempt}`) : null),
  dur ? h("span", { class: "dng-meta" }, dur) : null);
  const body = [title];
  const plainError = tries.length === 1 && last.attempt === 1 && st === "errored";
  tries.forEach((t, i) => {
    if (tries.length === 1 && states[i] === "ok") return;
    if (plainError) {
      body.push(errorBlock(state, `${run.id}/step/${key}/${item.generation}/${t.attempt}`,
        t.error_type, t.error_message, t.traceback, run.status !== "COMPLETED"));
      return;
    }
    body.push(tryRow(state, run, item, t, states[i]));
  });
  if (pending && pending.resolved_at == null && !options.stale) {
    body.push(h("div", { class: "dng-muted" },
      `next try ${pending.deadline ? `at ${formatTime(pending.deadline)}` : "soon"}`));
  }
  if (open) body.push(renderStepIO(el, state, run, key, tries, options));
  return node(kind, body);
}

function renderRepeat(el, state, run, { steps }, options) {
  const rows = steps.map((x) => x.tries[0]);
  const total = rows.reduce((acc, t) => acc + (t.ended_at - t.started_at), 0);
  const name = rows[0].name;
  const opened = [];
  const list = h("ol", { class: "dng-repeat" }, rows.map((t) => {
    const ioKey = `${run.id}/io/${t.step_key}`;
    if (state.stepsOpen.has(ioKey)) opened.push(t);
    return h("li", {},
      h("a", {
        class: "dng-key dng-step-link", href: "#", title: "show its arguments and output",
        onclick: (e) => {
          e.preventDefault();
          toggleStepIO(el, state, ioKey);
        },
      }, t.step_key), " ",
      h("span", { class: "dng-meta" }, formatDuration(t.ended_at - t.started_at)));
  }));
  return node("ok", h("div", { class: "dng-row" },
    h("span", { class: "dng-name" }, name),
    h("span", { class: "dng-count" }, `× ${rows.length}`),
    badge("COMPLETED", "completed"),
    h("span", { class: "dng-meta" },
      `${formatDuration(total)} in all · ${formatDuration(total / rows.length)} each`)),
  details(state, `${run.id}/repeat/${rows[0].step_key}`, "calls", list, false),
  opened.map((t) => renderStepIO(el, state, run, t.step_key, [t], options)));
}

// ---------------------------------------------------------------------------- big runs

// A run with more step nodes than this (or with a summary of its steps, `step_groups`, as
// a view of a big run gets) shows one node per step name that repeats, with its counts; it
// opens to its steps, GROUP_PAGE at a time, so the page stays small however long the run.
const GROUP_AT = 50;
const GROUP_PAGE = 100;

// formatDuration, with fractions of a millisecond (no-op steps take microseconds)
function fineDuration(s) {
  return s > 0 && s < 0.0095 ? `${(s * 1000).toFixed(s < 0.001 ? 2 : 1)} ms` : formatDuration(s);
}

function fmtCount(n) {
  return Number(n || 0).toLocaleString("en-US");
}

function median(xs) {
  if (!xs.length) return null;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

// The summary of one name's step items, as GET /runs/<id>/step_groups gives it.
function summarize(run, name, items) {
  const g = { name, steps: 0, tries: 0, completed: 0, failed: 0, retrying: 0, total_s: 0,
    first_at: null };
  const last = [];
  for (const it of items) {
    for (const t of it.tries) {
      if (t.ended_at != null && t.started_at != null) g.total_s += t.ended_at - t.started_at;
    }
    if (g.first_at == null || it.at < g.first_at) g.first_at = it.at;
    if (it.superseded) continue; // a later generation of the same step counts instead
    const t = it.tries[it.tries.length - 1];
    const st = tryState(run, it, t);
    g.steps += 1;
    g.tries += it.tries.length;
    if (st === "ok") g.completed += 1;
    else if (st === "retrying") g.retrying += 1;
    else g.failed += 1;
    if (t.ended_at != null && t.started_at != null) last.push(t.ended_at - t.started_at);
  }
  g.median_s = median(last);
  return g;
}

function stepName(item) {
  return item.tries[0].name || item.key;
}

// Step items grouped by name (null: a small run, shown step by step).
function groupSteps(run, items) {
  const steps = items.filter((x) => x.type === "step");
  if (!run.step_groups && steps.length <= GROUP_AT) return null;
  const byName = new Map();
  for (const it of steps) {
    const name = stepName(it);
    if (!byName.has(name)) byName.set(name, []);
    byName.get(name).push(it);
  }
  const out = items.filter((x) => x.type !== "step");
  const summaries = run.step_groups
    || [...byName.entries()].map(([name, its]) => summarize(run, name, its));
  for (const g of summaries) {
    const local = byName.get(g.name) || [];
    const present = local.filter((it) => !it.superseded).length;
    const complete = present >= g.steps;
    if (g.steps <= 1 && local.length === 1 && complete) {
      out.push(local[0]);
      continue;
    }
    out.push({ type: "group", at: g.first_at ?? (local[0] && local[0].at), group: g,
      items: local, complete });
  }
  const at = (x) => (x.at == null || !isFinite(x.at) ? Number.MAX_VALUE : x.at);
  out.sort((a, b) => at(a) - at(b) || (a.type === "attempt" ? -1 : b.type === "attempt" ? 1 : 0));
  return out;
}

function groupKind(g) {
  if (g.failed) return "bad";
  if (g.retrying) return "wait";
  return g.completed ? "ok" : "idle";
}

function renderGroup(el, state, run, item, options) {
  const g = item.group;
  const key = `${run.id}/group/${g.name}`;
  const shown = state.groupsOpen.get(key) || 0;
  const open = shown > 0;
  const toggle = () => {
    if (state.groupsOpen.get(key)) state.groupsOpen.delete(key);
    else state.groupsOpen.set(key, GROUP_PAGE);
    rerender(el, state);
  };
  const counts = [
    g.completed ? h("span", { class: "dng-badge dng-k-ok" }, `✓ ${fmtCount(g.completed)}`) : null,
    g.failed ? h("span", { class: "dng-badge dng-k-bad" }, `✕ ${fmtCount(g.failed)} failed`) : null,
    g.retrying ? h("span", { class: "dng-badge dng-k-wait" },
      `↻ ${fmtCount(g.retrying)} retrying`) : null,
  ];
  const times = [g.total_s != null ? `${fineDuration(g.total_s)} in all` : null,
    g.median_s != null ? `median ${fineDuration(g.median_s)}` : null,
    g.tries > g.steps ? `${fmtCount(g.tries)} tries` : null].filter(Boolean).join(" · ");
  const title = h("div", {
    class: "dng-row dng-step-title dng-group-title", ...toggleAttrs(open, toggle),
    title: open ? "hide the steps" : "list the steps",
  },
  h("span", { class: "dng-caret" }, open ? "▾" : "▸"),
  h("span", { class: "dng-name" }, g.name),
  h("span", { class: "dng-count" }, `× ${fmtCount(g.steps)}`),
  counts, times ? h("span", { class: "dng-meta" }, times) : null);
  const body = [title];
  if (open) body.push(renderGroupSteps(el, state, run, item, key, shown, options));
  return h("li", { class: `dng-node dng-k-${groupKind(g)} dng-group`, dataset: { group: g.name } },
    h("span", { class: `dng-dot dng-k-${groupKind(g)}` }), h("div", { class: "dng-body" }, body));
}

// The first `shown` steps of an opened group, from the run's rows when it has them all,
// else a page at a time from GET /runs/<id>/steps?name=...
function renderGroupSteps(el, state, run, item, key, shown, options) {
  const g = item.group;
  let items = item.items;
  let note = null;
  if (!item.complete) {
    const entry = groupPage(el, state, run, key, g, shown, options);
    items = entry.items || [];
    if (entry.error) note = h("div", { class: "dng-notice dng-notice-error" }, entry.error);
    else if (entry.loading && items.length < Math.min(shown, g.steps)) {
      note = h("div", { class: "dng-muted" }, "loading…");
    }
  }
  const list = h("ol", { class: "dng-graph dng-group-steps" },
    items.slice(0, shown).map((it) => renderStep(el, state, run, { ...it, inGroup: true },
      options)));
  const total = item.complete ? items.length : g.steps;
  const left = total - Math.min(shown, total);
  const more = left > 0 ? h("button", {
    class: "dng-btn dng-more-btn",
    onclick: () => {
      state.groupsOpen.set(key, shown + GROUP_PAGE);
      rerender(el, state);
    },
  }, `show ${fmtCount(Math.min(GROUP_PAGE, left))} more (${fmtCount(left)} not shown)`) : null;
  return h("div", { class: "dng-group-body" }, list, note, more);
}

// The loaded pages of a group whose steps the run's data lacks (a big run in the widget).
function groupPage(el, state, run, key, g, shown, options) {
  const sig = `${g.steps}/${g.completed}/${g.failed}/${g.retrying}`;
  let entry = state.groupPages.get(key);
  if (!entry || (entry.sig !== sig && !entry.loading)) {
    entry = { sig, rows: [], keys: 0, items: entry ? entry.items : [], loading: false };
    state.groupPages.set(key, entry);
  }
  const want = Math.min(shown, g.steps);
  if (entry.loading || entry.error || entry.keys >= want) return entry;
  const getJson = options.getJson || LOADERS.get(run) || LOADERS.get(state.run);
  if (!getJson) {
    entry.error = "the steps need the durable_nb API, which this view cannot reach";
    return entry;
  }
  entry.loading = true;
  const offset = entry.keys;
  const path = `/runs/${encodeURIComponent(run.id)}/steps?name=${encodeURIComponent(g.name)}`
    + `&offset=${offset}&limit=${want - offset}`;
  Promise.resolve().then(() => getJson(path)).then((page) => {
    const rows = entry.rows.concat(page.steps || []);
    const keys = new Set(rows.map((r) => r.step_key));
    const items = baseItems({ ...run, steps: rows, checkpoints: [], children: [],
      attempt_list: run.attempt_list }).filter((x) => x.type === "step");
    Object.assign(entry, { rows, keys: keys.size, items, loading: false,
      total: page.total });
    if (!page.steps || !page.steps.length) entry.keys = want; // nothing more to fetch
  }, (err) => {
    Object.assign(entry, { loading: false, error: (err && err.message) || String(err) });
  }).then(() => rerender(el, state));
  return entry;
}

// ---------------------------------------------------------------------------- step io

// Show or hide a step's arguments and output (``ioKey``: "<run id>/io/<step key>").
function toggleStepIO(el, state, ioKey) {
  if (state.stepsOpen.has(ioKey)) state.stepsOpen.delete(ioKey);
  else state.stepsOpen.add(ioKey);
  rerender(el, state);
}

// A clicked step's tries with their previews, from GET /runs/<id>/steps/<key>.
function stepLoader(state, run, options) {
  if (options.loadStep) return (key) => options.loadStep(run.id, key);
  const getJson = options.getJson || LOADERS.get(run) || LOADERS.get(state.run);
  if (!getJson) return null;
  return (key) => getJson(
    `/runs/${encodeURIComponent(run.id)}/steps/${encodeURIComponent(key)}`);
}

function loadStepIO(el, state, run, key, sig, options) {
  const id = `${run.id}/io/${key}`;
  const load = stepLoader(state, run, options);
  if (!load) {
    state.stepIO.set(id, { sig, error: "the step's arguments and output need the durable_nb API, "
      + "which this view cannot reach" });
    return;
  }
  state.stepIO.set(id, { ...(state.stepIO.get(id) || {}), sig, loading: true });
  Promise.resolve().then(() => load(key)).then(
    (data) => state.stepIO.set(id, { sig, data }),
    (err) => state.stepIO.set(id, { sig, error: (err && err.message) || String(err) }),
  ).then(() => rerender(el, state));
}

function renderStepIO(el, state, run, key, tries, options) {
  const id = `${run.id}/io/${key}`;
  const sig = tries.map((t) => `${t.generation || 0}.${t.attempt}.${t.status}`).join(",");
  let entry = state.stepIO.get(id);
  if (!entry || (entry.sig !== sig && !entry.loading)) {
    loadStepIO(el, state, run, key, sig, options);
    entry = state.stepIO.get(id);
  }
  const box = h("div", { class: "dng-io", dataset: { step: key } });
  if (entry.error) {
    box.append(h("div", { class: "dng-notice dng-notice-error" }, entry.error));
    return box;
  }
  if (!entry.data) {
    box.append(h("div", { class: "dng-muted" }, "loading…"));
    return box;
  }
  const all = entry.data.tries || [];
  const latest = all[all.length - 1] || {};
  box.append(h("div", { class: "dng-io-head" }, "Arguments"),
    h("div", { class: "dng-io-section" }, renderArgs(latest.args_preview)));
  const done = all.filter((t) => t.status === "COMPLETED").pop();
  box.append(h("div", { class: "dng-io-head" }, "Output"), done
    ? renderValue(done.output_preview)
    : h("div", { class: "dng-muted" }, TERMINAL.has(run.status) || latest.status === "ERRORED"
      ? "none: the step raised" : "none yet"));
  const failed = all.filter((t) => t.error);
  if (failed.length) {
    box.append(h("div", { class: "dng-io-head" }, "Errors"), ...failed.map((t) => h("div",
      { class: "dng-io-try" }, h("span", { class: "dng-meta" },
        `try ${t.attempt}${t.generation ? ` (retry ${t.generation} of the run)` : ""} · `
        + `${String(t.status).toLowerCase()}`),
      errorBlock(state, `${id}/err/${t.generation || 0}/${t.attempt}`, t.error.type,
        t.error.message, t.error.traceback, false))));
  }
  return box;
}

function renderArgs(p) {
  if (!p) {
    return h("div", { class: "dng-muted" },
      "not recorded (a run of an earlier release of durable_nb)");
  }
  const rows = [];
  (p.args || []).forEach((v, i) => rows.push([`arg ${i}`, v]));
  for (const [name, v] of Object.entries(p.kwargs || {})) rows.push([`${name}=`, v]);
  const out = [];
  if (!rows.length) out.push(h("div", { class: "dng-muted" }, "no arguments"));
  else {
    out.push(h("div", { class: "dng-io-args" }, rows.map(([name, v]) => [
      h("div", { class: "dng-io-name" }, name), renderValue(v)])));
  }
  if (p.more) out.push(h("div", { class: "dng-muted" }, `… and ${p.more} more`));
  if (p.note) out.push(h("div", { class: "dng-muted" }, p.note));
  return out;
}

function renderValue(p) {
  if (!p) return h("div", { class: "dng-muted" }, "no preview");
  const meta = [p.type, p.shape ? `shape ${p.shape.join(" × ")}` : null,
    p.dtype ? `dtype ${p.dtype}` : null].filter(Boolean).join(" · ");
  const repr = String(p.repr || "");
  if (!p.image && !p.table && !p.dtypes && repr.length <= 100 && !repr.includes("\n")) {
    return h("div", { class: "dng-io-value dng-io-short" }, h("code", { class: "dng-io-code" }, repr),
      h("span", { class: "dng-io-type" }, meta), p.note ? h("span", { class: "dng-muted" }, p.note)
        : null);
  }
  const parts = [h("div", { class: "dng-io-type" }, meta)];
  if (typeof p.image === "string" && /^[A-Za-z0-9+/]+={0,2}$/.test(p.image)) {
    parts.push(h("img", { class: "dng-thumb", alt: `${p.type} thumbnail`,
      src: `data:image/png;base64,${p.image}` }));
  } else if (p.table && Array.isArray(p.table.columns)) {
    parts.push(renderTable(p));
  } else {
    parts.push(h("pre", { class: "dng-data dng-io-repr" }, p.repr || ""));
  }
  if (p.dtypes) {
    parts.push(h("div", { class: "dng-muted" }, `dtypes: ${Object.entries(p.dtypes)
      .map(([k, v]) => `${k} ${v}`).join(", ")}`));
  }
  if (p.note) parts.push(h("div", { class: "dng-muted" }, p.note));
  return h("div", { class: "dng-io-value" }, parts);
}

// A DataFrame's head, built from the preview's cells as text (never its HTML).
function renderTable(p) {
  const t = p.table;
  const more = t.more_columns ? h("th", {}, `… ${t.more_columns} more`) : null;
  const rows = (t.rows || []).map((r, i) => h("tr", {},
    h("th", {}, (t.index || [])[i] ?? ""), r.map((c) => h("td", {}, c)), more ? h("td") : null));
  const total = p.shape ? p.shape[0] : rows.length;
  return h("div", { class: "dng-io-tablewrap" }, h("table", { class: "dng-io-table" },
    h("thead", {}, h("tr", {}, h("th"), t.columns.map((c) => h("th", {}, c)), more)),
    h("tbody", {}, rows)),
  total > rows.length ? h("div", { class: "dng-muted" }, `… ${total - rows.length} more rows`)
    : null);
}

function renderCheckpoint(cp) {
  const of = cp.total ? ` of ${cp.total}` : "";
  return h("li", { class: "dng-node dng-k-ok dng-cp" },
    h("span", { class: "dng-dot dng-diamond dng-k-ok" }),
    h("div", { class: "dng-body" }, h("div", { class: "dng-row" },
      h("span", { class: "dng-name" }, `statement ${cp.statement}${of}`),
      h("span", { class: "dng-meta" }, `checkpoint${cp.size != null ? ` · ${formatSize(cp.size)}` : ""}`),
      cp.at ? h("span", { class: "dng-meta" }, formatTime(cp.at)) : null)));
}

function renderAttempt(state, run, a) {
  const outcome = a.outcome || (TERMINAL.has(run.status) ? "" : "RUNNING");
  const label = outcome === "SUSPENDED" ? "suspended (worker freed while waiting)" : outcome.toLowerCase();
  return h("li", { class: `dng-attempt dng-k-${statusKind(outcome)}` },
    h("div", { class: "dng-row" },
      h("span", { class: "dng-attempt-title" }, `Attempt ${a.number}`),
      h("span", { class: "dng-meta" }, label),
      liveDuration(a.started_at, a.ended_at ?? (outcome === "RUNNING" ? null : a.started_at)),
      workerMeta(a)),
    a.error_type ? errorBlock(state, `${run.id}/attempt/${a.number}`, a.error_type,
      a.error_message, a.traceback, false) : null);
}

// Where an attempt ran: its Dask worker's address (attempts on a Dask cluster), else the
// pid of its local worker process.
function workerMeta(a) {
  if (a.worker) {
    return h("span", { class: "dng-meta dng-worker", title: `Dask worker ${a.worker}, pid ${a.worker_pid}` },
      `worker ${a.worker}`);
  }
  return a.worker_pid ? h("span", { class: "dng-meta" }, `worker ${a.worker_pid}`) : null;
}

function waitTitle(w) {
  switch (w.kind) {
    case "approval": return ["approval", w.name];
    case "event": return ["event", w.name];
    case "sleep": return ["sleep", w.name];
    case "child": return ["child runs", w.name];
    default: return [w.kind, w.name];
  }
}

function renderWait(el, state, run, w, options, depth) {
  const pending = w.resolved_at == null;
  const runDone = TERMINAL.has(run.status);
  const outcome = pending ? (runDone ? "CANCELED" : "PENDING") : String(w.outcome || "").toUpperCase();
  const [kindLabel, name] = waitTitle(w);
  const kind = statusKind(outcome === "TIMED_OUT" ? "TIMED_OUT" : outcome);
  const row = h("div", { class: "dng-row" },
    h("span", { class: "dng-tag" }, kindLabel),
    h("span", { class: "dng-name" }, name),
    badge(outcome, pending ? (runDone ? "never resolved" : "waiting") : String(w.outcome).replace("_", " ")),
    pending && !runDone ? liveDuration(w.created_at, null)
      : liveDuration(w.created_at, w.resolved_at ?? w.created_at));
  const body = [row];
  if (w.kind === "child") {
    return renderChildren(el, state, run, w.target || [], options, depth, null, { row, pending, outcome });
  }
  if (w.kind === "approval") {
    if (w.preview != null) {
      body.push(h("pre", { class: "dng-data" }, preview(w.preview)));
    }
    if (!pending) {
      const who = [w.resolved_by ? `by ${w.resolved_by}` : null,
        w.resolved_at ? formatTime(w.resolved_at) : null].filter(Boolean).join(" · ");
      body.push(h("div", { class: "dng-resolution" },
        `${String(w.outcome).replace("_", " ")}${who ? ` ${who}` : ""}`,
        w.comment ? h("q", {}, w.comment) : null));
      if (w.values && typeof w.values === "object") {
        body.push(h("pre", { class: "dng-data dng-values" }, Object.entries(w.values)
          .map(([k, v]) => `${k}: ${JSON.stringify(v)}`).join("\n")));
      }
    } else if (!runDone) {
      if (w.deadline) body.push(h("div", { class: "dng-muted" }, `times out ${formatTime(w.deadline)}`));
      body.push(renderApprovalForm(el, state, run, w, options));
    }
    const msg = state.messages.get(w.wait_key);
    if (msg) body.push(h("div", { class: `dng-notice dng-notice-${msg.kind}`, role: "status" }, msg.text));
  } else if (w.kind === "event" && pending && !runDone) {
    body.push(h("div", { class: "dng-muted" },
      "resume it with ", h("code", {}, `dn.send_event(${JSON.stringify(w.name)}, data)`),
      w.deadline ? ` · times out ${formatTime(w.deadline)}` : ""));
  } else if (w.kind === "sleep" && pending && w.deadline && !runDone) {
    body.push(h("div", { class: "dng-muted" }, `wakes at ${formatTime(w.deadline)}`));
  }
  return node(pending && !runDone ? "wait" : kind, body);
}

function renderApprovalForm(el, state, run, w, options) {
  const key = w.wait_key;
  const form = isForm(w.form) ? w.form : null;
  if (!options.onApprove && !options.onReject) {
    const first = form ? Object.keys(form.properties)[0] : null;
    return h("div", { class: "dng-muted" }, "approve with ",
      h("code", {}, `%durable approve ${run.id}${first ? ` --field ${first}=…` : ""}`));
  }
  const busy = state.busy.has(key);
  const input = h("input", {
    class: "dng-comment", type: "text", placeholder: "comment (optional)",
    value: state.comments.get(key) || "", disabled: busy, "aria-label": "comment",
    dataset: { focusKey: `comment:${key}` },
  });
  input.addEventListener("input", () => state.comments.set(key, input.value));
  if (form && !state.forms.has(key)) state.forms.set(key, {});
  const store = form ? state.forms.get(key) : null;
  const act = (approved) => async () => {
    if (state.busy.has(key)) return;
    let values;
    if (form) {
      const checked = checkForm(form, store.raw);
      if (approved && Object.keys(checked.errors).length) {
        store.showAll = true;  // say what is missing rather than sending it
        rerender(el, state);
        return;
      }
      values = approved ? checked.values : undefined;
    }
    const fn = approved ? options.onApprove : options.onReject;
    state.busy.add(key);
    state.messages.delete(key);
    rerender(el, state);
    try {
      await fn(w, state.comments.get(key) || "", values);
      state.comments.delete(key);
      state.forms.delete(key);
    } catch (err) {
      state.messages.set(key, { kind: "error", text: (err && err.message) || String(err) });
    } finally {
      state.busy.delete(key);
      rerender(el, state);
    }
  };
  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter") act(true)();
  });
  const approve = h("button", { class: "dng-btn dng-btn-ok", disabled: busy, onclick: act(true) },
    busy ? "…" : "Approve");
  const hint = h("span", { class: "dng-form-hint", role: "status" });
  const row = h("div", { class: "dng-approve" }, input, approve,
    h("button", { class: "dng-btn dng-btn-no", disabled: busy, onclick: act(false) }, "Reject"),
    hint);
  if (!form) return row;
  const sync = () => {
    const { errors } = checkForm(form, store.raw);
    const bad = Object.keys(errors).map((n) => form.properties[n].title || n);
    approve.disabled = busy || bad.length > 0;
    approve.title = bad.length ? `To approve, fill in or fix: ${bad.join(", ")}` : "";
    hint.textContent = bad.length ? `to approve: ${bad.join(", ")}` : "";
  };
  const fields = renderForm(form, store, {
    disabled: busy, focusPrefix: `form:${key}`, onChange: sync,
  });
  sync();
  return h("div", { class: "dng-approval-form" }, fields.node, row);
}

// ---------------------------------------------------------------------------- typed forms
//
// An approval's typed form (dn.approval(..., form=F)) comes as the wait's `form`: a flat
// JSON schema {type: "object", title, properties: {name: field}, required: [...]} whose
// fields are text ({type: "string"}), long text (format "textarea"), whole numbers
// ("integer"), numbers ("number"), yes/no ("boolean") or choices ({enum: [...]}); a type
// [T, "null"] is optional. Bounds: minimum, maximum, exclusiveMinimum/Maximum, multipleOf,
// minLength, maxLength, pattern. The panel's approval cards draw the same form.

export function isForm(schema) {
  return !!schema && typeof schema === "object" && !!schema.properties
    && typeof schema.properties === "object";
}

function fieldKind(prop) {
  if (Array.isArray(prop.enum)) return "choice";
  const types = Array.isArray(prop.type) ? prop.type : [prop.type];
  const t = types.find((x) => x && x !== "null");
  if (t === "string" || !t) return prop.format === "textarea" ? "longtext" : "text";
  return t;  // integer, number, boolean
}

function initialRaw(schema) {
  const raw = {};
  for (const [name, prop] of Object.entries(schema.properties)) {
    const kind = fieldKind(prop);
    const d = prop.default;
    if (kind === "boolean") raw[name] = d === true;
    else if (kind === "choice") raw[name] = d === undefined ? "" : String(prop.enum.indexOf(d));
    else raw[name] = d === undefined || d === null ? "" : String(d);
  }
  return raw;
}

const NUMBER_RE = { integer: /^[+-]?\d+$/, number: /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/ };

function numberError(prop, v) {
  if (prop.minimum != null && v < prop.minimum) return `must be at least ${prop.minimum}`;
  if (prop.maximum != null && v > prop.maximum) return `must be at most ${prop.maximum}`;
  if (prop.exclusiveMinimum != null && v <= prop.exclusiveMinimum) {
    return `must be more than ${prop.exclusiveMinimum}`;
  }
  if (prop.exclusiveMaximum != null && v >= prop.exclusiveMaximum) {
    return `must be less than ${prop.exclusiveMaximum}`;
  }
  if (prop.multipleOf && Math.abs(v / prop.multipleOf - Math.round(v / prop.multipleOf)) > 1e-9) {
    return `must be a multiple of ${prop.multipleOf}`;
  }
  return null;
}

function textError(prop, v) {
  if (prop.minLength != null && v.length < prop.minLength) {
    return `needs at least ${prop.minLength} characters`;
  }
  if (prop.maxLength != null && v.length > prop.maxLength) {
    return `takes at most ${prop.maxLength} characters`;
  }
  if (prop.pattern) {
    try {
      if (!new RegExp(prop.pattern, "u").test(v)) return `must match ${prop.pattern}`;
    } catch (e) { /* a pattern this browser cannot read: the engine checks it */ }
  }
  return null;
}

// checkForm(schema, raw) -> {values, errors}: the values to send (JSON, typed) and, per
// field, what is wrong in words ("required", "must be at most 500"). `raw` holds what the
// inputs hold (text, a checkbox's boolean, a choice's index as text).
export function checkForm(schema, raw) {
  const values = {};
  const errors = {};
  const required = new Set(schema.required || []);
  const given = raw || initialRaw(schema);
  for (const [name, prop] of Object.entries(schema.properties)) {
    const kind = fieldKind(prop);
    const r = given[name];
    if (kind === "boolean") {
      values[name] = r === true;
      continue;
    }
    const text = r == null ? "" : String(r);
    if (text === "" || (kind !== "text" && kind !== "longtext" && !text.trim())) {
      if (required.has(name)) errors[name] = "required";
      continue;
    }
    let v = text;
    let error = null;
    if (kind === "choice") {
      v = prop.enum[Number(text)];
      if (v === undefined) error = "pick one of the choices";
    } else if (kind === "integer" || kind === "number") {
      if (!NUMBER_RE[kind].test(text.trim())) {
        error = kind === "integer" ? "must be a whole number" : "must be a number";
      } else {
        v = Number(text.trim());
        error = numberError(prop, v);
      }
    } else {
      error = textError(prop, v);
    }
    if (error) errors[name] = error;
    else values[name] = v;
  }
  return { values, errors };
}

function fieldInput(name, prop, kind, store, opts, changed) {
  const attrs = {
    disabled: !!opts.disabled, "aria-label": prop.title || name,
    dataset: { focusKey: `${opts.focusPrefix || "form"}:${name}`, field: name },
  };
  let input;
  if (kind === "boolean") {
    input = h("input", { ...attrs, type: "checkbox", class: "dng-field-check" });
    input.checked = store.raw[name] === true;
    input.addEventListener("change", () => changed(input.checked));
    return input;
  }
  if (kind === "choice") {
    const optional = !(store.required || new Set()).has(name) || prop.default === undefined;
    input = h("select", { ...attrs, class: "dng-field-input" },
      optional ? h("option", { value: "" }, "—") : null,
      prop.enum.map((v, i) => h("option", { value: String(i) }, v === null ? "(none)" : String(v))));
    input.value = store.raw[name] ?? "";
    input.addEventListener("change", () => changed(input.value));
    return input;
  }
  if (kind === "longtext") {
    input = h("textarea", { ...attrs, class: "dng-field-input dng-field-long", rows: 3,
      maxlength: prop.maxLength });
  } else {
    const numeric = kind === "integer" || kind === "number";
    input = h("input", { ...attrs, class: "dng-field-input", type: numeric ? "number" : "text",
      step: numeric ? (kind === "integer" ? "1" : "any") : null,
      min: numeric ? prop.minimum : null, max: numeric ? prop.maximum : null,
      maxlength: numeric ? null : prop.maxLength });
  }
  input.value = store.raw[name] ?? "";
  input.addEventListener("input", () => changed(input.value));
  return input;
}

// renderForm(schema, store, {disabled, focusPrefix, onChange}) -> {node, check, update}
// Draws one labelled input per field (text, number, select, checkbox, textarea). `store`
// ({} at first) keeps what was typed across re-renders: store.raw, store.touched; a field
// shows its error once touched (or every field, after store.showAll = true).
export function renderForm(schema, store, opts = {}) {
  if (!store.raw) store.raw = initialRaw(schema);
  if (!store.touched) store.touched = new Set();
  store.required = new Set(schema.required || []);
  const errorOf = {};
  const inputOf = {};
  const update = () => {
    const { errors } = checkForm(schema, store.raw);
    for (const name of Object.keys(errorOf)) {
      const text = (store.touched.has(name) || store.showAll) && errors[name] ? errors[name] : "";
      errorOf[name].textContent = text;
      if (text) inputOf[name].setAttribute("aria-invalid", "true");
      else inputOf[name].removeAttribute("aria-invalid");
    }
    return errors;
  };
  const fields = Object.entries(schema.properties).map(([name, prop]) => {
    const kind = fieldKind(prop);
    const changed = (value) => {
      store.raw[name] = value;
      store.touched.add(name);
      update();
      if (opts.onChange) opts.onChange(name, value);
    };
    const input = fieldInput(name, prop, kind, store, opts, changed);
    inputOf[name] = input;
    errorOf[name] = h("span", { class: "dng-field-error", role: "alert" });
    const label = h("span", { class: "dng-field-label" }, prop.title || name,
      store.required.has(name) ? h("span", { class: "dng-field-req", title: "required" }, " *")
        : null);
    return h("label", { class: `dng-field dng-field-${kind}`, dataset: { field: name } },
      label, input,
      prop.description ? h("span", { class: "dng-field-help" }, prop.description) : null,
      errorOf[name]);
  });
  const node = h("div", { class: "dng-form" },
    schema.title ? h("div", { class: "dng-form-title" }, schema.title) : null, fields);
  update();
  return { node, update, check: () => checkForm(schema, store.raw) };
}

function rerender(el, state) {
  if (state.run) renderRunGraph(el, state.run, state.options);
}

function childStatus(run, id) {
  const c = (run.children || []).find((x) => x.id === id)
    || (run.hooks || []).find((x) => x.id === id);
  return c ? c : { id, status: "QUEUED", task_id: "" };
}

async function loadChild(el, state, id, options) {
  const entry = state.children.get(id) || {};
  if (entry.loading || !options.loadChild) return;
  state.children.set(id, { ...entry, loading: true });
  try {
    const child = await options.loadChild(id);
    state.children.set(id, { run: child, at: Date.now() });
  } catch (err) {
    state.children.set(id, { error: (err && err.message) || String(err), at: Date.now() });
  }
  rerender(el, state);
}

function renderChildren(el, state, run, ids, options, depth, label, waitInfo, tag = "children") {
  const statuses = ids.map((id) => childStatus(run, id));
  let kind;
  if (waitInfo) {
    kind = waitInfo.pending ? (TERMINAL.has(run.status) ? "off" : "wait") : "ok";
    if (!waitInfo.pending && statuses.some((c) => statusKind(c.status) === "bad")) kind = "bad";
  } else {
    kind = statuses.every((c) => TERMINAL.has(c.status))
      ? (statuses.some((c) => statusKind(c.status) === "bad") ? "bad" : "ok") : "run";
  }
  const body = [waitInfo ? waitInfo.row : h("div", { class: "dng-row" },
    h("span", { class: "dng-tag" }, tag), h("span", { class: "dng-name" }, label))];
  const canExpand = !!(options.loadChild || options.childRuns) && depth < 3;
  const list = h("ul", { class: "dng-children" });
  for (const c of statuses) {
    const open = state.expanded.has(c.id);
    const toggle = canExpand ? h("button", {
      class: "dng-toggle", "aria-expanded": open ? "true" : "false",
      title: open ? "collapse" : "show this child run here",
      onclick: () => {
        if (state.expanded.has(c.id)) state.expanded.delete(c.id);
        else state.expanded.add(c.id);
        rerender(el, state);
      },
    }, open ? "▾" : "▸") : null;
    const li = h("li", { class: "dng-child" }, h("div", { class: "dng-row" }, toggle,
      h("span", { class: `dng-dot dng-small dng-k-${statusKind(c.status)}` }),
      h("span", { class: "dng-name" }, c.task_id || "child"), badge(c.status),
      runLink(c.id, options, el, state)));
    if (open) {
      const given = options.childRuns && options.childRuns[c.id];
      const entry = state.children.get(c.id) || {};
      let child = given || entry.run;
      const stale = !given && (!entry.run || (entry.run.status !== c.status)
        || (!TERMINAL.has(c.status) && Date.now() - (entry.at || 0) > 1000));
      if (stale && !entry.loading && !entry.error) loadChild(el, state, c.id, options);
      if (entry.error && !child) {
        li.append(h("div", { class: "dng-notice dng-notice-error" }, entry.error));
      } else if (child) {
        li.append(renderRun(el, state, child, options, depth + 1));
      } else {
        li.append(h("div", { class: "dng-muted" }, "loading…"));
      }
    }
    list.append(li);
  }
  body.push(list);
  return node(kind, body);
}

function renderEnd(state, run, depth) {
  const status = run.status;
  if (!TERMINAL.has(status)) return h("li", { class: "dng-end dng-k-run" });
  const kind = statusKind(status);
  const err = run.error;
  const same = (run.steps || []).some((s) => s.status === "ERRORED" && err
    && s.error_type === err.type && s.error_message === err.message);
  const dur = run.duration != null ? ` in ${formatDuration(run.duration)}` : "";
  return h("li", { class: `dng-node dng-end dng-k-${kind}` },
    h("span", { class: `dng-dot dng-k-${kind}` }),
    h("div", { class: "dng-body" },
      h("div", { class: "dng-row" }, h("span", { class: "dng-name" },
        `${status.toLowerCase().replace("_", " ")}${dur}`)),
      err && !same ? errorBlock(state, `${run.id}/run-error`, err.type, err.message,
        err.traceback, depth === 0) : null,
      err && same ? h("div", { class: "dng-muted" }, "raised by the step above") : null));
}

// Log rows as text: a "display" row (rich output, a JSON record) shows its text/plain; a
// later display or update of the same id replaces it in place; "clear" is skipped.
function logRows(logs) {
  const out = [];
  const byId = new Map();
  for (const l of logs) {
    if (l.stream !== "display") {
      out.push({ stream: l.stream, text: l.line });
      continue;
    }
    let rec = null;
    try {
      rec = JSON.parse(l.line);
    } catch (e) { /* not a record: shown as it is */ }
    if (!rec || typeof rec !== "object") {
      out.push({ stream: "stdout", text: String(l.line) });
      continue;
    }
    if (rec.op !== "display" && rec.op !== "update") continue;
    const data = rec.data || {};
    const text = data["text/plain"] != null ? String(data["text/plain"])
      : `[${Object.keys(data).join(", ") || "output"}]`;
    const known = rec.id != null ? byId.get(rec.id) : null;
    if (known) {
      known.text = text;
      continue;
    }
    const row = { stream: "display", text };
    if (rec.id != null) byId.set(rec.id, row);
    out.push(row);
  }
  return out;
}

function renderLogs(state, run) {
  const lines = logRows(run.logs);
  const pre = h("pre", { class: "dng-log" }, lines.map((l) =>
    h("span", { class: l.stream === "stderr" ? "dng-stderr" : "" }, `${l.text}\n`)));
  const inCell = !!state.options.outputsInCell; // printed in the cell too: folded here
  const summary = `Output · last ${lines.length} line${lines.length === 1 ? "" : "s"}` +
    (inCell ? " · also in the cell below" : "");
  return details(state, `${run.id}/logs`, summary, pre, !inCell, "dng-logs");
}

// ---------------------------------------------------------------------------- forks

// Where a fork (run.fork_of) runs anew from: "from summarize#3"; a cell "after statement 2".
function forkStepText(r) {
  if (r.fork_step == null) return " after its last step";
  return r.kind === "cell" ? ` after statement ${r.fork_step}` : ` from ${r.fork_step}`;
}

// A step a fork reused: recorded by its source before the fork was made, not run again.
function reusedBadge(run, first) {
  if (!run.fork_of || !first || first.started_at == null || first.started_at >= run.created_at) {
    return null;
  }
  return h("span", { class: "dng-badge dng-reused",
    title: `recorded by ${run.fork_of}, which this run was forked from: not run again` },
  "reused");
}

// The fork tree the run belongs to (run.fork_tree: {root, runs: [{id, fork_of, fork_step,
// status, task_id, kind, created_at, depth}], truncated}): the source at the top, each
// fork under the run it was forked from with the step it ran anew from, this run marked.
// A click on another run opens it (onOpenChild); where nobody can, it shows here.
function renderForkTree(el, state, run, options) {
  const tree = run.fork_tree;
  if (!tree || !tree.runs || tree.runs.length < 2) return null;
  const below = new Map();
  for (const r of tree.runs) {
    const up = r.id === tree.root ? null : r.fork_of;
    if (!below.has(up)) below.set(up, []);
    below.get(up).push(r);
  }
  const top = tree.runs.find((r) => r.id === tree.root) || tree.runs[0];
  const more = tree.truncated ? "+" : "";
  return details(state, `${run.id}/forks`, `Fork tree · ${tree.runs.length}${more} runs`,
    h("ul", { class: "dng-fork-tree" }, forkItem(el, state, run, top, below, options)),
    true, "dng-forks");
}

function forkItem(el, state, run, r, below, options) {
  const self = r.id === run.id;
  const kids = below.get(r.id) || [];
  const li = h("li", { class: `dng-fork${self ? " dng-fork-self" : ""}`,
    dataset: { runId: r.id, status: r.status } },
  h("div", { class: "dng-row" },
    h("span", { class: `dng-dot dng-small dng-k-${statusKind(r.status)}` }),
    self ? h("code", { class: "dng-id dng-fork-this", title: r.id }, shortId(r.id))
      : forkLink(el, state, r.id, options),
    badge(r.status),
    h("span", { class: "dng-meta" }, r.depth ? forkStepText(r).trim() : "source"),
    r.task_hash && run.task_hash && r.task_hash !== run.task_hash
      ? h("span", { class: "dng-meta", title: `task code ${r.task_hash}` }, "other code") : null,
    self ? h("span", { class: "dng-meta dng-fork-here" }, "← this run") : null,
    h("span", { class: "dng-meta" }, formatTime(r.created_at))));
  if (!self && state.expanded.has(`fork:${r.id}`)) li.append(forkInline(el, state, r, options));
  if (kids.length) {
    li.append(h("ul", { class: "dng-fork-list" },
      kids.map((k) => forkItem(el, state, run, k, below, options))));
  }
  return li;
}

// A link that opens the run elsewhere (the JupyterLab panel), else shows it in the tree.
function forkLink(el, state, id, options) {
  return h("a", {
    class: "dng-link", href: "#", title: `open ${id}`,
    onclick: (e) => {
      e.preventDefault();
      const opened = options.onOpenChild ? options.onOpenChild(id) : false;
      if (opened === false && (options.loadChild || options.childRuns)) {
        const key = `fork:${id}`;
        if (state.expanded.has(key)) state.expanded.delete(key);
        else state.expanded.add(key);
        rerender(el, state);
      }
    },
  }, shortId(id));
}

function forkInline(el, state, r, options) {
  const given = options.childRuns && options.childRuns[r.id];
  const entry = state.children.get(r.id) || {};
  const shown = given || entry.run;
  if (!shown && !entry.loading && !entry.error) loadChild(el, state, r.id, options);
  if (entry.error && !shown) return h("div", { class: "dng-notice dng-notice-error" }, entry.error);
  return shown ? renderRun(el, state, shown, options, 1) : h("div", { class: "dng-muted" }, "loading…");
}
