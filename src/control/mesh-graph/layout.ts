/**
 * A deterministic layered layout for the mesh graph: callers on the left, the services they call to
 * the right, as Kiali's default (dagre, left to right) draws it.
 *
 * - Layer of a node: its longest path from a root, where roots are the nodes nobody calls
 *   (`unknown` and traffic generators); cycles are broken at the back edges of a depth-first
 *   search from the roots (then from the smallest unvisited id). Self-loops are ignored.
 * - Order inside a layer: by the mean position of the node's callers in the layer before
 *   (barycentre, which keeps edges short and uncrossed in simple meshes), ties by id.
 * Same nodes and edges in any order give the same positions.
 */

export const LAYER_GAP = 300;
export const ROW_GAP = 120;
export const MARGIN_X = 110;
export const MARGIN_Y = 100;

export interface Layout {
  positions: Map<string, { x: number; y: number }>;
  width: number;
  height: number;
}

export function layoutGraph(nodeIds: readonly string[], edges: readonly (readonly [string, string])[]): Layout {
  const ids = [...new Set(nodeIds)].sort();
  const out = new Map<string, string[]>();
  const inc = new Map<string, string[]>();
  for (const id of ids) {
    out.set(id, []);
    inc.set(id, []);
  }
  for (const [s, t] of edges) {
    if (s === t || !out.has(s) || !out.has(t)) continue;
    out.get(s)!.push(t);
    inc.get(t)!.push(s);
  }
  for (const l of out.values()) l.sort();
  // Back edges of a depth-first search (roots first, then the smallest unvisited id) close the
  // cycles; without them the graph is acyclic and each node's layer is its longest path from a root.
  const back = new Set<string>();
  const state = new Map<string, 'open' | 'done'>();
  const visit = (root: string) => {
    const stack: { id: string; next: number }[] = [{ id: root, next: 0 }];
    state.set(root, 'open');
    while (stack.length > 0) {
      const top = stack[stack.length - 1];
      const succ = out.get(top.id)!;
      if (top.next >= succ.length) {
        state.set(top.id, 'done');
        stack.pop();
        continue;
      }
      const m = succ[top.next++];
      const st = state.get(m);
      if (st === 'open') back.add(`${top.id}\0${m}`);
      else if (st === undefined) {
        state.set(m, 'open');
        stack.push({ id: m, next: 0 });
      }
    }
  };
  const roots = ids.filter((id) => inc.get(id)!.every((s) => s === id));
  for (const r of roots) if (!state.has(r)) visit(r);
  for (const id of ids) if (!state.has(id)) visit(id);
  const layer = new Map<string, number>(ids.map((id) => [id, 0]));
  const indegree = new Map<string, number>(ids.map((id) => [id, 0]));
  for (const [s, succ] of out) for (const t of succ) if (!back.has(`${s}\0${t}`)) indegree.set(t, indegree.get(t)! + 1);
  const ready = ids.filter((id) => indegree.get(id) === 0);
  for (let i = 0; i < ready.length; i++) {
    const n = ready[i];
    for (const t of out.get(n)!) {
      if (back.has(`${n}\0${t}`)) continue;
      layer.set(t, Math.max(layer.get(t)!, layer.get(n)! + 1));
      indegree.set(t, indegree.get(t)! - 1);
      if (indegree.get(t) === 0) ready.push(t);
    }
  }
  const layers: string[][] = [];
  for (const id of ids) (layers[layer.get(id)!] ??= []).push(id);
  const row = new Map<string, number>();
  for (let li = 0; li < layers.length; li++) {
    const nodes = layers[li] ?? [];
    const centre = (id: string): number => {
      const rows = inc.get(id)!.filter((s) => layer.get(s) === li - 1).map((s) => row.get(s)!);
      return rows.length === 0 ? Number.POSITIVE_INFINITY : rows.reduce((a, b) => a + b, 0) / rows.length;
    };
    const keyed = nodes.map((id) => ({ id, c: centre(id) }));
    keyed.sort((a, b) => (a.c !== b.c ? (a.c < b.c ? -1 : 1) : a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    keyed.forEach((k, i) => row.set(k.id, i));
    layers[li] = keyed.map((k) => k.id);
  }
  const tallest = Math.max(1, ...layers.map((l) => (l ?? []).length));
  const positions = new Map<string, { x: number; y: number }>();
  for (let li = 0; li < layers.length; li++) {
    const nodes = layers[li] ?? [];
    // Shorter layers are centred against the tallest.
    const offset = ((tallest - nodes.length) * ROW_GAP) / 2;
    nodes.forEach((id, i) => positions.set(id, { x: MARGIN_X + li * LAYER_GAP, y: MARGIN_Y + offset + i * ROW_GAP }));
  }
  return { positions, width: MARGIN_X * 2 + Math.max(0, layers.length - 1) * LAYER_GAP, height: MARGIN_Y * 2 + (tallest - 1) * ROW_GAP };
}
