/**
 * The live state behind the sidebar: recent runs and pending approvals, refreshed from the
 * REST API whenever the events WebSocket reports a run or wait change.
 */
import {
  ACTIVE,
  ApiError,
  EventStream,
  getExecutor,
  getRun,
  IEvent,
  IExecutor,
  IProgress,
  IRun,
  IRunFilters,
  IWait,
  listRuns,
  searchRuns
} from './api';

export interface IApproval {
  run: IRun;
  wait: IWait;
}

/** Milliseconds between two reads of the engine's executor (its Dask workers). */
const EXECUTOR_TTL = 10000;

type Listener = () => void;
type EventListener = (event: IEvent) => void;

export class RunsModel {
  runs: IRun[] = [];
  approvals: IApproval[] = [];
  connected = false;
  error = '';
  /** Comma-separated statuses to list, or '' for all. */
  filter = '';
  /** Text the listed runs must hold (id, task or cell name, tag, notebook), or ''. */
  search = '';
  /** Tags the listed runs all have (`GET /runs?tags=`), or none. */
  tags: string[] = [];
  /** How recent the listed runs are ("1h": created within the last hour), or '': any. */
  since = '';
  /** How many runs match the filter, the search and the tags (the list shows at most
   * `limit`, from `offset`). */
  total = 0;
  limit = 50;
  offset = 0;
  /** Where the engine runs attempts (its dashboard when it is a Dask cluster). */
  executor: IExecutor = { kind: 'local' };

  constructor() {
    this._stream = new EventStream(
      e => this._onEvent(e),
      connected => {
        this.connected = connected;
        if (connected) {
          this._executorAt = 0; // perhaps another engine: ask for its executor again
          void this.refresh();
        }
        this._notify();
      }
    );
  }

  start(): void {
    this._stream.open();
    void this.refresh();
    // Dask workers join and leave without a run event: look again now and then
    this._executorTimer = window.setInterval(() => void this._pollExecutor(), EXECUTOR_TTL);
  }

  dispose(): void {
    this._stream.close();
    window.clearTimeout(this._timer);
    window.clearTimeout(this._progressTimer);
    window.clearInterval(this._executorTimer);
  }

  /** Call `fn` after each change; returns a function that stops that. */
  onChange(fn: Listener): () => void {
    this._listeners.add(fn);
    return () => this._listeners.delete(fn);
  }

  /** Call `fn` with every event of the WebSocket; returns a function that stops that. */
  onEvent(fn: EventListener): () => void {
    this._eventListeners.add(fn);
    return () => this._eventListeners.delete(fn);
  }

  setFilter(filter: string): void {
    this.filter = filter;
    this.offset = 0;
    void this.refresh();
  }

  setSearch(search: string): void {
    this.search = search.trim().slice(0, 200); // the API's limit
    this.offset = 0;
    void this.refresh();
  }

  setTags(tags: string[]): void {
    this.tags = [...tags];
    this.offset = 0;
    void this.refresh();
  }

  setSince(since: string): void {
    this.since = since;
    this.offset = 0;
    void this.refresh();
  }

  /** The filters of the list, as `GET /runs` takes them. */
  filters(): IRunFilters {
    return { status: this.filter, q: this.search, tags: this.tags, since: this.since };
  }

  /** Show the page of runs that starts at `offset` (a multiple of `limit`). */
  setOffset(offset: number): void {
    this.offset = Math.max(0, offset);
    void this.refresh();
  }

  /** Reload the list and the pending approvals (coalesced: one request at a time). */
  async refresh(): Promise<void> {
    if (this._loading) {
      this._again = true;
      return;
    }
    this._loading = true;
    try {
      do {
        this._again = false;
        await this._load();
      } while (this._again);
      this.error = '';
    } catch (err) {
      this.error =
        err instanceof ApiError && err.status === 404
          ? 'The durable_nb server extension is not enabled on this Jupyter server ' +
            '(jupyter server extension enable durable_nb, then restart it).'
          : String((err as Error).message || err);
    } finally {
      this._loading = false;
    }
    this._notify();
  }

  private async _load(): Promise<void> {
    // approvals can be pending on runs that the filter hides, and during the wait grace
    // period a run waiting on one is still EXECUTING
    const [page, candidates] = await Promise.all([
      searchRuns(this.filters(), this.limit, this.offset),
      listRuns('EXECUTING,WAITING', 200),
      this._loadExecutor()
    ]);
    const approvals: IApproval[] = [];
    const seen = new Set<string>();
    await Promise.all(
      candidates.map(async run => {
        seen.add(run.id);
        const waits = await this._pendingApprovals(run);
        waits.forEach(wait => approvals.push({ run, wait }));
      })
    );
    for (const id of this._approvalCache.keys()) {
      if (!seen.has(id)) {
        this._approvalCache.delete(id);
      }
    }
    approvals.sort((a, b) => a.wait.created_at - b.wait.created_at);
    if (!page.runs.length && this.offset && page.total) {
      // the page is gone (runs pruned or no longer matching): show the last one instead
      this.offset = Math.floor((page.total - 1) / this.limit) * this.limit;
      this._again = true;
    }
    this.runs = page.runs;
    this.total = page.total;
    this.approvals = approvals;
  }

  /** The engine's executor, asked again at most every EXECUTOR_TTL ms (Dask workers
   * come and go, but not at the pace of run events). */
  private async _loadExecutor(): Promise<void> {
    const now = Date.now();
    if (now - this._executorAt < EXECUTOR_TTL) {
      return;
    }
    this._executorAt = now;
    try {
      this.executor = await getExecutor();
    } catch {
      this._executorAt = 0; // the runs' requests report the error; ask again next time
    }
  }

  /** Read the executor again; tell the listeners when it changed. */
  private async _pollExecutor(): Promise<void> {
    const before = JSON.stringify(this.executor);
    this._executorAt = 0;
    await this._loadExecutor();
    if (JSON.stringify(this.executor) !== before) {
      this._notify();
    }
  }

  /** A run's unresolved approvals; cached until the run or one of its waits changes. */
  private async _pendingApprovals(run: IRun): Promise<IWait[]> {
    const stamp = `${run.status}/${run.updated_at}`;
    const cached = this._approvalCache.get(run.id);
    if (cached && cached.stamp === stamp) {
      return cached.waits;
    }
    const detail = await getRun(run.id);
    const waits = detail.waits.filter(w => w.kind === 'approval' && !w.outcome);
    this._approvalCache.set(run.id, { stamp, waits });
    return waits;
  }

  private _onEvent(event: IEvent): void {
    this._eventListeners.forEach(fn => fn(event));
    if (event.type === 'hello') {
      return;
    }
    if (event.type === 'wait' && event.run_id) {
      this._approvalCache.delete(event.run_id);
    }
    if (event.type === 'progress' && event.run_id) {
      const run = this.runs.find(r => r.id === event.run_id);
      if (run && event.progress) {
        run.progress = event.progress as IProgress; // a listed run's bar moves at once
        if (!this._progressTimer) {
          this._progressTimer = window.setTimeout(() => {
            this._progressTimer = 0;
            this._notify();
          }, 200);
        }
      }
      return;
    }
    if (event.type === 'run' && event.run_id) {
      const run = this.runs.find(r => r.id === event.run_id);
      if (run && event.status) {
        run.status = event.status; // show it at once; the refresh brings the rest
        if (ACTIVE.includes(event.status) || event.status === 'COMPLETED') {
          run.error = null; // a resumed or completed run no longer shows its old error
        }
        this._notify();
      }
    }
    if ((event.type === 'run' || event.type === 'wait') && !this._timer) {
      // at most one reload per 150 ms, however many events arrive
      this._timer = window.setTimeout(() => {
        this._timer = 0;
        void this.refresh();
      }, 150);
    }
  }

  private _notify(): void {
    this._listeners.forEach(fn => fn());
  }

  private _stream: EventStream;
  private _listeners = new Set<Listener>();
  private _eventListeners = new Set<EventListener>();
  private _approvalCache = new Map<string, { stamp: string; waits: IWait[] }>();
  private _loading = false;
  private _again = false;
  private _timer = 0;
  private _progressTimer = 0;
  private _executorAt = 0;
  private _executorTimer = 0;
}
