/**
 * Tags in the sidebar: the chips a run's row shows (a click on one filters by it) and the
 * tag filter above the list, which lists the runs that have all of its tags
 * (`GET /runs?tags=a,b`, as `dn.runs(tags=...)` and `durable-nb runs --tag`).
 */
import { closeIcon } from '@jupyterlab/ui-components';

import { el } from './util';

/** At most this many chips on a row; the others are counted ("+2"). */
const ROW_CHIPS = 4;

/** At most this many tags in the filter (the API takes 2000 characters of them). */
export const MAX_FILTER_TAGS = 10;

/** The API's longest tag. */
const MAX_TAG = 200;

/** The tags typed into the filter: split at commas, trimmed, without empty ones. */
export function parseTags(text: string): string[] {
  return text
    .split(',')
    .map(t => t.trim().slice(0, MAX_TAG))
    .filter(Boolean);
}

/** A run's tags as chips; a click on one calls `pick` with it (and does not open the
 * run). The tags the filter holds are marked. Null when the run has no tags. */
export function tagChips(
  tags: ReadonlyArray<string> | undefined,
  active: ReadonlyArray<string>,
  pick: (tag: string) => void
): HTMLElement | null {
  if (!tags || !tags.length) {
    return null;
  }
  const line = el('div', 'jp-DurableRun-tags');
  for (const tag of tags.slice(0, ROW_CHIPS)) {
    const on = active.includes(tag);
    const chip = el('button', `jp-DurableTag${on ? ' jp-mod-active' : ''}`, tag);
    chip.type = 'button';
    chip.dataset.tag = tag;
    chip.title = on ? `Filtering by tag “${tag}”` : `Show only runs tagged “${tag}”`;
    chip.addEventListener('click', event => {
      event.stopPropagation();
      pick(tag);
    });
    line.appendChild(chip);
  }
  if (tags.length > ROW_CHIPS) {
    const more = el('span', 'jp-DurableTag-more', `+${tags.length - ROW_CHIPS}`);
    more.title = tags.slice(ROW_CHIPS).join(', ');
    line.appendChild(more);
  }
  return line;
}

/**
 * The tag filter: the chosen tags as chips (× removes one) and a box to add more (Enter
 * or a comma adds what was typed; Backspace in the empty box removes the last tag; Escape
 * empties the box, then clears the filter).
 */
export class TagFilter {
  readonly node: HTMLElement;

  constructor(private onChange: (tags: string[]) => void) {
    this.node = el('div', 'jp-DurableTagFilter');
    this.node.title =
      'Show only runs that have all of these tags (Enter adds one; Escape clears)';
    this._chips = el('span', 'jp-DurableTagFilter-chips');
    this.node.appendChild(this._chips);
    const box = el('input', 'jp-DurableTagFilter-input');
    box.type = 'text';
    box.placeholder = 'Filter by tag';
    box.setAttribute('aria-label', 'Filter runs by tag');
    box.maxLength = MAX_TAG * 2;
    box.spellcheck = false;
    box.addEventListener('keydown', event => this._onKey(event));
    box.addEventListener('input', () => {
      if (box.value.includes(',')) {
        this._commit();
      }
    });
    box.addEventListener('blur', () => this._commit());
    this._box = box;
    this.node.appendChild(box);
    this._clear = el('button', 'jp-DurableButton jp-DurableTagFilter-clear');
    this._clear.type = 'button';
    this._clear.title = 'Clear the tag filter';
    this._clear.setAttribute('aria-label', 'Clear the tag filter');
    this._clear.appendChild(closeIcon.element({ tag: 'span', elementSize: 'small' }));
    this._clear.addEventListener('click', () => this.set([], true));
    this.node.appendChild(this._clear);
    this.node.addEventListener('click', event => {
      if (event.target === this.node || event.target === this._chips) {
        box.focus();
      }
    });
    this._draw();
  }

  get tags(): string[] {
    return [...this._tags];
  }

  /** Filter by `tags`; `notify` tells the panel (not needed when it set them). */
  set(tags: string[], notify = false): void {
    const next = [...new Set(tags)].slice(0, MAX_FILTER_TAGS);
    const changed = next.join('\u0000') !== this._tags.join('\u0000');
    this._tags = next;
    this._draw();
    if (changed && notify) {
      this.onChange(this.tags);
    }
  }

  /** Add `tag` to the filter (a chip clicked on a row). */
  add(tag: string): void {
    this.set([...this._tags, tag], true);
  }

  private _onKey(event: KeyboardEvent): void {
    const box = this._box;
    if (event.key === 'Enter') {
      event.preventDefault();
      this._commit();
    } else if (event.key === 'Escape') {
      if (box.value) {
        box.value = '';
      } else {
        this.set([], true);
      }
    } else if (event.key === 'Backspace' && !box.value && this._tags.length) {
      this.set(this._tags.slice(0, -1), true);
    }
  }

  /** Move what was typed into the filter. */
  private _commit(): void {
    const typed = parseTags(this._box.value);
    this._box.value = '';
    if (typed.length) {
      this.set([...this._tags, ...typed], true);
    }
  }

  private _draw(): void {
    this._chips.replaceChildren(
      ...this._tags.map(tag => {
        const chip = el('span', 'jp-DurableTag jp-mod-active', tag);
        chip.dataset.tag = tag;
        const remove = el('button', 'jp-DurableTag-remove');
        remove.type = 'button';
        remove.title = `Remove “${tag}” from the filter`;
        remove.setAttribute('aria-label', `Remove tag ${tag} from the filter`);
        remove.appendChild(closeIcon.element({ tag: 'span', elementSize: 'small' }));
        remove.addEventListener('click', () =>
          this.set(
            this._tags.filter(t => t !== tag),
            true
          )
        );
        chip.appendChild(remove);
        return chip;
      })
    );
    this._clear.hidden = !this._tags.length;
    this._box.placeholder = this._tags.length ? 'and tag…' : 'Filter by tag';
    this.node.classList.toggle('jp-mod-active', this._tags.length > 0);
  }

  private _box: HTMLInputElement;
  private _chips: HTMLElement;
  private _clear: HTMLButtonElement;
  private _tags: string[] = [];
}
