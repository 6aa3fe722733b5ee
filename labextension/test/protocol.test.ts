import {
  applyMessage,
  CellInfo,
  CellPatch,
  CellSpec,
  COMM_TARGET,
  findCell,
  insertIndex,
  isMessage,
  markerLabel,
  Message,
  NotebookAdapter,
  safeOutputs
} from '../src/protocol';

/** An in-memory notebook implementing the adapter. */
class FakeNotebook implements NotebookAdapter {
  rows: (CellPatch & { id: string; cell_type: string })[] = [];
  ops: string[] = [];

  constructor(ids: string[]) {
    this.rows = ids.map(id => ({ id, cell_type: 'code', source: `# ${id}`, metadata: undefined as any }));
  }
  cells(): CellInfo[] {
    return this.rows.map(r => ({ id: r.id, rlm: (r.metadata as any)?.rlm }));
  }
  insert(index: number, cell: CellSpec): void {
    this.ops.push(`insert ${cell.key}@${index}`);
    this.rows.splice(index, 0, {
      id: cell.key,
      cell_type: cell.cell_type,
      source: cell.source,
      metadata: JSON.parse(JSON.stringify(cell.metadata)),
      ...(cell.cell_type === 'code' ? { outputs: cell.outputs ?? [], execution_count: cell.execution_count ?? null } : {})
    });
  }
  remove(index: number): void {
    this.ops.push(`remove ${this.rows[index].id}`);
    this.rows.splice(index, 1);
  }
  read(index: number): CellPatch {
    const { id, cell_type, ...rest } = this.rows[index];
    return JSON.parse(JSON.stringify(rest));
  }
  update(index: number, patch: CellPatch): void {
    this.ops.push(`update ${this.rows[index].id} ${Object.keys(patch).sort().join(',')}`);
    Object.assign(this.rows[index], JSON.parse(JSON.stringify(patch)));
  }
  ids(): string[] {
    return this.rows.map(r => r.id);
  }
}

const PARENT = 'rlm-cell-1';

function spec(run: string, iteration: number, order: number, kind: 'prose' | 'code'): CellSpec {
  const key = `rlm-${run}-${iteration}-${kind === 'prose' ? 'md' : 'c0'}`;
  return {
    key,
    order,
    cell_type: kind === 'prose' ? 'markdown' : 'code',
    source: kind === 'prose' ? `### Iteration ${iteration}` : `%%rlm_step ${run} ${iteration}\nprint(${iteration})`,
    metadata: {
      rlm: { run_id: run, node_id: '0', iteration, key, order, parent_cell_id: PARENT, ...(kind === 'prose' ? { kind } : { block: 0, status: 'running' }) },
      tags: [`rlm-run-${run}`, `rlm-iteration-${iteration}`]
    }
  };
}

const base = (run: string) => ({ v: 1, run_id: run, parent_cell_id: PARENT });
const start = (run: string): Message => ({ type: 'start', ...base(run) });
const insert = (run: string, it: number, order: number, kind: 'prose' | 'code'): Message => ({
  type: 'insert',
  ...base(run),
  cell: spec(run, it, order, kind)
});
const outputs = (run: string, it: number, text: string, n: number): Message => ({
  type: 'outputs',
  ...base(run),
  key: `rlm-${run}-${it}-c0`,
  outputs: [{ output_type: 'stream', name: 'stdout', text }],
  execution_count: n,
  status: 'ok'
});

function runOne(nb: FakeNotebook, run: string, iterations: number): Message[] {
  const msgs: Message[] = [start(run)];
  let order = 0;
  for (let it = 1; it <= iterations; it++) {
    msgs.push(insert(run, it, order++, 'prose'), insert(run, it, order++, 'code'), outputs(run, it, `${it}\n`, it));
  }
  msgs.push({ type: 'finish', ...base(run), status: 'done' });
  msgs.forEach(m => applyMessage(nb, m));
  return msgs;
}

describe('protocol', () => {
  test('target name', () => {
    expect(COMM_TARGET).toBe('rlm_jupyter.cells');
  });

  test('cells are inserted below the %%rlm cell, in order, with outputs', () => {
    const nb = new FakeNotebook(['a', PARENT, 'b']);
    runOne(nb, 'r1', 2);
    expect(nb.ids()).toEqual(['a', PARENT, 'rlm-r1-1-md', 'rlm-r1-1-c0', 'rlm-r1-2-md', 'rlm-r1-2-c0', 'b']);
    const code = nb.rows[3];
    expect(code.source).toBe('%%rlm_step r1 1\nprint(1)');
    expect(code.outputs).toEqual([{ output_type: 'stream', name: 'stdout', text: '1\n' }]);
    expect(code.execution_count).toBe(1);
    expect((code.metadata as any).rlm.status).toBe('ok');
    expect((code.metadata as any).tags).toEqual(['rlm-run-r1', 'rlm-iteration-1']);
  });

  test('every message applied twice changes nothing the second time', () => {
    const nb = new FakeNotebook([PARENT]);
    const msgs = runOne(nb, 'r1', 2);
    const before = JSON.stringify(nb.rows);
    const opsBefore = nb.ops.length;
    for (const m of msgs) {
      const r = applyMessage(nb, m);
      expect(['noop', 'finished']).toContain(r.action);
    }
    expect(JSON.stringify(nb.rows)).toBe(before);
    expect(nb.ops.length).toBe(opsBefore);
  });

  test('a message applied twice in a row is a noop (interleaved duplicates)', () => {
    const nb = new FakeNotebook([PARENT]);
    const m1 = insert('r1', 1, 0, 'prose');
    expect(applyMessage(nb, m1).action).toBe('inserted');
    expect(applyMessage(nb, m1).action).toBe('noop');
    const m2 = insert('r1', 1, 1, 'code');
    expect(applyMessage(nb, m2).action).toBe('inserted');
    const o = outputs('r1', 1, 'x', 3);
    expect(applyMessage(nb, o).action).toBe('updated');
    expect(applyMessage(nb, o).action).toBe('noop');
    // a replayed insert does not wipe the outputs
    expect(applyMessage(nb, m2).action).toBe('noop');
    expect(nb.rows[2].outputs).toHaveLength(1);
  });

  test('re-running the %%rlm cell replaces the previous run cells', () => {
    const nb = new FakeNotebook([PARENT, 'user']);
    runOne(nb, 'r1', 2);
    nb.rows[2].source = 'edited by the user';
    runOne(nb, 'r2', 1);
    expect(nb.ids()).toEqual([PARENT, 'rlm-r2-1-md', 'rlm-r2-1-c0', 'user']);
  });

  test('cells of another %%rlm cell are left alone', () => {
    const nb = new FakeNotebook([PARENT, 'other']);
    runOne(nb, 'r1', 1);
    const foreign = spec('r9', 1, 0, 'code');
    foreign.metadata.rlm.parent_cell_id = 'other';
    applyMessage(nb, { type: 'insert', v: 1, run_id: 'r9', parent_cell_id: 'other', cell: foreign });
    runOne(nb, 'r2', 1);
    expect(nb.ids()).toEqual([PARENT, 'rlm-r2-1-md', 'rlm-r2-1-c0', 'other', 'rlm-r9-1-c0']);
  });

  test('a missed start message: the insert still replaces the earlier run', () => {
    const nb = new FakeNotebook([PARENT]);
    runOne(nb, 'r1', 1);
    const r = applyMessage(nb, insert('r2', 1, 0, 'prose'));
    expect(r).toMatchObject({ action: 'inserted', removed: 2, index: 1 });
    expect(nb.ids()).toEqual([PARENT, 'rlm-r2-1-md']);
  });

  test('a user cell typed between the run cells does not break the order', () => {
    const nb = new FakeNotebook([PARENT]);
    applyMessage(nb, insert('r1', 1, 0, 'prose'));
    applyMessage(nb, insert('r1', 1, 1, 'code'));
    nb.rows.splice(3, 0, { id: 'mine', cell_type: 'code', source: '', metadata: undefined as any });
    applyMessage(nb, insert('r1', 2, 2, 'prose'));
    expect(nb.ids()).toEqual([PARENT, 'rlm-r1-1-md', 'rlm-r1-1-c0', 'rlm-r1-2-md', 'mine']);
  });

  test('out-of-order inserts land at their order position', () => {
    const nb = new FakeNotebook([PARENT]);
    applyMessage(nb, insert('r1', 2, 2, 'prose'));
    applyMessage(nb, insert('r1', 1, 0, 'prose'));
    applyMessage(nb, insert('r1', 1, 1, 'code'));
    expect(nb.ids()).toEqual([PARENT, 'rlm-r1-1-md', 'rlm-r1-1-c0', 'rlm-r1-2-md']);
  });

  test('messages for a %%rlm cell not in the notebook, or malformed, are ignored', () => {
    const nb = new FakeNotebook(['x']);
    expect(applyMessage(nb, insert('r1', 1, 0, 'prose')).action).toBe('ignored');
    expect(applyMessage(nb, { hello: 1 } as any).action).toBe('ignored');
    expect(applyMessage(nb, { ...start('r1'), v: 99 } as any).action).toBe('ignored');
    expect(applyMessage(new FakeNotebook([PARENT]), outputs('r1', 1, 'x', 1)).action).toBe('ignored');
    expect(nb.ids()).toEqual(['x']);
  });

  test('executable MIME types never reach a cell (insert and outputs messages)', () => {
    const hostile = [
      { output_type: 'display_data', data: { 'application/javascript': 'window.__pwned=1', 'text/plain': 'js' }, metadata: { isolated: true } },
      { output_type: 'display_data', data: { 'application/vnd.jupyter.widget-view+json': { model_id: 'm' } }, metadata: {} },
      { output_type: 'display_data', data: { 'image/png': 'AAAA' }, metadata: { 'image/png': { width: 3, onload: 'x' } } },
      { output_type: 'stream', name: 'stdout', text: 'hi' }
    ];
    const nb = new FakeNotebook([PARENT]);
    const ins = insert('r1', 1, 0, 'code');
    (ins as any).cell.outputs = hostile;
    applyMessage(nb, ins);
    applyMessage(nb, { ...outputs('r1', 1, 'c0', 1), outputs: hostile } as any);
    const stored = (nb.rows[1].outputs ?? []) as any[];
    const mimes = stored.flatMap(o => Object.keys(o.data ?? {}));
    expect(mimes.sort()).toEqual(['image/png', 'text/plain', 'text/plain']);
    expect(JSON.stringify(stored)).not.toContain('isolated');
    const safe = safeOutputs(hostile as any);
    expect(safe.map(o => Object.keys((o as any).data ?? {}))).toEqual([['text/plain'], ['text/plain'], ['image/png'], []]);
    expect((safe[1] as any).data['text/plain']).toContain('application/vnd.jupyter.widget-view+json');
    expect((safe[2] as any).metadata).toEqual({ 'image/png': { width: 3 } });
    expect(safe[3]).toEqual(hostile[3]);
  });

  test('helpers', () => {
    expect(isMessage(start('r'))).toBe(true);
    expect(isMessage({ type: 'start' })).toBe(false);
    expect(findCell([{ id: 'u', rlm: { key: 'k' } }], 'k')).toBe(0);
    expect(insertIndex([{ id: PARENT }], 0, 'r', 5)).toBe(1);
    expect(markerLabel({ run_id: 'abcdef123456', iteration: 3 })).toBe('RLM run abcdef · iteration 3');
    expect(markerLabel(undefined)).toBeNull();
  });
});
