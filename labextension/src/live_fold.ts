/**
 * A live folded section of the sidebar (the queues, the schedules): a `Fold` with a list
 * and a note under it, read at start (for the count on its title) and again every few
 * seconds (more often while open; never while the sidebar is hidden) and soon after run
 * events while open. A subclass says what differs: how to read its items and draw them,
 * and its wording; a 404 says the engine has no such thing, any other error says so.
 */
import { ApiError, IEvent } from './api';
import { Fold } from './fold';
import { el } from './util';

/** Subscribe to the events stream; the result unsubscribes. */
export type Subscribe = (fn: (e: IEvent) => void) => () => void;

export interface ILiveFoldOptions {
  /** The section's class, e.g. `jp-DurablePanel-queues`. */
  className: string;
  /** The list's class, e.g. `jp-DurableQueues`. */
  listClass: string;
  /** The title, e.g. "Queues". */
  label: string;
  /** Whether it is open is kept in the browser's storage under this name. */
  key: string;
  /** Milliseconds between reads while open ... */
  openPoll: number;
  /** ... and while folded (null: not read while folded). */
  foldedPoll: number | null;
  /** Milliseconds from a 'run' or 'hello' event to the read it causes (one per period). */
  eventDelay: number;
  /** The note on a 404, e.g. "Queues are not available on this engine." */
  missing: string;
  /** What could not be done, e.g. "Could not read the queues". */
  failed: string;
  /** On a failed read, the title drops its count. */
  forgetCount?: boolean;
}

export abstract class LiveFold<T> {
  readonly node: HTMLElement;

  /** Starts reading: `read` is called from here, so it must not use the subclass's
   * own fields. */
  constructor(subscribe: Subscribe, private _opts: ILiveFoldOptions) {
    this.fold = new Fold(_opts.className, _opts.label, _opts.key, open => {
      if (open) {
        void this.load();
      }
      this._schedule();
    });
    this.node = this.fold.node;
    this.list = el('ul', _opts.listClass);
    this.fold.body.appendChild(this.list);
    this.note = el('div', 'jp-DurableFold-note');
    this.fold.body.appendChild(this.note);
    this._stop = subscribe(e => this._onEvent(e));
    void this.load();
    this._schedule();
  }

  dispose(): void {
    this._stop();
    window.clearInterval(this._poll);
    window.clearTimeout(this._soon);
  }

  /** Read the items and draw them (skipped once the section is out of the page). */
  async load(): Promise<void> {
    if (this._loading || (this._loaded && !this.node.isConnected)) {
      return;
    }
    this._loading = true;
    try {
      this.draw(await this.read());
    } catch (err) {
      this.list.replaceChildren();
      if (this._opts.forgetCount) {
        this.fold.setCount(null);
      }
      this.note.textContent =
        err instanceof ApiError && err.status === 404
          ? this._opts.missing
          : `${this._opts.failed}: ${(err as Error).message || err}`;
    } finally {
      this._loading = false;
      this._loaded = true;
    }
  }

  /** Ask the engine for the items. */
  protected abstract read(): Promise<T>;

  /** Show the items: the title's count, the list's rows, the note. */
  protected abstract draw(items: T): void;

  protected readonly fold: Fold;
  protected readonly list: HTMLElement;
  protected readonly note: HTMLElement;

  private _schedule(): void {
    window.clearInterval(this._poll);
    this._poll = 0;
    const every = this.fold.open ? this._opts.openPoll : this._opts.foldedPoll;
    if (every !== null) {
      this._poll = window.setInterval(() => {
        if (this.node.offsetParent !== null) {
          void this.load();
        }
      }, every);
    }
  }

  /** A run changed: so may have the items (one read per `eventDelay` at most, while open). */
  private _onEvent(e: IEvent): void {
    if ((e.type === 'run' || e.type === 'hello') && this.fold.open && !this._soon) {
      this._soon = window.setTimeout(() => {
        this._soon = 0;
        void this.load();
      }, this._opts.eventDelay);
    }
  }

  private _stop: () => void;
  private _poll = 0;
  private _soon = 0;
  private _loading = false;
  private _loaded = false;
}
