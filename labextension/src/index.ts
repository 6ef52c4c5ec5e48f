/**
 * durable_nb for JupyterLab: a "Durable runs" sidebar (live runs, pending approvals with a
 * count badge on its tab) and a main-area view of each run's graph. It talks to the
 * server's durable API directly, so it needs no kernel.
 */
import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { MainAreaWidget, WidgetTracker } from '@jupyterlab/apputils';

import { createRunWidget, RunView } from './detail';
import { durableIcon } from './icon';
import { RunsModel } from './model';
import { RunsPanel } from './panel';

const OPEN_RUN = 'durable-nb:open-run';
const REFRESH = 'durable-nb:refresh';

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'durable_nb:runs',
  description: 'A sidebar with live durable_nb runs and pending approvals.',
  autoStart: true,
  optional: [ILayoutRestorer],
  activate: (app: JupyterFrontEnd, restorer: ILayoutRestorer | null) => {
    const model = new RunsModel();
    const tracker = new WidgetTracker<MainAreaWidget<RunView>>({
      namespace: 'durable-nb-run'
    });
    const openRun = (id: string) => void app.commands.execute(OPEN_RUN, { id });

    app.commands.addCommand(OPEN_RUN, {
      label: 'Open Durable Run',
      execute: args => {
        const id = String(args.id);
        const open = tracker.find(w => w.content.runId === id);
        if (open) {
          app.shell.activateById(open.id);
          return open;
        }
        const widget = createRunWidget(id, model, openRun);
        void tracker.add(widget);
        app.shell.add(widget, 'main');
        return widget;
      }
    });
    app.commands.addCommand(REFRESH, {
      label: 'Refresh Durable Runs',
      execute: () => model.refresh()
    });

    const panel = new RunsPanel(model, openRun);
    panel.id = 'durable-nb-runs';
    panel.title.icon = durableIcon;
    panel.title.caption = 'Durable runs';
    // the count of pending approvals, drawn on the sidebar tab by style/base.css
    model.onChange(() => {
      const n = model.approvals.length;
      if ((panel.title.dataset['durable-pending'] ?? '0') !== String(n)) {
        // keep the shell's own data (data-id) on the tab
        const { 'durable-pending': _, ...dataset } = panel.title.dataset;
        panel.title.dataset = n ? { ...dataset, 'durable-pending': String(n) } : dataset;
        panel.title.caption = n
          ? `Durable runs: ${n} pending approval${n > 1 ? 's' : ''}`
          : 'Durable runs';
      }
    });
    app.shell.add(panel, 'left', { rank: 650 });

    if (restorer) {
      restorer.add(panel, 'durable-nb-runs');
      void restorer.restore(tracker, {
        command: OPEN_RUN,
        args: w => ({ id: w.content.runId }),
        name: w => w.content.runId
      });
    }
    model.start();
  }
};

export default plugin;
