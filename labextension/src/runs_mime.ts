/**
 * The runs table's notebook output, drawn live: `application/vnd.durable-nb.runs+json`
 * (written by `durable_nb/widgets/runs_widget.py` for `%durable list` when the kernel uses
 * this server's engine) holds the table's filters (status, task, page size). The renderer
 * lists the runs matching them from the server's durable REST API, newest first, and lists
 * them again on the events WebSocket's news and every few seconds, so a saved notebook shows
 * current statuses with no kernel. As in the runs widget, the status and task filters (which
 * start from the saved ones) change what is listed, and a click on a row shows that run's
 * graph under the table (approve / reject included), with a button that opens the run in the
 * main area. When the server answers with an error, the output's saved static table shows
 * under a note that says so.
 *
 * Lab prefers this renderer over the widget view of the same output (rank below the
 * widgets renderer's -10), so a reopened notebook never shows "model not found".
 */
import { MimeModel } from '@jupyterlab/rendermime';
import { IRenderMime } from '@jupyterlab/rendermime-interfaces';
import { PanelLayout, Widget } from '@lumino/widgets';

import { ACTIVE, CANCELED_OR_EXPIRED, FAILURES, IRun, request } from './api';
import { IEventSource, RUN_MIME, RunOutput } from './mime';
import { duration, el, shortId } from './util';

export const RUNS_MIME = 'application/vnd.durable-nb.runs+json';

/** Below the widget view's -10: Lab shows this renderer when both are in an output. */
export const RUNS_MIME_RANK = -20;

/** Milliseconds between reloads when no event came (a missed WebSocket, a new run). */
const POLL_MS = 10000;

/** The most runs one page lists (as `GET /runs` caps its limit). */
const MAX_PAGE = 10000;

/** Every status the API knows, from api.ts's groups (checked against durable_nb's): unknown
 * names in the saved filter are left out, as the runs widget does, not sent to be refused. */
const STATUSES: ReadonlyArray<string> = [
  ...ACTIVE,
  'COMPLETED',
  ...FAILURES,
  ...CANCELED_OR_EXPIRED
];

/** The status filter's choices, as the runs widget offers them (durable_nb/widgets/static/
 * widgets.js STATUS_FILTERS): a value is a comma-separated status list ('' for all). */
export const STATUS_CHOICES: ReadonlyArray<[string, string]> = [
  ['', 'all statuses'],
  [ACTIVE.join(','), 'active'],
  ...ACTIVE.map((s): [string, string] => [s, s.toLowerCase()]),
  ['COMPLETED', 'completed'],
  [FAILURES.join(','), 'failed'],
  [CANCELED_OR_EXPIRED.join(','), 'canceled / expired']
];

/** The distinct task ids of all runs, for the task filter (the pages' ones are added). */
const TASKS_SQL =
  'SELECT DISTINCT task_id FROM runs WHERE task_id IS NOT NULL ORDER BY task_id';

/** The most task ids the task filter offers from the store. */
const MAX_TASKS = 1000;

/** What the output keeps of the table (see `RunsWidget._repr_mimebundle_`). */
interface IFilters {
  status?: string | null;
  task?: string | null;
  limit?: number | null;
  instance?: string | null;
}

/** A run as `GET /runs` lists it, with the names of its pending approvals. */
interface IListedRun extends IRun {
  pending_approvals?: string[];
}

interface IPage {
  runs: IListedRun[];
  total: number;
}

/** The filters as `GET /runs` takes them, with the page asked for. */
export function runsQuery(filters: IFilters, offset: number): string {
  const query = new URLSearchParams();
  const status = knownStatuses(filters.status);
  if (status) {
    query.set('status', status);
  }
  if (filters.task) {
    query.set('task', String(filters.task));
  }
  query.set('limit', String(pageSize(filters)));
  query.set('offset', String(offset));
  return `runs?${query}`;
}

/** The known statuses of a comma-separated filter, upper case, as `GET /runs` takes them. */
export function knownStatuses(status: string | null | undefined): string {
  return String(status ?? '')
    .split(',')
    .map(s => s.trim().toUpperCase())
    .filter(s => STATUSES.includes(s))
    .join(',');
}

function pageSize(filters: IFilters): number {
  const limit = Math.floor(Number(filters.limit) || 25);
  return Math.min(Math.max(limit, 1), MAX_PAGE);
}

/** "14:03:07" today, "2024-05-02 14:03" on another day. */
function when(epochSeconds: number | null | undefined): string {
  if (!epochSeconds) {
    return '';
  }
  const d = new Date(epochSeconds * 1000);
  const pad = (n: number) => String(n).padStart(2, '0');
  const time = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  if (d.toDateString() === new Date().toDateString()) {
    return time;
  }
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${time.slice(0, 5)}`;
}

/** The run's duration; for a run still going, the time since it started. */
function took(run: IRun): string {
  if (run.duration !== null && run.duration !== undefined) {
    return duration(run.duration);
  }
  if (run.started_at && ACTIVE.includes(run.status)) {
    return duration(Math.max(0, Date.now() / 1000 - run.started_at));
  }
  return '';
}

export class RunsOutput extends Widget implements IRenderMime.IRenderer {
  constructor(
    private options: IRenderMime.IRendererOptions,
    private events: IEventSource,
    private openRun: (id: string) => void
  ) {
    super();
    this.addClass('jp-DurableRunsOutput');
    const header = el('div', 'jp-DurableRunsOutput-header');
    header.appendChild(el('span', 'jp-DurableRunsOutput-title', 'Durable runs'));
    this._status = this._select('status', 'Show runs by status', value => ({ status: value }));
    this._task = this._select('task', 'Show the runs of one task', value => ({ task: value }));
    this._filters = el('span', 'jp-DurableRunsOutput-filters');
    this._filters.append(this._status, this._task);
    this._range = el('span', 'jp-DurableRunsOutput-range');
    this._prev = this._pageButton('‹', 'Newer runs', -1);
    this._next = this._pageButton('›', 'Older runs', 1);
    header.append(this._filters, this._range, this._prev, this._next);
    this._notice = el('div', 'jp-DurableRunsOutput-notice');
    this._table = el('div', 'jp-DurableRunsOutput-table');
    this._static = el('div', 'jp-DurableRunsOutput-static');
    this._bar = el('div', 'jp-DurableRunsOutput-detailBar');
    this._bar.hidden = true;
    // the table, then the selected run's view (a RunOutput, as for a run's own output)
    const table = new Widget();
    table.node.append(header, this._notice, this._table, this._static, this._bar);
    const layout = new PanelLayout();
    layout.addWidget(table);
    this.layout = layout;
    this._stop = this.events.onEvent(e => {
      if (['hello', 'run', 'wait'].includes(e.type)) {
        this._soon();
      }
    });
  }

  dispose(): void {
    this._stop();
    window.clearTimeout(this._timer);
    window.clearTimeout(this._poll);
    super.dispose();
  }

  /** Called again with new data when the kernel re-sends the display. */
  async renderModel(model: IRenderMime.IMimeModel): Promise<void> {
    const filters = (model.data[RUNS_MIME] ?? {}) as IFilters;
    this._snapshot = String(model.data['text/html'] ?? '');
    if (JSON.stringify(filters) !== JSON.stringify(this._saved)) {
      // new filters from the kernel replace those chosen here
      this._saved = filters;
      this._f = { ...filters, status: knownStatuses(filters.status), task: filters.task || '' };
      this._offset = 0;
    }
    this._drawFilters();
    await this.load();
  }

  /** List the page again (and again after POLL_MS, unless an event comes first). */
  async load(): Promise<void> {
    const offset = this._offset;
    const filters = this._f;
    let page: IPage | null = null;
    let error: Error | null = null;
    try {
      [page] = await Promise.all([request<IPage>(runsQuery(filters, offset)), this._loadTasks()]);
    } catch (err) {
      error = err as Error;
    }
    if (this.isDisposed || offset !== this._offset || filters !== this._f) {
      return; // disposed, or another page or filter was asked for meanwhile
    }
    if (page) {
      this._page = page;
      page.runs.forEach(run => run.task_id && this._tasks.add(run.task_id));
    }
    this._drawFilters();
    this._show(error);
    window.clearTimeout(this._poll);
    this._poll = window.setTimeout(() => void this.load(), POLL_MS);
  }

  private _show(error: Error | null): void {
    const page = this._page;
    this.node.dataset.state = error ? (page ? 'stale' : 'error') : 'live';
    this._notice.hidden = !error;
    if (!page) {
      this._notice.textContent =
        `Could not list the runs from this Jupyter server's durable_nb API ` +
        `(${error?.message}). The table as it was saved with the notebook:`;
      // the output's own text/html, sanitized like any untrusted HTML
      this._static.innerHTML = this.options.sanitizer.sanitize(this._snapshot);
      this._static.hidden = false;
      this._table.replaceChildren();
      this._range.textContent = '';
      this._prev.hidden = this._next.hidden = true;
      return;
    }
    this._notice.textContent = error
      ? `Could not refresh the runs (${error.message}); showing them as last listed.`
      : '';
    this._static.hidden = true;
    this._static.replaceChildren();
    this._drawTable(page);
    const { runs, total } = page;
    this._range.textContent = runs.length
      ? `${this._offset + 1}–${this._offset + runs.length} of ${total}`
      : total
        ? `none here of ${total}`
        : 'no runs match';
    const size = pageSize(this._f);
    this._prev.hidden = this._next.hidden = this._offset === 0 && total <= size;
    this._prev.disabled = this._offset <= 0;
    this._next.disabled = this._offset + runs.length >= total;
  }

  private _drawTable(page: IPage): void {
    const table = el('table');
    const head = el('tr');
    for (const name of ['run', 'task', 'status', 'started', 'duration', 'approvals']) {
      head.appendChild(el('th', '', name));
    }
    table.appendChild(el('thead')).appendChild(head);
    const body = table.appendChild(el('tbody'));
    for (const run of page.runs) {
      body.appendChild(this._row(run));
    }
    this._table.replaceChildren(table);
  }

  private _row(run: IListedRun): HTMLTableRowElement {
    const row = el('tr', 'jp-DurableRunsOutput-row');
    row.dataset.runId = run.id;
    row.dataset.status = run.status;
    row.tabIndex = 0;
    row.title = `Show run ${run.id} below (double-click: open it in the main area)`;
    row.classList.toggle('jp-mod-selected', run.id === this._selected);
    row.setAttribute('aria-selected', String(run.id === this._selected));
    const id = el('code', '', shortId(run.id));
    id.title = run.id;
    const status = el('span', `jp-DurableRunsOutput-status jp-mod-${run.status.toLowerCase()}`);
    status.textContent = run.status;
    const started = el('td', 'jp-DurableRunsOutput-meta', when(run.started_at));
    started.title = `created ${new Date(run.created_at * 1000).toLocaleString()}`;
    const pending = run.pending_approvals ?? [];
    const approvals = el('td');
    if (pending.length) {
      approvals.appendChild(el('span', 'jp-DurableRunsOutput-approval', pending.join(', ')));
    }
    const cells = [
      el('td'),
      el('td', 'jp-DurableRunsOutput-name', run.task_id || run.kind),
      el('td'),
      started,
      el('td', 'jp-DurableRunsOutput-meta', took(run)),
      approvals
    ];
    cells[0].appendChild(id);
    cells[2].appendChild(status);
    row.append(...cells);
    const toggle = () => this._selectRun(run.id === this._selected ? '' : run.id, run);
    row.addEventListener('click', toggle);
    row.addEventListener('dblclick', () => this.openRun(run.id));
    row.addEventListener('keydown', event => {
      if (event.key === 'Enter') {
        toggle();
      }
    });
    return row;
  }

  private _pageButton(label: string, title: string, step: number): HTMLButtonElement {
    const node = el('button', 'jp-DurableRunsOutput-page', label);
    node.type = 'button';
    node.title = title;
    node.setAttribute('aria-label', title);
    node.addEventListener('click', () => {
      this._offset = Math.max(0, this._offset + step * pageSize(this._f));
      void this.load();
    });
    return node;
  }

  /** A filter's dropdown; `change` maps its new value to the filters it sets. */
  private _select(
    name: string,
    title: string,
    change: (value: string) => IFilters
  ): HTMLSelectElement {
    const node = el('select', 'jp-DurableRunsOutput-select');
    node.title = title;
    node.setAttribute('aria-label', name);
    node.addEventListener('change', () => {
      this._f = { ...this._f, ...change(node.value) };
      this._offset = 0;
      void this.load();
    });
    return node;
  }

  /** The dropdowns' choices and values, from the filters and the task ids known so far. */
  private _drawFilters(): void {
    const status = this._f.status ?? '';
    const choices = [...STATUS_CHOICES];
    if (!choices.some(([value]) => value === status)) {
      choices.push([status, status.toLowerCase().split(',').join(', ')]); // a saved list
    }
    const task = this._f.task ?? '';
    if (task) {
      this._tasks.add(task);
    }
    const tasks: Array<[string, string]> = [...this._tasks].sort().map(t => [t, t]);
    setOptions(this._status, choices, status);
    setOptions(this._task, [['', 'all tasks'], ...tasks], task);
  }

  /** The distinct task ids of the store's runs, at most every POLL_MS (a failure leaves
   * the list to the task ids of the pages shown, as the runs widget's). */
  private async _loadTasks(): Promise<void> {
    if (Date.now() - this._tasksAt < POLL_MS) {
      return;
    }
    this._tasksAt = Date.now();
    try {
      const body = JSON.stringify({ query: TASKS_SQL, limit: MAX_TASKS });
      const out = await request<{ rows: unknown[][] }>('sql', { method: 'POST', body });
      for (const [task] of out.rows) {
        if (typeof task === 'string' && task) {
          this._tasks.add(task);
        }
      }
    } catch {
      // the pages' task ids still fill the list
    }
  }

  /** Show a run's view under the table ('' hides it); a click on its row again hides it. */
  private _selectRun(id: string, run?: IListedRun): void {
    this._selected = id;
    for (const row of this._table.querySelectorAll<HTMLElement>('tr[data-run-id]')) {
      row.classList.toggle('jp-mod-selected', row.dataset.runId === id);
      row.setAttribute('aria-selected', String(row.dataset.runId === id));
    }
    this._view?.dispose();
    this._view = null;
    this._bar.hidden = !id;
    if (!id) {
      this._bar.replaceChildren();
      return;
    }
    const title = el('span', 'jp-DurableRunsOutput-detailTitle');
    title.append(el('code', '', shortId(id)), ` ${run?.task_id || run?.kind || ''}`);
    title.title = id;
    const open = el('button', 'jp-DurableRunsOutput-open', 'Open in main area');
    open.type = 'button';
    open.title = `Open run ${id} in the main area`;
    open.addEventListener('click', () => this.openRun(id));
    const close = el('button', 'jp-DurableRunsOutput-page', '✕');
    close.type = 'button';
    close.title = 'Hide this run';
    close.setAttribute('aria-label', close.title);
    close.addEventListener('click', () => this._selectRun(''));
    this._bar.replaceChildren(title, open, close);
    const view = new RunOutput(this.options, this.events, this.openRun);
    view.addClass('jp-DurableRunsOutput-detail');
    (this.layout as PanelLayout).addWidget(view);
    this._view = view;
    void view.renderModel(new MimeModel({ data: { [RUN_MIME]: { run_id: id } } }));
  }

  /** At most one reload per 500 ms, however many events arrive. */
  private _soon(): void {
    if (!this._timer) {
      this._timer = window.setTimeout(() => {
        this._timer = 0;
        void this.load();
      }, 500);
    }
  }

  private _saved: IFilters | null = null;
  private _f: IFilters = {};
  private _offset = 0;
  private _tasks = new Set<string>();
  private _tasksAt = 0;
  private _selected = '';
  private _view: RunOutput | null = null;
  private _bar: HTMLElement;
  private _status: HTMLSelectElement;
  private _task: HTMLSelectElement;
  private _page: IPage | null = null;
  private _snapshot = '';
  private _filters: HTMLElement;
  private _range: HTMLElement;
  private _prev: HTMLButtonElement;
  private _next: HTMLButtonElement;
  private _notice: HTMLElement;
  private _table: HTMLElement;
  private _static: HTMLElement;
  private _stop: () => void;
  private _timer = 0;
  private _poll = 0;
}

/** Give a dropdown these choices ([value, label]) and this value, if they changed. */
function setOptions(
  node: HTMLSelectElement,
  choices: Array<[string, string]>,
  value: string
): void {
  const same =
    node.options.length === choices.length &&
    choices.every(([v, label], i) => node.options[i].value === v && node.options[i].text === label);
  if (!same) {
    node.replaceChildren(
      ...choices.map(([v, label]) => {
        const option = el('option', '', label);
        option.value = v;
        return option;
      })
    );
  }
  node.value = value;
}

/**
 * The renderer factory. It is safe (shown in untrusted notebooks too): it reads only the
 * filters from the output and shows what this server's API lists for them; the saved table
 * it may show instead is sanitized.
 */
export function runsOutputFactory(
  events: IEventSource,
  openRun: (id: string) => void
): IRenderMime.IRendererFactory {
  return {
    safe: true,
    mimeTypes: [RUNS_MIME],
    defaultRank: RUNS_MIME_RANK,
    createRenderer: options => new RunsOutput(options, events, openRun)
  };
}
