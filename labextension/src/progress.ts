/**
 * A run's progress (`dn.progress`, or its outermost tqdm bar) as a thin bar on its row in
 * the sidebar: done / total with the percent, or a moving bar when the total is not known.
 */
import { IProgress } from './api';
import { el } from './util';

/** The row's bar: `63%  embedding` beside it (a count instead without a total). */
export function progressLine(p: IProgress): HTMLElement {
  const done = Number(p.done) || 0;
  const total = Number(p.total) > 0 ? Number(p.total) : null;
  const frac = total ? Math.max(0, Math.min(1, done / total)) : null;
  const label =
    frac === null
      ? done.toLocaleString('en-US')
      : `${Math.floor(frac * 100)}%`;
  const line = el('div', 'jp-DurableRun-progress');
  line.title = total
    ? `${p.text ? `${p.text}: ` : ''}${done.toLocaleString('en-US')} of ${total.toLocaleString('en-US')}`
    : `${p.text ? `${p.text}: ` : ''}${done.toLocaleString('en-US')} (total not known)`;
  const bar = el('div', 'jp-DurableRun-progressBar');
  bar.setAttribute('role', 'progressbar');
  bar.setAttribute('aria-valuemin', '0');
  bar.setAttribute('aria-valuenow', String(done));
  if (total !== null) {
    bar.setAttribute('aria-valuemax', String(total));
  }
  const fill = el('div', 'jp-DurableRun-progressFill');
  if (frac === null) {
    bar.classList.add('jp-mod-indeterminate');
  } else {
    fill.style.width = `${Math.floor(frac * 100)}%`;
  }
  bar.appendChild(fill);
  line.appendChild(bar);
  line.appendChild(el('span', 'jp-DurableRun-progressLabel', label));
  if (p.text) {
    line.appendChild(el('span', 'jp-DurableRun-progressText', p.text));
  }
  return line;
}
