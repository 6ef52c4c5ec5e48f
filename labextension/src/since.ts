/** The runs list's time filter: runs created within the last hour, day or week
 * (`GET /runs?since=`, as `durable-nb cancel --since 1h` selects them). */
import { RunsModel } from './model';
import { el } from './util';

export const SINCE: ReadonlyArray<[string, string]> = [
  ['', 'Any time'],
  ['1h', 'Last hour'],
  ['1d', 'Last day'],
  ['7d', 'Last week']
];

export function sinceSelect(model: RunsModel): HTMLSelectElement {
  const select = el('select', 'jp-DurablePanel-filter jp-DurablePanel-since');
  select.title = 'Show runs created within this long';
  select.setAttribute('aria-label', 'Show runs created within this long');
  for (const [value, label] of SINCE) {
    const option = el('option', '', label);
    option.value = value;
    option.selected = value === model.since;
    select.appendChild(option);
  }
  select.addEventListener('change', () => model.setSince(select.value));
  return select;
}
