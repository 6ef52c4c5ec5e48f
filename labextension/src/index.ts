/**
 * durable_nb for JupyterLab: a "Durable runs" sidebar (live runs, pending approvals with a
 * count badge on its tab) and a main-area view of each run's graph. It talks to the
 * server's durable API directly, so it needs no kernel. Run outputs in notebooks are drawn
 * live the same way (`mime.ts`).
 */
import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { MainAreaWidget, WidgetTracker } from '@jupyterlab/apputils';
import { IRenderMimeRegistry } from '@jupyterlab/rendermime';

import { registerCompare } from './compare';
import { createRunWidget, RunView } from './detail';
import { durableIcon } from './icon';
import { runOutputFactory } from './mime';
import { RunsModel } from './model';
import { cellOpener } from './origin';
import { RunsPanel } from './panel';
import { runsOutputFactory } from './runs_mime';

const OPEN_RUN = 'durable-nb:open-run';
const REFRESH = 'durable-nb:refresh';

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'durable_nb:runs',
  description: 'A sidebar with live durable_nb runs and pending approvals.',
  autoStart: true,
  optional: [ILayoutRestorer, IRenderMimeRegistry],
  activate: (
    app: JupyterFrontEnd,
    restorer: ILayoutRestorer | null,
    rendermime: IRenderMimeRegistry | null
  ) => {
    const model = new RunsModel();
    const tracker = new WidgetTracker<MainAreaWidget<RunView>>({
      namespace: 'durable-nb-run'
    });
    const openRun = (id: string) => void app.commands.execute(OPEN_RUN, { id });
    const openCell = cellOpener(app);

    app.commands.addCommand(OPEN_RUN, {
      label: 'Open Durable Run',
      execute: args => {
        const id = String(args.id);
        const open = tracker.find(w => w.content.runId === id);
        if (open) {
          app.shell.activateById(open.id);
          return open;
        }
        const widget = createRunWidget(id, model, openRun, openCell);
        void tracker.add(widget);
        app.shell.add(widget, 'main');
        return widget;
      }
    });
    registerCompare(app, openRun); // two runs side by side (compare.ts)
    app.commands.addCommand(REFRESH, {
      label: 'Refresh Durable Runs',
      execute: () => model.refresh()
    });

    const panel = new RunsPanel(model, openRun, openCell);
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
    // run outputs in notebooks, live from the API (notebooks copy this registry when opened)
    rendermime?.addFactory(runOutputFactory(model, openRun));
    // `%durable list` outputs: safe, since they only read filters and show this server's API
    rendermime?.addFactory(runsOutputFactory(model, openRun));

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
