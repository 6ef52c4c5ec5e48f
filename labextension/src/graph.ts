/**
 * The run graph, drawn by the same ES module as the notebook widget
 * (`durable_nb/widgets/static/run_graph.js`, plain JavaScript, API documented at its top).
 */
// @ts-expect-error: an untyped JavaScript module outside this package; rspack bundles it
import * as graph from '../../durable_nb/widgets/static/run_graph.js';
import '../../durable_nb/widgets/static/run_graph.css';

import { decide, IEvent, IRunDetail, IWait, request } from './api';

/** A run with what the graph shows besides GET /runs/{id}: checkpoints and a log tail. */
export type GraphRun = IRunDetail & { logs?: unknown[]; checkpoints?: unknown[] };

export interface IGraphOptions {
  onApprove?: (wait: IWait, comment: string) => Promise<unknown>;
  onReject?: (wait: IWait, comment: string) => Promise<unknown>;
  loadChild?: (runId: string) => Promise<GraphRun>;
  onOpenChild?: (runId: string) => void;
  notice?: { kind: 'info' | 'warning' | 'error'; text: string; code?: string } | null;
  /** The run's output is printed in the cell too: the Output section starts folded. */
  outputsInCell?: boolean;
}

/** Render or re-render `run` into `node` (what the user opened or typed survives). */
export function renderRunGraph(node: HTMLElement, run: GraphRun, options: IGraphOptions): void {
  graph.renderRunGraph(node, run, options);
}

/** Everything the graph shows for one run, from the REST API. */
export function loadRun(runId: string): Promise<GraphRun> {
  return graph.loadRun((path: string) => request(path.replace(/^\//, '')), runId);
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

/** The actions of a live run view: approve or reject from the graph's form, then `reload`
 * (a refused decision rejects: the graph shows the server's message next to the form);
 * child runs expand inline or open with `openRun`. */
export function runActions(
  runId: string,
  reload: () => Promise<void>,
  openRun: (id: string) => void
): IGraphOptions {
  const decideThenReload = async (approved: boolean, wait: IWait, comment: string) => {
    await decide(runId, approved, wait.name, comment);
    await reload();
  };
  return {
    onApprove: (wait, comment) => decideThenReload(true, wait, comment),
    onReject: (wait, comment) => decideThenReload(false, wait, comment),
    loadChild: id => loadRun(id),
    onOpenChild: id => openRun(id)
  };
}
