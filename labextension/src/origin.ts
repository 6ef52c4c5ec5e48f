/**
 * Where a run comes from: the notebook cell that started it (`origin` of GET /runs), shown
 * as "analysis.ipynb [5]", and the action that opens that notebook with that cell active.
 */
import { JupyterFrontEnd } from '@jupyterlab/application';
import { Notification, showErrorMessage } from '@jupyterlab/apputils';
import { ServerConnection } from '@jupyterlab/services';

import { IOrigin } from './api';
import { el } from './util';

/** Opens the notebook of an origin at its cell (resolves when done or refused). */
export type OpenCell = (origin: IOrigin) => Promise<void>;

/** The Jupyter root as the server reports it, to make absolute notebook paths relative. */
function serverRoot(): string {
  try {
    const node = document.getElementById('jupyter-config-data');
    const root = JSON.parse(node?.textContent || '{}').serverRoot;
    return typeof root === 'string' ? root.replace(/\/+$/, '') : '';
  } catch {
    return '';
  }
}

/**
 * The notebook's path relative to the Jupyter root, as the file browser and the contents
 * API name it; null when the run has no notebook or it lies outside the root.
 */
export function notebookPath(origin: IOrigin | null | undefined): string | null {
  const path = origin?.notebook;
  if (!path) {
    return null;
  }
  if (!path.startsWith('/') && !/^[A-Za-z]:[\\/]/.test(path)) {
    return path; // already relative to the root
  }
  const root = serverRoot().replace(/\\/g, '/');
  const norm = path.replace(/\\/g, '/');
  if (root && norm.startsWith(root + '/')) {
    return norm.slice(root.length + 1);
  }
  return null;
}

/** "analysis.ipynb [5]": the notebook's name and the cell's execution count. */
export function originLabel(origin: IOrigin | null | undefined): string | null {
  if (!origin?.notebook) {
    return null;
  }
  const name = origin.notebook.split(/[\\/]/).pop() || origin.notebook;
  const count = origin.execution_count;
  return typeof count === 'number' ? `${name} [${count}]` : name;
}

/**
 * A clickable label of the run's origin (a `span` so that it can sit inside a list row), or
 * null when the run does not come from a notebook. A click opens the cell and does not
 * reach the row.
 */
export function originLink(
  origin: IOrigin | null | undefined,
  openCell: OpenCell | undefined,
  className = ''
): HTMLElement | null {
  const label = originLabel(origin);
  if (!label || !origin) {
    return null;
  }
  const node = el('span', `jp-DurableOrigin ${className}`, label);
  const path = notebookPath(origin) ?? origin.notebook ?? '';
  if (!openCell) {
    node.title = `Started by a cell of ${path}`;
    return node;
  }
  node.classList.add('jp-mod-link');
  node.tabIndex = 0;
  node.setAttribute('role', 'link');
  node.title = `Open ${path} at the cell that started this run`;
  const open = (event: Event) => {
    event.preventDefault();
    event.stopPropagation();
    void openCell(origin);
  };
  node.addEventListener('click', open);
  node.addEventListener('keydown', event => {
    if (event.key === 'Enter' || event.key === ' ') {
      open(event);
    }
  });
  return node;
}

/** Whether the contents API has a file at `path` (false only for a clear 404). */
async function exists(path: string): Promise<boolean> {
  const settings = ServerConnection.makeSettings();
  const url =
    settings.baseUrl +
    'api/contents/' +
    path.split('/').map(encodeURIComponent).join('/') +
    '?content=0';
  try {
    const response = await ServerConnection.makeRequest(url, {}, settings);
    return response.status !== 404;
  } catch {
    return true; // let the document manager report what is wrong
  }
}

/** The parts of a NotebookPanel used here (the extension does not depend on the notebook
 * package: the panel comes from the document manager at run time). */
interface INotebookLike {
  activeCellIndex: number;
  mode: string;
  model: {
    cells: { length: number; get(i: number): { id: string; executionCount?: number | null } };
  } | null;
  widgets: ReadonlyArray<unknown>;
  scrollToItem?: (index: number, align?: string) => Promise<void>;
  scrollToCell?: (cell: unknown, align?: string) => Promise<void>;
}

interface INotebookPanelLike {
  context?: { ready: Promise<void> };
  revealed?: Promise<void>;
  content?: INotebookLike;
}

/** The index of the origin's cell: by id, else by execution count (a client that sends
 * no cell id, or a notebook older than nbformat 4.5 whose ids are made up at each load);
 * -1 when the notebook no longer has it. */
function findCell(notebook: INotebookLike, origin: IOrigin): number {
  const cells = notebook.model?.cells;
  if (!cells) {
    return -1;
  }
  for (let i = 0; i < cells.length; i++) {
    if (origin.cell_id && cells.get(i).id === origin.cell_id) {
      return i;
    }
  }
  if (typeof origin.execution_count !== 'number') {
    return -1;
  }
  for (let i = 0; i < cells.length; i++) {
    if (cells.get(i).executionCount === origin.execution_count) {
      return i;
    }
  }
  return -1;
}

/** Make cell `index` the active one and scroll it into the middle of the view. */
async function selectCell(notebook: INotebookLike, index: number): Promise<void> {
  notebook.activeCellIndex = index;
  notebook.mode = 'command';
  // a notebook just opened or revealed may still be laying out its (windowed) cells: scroll,
  // let two frames pass, and scroll again if the cell is not in view yet
  for (let round = 0; round < 3; round++) {
    if (notebook.scrollToItem) {
      await notebook.scrollToItem(index, 'center');
    } else if (notebook.scrollToCell) {
      await notebook.scrollToCell(notebook.widgets[index], 'center');
    }
    await nextFrame();
    await nextFrame();
    const node = (notebook.widgets[index] as { node?: HTMLElement } | undefined)?.node;
    if (!node?.isConnected) {
      continue;
    }
    if (inView(node)) {
      return;
    }
    node.scrollIntoView({ block: 'center' });
  }
}

function nextFrame(): Promise<void> {
  return new Promise(resolve => requestAnimationFrame(() => resolve()));
}

/** Whether some of `node` shows inside its scrolling notebook. */
function inView(node: HTMLElement): boolean {
  const box = node.getBoundingClientRect();
  const view = (node.closest('.jp-WindowedPanel-outer') ?? node.closest('.jp-Notebook'))
    ?.getBoundingClientRect();
  return !!view && box.bottom > view.top && box.top < view.bottom;
}

/** The action behind an origin label: open the notebook, then select the cell. */
export function cellOpener(app: JupyterFrontEnd): OpenCell {
  return async (origin: IOrigin) => {
    const label = originLabel(origin) ?? 'the notebook';
    const path = notebookPath(origin);
    if (!path) {
      await showErrorMessage(
        'Notebook outside this server',
        `The run was started by ${label} at ${origin.notebook}, which is not under this ` +
          "Jupyter server's root folder, so it cannot be opened here."
      );
      return;
    }
    if (!(await exists(path))) {
      await showErrorMessage(
        'Notebook not found',
        `The run was started by ${label}, but ${path} no longer exists: it was moved, ` +
          'renamed or deleted. The run itself is still listed.'
      );
      return;
    }
    const panel = (await app.commands.execute('docmanager:open', {
      path
    })) as INotebookPanelLike | undefined;
    const notebook = panel?.content;
    if (!panel?.context || !notebook || !('activeCellIndex' in notebook)) {
      return; // opened with another viewer: there are no cells to select
    }
    await panel.context.ready;
    await panel.revealed;
    const index = findCell(notebook, origin);
    if (index < 0) {
      Notification.warning(
        `The cell that started this run (${label}) is no longer in ${path}.`,
        { autoClose: 8000 }
      );
      return;
    }
    await selectCell(notebook, index);
  };
}
