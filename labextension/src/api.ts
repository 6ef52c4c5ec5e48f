/**
 * The durable_nb REST API and events WebSocket, served by the Jupyter server under
 * `<base_url>/durable/api/` (see `durable_nb/server/api.py` for the routes and shapes).
 *
 * Requests go through `ServerConnection`, which adds the token, cookies and XSRF header.
 */
import { ServerConnection } from '@jupyterlab/services';

// Statuses and groups copy durable_nb/core/status.py; tests/core/test_status.py checks them.
export type RunStatus =
  | 'QUEUED'
  | 'DELAYED'
  | 'EXECUTING'
  | 'WAITING'
  | 'COMPLETED'
  | 'FAILED'
  | 'CANCELED'
  | 'CRASHED'
  | 'TIMED_OUT'
  | 'EXPIRED';

export const ACTIVE: ReadonlyArray<string> = [
  'QUEUED',
  'DELAYED',
  'EXECUTING',
  'WAITING'
];

/** Ended by an error. */
export const FAILURES: ReadonlyArray<string> = ['FAILED', 'CRASHED', 'TIMED_OUT'];

/** Ended by a decision, not an error: EXPIRED runs never started before their ttl. */
export const CANCELED_OR_EXPIRED: ReadonlyArray<string> = ['CANCELED', 'EXPIRED'];

/** Can be resumed: continued after the last recorded step or checkpoint. */
export const RESUMABLE: ReadonlyArray<string> = ['FAILED', 'CRASHED', 'TIMED_OUT', 'CANCELED'];

/** The notebook cell a run comes from (a `%%durable` cell); each field may be unknown. */
export interface IOrigin {
  notebook?: string | null;
  cell_id?: string | null;
  execution_count?: number | null;
}

/** A run's last progress report (`dn.progress` or its outermost tqdm bar). */
export interface IProgress {
  done: number;
  total?: number | null;
  text?: string | null;
  at?: number;
}

/** A run as `GET /runs` lists it. */
export interface IRun {
  id: string;
  kind: string;
  task_id: string;
  status: RunStatus;
  queue?: string | null;
  created_at: number;
  started_at?: number | null;
  finished_at?: number | null;
  updated_at?: number | null;
  attempts: number;
  duration?: number | null;
  parent_run_id?: string | null;
  replay_of?: string | null;
  duration_warning?: boolean;
  error?: { type: string; message: string; traceback?: string } | null;
  tags?: string[];
  /** Orders the queued runs of a queue: higher first (0 unless given at trigger). */
  priority?: number;
  origin?: IOrigin | null;
  /** What the run set with `dn.metadata` (a JSON object). */
  metadata?: Record<string, unknown>;
  progress?: IProgress | null;
  /** The run this one was forked from, and the step (a cell: statement) it ran anew from. */
  fork_of?: string | null;
  fork_step?: string | null;
}

/** A wait of a run (approval, event, sleep, retry delay or child runs). */
export interface IWait {
  wait_key: string;
  kind: string;
  name: string;
  preview?: unknown;
  created_at: number;
  deadline?: number | null;
  resolved_at?: number | null;
  outcome?: string | null;
  comment?: string | null;
  resolved_by?: string | null;
  /** An approval's typed form: a flat JSON schema of its fields (see run_graph.js). */
  form?: IFormSchema | null;
  /** The values its decision filled in (an approval with a form, once decided). */
  values?: Record<string, unknown> | null;
}

/** An approval's typed form, as `dn.approval(..., form=F)` sends it. */
export interface IFormSchema {
  type: 'object';
  title?: string;
  properties: Record<string, Record<string, unknown>>;
  required?: string[];
}

/** A run as `GET /runs/{id}` returns it. */
export interface IRunDetail extends IRun {
  attempt_list: Array<Record<string, unknown>>;
  steps: Array<Record<string, unknown>>;
  waits: IWait[];
  children: Array<{ id: string; task_id: string; status: RunStatus }>;
}

/** One message of the events WebSocket. */
export interface IEvent {
  type: string; // hello, run, step, wait, log, warning, checkpoint
  run_id?: string;
  status?: RunStatus;
  kind?: string;
  state?: string;
  [key: string]: unknown;
}

export class ApiError extends Error {
  constructor(
    message: string,
    readonly status: number
  ) {
    super(message);
  }
}

const ROOT = 'durable/api/';

/** Call the API; the parsed JSON answer, or an `ApiError` with the server's message. */
export async function request<T>(
  path: string,
  init: RequestInit = {},
  settings: ServerConnection.ISettings = ServerConnection.makeSettings()
): Promise<T> {
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(
      settings.baseUrl + ROOT + path,
      init,
      settings
    );
  } catch (err) {
    throw new ApiError(`the Jupyter server is unreachable (${err})`, 0);
  }
  const text = await response.text();
  let body: any = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = { error: text };
  }
  if (!response.ok) {
    const message = body?.error || body?.message || response.statusText;
    throw new ApiError(message, response.status);
  }
  return body as T;
}

function post<T>(path: string, body: object = {}): Promise<T> {
  return request<T>(path, { method: 'POST', body: JSON.stringify(body) });
}

export async function listRuns(status = '', limit = 50): Promise<IRun[]> {
  const query = new URLSearchParams({ limit: String(limit) });
  if (status) {
    query.set('status', status);
  }
  return (await request<{ runs: IRun[] }>(`runs?${query}`)).runs;
}

/** What a runs list is filtered by (`GET /runs`); an empty field filters nothing. */
export interface IRunFilters {
  /** Statuses, comma-separated. */
  status?: string;
  /** Text in the run id, task or cell name, tags or notebook. */
  q?: string;
  /** Tags the runs all have. */
  tags?: ReadonlyArray<string>;
  /** Created within this long before now ("1h", "7d"). */
  since?: string;
}

/** A page of runs matching `filters`, from `offset`, with the total number of runs that
 * match. */
export async function searchRuns(
  filters: IRunFilters,
  limit = 50,
  offset = 0
): Promise<{ runs: IRun[]; total: number }> {
  const query = new URLSearchParams({ limit: String(limit) });
  const { status, q, tags, since } = filters;
  if (status) {
    query.set('status', status);
  }
  if (q) {
    query.set('q', q);
  }
  if (tags && tags.length) {
    query.set('tags', tags.join(','));
  }
  if (since) {
    query.set('since', since);
  }
  if (offset) {
    query.set('offset', String(offset));
  }
  return request<{ runs: IRun[]; total: number }>(`runs?${query}`);
}

/** Where attempts run (`executor` of `GET /health`): local worker processes, or a Dask
 * cluster with its scheduler, dashboard, workers and threads. */
export interface IExecutor {
  kind: 'local' | 'dask';
  scheduler?: string | null;
  dashboard?: string | null;
  workers?: number;
  threads?: number;
}

const LOCAL: IExecutor = { kind: 'local' };

/** The engine's executor; local when its health says nothing of one (an older engine). */
export async function getExecutor(): Promise<IExecutor> {
  const health = await request<{ executor?: IExecutor | null }>('health');
  return health?.executor ?? LOCAL;
}

export function getRun(id: string): Promise<IRunDetail> {
  return request<IRunDetail>(`runs/${encodeURIComponent(id)}`);
}

export async function getLogs(
  id: string,
  limit = 200
): Promise<Array<{ at: number; stream: string; line: string }>> {
  const path = `runs/${encodeURIComponent(id)}/logs?limit=${limit}`;
  return (await request<{ logs: any[] }>(path)).logs;
}

export function decide(
  id: string,
  approved: boolean,
  wait?: string,
  comment?: string,
  values?: Record<string, unknown>
): Promise<{ run_id: string; wait: string; outcome: string }> {
  const action = approved ? 'approve' : 'reject';
  return post(`runs/${encodeURIComponent(id)}/${action}`, {
    wait,
    comment: comment || undefined,
    values
  });
}

export function cancelRun(id: string): Promise<unknown> {
  return post(`runs/${encodeURIComponent(id)}/cancel`);
}

export function resumeRun(id: string): Promise<{ id: string; status: string }> {
  return post(`runs/${encodeURIComponent(id)}/resume`);
}

export function replayRun(id: string): Promise<{ id: string }> {
  return post(`runs/${encodeURIComponent(id)}/replay`);
}

/**
 * The events WebSocket, reconnected with a growing delay (1 s to 10 s) when it closes.
 */
export class EventStream {
  constructor(
    private onEvent: (event: IEvent) => void,
    private onState: (connected: boolean) => void
  ) {}

  open(): void {
    this._stopped = false;
    const settings = ServerConnection.makeSettings();
    // Authenticated by the login cookie, never by a token in the URL (URLs land in logs)
    const url = settings.wsUrl + ROOT + 'events';
    const ws = new settings.WebSocket(url);
    this._ws = ws;
    ws.onopen = () => {
      this._delay = 1000;
      this.onState(true);
    };
    ws.onmessage = msg => {
      try {
        this.onEvent(JSON.parse(msg.data));
      } catch (err) {
        console.warn('durable_nb: bad event', err);
      }
    };
    ws.onclose = () => {
      this._ws = null;
      this.onState(false);
      if (!this._stopped) {
        this._timer = window.setTimeout(() => this.open(), this._delay);
        this._delay = Math.min(this._delay * 2, 10000);
      }
    };
  }

  close(): void {
    this._stopped = true;
    window.clearTimeout(this._timer);
    this._ws?.close();
  }

  private _ws: WebSocket | null = null;
  private _delay = 1000;
  private _timer = 0;
  private _stopped = false;
}
