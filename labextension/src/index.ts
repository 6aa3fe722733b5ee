/**
 * rlm-jupyter-cells: while `%%rlm` runs, the root model's prose and code appear as real
 * markdown/code cells below the `%%rlm` cell (see ./protocol.ts for the comm protocol).
 *
 * For every notebook, the plugin registers the comm target `rlm_jupyter.cells` on the
 * notebook's kernel connection (again whenever the kernel changes). Cells are changed through
 * the notebook model only: no cell is activated, focused or scrolled to.
 */
import { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import type { ICodeCellModel } from '@jupyterlab/cells';
import type { Kernel, KernelMessage } from '@jupyterlab/services';

import {
  applyMessage,
  CellInfo,
  CellPatch,
  CellSpec,
  COMM_TARGET,
  isMessage,
  markerLabel,
  Message,
  NotebookAdapter,
  Output,
  Result
} from './protocol';

export * from './protocol';

const MARKER_CLASS = 'rlm-cell';

/** Recent messages and when they were applied (for the browser test's latency measure). */
export interface LogEntry {
  type: string;
  key?: string;
  action: string;
  t_event?: number;
  t_applied: number;
}
const LOG: LogEntry[] = [];
const LOG_SIZE = 500;

/** Mark a code cell and its output area untrusted (before outputs from a run are added). */
export function untrust(code: ICodeCellModel): void {
  if (code.trusted) {
    code.trusted = false;
  }
  if (code.outputs.trusted) {
    code.outputs.trusted = false;
  }
  if (code.getMetadata('trusted') !== undefined) {
    code.deleteMetadata('trusted');
  }
}

/** Cell metadata without the `trusted` flag (trust is never taken from a message). */
function withoutTrust(metadata: Record<string, unknown>): Record<string, unknown> {
  const { trusted: _ignored, ...rest } = metadata;
  return rest;
}

/** A {@link NotebookAdapter} over a JupyterLab notebook panel's model. */
export function panelAdapter(panel: NotebookPanel): NotebookAdapter | null {
  const model = panel.content.model;
  if (!model) {
    return null;
  }
  const cellAt = (i: number) => model.cells.get(i);
  return {
    cells(): CellInfo[] {
      const out: CellInfo[] = [];
      for (let i = 0; i < model.cells.length; i++) {
        const c = cellAt(i);
        out.push({ id: c.id, rlm: c.getMetadata('rlm') as CellInfo['rlm'] });
      }
      return out;
    },
    insert(index: number, cell: CellSpec): void {
      const json: Record<string, unknown> = {
        id: cell.key,
        cell_type: cell.cell_type,
        source: cell.source,
        metadata: withoutTrust(cell.metadata)
      };
      if (cell.cell_type === 'code') {
        // Outputs go through the cell model after the insertion: given to insertCell, the
        // shared model's outputs are applied twice to the new cell model (seen in JupyterLab 4.6).
        json.outputs = [];
        json.execution_count = cell.execution_count ?? null;
      }
      model.sharedModel.insertCell(index, json as any);
      if (cell.cell_type === 'code') {
        // The outputs come from the run's environment kernel (model-written code): JupyterLab
        // must treat them as untrusted (its sanitizer on HTML, no JavaScript, no SVG inline).
        untrust(cellAt(index) as ICodeCellModel);
      }
      if (cell.cell_type === 'code' && cell.outputs && cell.outputs.length) {
        const code = cellAt(index) as ICodeCellModel;
        code.outputs.clear();
        for (const o of cell.outputs) {
          code.outputs.add(o as any);
        }
      }
    },
    remove(index: number): void {
      model.sharedModel.deleteCell(index);
    },
    read(index: number): CellPatch {
      const c = cellAt(index);
      const patch: CellPatch = {
        source: c.sharedModel.getSource(),
        metadata: c.metadata as CellPatch['metadata']
      };
      if (c.type === 'code') {
        const code = c as ICodeCellModel;
        patch.outputs = code.outputs.toJSON() as unknown as Output[];
        patch.execution_count = code.executionCount;
      }
      return patch;
    },
    update(index: number, patch: CellPatch): void {
      // No sharedModel.transact() here: the cell model mirrors its output changes into the
      // shared model under a mutex that only covers synchronous echoes; inside a transaction
      // the echo comes back after it and the outputs are applied twice.
      const c = cellAt(index);
      if (patch.source !== undefined) {
        c.sharedModel.setSource(patch.source);
      }
      if (patch.metadata !== undefined) {
        for (const [k, v] of Object.entries(withoutTrust(patch.metadata))) {
          c.setMetadata(k, v as any);
        }
      }
      if (c.type === 'code') {
        const code = c as ICodeCellModel;
        if (patch.outputs !== undefined) {
          untrust(code);
          code.outputs.clear();
          for (const o of patch.outputs) {
            code.outputs.add(o as any);
          }
        }
        if (patch.execution_count !== undefined) {
          code.executionCount = patch.execution_count;
        }
      }
    }
  };
}

/** Add the visual marker (class + label) to the panel's cells that came from a run. */
export function markCells(panel: NotebookPanel): void {
  for (const widget of panel.content.widgets) {
    const label = markerLabel(widget.model.getMetadata('rlm') as any);
    const rlm = widget.model.getMetadata('rlm') as { key?: string } | undefined;
    if (label) {
      widget.addClass(MARKER_CLASS);
      widget.node.dataset.rlmLabel = label;
      if (rlm && typeof rlm.key === 'string') {
        widget.node.dataset.rlmKey = rlm.key;
      }
    } else if (widget.hasClass(MARKER_CLASS)) {
      widget.removeClass(MARKER_CLASS);
      delete widget.node.dataset.rlmLabel;
      delete widget.node.dataset.rlmKey;
    }
  }
}

function handle(panel: NotebookPanel, data: unknown): Result | null {
  if (!isMessage(data)) {
    return null;
  }
  const nb = panelAdapter(panel);
  if (!nb) {
    return null;
  }
  const msg = data as Message;
  let result: Result;
  try {
    result = applyMessage(nb, msg);
  } catch (err) {
    console.error('rlm-jupyter-cells: cannot apply', msg, err);
    return null;
  }
  markCells(panel);
  LOG.push({
    type: msg.type,
    key: msg.type === 'insert' ? msg.cell.key : msg.type === 'outputs' ? msg.key : undefined,
    action: result.action,
    t_event: msg.t_event,
    t_applied: Date.now() / 1000
  });
  if (LOG.length > LOG_SIZE) {
    LOG.splice(0, LOG.length - LOG_SIZE);
  }
  return result;
}

function registerOn(panel: NotebookPanel, kernel: Kernel.IKernelConnection | null | undefined): void {
  if (!kernel) {
    return;
  }
  kernel.registerCommTarget(COMM_TARGET, (comm: Kernel.IComm, open: KernelMessage.ICommOpenMsg) => {
    handle(panel, open.content.data);
    comm.onMsg = (msg: KernelMessage.ICommMsgMsg) => {
      handle(panel, msg.content.data);
    };
  });
}

function attach(panel: NotebookPanel): void {
  const session = panel.sessionContext;
  registerOn(panel, session.session?.kernel);
  session.kernelChanged.connect((_, change) => registerOn(panel, change.newValue));
  void panel.context.ready.then(() => {
    markCells(panel);
    panel.content.model?.cells.changed.connect(() => markCells(panel));
  });
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'rlm-jupyter-cells:plugin',
  description: 'Shows the root model code of a %%rlm run as notebook cells.',
  autoStart: true,
  requires: [INotebookTracker],
  activate: (app: JupyterFrontEnd, tracker: INotebookTracker) => {
    tracker.forEach(attach);
    tracker.widgetAdded.connect((_, panel) => attach(panel));
    (window as any).rlmJupyterCells = { log: LOG, target: COMM_TARGET };
    console.log(`rlm-jupyter-cells activated (comm target ${COMM_TARGET})`);
  }
};

export default plugin;
