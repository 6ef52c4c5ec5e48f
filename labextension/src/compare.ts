/**
 * Two runs side by side in the main area (`GET /runs/{a}/compare/{b}`): each run's
 * status, version and duration, then their steps (a cell's statements) aligned by key,
 * with each side's status, duration and output preview, the rows that differ highlighted.
 *
 * A run view's toolbar gets "Compare…" (pick another run: the fork's source, the run's
 * forks, recent runs of the same task, or any id typed) and, for a fork, "Compare with
 * source". The view opens through a command the plugin registers (`registerCompare`).
 */
import { JupyterFrontEnd } from '@jupyterlab/application';
import {
  InputDialog,
  MainAreaWidget,
  ToolbarButton
} from '@jupyterlab/apputils';
import { refreshIcon } from '@jupyterlab/ui-components';
import { Widget } from '@lumino/widgets';

import { IRun, IRunDetail, request, searchRuns } from './api';
import { durableIcon } from './icon';
import { attempt, duration, el, shortId } from './util';

export const COMPARE_RUNS = 'durable-nb:compare-runs';

/** One side of a row: how that run's step (or statement) went. */
export interface ICompareSide {
  status: string;
  duration: number | null;
  tries: number;
  output: string | null;
  error: string | null;
  size?: number | null;
}

/** A row of the comparison: a step key (or "statement N") and both sides. */
export interface ICompareRow {
  key: string;
  kind: 'step' | 'statement';
  name: string | null;
  a: ICompareSide | null;
  b: ICompareSide | null;
  /** What differs: missing, status, output, args. */
  diff: string[];
  /** A statement's variables whose values differ. */
  changed?: string[];
  slower?: 'a' | 'b';
}

/** A run as the comparison summarizes it. */
export interface ICompareRun {
  id: string;
  task_id: string;
  kind: string;
  status: string;
  duration: number | null;
  attempts: number;
  fork_of?: string | null;
  fork_step?: string | null;
  error: string | null;
  version: { number: number; hash: string; latest: boolean } | null;
  output: { digest: string; size: number } | null;
}

export interface IComparison {
  a: ICompareRun;
  b: ICompareRun;
  run_diff: string[];
  rows: ICompareRow[];
  differences: number;
}

export function getComparison(a: string, b: string): Promise<IComparison> {
  return request<IComparison>(
    `runs/${encodeURIComponent(a)}/compare/${encodeURIComponent(b)}`
  );
}

let openComparison: (a: string, b: string) => void = () => undefined;

/** "v2 · 3fa2b1c" */
function versionText(v: ICompareRun['version']): string {
  return v ? `v${v.number} · ${v.hash.slice(0, 7)}` : '';
}

function sideCells(side: ICompareSide | null, row: ICompareRow): HTMLElement[] {
  if (!side) {
    const empty = el('td', 'jp-DurableCompare-empty', 'not run');
    empty.colSpan = 3;
    return [empty];
  }
  const status = el('td', `jp-DurableCompare-status jp-mod-${side.status}`, side.status);
  if (side.tries > 1) {
    status.textContent += ` (${side.tries} tries)`;
  }
  status.classList.toggle('jp-mod-hit', row.diff.includes('status'));
  const time = el('td', 'jp-DurableCompare-time', duration(side.duration));
  const out = el('td', 'jp-DurableCompare-output', side.error || side.output || '');
  out.title = side.error || side.output || '';
  out.classList.toggle('jp-mod-hit', row.diff.includes('output'));
  return [status, time, out];
}

/** The side-by-side view of runs `a` and `b`. */
export class CompareView extends Widget {
  constructor(
    readonly a: string,
    readonly b: string,
    private openRun: (id: string) => void
  ) {
    super();
    this.addClass('jp-DurableCompare');
    void this.load();
  }

  async load(): Promise<void> {
    try {
      this.data = await getComparison(this.a, this.b);
    } catch (err) {
      this.node.replaceChildren(
        el('div', 'jp-DurableCompare-error', `Could not compare the runs: ${(err as Error).message}`)
      );
      return;
    }
    this.render(this.data);
  }

  data: IComparison | null = null;

  private runHead(tag: string, run: ICompareRun): HTMLElement {
    const line = el('div', 'jp-DurableCompare-run');
    line.append(el('span', 'jp-DurableCompare-tag', tag));
    const link = el('a', 'jp-DurableCompare-link', run.id);
    link.href = '#';
    link.addEventListener('click', e => {
      e.preventDefault();
      this.openRun(run.id);
    });
    line.append(link, ` ${run.task_id} `);
    if (run.version) {
      line.append(el('code', 'jp-DurableCompare-version', versionText(run.version)));
    }
    line.append(
      el('span', `jp-DurableCompare-status jp-mod-${run.status}`, ` ${run.status}`),
      ` ${duration(run.duration)}`
    );
    if (run.fork_of) {
      line.append(` · fork of ${shortId(run.fork_of)} from ${run.fork_step ?? '?'}`);
    }
    if (run.error) {
      line.append(el('div', 'jp-DurableCompare-runError', run.error));
    }
    return line;
  }

  render(data: IComparison): void {
    const head = el('div', 'jp-DurableCompare-head');
    head.append(this.runHead('A', data.a), this.runHead('B', data.b));
    head.append(
      el(
        'div',
        'jp-DurableCompare-summary',
        (data.run_diff.length
          ? `The runs differ in ${data.run_diff.join(', ')}; `
          : 'Same status, version and output; ') +
          `${data.differences} of ${data.rows.length} rows differ.`
      )
    );
    const table = el('table', 'jp-DurableCompare-table');
    const top = el('tr');
    const step = el('th', '', 'step');
    step.rowSpan = 2;
    const thA = el('th', '', `A ${shortId(data.a.id)}`);
    thA.colSpan = 3;
    const thB = el('th', '', `B ${shortId(data.b.id)}`);
    thB.colSpan = 3;
    const differs = el('th', '', 'differs');
    differs.rowSpan = 2;
    top.append(step, thA, thB, differs);
    const sub = el('tr');
    for (let i = 0; i < 2; i++) {
      sub.append(el('th', '', 'status'), el('th', '', 'duration'), el('th', '', 'output'));
    }
    table.append(top, sub);
    for (const row of data.rows) {
      const tr = el('tr', 'jp-DurableCompare-row');
      tr.dataset.key = row.key;
      tr.classList.toggle('jp-mod-differs', row.diff.length > 0);
      tr.classList.toggle('jp-mod-missing', row.diff.includes('missing'));
      const note = [...row.diff.map(d => (d === 'missing' ? `only in ${row.a ? 'A' : 'B'}` : d)),
        ...(row.changed ?? [])];
      if (row.slower) {
        note.push(`${row.slower.toUpperCase()} slower`);
      }
      tr.append(
        el('td', 'jp-DurableCompare-key', row.key),
        ...sideCells(row.a, row),
        ...sideCells(row.b, row),
        el('td', 'jp-DurableCompare-note', note.join(', '))
      );
      table.append(tr);
    }
    if (!data.rows.length) {
      const tr = el('tr');
      const td = el('td', 'jp-DurableCompare-empty', 'Neither run recorded a step.');
      td.colSpan = 8;
      tr.append(td);
      table.append(tr);
    }
    this.node.replaceChildren(head, table);
  }
}

/** The comparison in a main-area widget, with a Refresh button. */
export function createCompareWidget(
  a: string,
  b: string,
  openRun: (id: string) => void
): MainAreaWidget<CompareView> {
  const content = new CompareView(a, b, openRun);
  const widget = new MainAreaWidget({ content });
  widget.id = `durable-compare-${a}-${b}`;
  widget.title.label = `${shortId(a)} ↔ ${shortId(b)}`;
  widget.title.caption = `durable_nb runs ${a} and ${b} side by side`;
  widget.title.closable = true;
  widget.title.icon = durableIcon;
  widget.toolbar.addItem(
    'refresh',
    new ToolbarButton({
      icon: refreshIcon,
      tooltip: 'Compare again',
      onClick: () => void content.load()
    })
  );
  return widget;
}

/** The command that opens (or shows again) the comparison of `a` and `b`. */
export function registerCompare(app: JupyterFrontEnd, openRun: (id: string) => void): void {
  app.commands.addCommand(COMPARE_RUNS, {
    label: 'Compare Durable Runs',
    execute: args => {
      const a = String(args.a);
      const b = String(args.b);
      const id = `durable-compare-${a}-${b}`;
      for (const w of app.shell.widgets('main')) {
        if (w.id === id) {
          app.shell.activateById(id);
          return w;
        }
      }
      const widget = createCompareWidget(a, b, openRun);
      app.shell.add(widget, 'main');
      return widget;
    }
  });
  openComparison = (a, b) => void app.commands.execute(COMPARE_RUNS, { a, b });
}

/** A run's fork tree as `GET /runs/{id}` gives it (`fork_tree`, when it has one). */
interface IForkTree {
  runs?: Array<{ id: string; fork_of?: string | null; status?: string }>;
}

/** What the picker offers: the fork's source, its forks and the rest of its fork tree,
 * then recent runs of the same task. */
async function candidates(run: IRunDetail): Promise<string[]> {
  const out: string[] = [];
  const detail = run as IRunDetail & { fork_of?: string | null; fork_tree?: IForkTree | null };
  if (detail.fork_of) {
    out.push(`${detail.fork_of}  (the source of this fork)`);
  }
  for (const f of detail.fork_tree?.runs ?? []) {
    if (f.id === run.id || f.id === detail.fork_of) {
      continue;
    }
    const why = f.fork_of === run.id ? 'a fork of this run' : 'in its fork tree';
    out.push(`${f.id}  (${why})`);
  }
  let recent: IRun[] = [];
  try {
    recent = (await searchRuns({ q: run.task_id }, 20)).runs;
  } catch {
    recent = [];
  }
  for (const r of recent) {
    if (r.id !== run.id && r.task_id === run.task_id && !out.some(o => o.startsWith(r.id))) {
      out.push(`${r.id}  (${r.status}, ${r.task_id})`);
    }
  }
  return out;
}

/** Ask which run to compare `run` with (typed or picked), then open the comparison. */
export async function pickAndCompare(run: IRunDetail): Promise<void> {
  const items = await candidates(run);
  const answer = await InputDialog.getItem({
    title: `Compare ${shortId(run.id)} with…`,
    label: 'Another run (pick one or type its id)',
    items: items.length ? items : [''],
    editable: true,
    current: 0,
    okLabel: 'Compare'
  });
  const other = (answer.value ?? '').trim().split(/\s+/)[0];
  if (answer.button.accept && other && other !== run.id) {
    await attempt('Compare', async () => {
      await getComparison(run.id, other); // an unknown id says so here
      openComparison(run.id, other);
    });
  }
}

/** "Compare…" and, for a fork, "Compare with source" in a run view's toolbar. */
export function addCompareActions(
  toolbar: { addItem: (name: string, item: Widget) => boolean },
  current: () => IRunDetail | null
): (run: IRunDetail | null) => void {
  const pick = new ToolbarButton({
    label: 'Compare…',
    tooltip: 'This run and another side by side: steps, outputs, durations',
    onClick: () => {
      const run = current();
      if (run) {
        void pickAndCompare(run);
      }
    }
  });
  const source = new ToolbarButton({
    label: 'Compare with source',
    tooltip: 'This fork and the run it was forked from, side by side',
    onClick: () => {
      const run = current() as (IRunDetail & { fork_of?: string | null }) | null;
      if (run?.fork_of) {
        openComparison(run.fork_of, run.id);
      }
    }
  });
  source.hide();
  toolbar.addItem('compare', pick);
  toolbar.addItem('compare-source', source);
  return run => {
    const fork = run as (IRunDetail & { fork_of?: string | null }) | null;
    source.setHidden(!fork?.fork_of);
  };
}
