/**
 * The run graph, drawn by the same ES module as the notebook widget
 * (`durable_nb/widgets/static/run_graph.js`, plain JavaScript, API documented at its top).
 */
// @ts-expect-error: an untyped JavaScript module outside this package; rspack bundles it
import * as graph from '../../durable_nb/widgets/static/run_graph.js';
import '../../durable_nb/widgets/static/run_graph.css';

import { decide, IEvent, IFormSchema, IRunDetail, IWait, request } from './api';

/** The steps of one name in a big run (GET /runs/{id}/step_groups). */
export interface IStepGroup {
  name: string;
  steps: number;
  tries: number;
  completed: number;
  failed: number;
  retrying: number;
  total_s: number;
  median_s: number | null;
  first_at: number | null;
}

/** A run with what the graph shows besides GET /runs/{id}: checkpoints and a log tail; a
 * big run's newest step rows only, with every step grouped by name (`step_groups`). */
export type GraphRun = IRunDetail & {
  logs?: unknown[];
  checkpoints?: unknown[];
  step_groups?: IStepGroup[];
  steps_omitted?: number;
};

export interface IGraphOptions {
  onApprove?: (
    wait: IWait,
    comment: string,
    values?: Record<string, unknown>
  ) => Promise<unknown>;
  onReject?: (wait: IWait, comment: string) => Promise<unknown>;
  loadChild?: (runId: string) => Promise<GraphRun>;
  onOpenChild?: (runId: string) => void;
  notice?: { kind: 'info' | 'warning' | 'error'; text: string; code?: string } | null;
  /** The run's output is printed in the cell too: the Output section starts folded. */
  outputsInCell?: boolean;
  /** GET a path of the REST API (a clicked step's arguments, a page of a step group). */
  getJson?: (path: string) => Promise<unknown>;
}

/** Render or re-render `run` into `node` (what the user opened or typed survives). */
export function renderRunGraph(node: HTMLElement, run: GraphRun, options: IGraphOptions): void {
  graph.renderRunGraph(node, run, options);
}

/** What an approval's typed form holds: its values (typed) and, per field, what is wrong. */
export interface IFormCheck {
  values: Record<string, unknown>;
  errors: Record<string, string>;
}

/** The inputs of a typed form, drawn by run_graph.js (the same as in the run graph):
 * `store` keeps what was typed; `onChange` runs after each edit. */
export function renderForm(
  schema: IFormSchema,
  store: Record<string, unknown>,
  opts: { disabled?: boolean; focusPrefix?: string; onChange?: () => void }
): { node: HTMLElement; check: () => IFormCheck; update: () => void } {
  return graph.renderForm(schema, store, opts);
}

/** Whether a wait's `form` is a typed form the views can draw. */
export function isForm(schema: unknown): schema is IFormSchema {
  return graph.isForm(schema);
}

/** GET `path` (like "/runs/run_1/steps?name=fetch") of the REST API, parsed. */
export function getJson(path: string): Promise<unknown> {
  return request(path.replace(/^\//, ''));
}

/** Everything the graph shows for one run, from the REST API: a big run (over 500 step
 * rows) with its newest rows and its steps grouped by name, whose groups list their steps
 * a page at a time through `getJson`. */
export function loadRun(runId: string): Promise<GraphRun> {
  return graph.loadRun(getJson, runId);
}

/** Whether a server event concerns `run`: its own, a child's, or a reconnect (hello). */
export function concernsRun(e: IEvent, runId: string, run: GraphRun | null): boolean {
  const children = run?.children ?? [];
  return (
    e.type === 'hello' ||
    (!!e.run_id && e.run_id === runId) ||
    (e.type === 'run' && children.some(c => c.id === e.run_id))
  );
}

/** A `progress` or `metadata` event of run `runId`, applied to `run` in place: such an
 * event carries the whole new value, so the view redraws without loading the run again.
 * Returns whether `e` was one. */
export function applyReport(e: IEvent, runId: string, run: GraphRun | null): boolean {
  if ((e.type !== 'progress' && e.type !== 'metadata') || e.run_id !== runId) {
    return false;
  }
  if (run && e[e.type] !== undefined) {
    (run as unknown as Record<string, unknown>)[e.type] = e[e.type];
  }
  return true;
}

/** The actions of a live run view: approve or reject from the graph's form, then `reload`
 * (a refused decision rejects: the graph shows the server's message next to the form);
 * child runs expand inline or open with `openRun`. */
export function runActions(
  runId: string,
  reload: () => Promise<void>,
  openRun: (id: string) => void
): IGraphOptions {
  const decideThenReload = async (
    approved: boolean,
    wait: IWait,
    comment: string,
    values?: Record<string, unknown>
  ) => {
    await decide(runId, approved, wait.name, comment, values);
    await reload();
  };
  return {
    onApprove: (wait, comment, values) => decideThenReload(true, wait, comment, values),
    onReject: (wait, comment) => decideThenReload(false, wait, comment),
    loadChild: id => loadRun(id),
    onOpenChild: id => openRun(id),
    getJson
  };
}
