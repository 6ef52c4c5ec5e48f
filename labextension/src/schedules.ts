/**
 * The sidebar's "Schedules" section: each schedule's id, task, cron expression or
 * interval, time zone, next and last tick and whether it is paused, with Pause / Resume
 * (`GET /schedules`, `POST /schedules/{id}/pause|resume`). It is read at start (for the
 * count on its title) and when opened, then every few seconds while open and soon after
 * run events (a tick starts a run). An engine without schedules (404) says so.
 */
import { pauseIcon, runIcon } from '@jupyterlab/ui-components';

import { request } from './api';
import { LiveFold, Subscribe } from './live_fold';
import { windowLabel } from './queues';
import { ago, attempt, button, el } from './util';

/** A schedule as `GET /schedules` lists it; times are epoch seconds. */
export interface ISchedule {
  id: string;
  task_id: string;
  kind?: string;
  cron?: string | null;
  /** Seconds between ticks (or a duration as written), when not a cron schedule. */
  every?: number | string | null;
  timezone?: string | null;
  overlap?: string | null;
  catch_up?: boolean | string | null;
  paused: boolean;
  last_tick?: number | null;
  next_tick?: number | null;
  created_at?: number | null;
  tags?: string[];
  active_runs?: number;
}

export async function listSchedules(): Promise<ISchedule[]> {
  return (await request<{ schedules: ISchedule[] }>('schedules')).schedules;
}

/** Pause (`pause`) or resume (`!pause`) a schedule; the schedule as it is now. */
export function setPaused(id: string, pause: boolean): Promise<ISchedule> {
  const action = pause ? 'pause' : 'resume';
  return request<ISchedule>(`schedules/${encodeURIComponent(id)}/${action}`, {
    method: 'POST',
    body: '{}'
  });
}

/** Milliseconds between reads while the section is open (none while folded). */
const POLL = 5000;

/** "in 12m", "in 3h", "now" for a time to come (`ago` says the past). */
export function until(epochSeconds: number | null | undefined): string {
  if (!epochSeconds) {
    return '';
  }
  const s = epochSeconds - Date.now() / 1000;
  if (s <= 0) {
    return 'due now';
  }
  if (s < 60) {
    return `in ${Math.ceil(s)}s`;
  }
  if (s < 3600) {
    return `in ${Math.round(s / 60)}m`;
  }
  if (s < 86400) {
    return `in ${Math.round(s / 3600)}h`;
  }
  return `in ${Math.round(s / 86400)}d`;
}

/** "cron 0 * * * *" or "every 1h", as the schedule was declared. */
export function cadence(s: ISchedule): string {
  if (s.cron) {
    return `cron ${s.cron}`;
  }
  if (typeof s.every === 'number') {
    return `every ${windowLabel(s.every)}`;
  }
  return s.every ? `every ${s.every}` : s.kind || '';
}

function stamp(epochSeconds: number | null | undefined): string {
  return epochSeconds ? new Date(epochSeconds * 1000).toLocaleString() : '';
}

export class SchedulesView extends LiveFold<ISchedule[]> {
  constructor(subscribe: Subscribe) {
    super(subscribe, {
      className: 'jp-DurablePanel-schedules',
      listClass: 'jp-DurableSchedules',
      label: 'Schedules',
      key: 'schedules',
      openPoll: POLL,
      foldedPoll: null,
      eventDelay: 2000,
      missing: 'Schedules are not available on this engine.',
      failed: 'Could not read the schedules',
      forgetCount: true
    });
  }

  protected read(): Promise<ISchedule[]> {
    return listSchedules();
  }

  protected draw(schedules: ISchedule[]): void {
    const paused = schedules.filter(s => s.paused).length;
    this.fold.setCount(schedules.length, paused ? `${paused} paused` : '');
    this.list.replaceChildren(...schedules.map(s => this._row(s)));
    this.note.textContent = schedules.length ? '' : 'No schedules.';
  }

  /** The task, paused or not, Pause or Resume; then its id (when not the task's),
   * cadence and time zone; then the next and the last tick. */
  private _row(s: ISchedule): HTMLElement {
    const row = el('li', `jp-DurableSchedule${s.paused ? ' jp-mod-paused' : ''}`);
    row.dataset.scheduleId = s.id;
    row.dataset.paused = String(!!s.paused);
    const top = el('div', 'jp-DurableRun-line');
    const task = el('span', 'jp-DurableSchedule-task', s.task_id);
    task.title = `Schedule ${s.id} of task ${s.task_id}`;
    top.appendChild(task);
    if (s.paused) {
      top.appendChild(el('span', 'jp-DurableSchedule-paused', 'paused'));
    }
    if (s.active_runs) {
      top.appendChild(el('span', 'jp-DurableSchedule-active', `${s.active_runs} active`));
    }
    top.appendChild(
      s.paused
        ? button('Resume', 'Resume: runs again from the next tick', () => this._set(s, false), {
            icon: runIcon,
            className: 'jp-mod-resumeSchedule'
          })
        : button('Pause', 'Pause: no runs until resumed', () => this._set(s, true), {
            icon: pauseIcon,
            className: 'jp-mod-pauseSchedule'
          })
    );
    row.appendChild(top);
    const meta = el('div', 'jp-DurableRun-line jp-DurableRun-meta');
    if (s.id !== s.task_id) {
      meta.appendChild(el('span', 'jp-DurableSchedule-id', s.id));
    }
    const how = el('span', 'jp-DurableSchedule-cadence', cadence(s));
    how.title = [
      cadence(s),
      s.overlap ? `overlap: ${s.overlap}` : '',
      s.catch_up ? `catch up: ${s.catch_up}` : ''
    ]
      .filter(Boolean)
      .join(' · ');
    meta.appendChild(how);
    if (s.timezone) {
      meta.appendChild(el('span', 'jp-DurableSchedule-tz', s.timezone));
    }
    row.appendChild(meta);
    row.appendChild(ticks(s));
    return row;
  }

  private async _set(s: ISchedule, pause: boolean): Promise<void> {
    const verb = pause ? 'Pause' : 'Resume';
    const out = await attempt(`${verb} schedule ${s.id}`, () => setPaused(s.id, pause));
    if (out) {
      await this.load();
    }
  }
}

/** "next in 12m" (or "next: paused") and "last 48m ago", with their dates as titles. */
function ticks(s: ISchedule): HTMLElement {
  const line = el('div', 'jp-DurableRun-line jp-DurableRun-meta');
  const next = el(
    'span',
    'jp-DurableSchedule-next',
    s.paused ? 'next: paused' : s.next_tick ? `next ${until(s.next_tick)}` : 'no next tick'
  );
  next.title = s.next_tick && !s.paused ? `Next tick: ${stamp(s.next_tick)}` : '';
  line.appendChild(next);
  const last = el(
    'span',
    'jp-DurableSchedule-last',
    s.last_tick ? `last ${ago(s.last_tick)}` : 'never ticked'
  );
  last.title = s.last_tick ? `Last tick: ${stamp(s.last_tick)}` : '';
  line.appendChild(last);
  return line;
}
