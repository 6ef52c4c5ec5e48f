/**
 * A run in the main area: its graph, drawn by the same renderer as the notebook widget,
 * reloaded whenever the events WebSocket reports a change of the run or of a child run.
 */
import { MainAreaWidget, ToolbarButton } from '@jupyterlab/apputils';
import {
  LabIcon,
  redoIcon,
  refreshIcon,
  runIcon,
  stopIcon
} from '@jupyterlab/ui-components';
import { Widget } from '@lumino/widgets';

import { ACTIVE, IEvent, RESUMABLE } from './api';
import {
  applyReport,
  concernsRun,
  GraphRun,
  loadRun,
  renderRunGraph,
  runActions
} from './graph';
import { addCompareActions } from './compare';
import { durableIcon } from './icon';
import { RunsModel } from './model';
import { notebookPath, OpenCell, originLink } from './origin';
import { confirmCancel, replay, resume } from './panel';
import { shortId } from './util';

/** A toolbar button for a one-shot action (not a toggle that stays pressed). */
function action(
  icon: LabIcon,
  label: string,
  tooltip: string,
  run: () => void
): ToolbarButton {
  const button: ToolbarButton = new ToolbarButton({
    icon,
    label,
    tooltip,
    onClick: () => {
      button.pressed = false;
      run();
    }
  });
  return button;
}

export class RunView extends Widget {
  run: GraphRun | null = null;

  constructor(
    readonly runId: string,
    model: RunsModel,
    private openRun: (id: string) => void,
    private openCell?: OpenCell
  ) {
    super();
    this.addClass('jp-DurableRunView');
    this._origin = document.createElement('div');
    this._origin.className = 'jp-DurableRunView-origin';
    this._origin.hidden = true;
    this.node.appendChild(this._origin);
    this._graph = document.createElement('div');
    this.node.appendChild(this._graph);
    this._stop = model.onEvent(e => this._onEvent(e));
    void this.load();
  }

  dispose(): void {
    this._stop();
    window.clearTimeout(this._timer);
    window.clearTimeout(this._redraw);
    super.dispose();
  }

  /** Called after each load (the toolbar enables its buttons). */
  changed: () => void = () => undefined;

  async load(): Promise<void> {
    let notice = null;
    try {
      this.run = await loadRun(this.runId);
    } catch (err) {
      notice = { kind: 'error' as const, text: `Could not load the run: ${(err as Error).message}` };
    }
    if (this.isDisposed) {
      return;
    }
    if (this.run) {
      this._showOrigin(this.run);
      this._render(notice);
    } else if (notice) {
      this._graph.textContent = notice.text;
    }
    this.changed();
  }

  private _render(notice: { kind: 'error'; text: string } | null = null): void {
    if (!this.run) {
      return;
    }
    const reload = () => this.load();
    renderRunGraph(this._graph, this.run, {
      ...runActions(this.runId, reload, id => this.openRun(id)),
      notice
    });
  }

  /** "Started by analysis.ipynb [5] (work/analysis.ipynb)": a cell run's origin, whose
   * label opens the notebook at that cell. Drawn once: an origin never changes. */
  private _showOrigin(run: GraphRun): void {
    if (!this._origin.hidden || !run.origin?.notebook) {
      return;
    }
    const link = originLink(run.origin, this.openCell, 'jp-DurableRunView-originLink');
    if (!link) {
      return;
    }
    this._origin.append('Started by ', link);
    const path = notebookPath(run.origin) ?? run.origin.notebook;
    const name = path.split('/').pop();
    if (path !== name) {
      this._origin.append(` (${path})`);
    }
    this._origin.hidden = false;
  }

  private _onEvent(e: IEvent): void {
    if (applyReport(e, this.runId, this.run)) {
      // progress (up to ten a second) or metadata: redrawn from the event, no reload
      if (!this._redraw) {
        this._redraw = window.setTimeout(() => {
          this._redraw = 0;
          this._render();
        }, 100);
      }
      return;
    }
    const mine = concernsRun(e, this.runId, this.run);
    if (mine && !this._timer) {
      // at most one reload per 200 ms, however many events arrive
      this._timer = window.setTimeout(() => {
        this._timer = 0;
        void this.load();
      }, 200);
    }
  }

  private _graph: HTMLElement;
  private _origin: HTMLElement;
  private _stop: () => void;
  private _timer = 0;
  private _redraw = 0;
}

/** The run view in a main-area widget with Refresh, Cancel and Replay buttons. */
export function createRunWidget(
  runId: string,
  model: RunsModel,
  openRun: (id: string) => void,
  openCell?: OpenCell
): MainAreaWidget<RunView> {
  const content = new RunView(runId, model, openRun, openCell);
  const widget = new MainAreaWidget({ content });
  widget.id = `durable-run-${runId}`;
  widget.title.label = `Run ${shortId(runId)}`;
  widget.title.caption = `durable_nb run ${runId}`;
  widget.title.closable = true;
  widget.title.icon = durableIcon;

  const cancel = action(stopIcon, 'Cancel', 'Cancel this run', () => {
    if (content.run) {
      void confirmCancel(content.run);
    }
  });
  const resumeButton = action(
    runIcon,
    'Resume',
    'Continue after the last recorded step or checkpoint',
    () => {
      if (content.run) {
        void resume(content.run, () => content.load());
      }
    }
  );
  const replayButton = action(redoIcon, 'Replay', 'A new run with the same payload', () => {
    if (content.run) {
      void replay(content.run, openRun);
    }
  });
  const refresh = action(refreshIcon, '', 'Reload the run', () => void content.load());
  widget.toolbar.addItem('refresh', refresh);
  widget.toolbar.addItem('cancel', cancel);
  widget.toolbar.addItem('resume', resumeButton);
  widget.toolbar.addItem('replay', replayButton);
  content.changed = () => {
    const run = content.run;
    if (run) {
      widget.title.label = `${run.task_id || 'run'} ${shortId(run.id)}`;
      const active = ACTIVE.includes(run.status);
      cancel.enabled = active;
      replayButton.enabled = !active;
      resumeButton.enabled = RESUMABLE.includes(run.status);
    }
  };
  // "Compare…" and, for a fork, "Compare with source" (compare.ts)
  const showCompare = addCompareActions(widget.toolbar, () => content.run);
  const changed = content.changed;
  content.changed = () => {
    changed();
    showCompare(content.run);
  };
  return widget;
}
