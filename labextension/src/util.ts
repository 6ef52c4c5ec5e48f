/** Small DOM and formatting helpers shared by the sidebar and the run view. */
import { Notification } from '@jupyterlab/apputils';
import { LabIcon } from '@jupyterlab/ui-components';

export function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  className = '',
  text = ''
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  if (className) {
    node.className = className;
  }
  if (text) {
    node.textContent = text;
  }
  return node;
}

/** A button with an icon and/or a label; `onClick` gets the button, already disabled. */
export function button(
  label: string,
  title: string,
  onClick: () => Promise<unknown> | void,
  options: { icon?: LabIcon; className?: string } = {}
): HTMLButtonElement {
  const node = el('button', `jp-DurableButton ${options.className ?? ''}`);
  node.type = 'button';
  node.title = title;
  if (options.icon) {
    node.appendChild(options.icon.element({ tag: 'span', elementSize: 'small' }));
  }
  if (label) {
    node.appendChild(el('span', '', label));
  } else {
    node.setAttribute('aria-label', title);
  }
  node.addEventListener('click', async event => {
    event.stopPropagation();
    node.disabled = true;
    try {
      await onClick();
    } finally {
      node.disabled = false;
    }
  });
  return node;
}

/** Run an action; a failure becomes a notification that says what failed and why. */
export async function attempt<T>(
  what: string,
  fn: () => Promise<T>
): Promise<T | undefined> {
  try {
    return await fn();
  } catch (err) {
    Notification.error(`${what}: ${(err as Error).message || err}`, {
      autoClose: 8000
    });
    return undefined;
  }
}

/** "12s", "4m", "3h", "2d" ago. */
export function ago(epochSeconds: number | null | undefined): string {
  if (!epochSeconds) {
    return '';
  }
  const s = Math.max(0, Date.now() / 1000 - epochSeconds);
  if (s < 60) {
    return `${Math.floor(s)}s ago`;
  }
  if (s < 3600) {
    return `${Math.floor(s / 60)}m ago`;
  }
  if (s < 86400) {
    return `${Math.floor(s / 3600)}h ago`;
  }
  return `${Math.floor(s / 86400)}d ago`;
}

export function duration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined) {
    return '';
  }
  if (seconds < 1) {
    return `${Math.round(seconds * 1000)} ms`;
  }
  if (seconds < 120) {
    return `${seconds.toFixed(1)} s`;
  }
  return `${Math.round(seconds / 60)} min`;
}

export function shortId(id: string): string {
  return id.length > 10 ? id.slice(0, 8) : id;
}

/** A compact one-line rendering of a JSON value. */
export function preview(value: unknown, max = 160): string {
  if (value === null || value === undefined) {
    return '';
  }
  const text =
    typeof value === 'string'
      ? value
      : JSON.stringify(value, null, 1).replace(/\n\s*/g, ' ');
  return text.length > max ? text.slice(0, max - 1) + '…' : text;
}
