/**
 * Selecting runs in the sidebar and acting on them together: a checkbox per row, one for
 * the page, "Select all N matching" (the runs of the current filters, paged through
 * `GET /runs`, at most 1000), and Cancel / Resume / Replay on the selection through
 * `POST /runs/bulk`, as `durable-nb cancel|resume|replay --status ... --tag ...` does.
 * The result says what was done and why the others were refused.
 */
import { Dialog, showDialog } from '@jupyterlab/apputils';
import { redoIcon, runIcon, stopIcon } from '@jupyterlab/ui-components';
import { Widget } from '@lumino/widgets';

import { ApiError, request, searchRuns } from './api';
import { RunsModel } from './model';
import { button, el } from './util';

export type BulkAction = 'cancel' | 'resume' | 'replay';

/** One run's outcome in `POST /runs/bulk`. */
export interface IBulkResult {
  id: string;
  ok: boolean;
  error?: string;
  /** The new run of a replay. */
  new_id?: string;
  /** The descendants a cancel canceled with the run. */
  children?: string[];
}

export interface IBulkAnswer {
  results: IBulkResult[];
  ok: number;
  failed: number;
}

/** The most runs one bulk request (and "Select all matching") takes. */
export const MAX_BULK = 1000;

/** Runs per request while collecting the matching ones. */
const PAGE = 500;

const DONE: Record<BulkAction, string> = {
  cancel: 'canceled',
  resume: 'resumed',
  replay: 'replayed'
};

/** Act on runs at once; `children` (cancel only) says what becomes of their child runs. */
export function bulk(
  action: BulkAction,
  ids: string[],
  children?: 'cancel' | 'abandon'
): Promise<IBulkAnswer> {
  const body = action === 'cancel' ? { action, ids, children } : { action, ids };
  return request<IBulkAnswer>('runs/bulk', { method: 'POST', body: JSON.stringify(body) });
}

/** The ids of the runs the model's filters match, newest first, at most `cap`, and how
 * many match. */
export async function matchingIds(
  model: RunsModel,
  cap = MAX_BULK
): Promise<{ ids: string[]; total: number }> {
  const ids = new Set<string>();
  let total = 0;
  for (let offset = 0; ids.size < cap; offset += PAGE) {
    const page = await searchRuns(model.filters(), PAGE, offset);
    total = page.total;
    page.runs.forEach(r => ids.size < cap && ids.add(r.id));
    if (page.runs.length < PAGE || offset + PAGE >= total) {
      break;
    }
  }
  return { ids: [...ids], total };
}

/** "3 canceled, 1 failed: <reason>" (the other reasons in `detail`, one per run). */
export function summary(action: BulkAction, answer: IBulkAnswer): { text: string; detail: string } {
  const failed = answer.results.filter(r => !r.ok);
  const reasons = [...new Set(failed.map(r => r.error || 'refused'))];
  let text = `${answer.ok} ${DONE[action]}`;
  const children = answer.results.reduce((n, r) => n + (r.ok ? r.children?.length ?? 0 : 0), 0);
  if (children) {
    text += ` (and ${children} child run${children === 1 ? '' : 's'})`;
  }
  if (answer.failed) {
    text += `, ${answer.failed} failed: ${reasons[0]}`;
    if (reasons.length > 1) {
      text += ` (and ${reasons.length - 1} other reason${reasons.length > 2 ? 's' : ''})`;
    }
  }
  const detail = failed.map(r => `${r.id}: ${r.error || 'refused'}`).join('\n');
  return { text, detail };
}

/** The selected run ids, kept across pages and refreshes; `note` says how a "select all
 * matching" went. */
export class Selection {
  note = '';

  constructor(private onChange: () => void) {}

  get size(): number {
    return this._ids.size;
  }

  has(id: string): boolean {
    return this._ids.has(id);
  }

  ids(): string[] {
    return [...this._ids];
  }

  set(ids: string[], on: boolean): void {
    ids.forEach(id => (on ? this._ids.add(id) : this._ids.delete(id)));
    this.note = '';
    this.onChange();
  }

  replace(ids: string[], note: string): void {
    this._ids = new Set(ids);
    this.note = note;
    this.onChange();
  }

  clear(): void {
    if (this._ids.size || this.note) {
      this._ids.clear();
      this.note = '';
      this.onChange();
    }
  }

  /** A row's checkbox (its clicks do not open the run). */
  checkbox(id: string): HTMLInputElement {
    const box = el('input', 'jp-DurableRun-select');
    box.type = 'checkbox';
    box.checked = this.has(id);
    box.title = 'Select this run';
    box.setAttribute('aria-label', `Select run ${id}`);
    box.addEventListener('click', event => event.stopPropagation());
    box.addEventListener('change', () => this.set([id], box.checked));
    return box;
  }

  private _ids = new Set<string>();
}

/**
 * What acts on the selection: the page's checkbox (for the list's toolbar), and a bar
 * shown while runs are selected or a result is to be read: "3 selected", Select all N
 * matching, Cancel / Resume / Replay, Clear, then the result.
 */
export class BulkBar {
  readonly node: HTMLElement;
  readonly pageBox: HTMLInputElement;

  constructor(
    private model: RunsModel,
    private selection: Selection
  ) {
    this.pageBox = el('input', 'jp-DurableBulk-page');
    this.pageBox.type = 'checkbox';
    this.pageBox.title = 'Select all runs on this page';
    this.pageBox.setAttribute('aria-label', 'Select all runs on this page');
    this.pageBox.addEventListener('change', () =>
      selection.set(this._pageIds(), this.pageBox.checked)
    );
    this.node = el('div', 'jp-DurableBulk');
    const top = el('div', 'jp-DurableBulk-line');
    this._count = el('span', 'jp-DurableBulk-count');
    top.appendChild(this._count);
    this._actions = el('span', 'jp-DurableBulk-actions');
    const act = (label: string, title: string, action: BulkAction, icon: typeof runIcon) =>
      button(label, title, () => this.run(action), {
        icon,
        className: `jp-DurableBulk-action jp-mod-${action}`
      });
    this._actions.append(
      act('Cancel', 'Cancel the selected runs that have not finished', 'cancel', stopIcon),
      act(
        'Resume',
        'Resume the selected failed, crashed, timed-out or canceled runs',
        'resume',
        runIcon
      ),
      act(
        'Replay',
        'Start a new run of each selected run, with the same payload',
        'replay',
        redoIcon
      )
    );
    this._clear = el('a', 'jp-DurableBulk-clear', 'Clear');
    this._clear.href = '#';
    this._clear.title = 'Select nothing';
    this._clear.addEventListener('click', e => {
      e.preventDefault();
      selection.clear();
    });
    top.appendChild(this._clear);
    this.node.appendChild(top);
    this.node.appendChild(this._actions);
    this._all = el('a', 'jp-DurableBulk-all');
    this._all.href = '#';
    this._all.addEventListener('click', e => {
      e.preventDefault();
      void this.selectMatching();
    });
    this._note = el('div', 'jp-DurableBulk-note');
    this._note.appendChild(this._all);
    this._noteText = el('span', '');
    this._note.appendChild(this._noteText);
    this.node.appendChild(this._note);
    this._result = el('div', 'jp-DurableBulk-result');
    this.node.appendChild(this._result);
  }

  /** Draw for the model's current page; a change of its filters clears the selection. */
  render(): void {
    const m = this.model;
    const key = JSON.stringify(m.filters());
    if (key !== this._filters) {
      this._filters = key;
      this.selection.clear();
      this._result.textContent = '';
    }
    const page = this._pageIds();
    const on = page.filter(id => this.selection.has(id)).length;
    this.pageBox.checked = page.length > 0 && on === page.length;
    this.pageBox.indeterminate = on > 0 && on < page.length;
    this.pageBox.disabled = !page.length;
    const n = this.selection.size;
    this._count.textContent = `${n} selected`;
    const everyOnPage = page.length > 0 && on === page.length;
    const more = m.total > page.length && everyOnPage && !this.selection.note;
    this._all.hidden = !more;
    this._all.textContent = `Select all ${m.total} matching`;
    this._all.title =
      m.total > MAX_BULK
        ? `Select the ${MAX_BULK} most recent runs of the ${m.total} that match`
        : `Select the ${m.total} runs that match the filters, on every page`;
    this._noteText.textContent = this.selection.note;
    this._note.hidden = !more && !this.selection.note;
    this._actions.hidden = this._clear.hidden = this._count.hidden = !n;
    this.node.hidden = !n && !this._result.textContent;
  }

  /** Select every run the filters match (the newest MAX_BULK). */
  async selectMatching(): Promise<void> {
    this._all.textContent = 'Selecting…';
    try {
      const { ids, total } = await matchingIds(this.model);
      const note =
        total > ids.length
          ? `The ${ids.length} most recent of ${total} matching runs are selected ` +
            `(at most ${MAX_BULK} at a time).`
          : `All ${ids.length} matching run${ids.length === 1 ? ' is' : 's are'} selected.`;
      this.selection.replace(ids, note);
    } catch (err) {
      this._show(`Could not list the matching runs: ${(err as Error).message || err}`, '', true);
    }
  }

  /** Ask, then act on the selection; say what was done and refresh the list. */
  async run(action: BulkAction): Promise<void> {
    const ids = this.selection.ids().slice(0, MAX_BULK);
    if (!ids.length) {
      return;
    }
    const children = await confirm(action, ids.length);
    if (children === null) {
      return;
    }
    let answer: IBulkAnswer;
    try {
      answer = await bulk(action, ids, children || undefined);
    } catch (err) {
      const text =
        err instanceof ApiError && err.status === 404
          ? 'Bulk actions are not available on this engine.'
          : `${action[0].toUpperCase()}${action.slice(1)} failed: ${(err as Error).message || err}`;
      this._show(text, '', true);
      return;
    }
    const { text, detail } = summary(action, answer);
    const size = this.selection.size;
    const rest =
      size > ids.length ? ` (the first ${ids.length} of ${size}: act again for the rest)` : '';
    this._show(text + rest, detail, answer.failed > 0);
    // the failed runs stay selected, to be looked at or acted on otherwise
    this.selection.set(answer.results.filter(r => r.ok).map(r => r.id), false);
    await this.model.refresh();
  }

  private _show(text: string, detail: string, failed: boolean): void {
    this._result.textContent = text;
    this._result.title = detail;
    this._result.classList.toggle('jp-mod-failed', failed);
    this.render();
  }

  private _pageIds(): string[] {
    return this.model.runs.map(r => r.id);
  }

  private _filters = '';
  private _count: HTMLElement;
  private _actions: HTMLElement;
  private _clear: HTMLAnchorElement;
  private _all: HTMLAnchorElement;
  private _note: HTMLElement;
  private _noteText: HTMLElement;
  private _result: HTMLElement;
}

/** Ask before acting on `n` runs. For a cancel: what becomes of their child runs
 * ('cancel' or 'abandon'); '' for the other actions; null when the user declined. */
async function confirm(action: BulkAction, n: number): Promise<'cancel' | 'abandon' | '' | null> {
  const runs = `${n} run${n === 1 ? '' : 's'}`;
  const body = new Widget();
  const what: Record<BulkAction, string> = {
    cancel: 'Their current attempts are stopped; runs that already finished stay as they are.',
    resume:
      'Each failed, crashed, timed-out or canceled one continues after its last recorded ' +
      'step or checkpoint; the others stay as they are.',
    replay: 'Each gets a new run with the same task and payload.'
  };
  body.node.appendChild(el('p', '', what[action]));
  let children: HTMLInputElement | null = null;
  if (action === 'cancel') {
    const label = el('label', 'jp-DurableBulk-children');
    children = el('input');
    children.type = 'checkbox';
    children.checked = true;
    label.append(children, ' Cancel their child runs too (otherwise they go on)');
    body.node.appendChild(label);
  }
  const verb = `${action[0].toUpperCase()}${action.slice(1)} ${runs}`;
  const answer = await showDialog({
    title: `${verb}?`,
    body,
    buttons: [
      Dialog.cancelButton({ label: 'Back' }),
      action === 'cancel' ? Dialog.warnButton({ label: verb }) : Dialog.okButton({ label: verb })
    ]
  });
  if (!answer.button.accept) {
    return null;
  }
  return children ? (children.checked ? 'cancel' : 'abandon') : '';
}
