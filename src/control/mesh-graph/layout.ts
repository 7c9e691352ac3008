/**
 * A deterministic layered layout for the mesh graph: callers on the left, the services they call to
 * the right, as Kiali's default (dagre, left to right) draws it.
 *
 * - Layer of a node: its distance from a root by breadth-first search, where roots are the nodes
 *   nobody calls (`unknown` and traffic generators); nodes only reachable through a cycle start
 *   from the smallest remaining id. Self-loops are ignored.
 * - Order inside a layer: by the mean position of the node's callers in the layer before
 *   (barycentre, which keeps edges short and uncrossed in simple meshes), ties by id.
 * Same nodes and edges in any order give the same positions.
 */

export const LAYER_GAP = 300;
export const ROW_GAP = 120;
export const MARGIN_X = 110;
export const MARGIN_Y = 70;

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
  const layer = new Map<string, number>();
  const bfs = (roots: string[]) => {
    const queue = [...roots];
    for (const r of roots) layer.set(r, 0);
    for (let i = 0; i < queue.length; i++) {
      const n = queue[i];
      for (const m of out.get(n)!) {
        if (layer.has(m)) continue;
        layer.set(m, layer.get(n)! + 1);
        queue.push(m);
      }
    }
  };
  bfs(ids.filter((id) => inc.get(id)!.every((s) => s === id)));
  for (const id of ids) if (!layer.has(id)) bfs([id]);
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
