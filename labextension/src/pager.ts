/** The runs list's pages: ‹ and › buttons that move the model a page back or on. */
import { caretLeftIcon, caretRightIcon } from '@jupyterlab/ui-components';

import { RunsModel } from './model';
import { button, el } from './util';

export class Pager {
  readonly node: HTMLElement;

  constructor(private model: RunsModel) {
    this.node = el('span', 'jp-DurablePager');
    this._prev = button('', 'Newer runs (the page before)', () => this._go(-1), {
      icon: caretLeftIcon,
      className: 'jp-DurablePager-prev'
    });
    this._next = button('', 'Older runs (the next page)', () => this._go(1), {
      icon: caretRightIcon,
      className: 'jp-DurablePager-next'
    });
    this.node.append(this._prev, this._next);
  }

  /** Shown when the runs do not fit on one page; each button only where it leads. */
  render(): void {
    const { offset, limit, total } = this.model;
    this.node.hidden = total <= limit && offset === 0;
    this._prev.disabled = offset <= 0;
    this._next.disabled = offset + limit >= total;
  }

  private async _go(step: number): Promise<void> {
    const { offset, limit } = this.model;
    this.model.setOffset(offset + step * limit);
  }

  private _prev: HTMLButtonElement;
  private _next: HTMLButtonElement;
}
