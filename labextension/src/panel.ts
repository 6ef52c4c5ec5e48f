/**
 * The "Durable runs" sidebar: pending approvals (approve or reject with a comment), the
 * queues and the schedules (folded sections), above the live list of recent runs (filter
 * by status, search text and tags, page, open, cancel, resume, replay; select runs and act
 * on them together; a cell run's label opens its notebook at that cell).
 */
import { Dialog, showDialog } from '@jupyterlab/apputils';
import {
  closeIcon,
  checkIcon,
  redoIcon,
  refreshIcon,
  runIcon,
  stopIcon
} from '@jupyterlab/ui-components';
import { Widget } from '@lumino/widgets';

import {
  ACTIVE,
  CANCELED_OR_EXPIRED,
  cancelRun,
  decide,
  FAILURES,
  IExecutor,
  IRun,
  replayRun,
  RESUMABLE,
  resumeRun
} from './api';
import { CardForm } from './card_form';
import { isForm } from './graph';
import { forkLine } from './forks';
import { IApproval, RunsModel } from './model';
import { OpenCell, originLabel, originLink } from './origin';
import { Pager } from './pager';
import { progressLine } from './progress';
import { QueuesView } from './queues';
import { SchedulesView } from './schedules';
import { BulkBar, Selection } from './selection';
import { SINCE, sinceSelect } from './since';
import { tagChips, TagFilter } from './tags';
import { ago, attempt, button, duration, el, preview, shortId } from './util';

const FILTERS: Array<[string, string]> = [
  ['', 'All'],
  [ACTIVE.join(','), 'Active'],
  ['WAITING', 'Waiting'],
  [FAILURES.join(','), 'Failed'],
  [CANCELED_OR_EXPIRED.join(','), 'Canceled / expired'],
  ['COMPLETED', 'Completed']
];

export class RunsPanel extends Widget {
  constructor(
    private model: RunsModel,
    private openRun: (id: string) => void,
    private openCell?: OpenCell
  ) {
    super();
    this.addClass('jp-DurablePanel');
    const node = this.node;

    const header = el('div', 'jp-DurablePanel-header');
    header.appendChild(el('h2', 'jp-DurablePanel-title', 'Durable runs'));
    this._live = el('span', 'jp-DurablePanel-live');
    header.appendChild(this._live);
    header.appendChild(
      button('', 'Refresh', () => model.refresh(), { icon: refreshIcon })
    );
    node.appendChild(header);
    this._executor = el('div', 'jp-DurablePanel-executor');
    this._executor.hidden = true;
    node.appendChild(this._executor);

    this._error = el('div', 'jp-DurablePanel-error');
    node.appendChild(this._error);

    const approvals = el('section', 'jp-DurablePanel-approvals');
    this._approvalsTitle = el('h3', 'jp-DurablePanel-section');
    approvals.appendChild(this._approvalsTitle);
    this._approvals = el('div', 'jp-DurablePanel-cards');
    approvals.appendChild(this._approvals);
    node.appendChild(approvals);

    const subscribe = model.onEvent.bind(model);
    this._queues = new QueuesView(subscribe);
    node.appendChild(this._queues.node);
    this._schedules = new SchedulesView(subscribe);
    node.appendChild(this._schedules.node);

    const runs = el('section', 'jp-DurablePanel-runs');
    const runsHeader = el('h3', 'jp-DurablePanel-section', 'Runs');
    const select = el('select', 'jp-DurablePanel-filter');
    select.title = 'Show runs by status';
    for (const [value, label] of FILTERS) {
      const option = el('option', '', label);
      option.value = value;
      select.appendChild(option);
    }
    select.addEventListener('change', () => model.setFilter(select.value));
    const filters = el('span', 'jp-DurablePanel-filters');
    filters.append(select, sinceSelect(model));
    runsHeader.appendChild(filters);
    runs.appendChild(runsHeader);
    runs.appendChild(this._searchBox());
    this._tags = new TagFilter(tags => model.setTags(tags));
    runs.appendChild(this._tags.node);
    this._selection = new Selection(() => this.render());
    this._bulk = new BulkBar(model, this._selection);
    this._pager = new Pager(model);
    this._toolbar = el('div', 'jp-DurablePanel-toolbar');
    this._count = el('span', 'jp-DurablePanel-count');
    this._toolbar.append(this._bulk.pageBox, this._count, this._pager.node);
    runs.appendChild(this._toolbar);
    runs.appendChild(this._bulk.node);
    this._list = el('ul', 'jp-DurablePanel-list');
    runs.appendChild(this._list);
    this._empty = el('div', 'jp-DurablePanel-empty');
    runs.appendChild(this._empty);
    node.appendChild(runs);

    this._stop = model.onChange(() => this.render());
    this._clock = window.setInterval(() => this._tick(), 15000);
    this.render();
  }

  dispose(): void {
    this._stop();
    this._queues.dispose();
    this._schedules.dispose();
    window.clearInterval(this._clock);
    window.clearTimeout(this._typing);
    super.dispose();
  }

  /** The search box: filters the list by `q` (id, task or cell name, tag, notebook) a
   * moment after typing stops; Escape clears it. */
  private _searchBox(): HTMLElement {
    const box = el('input', 'jp-DurablePanel-search');
    box.type = 'search';
    box.placeholder = 'Search runs';
    box.title = 'Search runs by id, task or cell name, tag or notebook (Escape clears)';
    box.setAttribute('aria-label', 'Search runs');
    box.maxLength = 200;
    box.spellcheck = false;
    const apply = () => {
      window.clearTimeout(this._typing);
      this._typing = 0;
      if (box.value.trim() !== this.model.search) {
        this.model.setSearch(box.value);
      }
    };
    box.addEventListener('input', () => {
      window.clearTimeout(this._typing);
      this._typing = window.setTimeout(apply, 250);
    });
    box.addEventListener('keydown', event => {
      if (event.key === 'Enter') {
        apply();
      } else if (event.key === 'Escape' && box.value) {
        box.value = '';
        apply();
      }
    });
    return box;
  }

  render(): void {
    const m = this.model;
    this._live.textContent = m.connected ? 'live' : 'reconnecting…';
    this._live.classList.toggle('jp-mod-connected', m.connected);
    this._error.textContent = m.error;
    this._error.hidden = !m.error;
    this._renderExecutor(m.executor);
    this._renderApprovals(m.approvals);
    this._renderRuns(m.runs);
  }

  /** "Dask: N workers · dashboard" (the dashboard in a new tab) when attempts run on a
   * Dask cluster; nothing for local worker processes. */
  private _renderExecutor(executor: IExecutor): void {
    const node = this._executor;
    const dask = executor.kind === 'dask';
    const sig = dask ? `${executor.workers}|${executor.dashboard}|${executor.scheduler}` : '';
    if (node.dataset.sig === sig) {
      return;
    }
    node.dataset.sig = sig;
    node.replaceChildren();
    node.hidden = !dask;
    if (!dask) {
      return;
    }
    const n = executor.workers ?? 0;
    node.title = `Attempts run on the Dask cluster ${executor.scheduler ?? ''}`.trim();
    node.appendChild(document.createTextNode(`Dask: ${n} worker${n === 1 ? '' : 's'}`));
    if (executor.dashboard && /^https?:\/\//i.test(executor.dashboard)) {
      node.appendChild(document.createTextNode(' · '));
      const link = el('a', 'jp-DurablePanel-dashboard', 'dashboard');
      link.href = executor.dashboard;
      link.target = '_blank';
      link.rel = 'noopener noreferrer';
      link.title = `Open the Dask dashboard (${executor.dashboard})`;
      node.appendChild(link);
    }
  }

  private _renderApprovals(approvals: IApproval[]): void {
    const n = approvals.length;
    this._approvalsTitle.textContent = n
      ? `Pending approvals (${n})`
      : 'No pending approvals';
    const cards = new Map<string, HTMLElement>();
    for (const a of approvals) {
      const key = `${a.run.id}/${a.wait.wait_key}`;
      cards.set(key, this._cards.get(key) ?? this._approvalCard(a));
    }
    this._cards = cards;
    this._place(this._approvals, [...cards.values()]);
  }

  /** A card kept while the approval is pending, so a comment being typed survives. */
  private _approvalCard(a: IApproval): HTMLElement {
    const card = el('div', 'jp-DurableApproval');
    card.dataset.runId = a.run.id;
    card.dataset.wait = a.wait.name;
    const title = el('div', 'jp-DurableApproval-title');
    title.appendChild(el('strong', '', a.wait.name));
    title.appendChild(el('span', 'jp-DurableApproval-task', a.run.task_id));
    const link = el('a', 'jp-DurableApproval-run', shortId(a.run.id));
    link.href = '#';
    link.title = `Open run ${a.run.id}`;
    link.addEventListener('click', e => {
      e.preventDefault();
      this.openRun(a.run.id);
    });
    title.appendChild(link);
    card.appendChild(title);
    const data = preview(a.wait.preview, 300);
    if (data) {
      card.appendChild(el('code', 'jp-DurableApproval-data', data));
    }
    const form = isForm(a.wait.form)
      ? new CardForm(a.wait.form, `${a.run.id}/${a.wait.wait_key}`)
      : null;
    if (form) {
      card.appendChild(form.node);
    }
    const comment = el('input', 'jp-DurableApproval-comment');
    comment.placeholder = 'Comment (optional)';
    comment.setAttribute('aria-label', `Comment on ${a.wait.name}`);
    card.appendChild(comment);
    const row = el('div', 'jp-DurableApproval-actions');
    const decideWith = (approved: boolean) => async () => {
      const verb = approved ? 'Approve' : 'Reject';
      const values = approved && form ? form.values() : undefined;
      const done = await attempt(`${verb} '${a.wait.name}'`, () =>
        decide(a.run.id, approved, a.wait.name, comment.value, values)
      );
      if (done) {
        card.classList.add('jp-mod-resolved');
        await this.model.refresh();
      }
    };
    const approve = button('Approve', 'Approve and resume the run', async () => {
      await decideWith(true)();
      form?.sync(true); // the button helper enables it again: the form decides
    }, {
      icon: checkIcon,
      className: 'jp-mod-approve'
    });
    row.appendChild(approve);
    form?.gate(approve);
    row.appendChild(
      button('Reject', 'Reject (the run sees approved = False)', decideWith(false), {
        icon: closeIcon,
        className: 'jp-mod-reject'
      })
    );
    card.appendChild(row);
    return card;
  }

  private _renderRuns(runs: IRun[]): void {
    const m = this.model;
    this._tags.set(m.tags);
    const rows = new Map<string, HTMLElement>();
    const active = m.tags.join(',');
    for (const run of runs) {
      const sig = [run.status, run.attempts, run.updated_at, run.task_id, active].join('|') +
        (ACTIVE.includes(run.status) ? `|${JSON.stringify(run.progress ?? null)}` : '');
      let row = this._rows.get(run.id);
      if (!row || row.dataset.sig !== sig) {
        row = this._runRow(run);
        row.dataset.sig = sig;
      }
      const box = row.querySelector<HTMLInputElement>('.jp-DurableRun-select');
      if (box) {
        box.checked = this._selection.has(run.id);
      }
      row.classList.toggle('jp-mod-selected', this._selection.has(run.id));
      rows.set(run.id, row);
    }
    this._rows = rows;
    this._place(this._list, [...rows.values()]);
    this._count.textContent = this._countText(runs.length);
    this._bulk.render();
    this._pager.render();
    this._toolbar.hidden = !runs.length;
    this._empty.textContent = runs.length ? '' : this._emptyText();
  }

  /** Why the list is empty: "No runs match “x” tagged “a” with this status.", ... */
  private _emptyText(): string {
    const m = this.model;
    const tags = m.tags.map(t => `“${t}”`).join(', ');
    const when = SINCE.find(([value]) => value === m.since)?.[1].toLowerCase();
    const more =
      (tags ? ` tagged ${tags}` : '') +
      (m.filter ? ' with this status' : '') +
      (m.since ? ` in the ${when ?? m.since}` : '');
    if (m.search) {
      return `No runs match “${m.search}”${more}.`;
    }
    if (tags || m.since) {
      return `No runs${more}.`;
    }
    return m.filter
      ? 'No runs with this status.'
      : 'No runs yet. Trigger a task or run a %%durable cell.';
  }

  /** "3 runs match", "showing 51–100 of 212 runs", or how many runs there are. */
  private _countText(shown: number): string {
    const { total, search, tags, since, offset } = this.model;
    const runs = (n: number) => `${n} run${n === 1 ? '' : 's'}`;
    const narrowed = search || tags.length || since;
    if (shown < total) {
      const range = offset ? `${offset + 1}–${offset + shown}` : `${shown}`;
      return `showing ${range} of ${runs(total)}${narrowed ? ' that match' : ''}`;
    }
    if (narrowed) {
      return total ? `${runs(total)} match${total === 1 ? 'es' : ''}` : '';
    }
    return total ? runs(total) : '';
  }

  private _runRow(run: IRun): HTMLElement {
    const row = el('li', `jp-DurableRun jp-mod-${run.status.toLowerCase()}`);
    row.dataset.runId = run.id;
    row.dataset.status = run.status;
    row.title = `Run ${run.id}: open its graph`;
    row.addEventListener('click', () => this.openRun(run.id));

    row.appendChild(this._selection.checkbox(run.id));
    row.appendChild(el('span', 'jp-DurableStatus-dot'));
    const main = el('div', 'jp-DurableRun-main');
    const top = el('div', 'jp-DurableRun-line');
    const name = run.task_id || run.kind;
    // an unnamed cell is already called after its notebook and cell: its name is the link
    const link = originLink(run.origin, this.openCell, 'jp-DurableRun-origin');
    const named = link && originLabel(run.origin) === name;
    if (link && named) {
      link.classList.add('jp-DurableRun-task');
    }
    top.appendChild(named && link ? link : el('span', 'jp-DurableRun-task', name));
    top.appendChild(el('span', 'jp-DurableRun-id', shortId(run.id)));
    if (run.priority) {
      const p = el('span', 'jp-DurableRun-priority', `P ${run.priority}`);
      const order = run.priority > 0 ? 'ahead of' : 'after';
      p.title = `Priority ${run.priority}: ${order} runs of priority 0 in its queue`;
      top.appendChild(p);
    }
    main.appendChild(top);
    if (link && !named) {
      const from = el('div', 'jp-DurableRun-line jp-DurableRun-from', 'from ');
      from.appendChild(link);
      main.appendChild(from);
    }
    const fork = forkLine(run, this.openRun);
    if (fork) {
      main.appendChild(fork);
    }
    const bottom = el('div', 'jp-DurableRun-line jp-DurableRun-meta');
    const status = el('span', 'jp-DurableRun-status', run.status.toLowerCase());
    bottom.appendChild(status);
    if (run.duration) {
      bottom.appendChild(el('span', '', duration(run.duration)));
    }
    const when = el('span', 'jp-DurableRun-time', ago(run.created_at));
    when.dataset.at = String(run.created_at);
    bottom.appendChild(when);
    main.appendChild(bottom);
    if (run.progress && ACTIVE.includes(run.status)) {
      main.appendChild(progressLine(run.progress)); // dn.progress or a tqdm bar
    }
    if (run.error && !ACTIVE.includes(run.status)) {
      main.appendChild(
        el(
          'div',
          'jp-DurableRun-error',
          `${run.error.type}: ${preview(run.error.message, 120)}`
        )
      );
    }
    const chips = tagChips(run.tags, this.model.tags, tag => this._tags.add(tag));
    if (chips) {
      main.appendChild(chips);
    }
    row.appendChild(main);

    const actions = el('div', 'jp-DurableRun-actions');
    if (ACTIVE.includes(run.status)) {
      actions.appendChild(
        button('', 'Cancel run', () => confirmCancel(run), { icon: stopIcon })
      );
    } else {
      if (RESUMABLE.includes(run.status)) {
        actions.appendChild(
          button(
            '',
            'Resume: continue after its last recorded step or checkpoint',
            () => resume(run, () => this.model.refresh()),
            { icon: runIcon, className: 'jp-mod-resume' }
          )
        );
      }
      actions.appendChild(
        button('', 'Replay: a new run with the same payload', () => replay(run, this.openRun), {
          icon: redoIcon
        })
      );
    }
    row.appendChild(actions);
    return row;
  }

  /** Make `parent`'s children exactly `nodes`, in order, moving as few as possible. */
  private _place(parent: HTMLElement, nodes: HTMLElement[]): void {
    const keep = new Set(nodes);
    for (const child of [...parent.children]) {
      if (!keep.has(child as HTMLElement)) {
        child.remove();
      }
    }
    nodes.forEach((node, i) => {
      if (parent.children[i] !== node) {
        parent.insertBefore(node, parent.children[i] ?? null);
      }
    });
  }

  private _tick(): void {
    this.node.querySelectorAll<HTMLElement>('.jp-DurableRun-time').forEach(node => {
      node.textContent = ago(Number(node.dataset.at));
    });
  }

  private _live: HTMLElement;
  private _queues: QueuesView;
  private _schedules: SchedulesView;
  private _tags: TagFilter;
  private _selection: Selection;
  private _bulk: BulkBar;
  private _pager: Pager;
  private _toolbar: HTMLElement;
  private _executor: HTMLElement;
  private _error: HTMLElement;
  private _approvalsTitle: HTMLElement;
  private _approvals: HTMLElement;
  private _list: HTMLElement;
  private _count: HTMLElement;
  private _empty: HTMLElement;
  private _typing = 0;
  private _cards = new Map<string, HTMLElement>();
  private _rows = new Map<string, HTMLElement>();
  private _stop: () => void;
  private _clock: number;
}

export async function confirmCancel(run: IRun): Promise<void> {
  const answer = await showDialog({
    title: 'Cancel run?',
    body: `Cancel run ${run.id} of ${run.task_id}? Its current attempt is stopped.`,
    buttons: [
      Dialog.cancelButton({ label: 'Keep running' }),
      Dialog.warnButton({ label: 'Cancel run' })
    ]
  });
  if (answer.button.accept) {
    await attempt(`Cancel run ${shortId(run.id)}`, () => cancelRun(run.id));
  }
}

/** Continue a failed, crashed, timed-out or canceled run in a new attempt. */
export async function resume(run: IRun, then: () => Promise<void> | void): Promise<void> {
  const out = await attempt(`Resume run ${shortId(run.id)}`, () => resumeRun(run.id));
  if (out) {
    await then();
  }
}

export async function replay(run: IRun, open: (id: string) => void): Promise<void> {
  const out = await attempt(`Replay run ${shortId(run.id)}`, () => replayRun(run.id));
  if (out) {
    open(out.id);
  }
}
