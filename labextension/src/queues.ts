/**
 * The sidebar's "Queues" section: each queue with its concurrency limit, its rate limit
 * ("10 / 1m") and how many of its runs execute and wait (`GET /queues`). It reads the
 * queues again every few seconds while open, and soon after run events.
 */
import { request } from './api';
import { LiveFold, Subscribe } from './live_fold';
import { el } from './util';

/** A queue as `GET /queues` lists it (see `engine/scheduler.py` `queues`). */
export interface IQueue {
  name: string;
  /** Executing runs at most (per concurrency key), or null: no limit. */
  concurrency_limit: number | null;
  /** At most `limit` attempt starts in any window of `per` seconds, or null. */
  rate_limit?: { limit: number; per: number } | null;
  executing: number;
  queued: number;
}

export async function listQueues(): Promise<IQueue[]> {
  return (await request<{ queues: IQueue[] }>('queues')).queues;
}

/** Milliseconds between reads while the section is open. */
const OPEN_POLL = 3000;
/** ... and while it is folded (only its title's count shows). */
const FOLDED_POLL = 15000;
/** Prefix of the queue a task without one gets. */
const TASK_QUEUE = 'task:';

/** "30s", "1m", "1h30m", "1d": a rate limit's window. */
export function windowLabel(seconds: number): string {
  const parts: string[] = [];
  let rest = Math.round(seconds);
  for (const [unit, size] of [
    ['d', 86400],
    ['h', 3600],
    ['m', 60],
    ['s', 1]
  ] as Array<[string, number]>) {
    if (rest >= size) {
      parts.push(`${Math.floor(rest / size)}${unit}`);
      rest %= size;
    }
  }
  return parts.join('') || `${seconds}s`;
}

/** "10 / 1m", or '' without a rate limit. */
export function rateLabel(queue: IQueue): string {
  const rate = queue.rate_limit;
  return rate ? `${rate.limit} / ${windowLabel(rate.per)}` : '';
}

export class QueuesView extends LiveFold<IQueue[]> {
  constructor(subscribe: Subscribe) {
    super(subscribe, {
      className: 'jp-DurablePanel-queues',
      listClass: 'jp-DurableQueues',
      label: 'Queues',
      key: 'queues',
      openPoll: OPEN_POLL,
      foldedPoll: FOLDED_POLL,
      eventDelay: 1000,
      missing: 'Queues are not available on this engine.',
      failed: 'Could not read the queues'
    });
  }

  protected read(): Promise<IQueue[]> {
    return listQueues();
  }

  protected draw(queues: IQueue[]): void {
    const busy = queues.reduce((n, q) => n + q.queued, 0);
    this.fold.setCount(queues.length, busy ? `${busy} queued` : '');
    this.list.replaceChildren(...queues.map(q => queueRow(q)));
    this.note.textContent = queues.length
      ? ''
      : 'No queues yet: a task declares one with dn.Queue(name, concurrency_limit, rate_limit).';
  }
}

/** One queue: its name and load ("2 / 5 executing"), then "3 queued · rate 10 / 1m". */
function queueRow(q: IQueue): HTMLElement {
  const row = el('li', 'jp-DurableQueue');
  row.dataset.queue = q.name;
  const top = el('div', 'jp-DurableRun-line');
  const own = q.name.startsWith(TASK_QUEUE);
  const task = q.name.slice(TASK_QUEUE.length);
  const name = el('span', 'jp-DurableQueue-name', own ? task : q.name);
  name.title = own ? `The queue of task ${task} (no queue declared)` : q.name;
  top.appendChild(name);
  if (own) {
    top.appendChild(el('span', 'jp-DurableQueue-kind', 'task'));
  }
  const limit = q.concurrency_limit;
  const load = el(
    'span',
    'jp-DurableQueue-load',
    limit === null ? `${q.executing} executing` : `${q.executing} / ${limit} executing`
  );
  load.dataset.executing = String(q.executing);
  load.title =
    limit === null
      ? 'No concurrency limit'
      : `At most ${limit} executing run${limit === 1 ? '' : 's'} (per concurrency key)`;
  top.appendChild(load);
  row.appendChild(top);
  if (limit !== null) {
    const bar = el('div', 'jp-DurableQueue-bar');
    const fill = el('div', 'jp-DurableQueue-fill');
    fill.style.width = `${Math.min(100, (100 * q.executing) / Math.max(limit, 1))}%`;
    bar.appendChild(fill);
    row.appendChild(bar);
  }
  const meta = el('div', 'jp-DurableRun-line jp-DurableRun-meta');
  const queued = el('span', 'jp-DurableQueue-queued', `${q.queued} queued`);
  queued.dataset.queued = String(q.queued);
  meta.appendChild(queued);
  const rate = rateLabel(q);
  const rateNode = el('span', 'jp-DurableQueue-rate', rate ? `rate ${rate}` : 'no rate limit');
  if (q.rate_limit) {
    const { limit: n, per } = q.rate_limit;
    rateNode.title = `At most ${n} attempt start${n === 1 ? '' : 's'} in any ${windowLabel(per)}`;
  }
  meta.appendChild(rateNode);
  row.appendChild(meta);
  return row;
}
