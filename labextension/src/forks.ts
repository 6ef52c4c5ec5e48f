/**
 * Forks in the sidebar: a run forked from another (`fork_of`, `fork_step` of GET /runs)
 * says so on its row, "fork of run_1234 from summarize#3" (a cell: "after statement 2"),
 * with the source as a link that opens its run view. The run view draws the whole fork
 * tree (run_graph.js, from `fork_tree` of GET /runs/{id}).
 */
import { IRun } from './api';
import { el, shortId } from './util';

/** Where a fork runs anew from, as its row says it. */
export function forkStepText(run: IRun): string {
  if (run.fork_step === null || run.fork_step === undefined) {
    return ' after its last step';
  }
  return run.kind === 'cell'
    ? ` after statement ${run.fork_step}`
    : ` from ${run.fork_step}`;
}

/** The row's line for a fork, or null for a run that is not one. */
export function forkLine(
  run: IRun,
  openRun: (id: string) => void
): HTMLElement | null {
  const source = run.fork_of;
  if (!source) {
    return null;
  }
  const line = el('div', 'jp-DurableRun-line jp-DurableRun-fork', 'fork of ');
  const link = el('a', 'jp-DurableRun-forkSource', shortId(source));
  link.href = '#';
  link.title = `Open ${source}, the run this one was forked from`;
  link.addEventListener('click', e => {
    e.preventDefault();
    e.stopPropagation(); // not the row's own click, which opens the fork
    openRun(source);
  });
  line.appendChild(link);
  line.appendChild(document.createTextNode(forkStepText(run)));
  line.title = `Forked from ${source}: what it recorded before that was reused`;
  return line;
}
