/**
 * A section of the sidebar that folds under its title (the queues and the schedules): the
 * title is a button that says how many items there are; whether it is open is kept in the
 * browser's storage, so the panel opens as the user left it.
 */
import { caretDownIcon, caretRightIcon } from '@jupyterlab/ui-components';

import { el } from './util';

export class Fold {
  /** The section: its title, then its body (hidden while folded). */
  readonly node: HTMLElement;
  /** Where the section's content goes. */
  readonly body: HTMLElement;

  /** `key` names the section in the browser's storage; `onToggle` is told when it opens
   * or folds. */
  constructor(
    className: string,
    private label: string,
    private key: string,
    private onToggle: (open: boolean) => void = () => undefined
  ) {
    this.node = el('section', `jp-DurableFold ${className}`);
    const title = el('h3', 'jp-DurablePanel-section');
    this._toggle = el('button', 'jp-DurableFold-toggle');
    this._toggle.type = 'button';
    this._caret = el('span', 'jp-DurableFold-caret');
    this._text = el('span', 'jp-DurableFold-label', label);
    this._toggle.append(this._caret, this._text);
    this._toggle.addEventListener('click', () => this.setOpen(!this.open));
    title.appendChild(this._toggle);
    this.extra = el('span', 'jp-DurableFold-extra');
    title.appendChild(this.extra);
    this.node.appendChild(title);
    this.body = el('div', 'jp-DurableFold-body');
    this.node.appendChild(this.body);
    this._apply(readOpen(key));
  }

  /** A place on the title's right (e.g. a note while folded). */
  readonly extra: HTMLElement;

  get open(): boolean {
    return this._open;
  }

  setOpen(open: boolean): void {
    this._apply(open);
    try {
      window.localStorage.setItem(STORAGE + this.key, open ? '1' : '0');
    } catch {
      // storage refused (private mode): the section still opens, only not remembered
    }
    this.onToggle(open);
  }

  /** The title's count: "Queues (3)", or the bare label while unknown. */
  setCount(n: number | null, note = ''): void {
    this._text.textContent =
      n === null ? this.label : `${this.label} (${n})${note ? ` · ${note}` : ''}`;
  }

  private _apply(open: boolean): void {
    this._open = open;
    this.body.hidden = !open;
    this.node.classList.toggle('jp-mod-open', open);
    this._toggle.setAttribute('aria-expanded', String(open));
    this._toggle.title = `${open ? 'Fold' : 'Show'} the ${this.label.toLowerCase()}`;
    const icon = open ? caretDownIcon : caretRightIcon;
    this._caret.replaceChildren(icon.element({ tag: 'span', elementSize: 'small' }));
  }

  private _toggle: HTMLButtonElement;
  private _caret: HTMLElement;
  private _text: HTMLElement;
  private _open = false;
}

const STORAGE = 'durable-nb:fold:';

function readOpen(key: string): boolean {
  try {
    return window.localStorage.getItem(STORAGE + key) === '1';
  } catch {
    return false;
  }
}
