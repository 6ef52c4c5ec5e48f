/**
 * A run's notebook output, drawn live: `application/vnd.durable-nb.run+json` (written by
 * `durable_nb/widgets/run_widget.py` when the kernel uses this server's engine) holds the
 * run's id and its last known state. The renderer loads the run from the server's durable
 * REST API and redraws it on the events WebSocket's news, with the same graph as the run
 * widget and the panel (approve / reject included), so a saved notebook shows its runs live
 * with no kernel. A run this server does not know shows the output's static snapshot.
 *
 * Lab prefers this renderer over the widget view of the same output (rank below the
 * widgets renderer's -10), so a reopened notebook never shows "model not found".
 */
import { IRenderMime } from '@jupyterlab/rendermime-interfaces';
import { Widget } from '@lumino/widgets';

import { ACTIVE, ApiError, IEvent } from './api';
import {
  applyReport,
  concernsRun,
  GraphRun,
  loadRun,
  renderRunGraph,
  runActions
} from './graph';

export const RUN_MIME = 'application/vnd.durable-nb.run+json';

/** Below the widget view's -10: Lab shows this renderer when both are in an output. */
export const RUN_MIME_RANK = -20;

/** Seconds between reloads of an active run when no event came (a missed WebSocket). */
const POLL_MS = 10000;

/** What the output keeps of its run (see `snapshot.last_known` in the Python package). */
interface ILastKnown {
  run_id: string;
  task_id?: string | null;
  kind?: string | null;
  status?: string | null;
  updated_at?: number | null;
  /** The kernel prints the run's output in the cell as well (a %%durable cell). */
  outputs_in_cell?: boolean;
}

/** Where the renderer hears about changes: the sidebar's model and its WebSocket. */
export interface IEventSource {
  onEvent(fn: (event: IEvent) => void): () => void;
}


export class RunOutput extends Widget implements IRenderMime.IRenderer {
  constructor(
    private options: IRenderMime.IRendererOptions,
    private events: IEventSource,
    private openRun: (id: string) => void
  ) {
    super();
    this.addClass('jp-DurableRunOutput');
    this._notice = document.createElement('div');
    this._notice.className = 'jp-DurableRunOutput-notice';
    this._graph = document.createElement('div');
    this._graph.className = 'jp-DurableRunOutput-graph';
    this._static = document.createElement('div');
    this._static.className = 'jp-DurableRunOutput-static';
    this.node.append(this._notice, this._graph, this._static);
    this._stop = this.events.onEvent(e => this._onEvent(e));
  }

  get runId(): string {
    return this._last?.run_id ?? '';
  }

  dispose(): void {
    this._stop();
    window.clearTimeout(this._timer);
    window.clearTimeout(this._poll);
    window.clearTimeout(this._redraw);
    super.dispose();
  }

  /** Called again with new data when the kernel re-sends the display (its status changed). */
  async renderModel(model: IRenderMime.IMimeModel): Promise<void> {
    const last = model.data[RUN_MIME] as unknown as ILastKnown;
    this._snapshot = String(model.data['text/html'] ?? '');
    if (!this._last || this._last.run_id !== last.run_id) {
      this.run = null;
    }
    this._last = last;
    this.node.dataset.runId = last.run_id;
    await this.load();
  }

  async load(): Promise<void> {
    const id = this.runId;
    let error: ApiError | Error | null = null;
    try {
      const run = await loadRun(id);
      if (id !== this.runId) {
        return; // the output changed to another run meanwhile
      }
      this.run = run;
    } catch (err) {
      error = err as Error;
    }
    if (this.isDisposed) {
      return;
    }
    this._show(error);
    window.clearTimeout(this._poll);
    if (this.run && ACTIVE.includes(this.run.status)) {
      this._poll = window.setTimeout(() => void this.load(), POLL_MS);
    }
  }

  private _show(error: Error | null): void {
    const missing = error instanceof ApiError && error.status === 404;
    this.node.dataset.state = this.run && !missing ? 'live' : missing ? 'missing' : 'error';
    if (missing || !this.run) {
      this._notice.textContent = missing
        ? `Run ${this.runId} is not on this Jupyter server's durable_nb engine (it may have ` +
          'run against another engine). Its last known state, saved with the notebook:'
        : `Could not load run ${this.runId} (${error?.message}). Its last known state:`;
      // the snapshot is the output's own text/html, sanitized like any untrusted HTML
      this._static.innerHTML = this.options.sanitizer.sanitize(this._snapshot);
      this._graph.replaceChildren();
      this._notice.hidden = this._static.hidden = false;
      return;
    }
    this._notice.hidden = this._static.hidden = true;
    this._static.replaceChildren();
    const reload = () => this.load();
    renderRunGraph(this._graph, this.run, {
      ...runActions(this.runId, reload, id => this.openRun(id)),
      outputsInCell: !!this._last?.outputs_in_cell,
      notice: error
        ? { kind: 'warning', text: `Could not refresh the run: ${error.message}` }
        : null
    });
  }

  private _onEvent(e: IEvent): void {
    if (this.runId && applyReport(e, this.runId, this.run)) {
      // progress (up to ten a second) or metadata: redrawn from the event, no reload
      if (this.run && !this._redraw) {
        this._redraw = window.setTimeout(() => {
          this._redraw = 0;
          if (this.run && !this.isDisposed) {
            this._show(null);
          }
        }, 100);
      }
      return;
    }
    const mine = concernsRun(e, this.runId, this.run);
    if (mine && this.runId && !this._timer) {
      // at most one reload per 200 ms, however many events arrive
      this._timer = window.setTimeout(() => {
        this._timer = 0;
        void this.load();
      }, 200);
    }
  }

  run: GraphRun | null = null;
  private _last: ILastKnown | null = null;
  private _snapshot = '';
  private _notice: HTMLElement;
  private _graph: HTMLElement;
  private _static: HTMLElement;
  private _stop: () => void;
  private _timer = 0;
  private _poll = 0;
  private _redraw = 0;
}

/**
 * The renderer factory. It is safe (shown in untrusted notebooks too): it reads only a run
 * id from the output and draws what this server's API says about that run; the snapshot it
 * may show is sanitized.
 */
export function runOutputFactory(
  events: IEventSource,
  openRun: (id: string) => void
): IRenderMime.IRendererFactory {
  return {
    safe: true,
    mimeTypes: [RUN_MIME],
    defaultRank: RUN_MIME_RANK,
    createRenderer: options => new RunOutput(options, events, openRun)
  };
}
