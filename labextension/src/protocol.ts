/**
 * The comm protocol between the kernel (rlm_jupyter/jupyter/cells.py) and this extension,
 * and its application to a notebook, independent of JupyterLab (unit-tested with a fake
 * notebook in test/protocol.test.ts).
 *
 * Target name: `rlm_jupyter.cells`. The kernel opens one comm per `%%rlm` run; the open
 * message's data and every later comm message's data is one {@link Message}. Each message is
 * self-contained (it names the run and the `%%rlm` cell) and idempotent: cells are keyed by a
 * stable key (also used as the nbformat cell id), so a message applied twice changes nothing.
 *
 * Re-run policy: "replace". Cells inserted for a `%%rlm` cell carry its id in
 * `metadata.rlm.parent_cell_id`; when a new run of the same cell starts (its first message
 * names another run id), the previous run's cells are removed, edited or not.
 */

export const COMM_TARGET = 'rlm_jupyter.cells';
export const PROTOCOL_VERSION = 1;

/** nbformat output dict (kept loose: the kernel sends nbformat v4 JSON). */
export type Output = { output_type: string; [k: string]: unknown };

/** `metadata.rlm` of an inserted cell. Shared with rlm_jupyter/notebook_io.py's files. */
export interface RlmMeta {
  run_id: string;
  node_id: string;
  iteration: number;
  block?: number;
  kind?: string;
  status?: string;
  /** stable key of the cell (== its nbformat id when inserted by this extension) */
  key: string;
  /** position of the cell within its run (increasing) */
  order: number;
  /** id of the `%%rlm` cell whose run produced this cell */
  parent_cell_id: string;
}

export interface CellSpec {
  key: string;
  order: number;
  cell_type: 'code' | 'markdown';
  source: string;
  metadata: { rlm: RlmMeta; tags?: string[]; [k: string]: unknown };
  outputs?: Output[];
  execution_count?: number | null;
}

interface Base {
  v: number;
  run_id: string;
  parent_cell_id: string;
  /** wall-clock seconds (kernel) when the event behind this message happened */
  t_event?: number;
}

export interface StartMessage extends Base {
  type: 'start';
  policy?: 'replace';
}
export interface InsertMessage extends Base {
  type: 'insert';
  cell: CellSpec;
}
export interface OutputsMessage extends Base {
  type: 'outputs';
  key: string;
  outputs: Output[];
  execution_count: number | null;
  status?: string;
}
export interface FinishMessage extends Base {
  type: 'finish';
  status: string;
}
export type Message = StartMessage | InsertMessage | OutputsMessage | FinishMessage;

/** What the notebook looks like to the protocol: a list of cells with ids and metadata. */
export interface CellInfo {
  id: string;
  rlm?: Partial<RlmMeta>;
}

export interface CellPatch {
  source?: string;
  outputs?: Output[];
  execution_count?: number | null;
  metadata?: CellSpec['metadata'];
}

export interface NotebookAdapter {
  cells(): CellInfo[];
  insert(index: number, cell: CellSpec): void;
  remove(index: number): void;
  /** Current content of cell `index`, to compare with a patch (for idempotence). */
  read(index: number): CellPatch;
  update(index: number, patch: CellPatch): void;
}

export type Action = 'inserted' | 'updated' | 'removed' | 'noop' | 'ignored' | 'finished';

export interface Result {
  action: Action;
  /** index of the inserted/updated cell, or the number of removed cells */
  index?: number;
  removed?: number;
  reason?: string;
}

/**
 * MIME types that run code in the page when rendered (even a trusted notebook must never get
 * them from a model's run). The kernel side drops them already (rlm_jupyter/safe_html.py);
 * this is the frontend's own check.
 */
export const EXECUTABLE_MIME_TYPES = [
  'application/javascript',
  'application/x-javascript',
  'text/javascript',
  'application/ecmascript',
  'text/ecmascript',
  'application/vnd.jupyter.widget-view+json',
  'application/vnd.jupyter.widget-state+json'
];

/** Copies of `outputs` without executable MIME types and without output metadata other than
 * image sizes (no `isolated` iframes); a display left empty says what was removed. */
export function safeOutputs(outputs: Output[] | undefined): Output[] {
  const out: Output[] = [];
  for (const o of outputs ?? []) {
    if (!o || typeof o !== 'object') {
      continue;
    }
    const data = (o as { data?: unknown }).data;
    if (data === undefined || data === null || typeof data !== 'object') {
      out.push(o);
      continue;
    }
    const kept: Record<string, unknown> = {};
    const dropped: string[] = [];
    for (const [mime, value] of Object.entries(data as Record<string, unknown>)) {
      if (EXECUTABLE_MIME_TYPES.includes(mime.toLowerCase().trim())) {
        dropped.push(mime);
      } else {
        kept[mime] = value;
      }
    }
    if (Object.keys(kept).length === 0) {
      kept['text/plain'] = `[output of a MIME type not shown: ${dropped.join(', ')}]`;
    }
    const meta: Record<string, unknown> = {};
    const srcMeta = (o as { metadata?: unknown }).metadata;
    if (srcMeta && typeof srcMeta === 'object') {
      for (const [mime, v] of Object.entries(srcMeta as Record<string, unknown>)) {
        if (mime.startsWith('image/') && mime in kept && v && typeof v === 'object') {
          const size: Record<string, unknown> = {};
          for (const k of ['width', 'height']) {
            const n = (v as Record<string, unknown>)[k];
            if (typeof n === 'number') {
              size[k] = n;
            }
          }
          meta[mime] = size;
        }
      }
    }
    out.push({ ...o, data: kept, metadata: meta });
  }
  return out;
}

export function isMessage(data: unknown): data is Message {
  if (!data || typeof data !== 'object') {
    return false;
  }
  const m = data as Record<string, unknown>;
  return (
    typeof m.type === 'string' &&
    typeof m.run_id === 'string' &&
    typeof m.parent_cell_id === 'string' &&
    ['start', 'insert', 'outputs', 'finish'].includes(m.type as string)
  );
}

function same(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/** Index of the cell keyed `key` (its id, else its metadata key), or -1. */
export function findCell(cells: CellInfo[], key: string): number {
  const byId = cells.findIndex(c => c.id === key);
  return byId >= 0 ? byId : cells.findIndex(c => c.rlm?.key === key);
}

/** Remove cells of earlier runs of the same %%rlm cell (the "replace" re-run policy). */
function removeStale(nb: NotebookAdapter, parent: string, runId: string): number {
  let removed = 0;
  const cells = nb.cells();
  for (let i = cells.length - 1; i >= 0; i--) {
    const r = cells[i].rlm;
    if (r && r.parent_cell_id === parent && r.run_id !== runId) {
      nb.remove(i);
      removed++;
    }
  }
  return removed;
}

/** Where a new cell of run `runId` with position `order` goes: after the run's last cell
 * ordered before it, else right below the %%rlm cell. */
export function insertIndex(cells: CellInfo[], parentIndex: number, runId: string, order: number): number {
  let after = parentIndex;
  cells.forEach((c, i) => {
    const r = c.rlm;
    if (i > parentIndex && r && r.run_id === runId && typeof r.order === 'number' && r.order < order) {
      after = Math.max(after, i);
    }
  });
  return after + 1;
}

/** Apply one message to a notebook. Idempotent: applying it again returns 'noop'. */
export function applyMessage(nb: NotebookAdapter, msg: Message): Result {
  if (!isMessage(msg)) {
    return { action: 'ignored', reason: 'not a message' };
  }
  if (msg.v !== undefined && msg.v > PROTOCOL_VERSION) {
    return { action: 'ignored', reason: `protocol version ${msg.v}` };
  }
  let cells = nb.cells();
  const parentIndex = cells.findIndex(c => c.id === msg.parent_cell_id);
  if (parentIndex < 0) {
    return { action: 'ignored', reason: 'the %%rlm cell is not in this notebook' };
  }
  switch (msg.type) {
    case 'start': {
      const removed = removeStale(nb, msg.parent_cell_id, msg.run_id);
      return removed ? { action: 'removed', removed } : { action: 'noop' };
    }
    case 'insert': {
      const spec = msg.cell;
      const existing = findCell(cells, spec.key);
      if (existing >= 0) {
        // Seen before (or a replay): the cell may since have outputs or user edits; keep them.
        return { action: 'noop', index: existing };
      }
      // A start message may have been missed: replace earlier runs here too.
      const removed = removeStale(nb, msg.parent_cell_id, msg.run_id);
      if (removed) {
        cells = nb.cells();
      }
      const parent = cells.findIndex(c => c.id === msg.parent_cell_id);
      const index = insertIndex(cells, parent, msg.run_id, spec.order);
      nb.insert(index, spec.cell_type === 'code' ? { ...spec, outputs: safeOutputs(spec.outputs) } : spec);
      return { action: 'inserted', index, removed };
    }
    case 'outputs': {
      const index = findCell(cells, msg.key);
      if (index < 0) {
        return { action: 'ignored', reason: `no cell ${msg.key}` };
      }
      const current = nb.read(index);
      const patch: CellPatch = { outputs: safeOutputs(msg.outputs), execution_count: msg.execution_count };
      if (msg.status && current.metadata?.rlm && current.metadata.rlm.status !== msg.status) {
        patch.metadata = { ...current.metadata, rlm: { ...current.metadata.rlm, status: msg.status } };
      }
      return patchCell(nb, index, patch);
    }
    case 'finish':
      return { action: 'finished' };
  }
  return { action: 'ignored', reason: 'unknown type' };
}

function patchCell(nb: NotebookAdapter, index: number, patch: CellPatch): Result {
  const current = nb.read(index);
  const changed: CellPatch = {};
  (Object.keys(patch) as (keyof CellPatch)[]).forEach(k => {
    if (patch[k] !== undefined && !same(current[k], patch[k])) {
      (changed as Record<string, unknown>)[k] = patch[k];
    }
  });
  if (Object.keys(changed).length === 0) {
    return { action: 'noop', index };
  }
  nb.update(index, changed);
  return { action: 'updated', index };
}

/** Label of an inserted cell's visual marker, e.g. "RLM run 1a2b3c · iteration 2". */
export function markerLabel(rlm: Partial<RlmMeta> | undefined): string | null {
  if (!rlm || typeof rlm.run_id !== 'string' || rlm.iteration === undefined) {
    return null;
  }
  return `RLM run ${rlm.run_id.slice(0, 6)} · iteration ${rlm.iteration}`;
}
