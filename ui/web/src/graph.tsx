// The graph page: claims → contracts → service instances (their components listed inside), the
// service instances grouped by cluster and namespace, laid out by dagre in the browser. Every
// string is drawn as text (Preact sets text nodes), never as markup.
import dagre from '@dagrejs/dagre';
import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import type { Graph, GraphClaim, GraphInstance } from './api';
import { VirtualList } from './virtual';

interface Box { id: string; x: number; y: number; width: number; height: number }
interface DrawnNode extends Box {
  kind: 'claim' | 'contract' | 'service';
  title: string; lines: string[]; href: string; state?: string; reason?: string | null;
  teams?: string[]; cluster?: string; contract?: string;
}
interface Layout { nodes: DrawnNode[]; groups: (Box & { label: string })[]; edges: { points: { x: number; y: number }[] }[]; width: number; height: number }

const SHOWN_COMPONENTS = 4;
const CHAR = 7;

const clusterName = (c: string) => c.replace(/^system\./, '');

/** The layout of the graph: the pure part, run once per graph. */
export function layOut(graph: Graph): Layout {
  const g = new dagre.graphlib.Graph({ compound: true, multigraph: false });
  g.setGraph({ rankdir: 'LR', nodesep: 12, ranksep: 60, marginx: 20, marginy: 20, ranker: 'longest-path' });
  g.setDefaultEdgeLabel(() => ({}));
  const nodes = new Map<string, DrawnNode>();
  const add = (node: Omit<DrawnNode, 'x' | 'y' | 'width' | 'height'>) => {
    const widest = Math.max(node.title.length, ...node.lines.map((l) => l.length));
    const width = Math.min(320, 16 + widest * CHAR);
    const height = 24 + node.lines.length * 16;
    const full = { ...node, x: 0, y: 0, width, height };
    nodes.set(node.id, full);
    g.setNode(node.id, { width, height });
  };
  const byKey = new Map(graph.instances.map((i) => [i.key, i]));
  const teamOf = new Map<string, string>();
  for (const c of graph.claims) {
    const team = c.team ?? '';
    teamOf.set(c.claim, team);
    const lines = c.status === 'resolved' ? [] : [`${c.status.toUpperCase()}: ${c.reason ?? ''}`.slice(0, 60)];
    add({ id: `c:${c.claim}`, kind: 'claim', title: c.claim, lines, href: `#/claim/${encodeURIComponent(c.claim)}`,
      state: c.status, reason: c.reason, teams: team ? [team] : [], contract: c.contract });
  }
  const contracts = new Set(graph.claims.map((c) => c.contract).filter(Boolean));
  for (const i of graph.instances) if (i.kind === 'service') contracts.add(i.contract);
  for (const contract of contracts) {
    add({ id: `k:${contract}`, kind: 'contract', title: `contract ${contract}`, lines: [], href: '', contract });
  }
  const groups = new Set<string>();
  for (const i of graph.instances) {
    if (i.kind !== 'service') continue;
    const components = i.edges.map((k) => byKey.get(k)).filter((c): c is GraphInstance => !!c);
    const lines = components.slice(0, SHOWN_COMPONENTS).map((c) => `${c.component}: ${c.kind}`);
    if (components.length > SHOWN_COMPONENTS) lines.push(`+${components.length - SHOWN_COMPONENTS} more`);
    const group = `g:${clusterName(i.cluster)}/${i.k8s_namespace}`;
    if (!groups.has(group)) { groups.add(group); g.setNode(group, {}); }
    add({ id: `s:${i.key}`, kind: 'service', title: `${i.service} / ${i.context}`, lines,
      href: `#/instance/${encodeURIComponent(i.name)}`, cluster: clusterName(i.cluster), contract: i.contract,
      teams: [...new Set(i.claims.map((c) => teamOf.get(c)).filter((t): t is string => !!t))] });
    g.setParent(`s:${i.key}`, group);
    g.setEdge(`k:${i.contract}`, `s:${i.key}`);
    for (const c of components) {
      if (c.kind !== 'uses') continue;
      for (const target of c.edges) if (byKey.get(target)?.kind === 'service') g.setEdge(`s:${i.key}`, `s:${target}`);
    }
  }
  for (const c of graph.claims) if (c.contract) g.setEdge(`c:${c.claim}`, `k:${c.contract}`);
  dagre.layout(g);
  performance.mark('graph-laid-out');
  for (const node of nodes.values()) {
    const laid = g.node(node.id);
    node.x = laid.x - node.width / 2; node.y = laid.y - node.height / 2;
  }
  const boxes = [...groups].map((id) => {
    const laid = g.node(id);
    return { id, label: id.slice(2), x: laid.x - laid.width / 2, y: laid.y - laid.height / 2 - 14, width: laid.width, height: laid.height + 14 };
  });
  const edges = g.edges().map((e) => ({ points: g.edge(e).points }));
  const size = g.graph();
  return { nodes: [...nodes.values()], groups: boxes, edges, width: size.width ?? 0, height: size.height ?? 0 };
}

interface Filters { search: string; team: string; cluster: string; contract: string; state: string }

function matches(node: DrawnNode, f: Filters): boolean {
  if (f.search && !`${node.title} ${node.lines.join(' ')}`.toLowerCase().includes(f.search.toLowerCase())) return false;
  if (f.team && !node.teams?.includes(f.team)) return false;
  if (f.cluster && node.kind !== 'claim' && node.kind !== 'contract' && node.cluster !== f.cluster) return false;
  if (f.contract && node.contract !== f.contract) return false;
  if (f.state && (node.kind !== 'claim' || node.state !== f.state)) return false;
  return true;
}

function Select({ label, value, options, onChange }: { label: string; value: string; options: string[]; onChange: (v: string) => void }) {
  return (
    <label>
      {label}{' '}
      <select value={value} onChange={(e) => onChange((e.target as HTMLSelectElement).value)}>
        <option value="">all</option>
        {options.map((o) => <option value={o}>{o}</option>)}
      </select>
    </label>
  );
}

export function GraphPage({ graph }: { graph: Graph }) {
  const layout = useMemo(() => layOut(graph), [graph]);
  const [filters, setFilters] = useState<Filters>({ search: '', team: '', cluster: '', contract: '', state: '' });
  const [view, setView] = useState({ x: 0, y: 0, scale: 1 });
  const drag = useRef<{ x: number; y: number } | null>(null);
  const svg = useRef<SVGSVGElement>(null);
  useEffect(() => {
    // Drawn once the browser has painted the laid-out graph.
    requestAnimationFrame(() => { performance.mark('graph-drawn'); document.body.dataset.graphDrawn = 'yes'; });
  }, [layout]);
  const set = (key: keyof Filters) => (value: string) => setFilters({ ...filters, [key]: value });
  const teams = [...new Set(layout.nodes.flatMap((n) => n.teams ?? []))].sort();
  const clusters = [...new Set(graph.instances.map((i) => clusterName(i.cluster)))].sort();
  const contracts = [...new Set(graph.instances.map((i) => i.contract))].sort();
  const zoom = (factor: number) => setView((v) => ({ ...v, scale: Math.min(4, Math.max(0.05, v.scale * factor)) }));
  const pan = (dx: number, dy: number) => setView((v) => ({ ...v, x: v.x + dx, y: v.y + dy }));
  const onKey = (e: KeyboardEvent) => {
    const moves: Record<string, () => void> = {
      '+': () => zoom(1.2), '=': () => zoom(1.2), '-': () => zoom(1 / 1.2),
      ArrowLeft: () => pan(40, 0), ArrowRight: () => pan(-40, 0), ArrowUp: () => pan(0, 40), ArrowDown: () => pan(0, -40),
      '0': () => setView({ x: 0, y: 0, scale: 1 }),
    };
    if (e.target === svg.current && moves[e.key]) { moves[e.key](); e.preventDefault(); }
  };
  const rejected = graph.claims.filter((c) => c.status !== 'resolved');
  const instances = useMemo(() => {
    const q = filters.search.toLowerCase();
    return graph.instances.filter((i) => !q || i.name.toLowerCase().includes(q) || i.key.toLowerCase().includes(q));
  }, [graph, filters.search]);
  return (
    <div class="graph-page">
      <div class="toolbar" role="search">
        <label>search <input type="search" value={filters.search} onInput={(e) => set('search')((e.target as HTMLInputElement).value)} /></label>
        <Select label="team" value={filters.team} options={teams} onChange={set('team')} />
        <Select label="cluster" value={filters.cluster} options={clusters} onChange={set('cluster')} />
        <Select label="contract" value={filters.contract} options={contracts} onChange={set('contract')} />
        <Select label="claim state" value={filters.state} options={['resolved', 'rejected', 'failed']} onChange={set('state')} />
        <button onClick={() => zoom(1.2)} aria-label="zoom in">+</button>
        <button onClick={() => zoom(1 / 1.2)} aria-label="zoom out">−</button>
        <button onClick={() => setView({ x: 0, y: 0, scale: 1 })}>reset view</button>
        <span class="counts" data-testid="counts">{graph.claims.length} claims · {graph.instances.length} instances</span>
      </div>
      {rejected.length > 0 && (
        <ul class="rejected" aria-label="claims not resolved">
          {rejected.map((c) => (
            <li class={c.status}><a href={`#/claim/${encodeURIComponent(c.claim)}`}>{c.claim}</a> {c.status}: {c.reason}</li>
          ))}
        </ul>
      )}
      <div class="graph-body">
        <svg ref={svg} class="graph" tabIndex={0} role="group" aria-label="service graph: arrow keys pan, + and − zoom, 0 resets; each claim and service instance is a link"
          viewBox={`0 0 ${Math.max(layout.width, 400)} ${Math.max(layout.height, 300)}`}
          onKeyDown={onKey}
          onWheel={(e) => { e.preventDefault(); zoom(e.deltaY < 0 ? 1.1 : 1 / 1.1); }}
          onPointerDown={(e) => { drag.current = { x: e.clientX, y: e.clientY }; }}
          onPointerMove={(e) => {
            if (!drag.current) return;
            pan(e.clientX - drag.current.x, e.clientY - drag.current.y);
            drag.current = { x: e.clientX, y: e.clientY };
          }}
          onPointerUp={() => { drag.current = null; }} onPointerLeave={() => { drag.current = null; }}>
          <defs>
            <marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="6" markerHeight="6" orient="auto">
              <path d="M0,0 L10,5 L0,10 z" class="arrowhead" />
            </marker>
          </defs>
          <g transform={`translate(${view.x} ${view.y}) scale(${view.scale})`}>
            {layout.groups.map((b) => (
              <g class="group">
                <rect x={b.x} y={b.y} width={b.width} height={b.height} rx={6} />
                <text x={b.x + 6} y={b.y + 12}>{b.label}</text>
              </g>
            ))}
            {layout.edges.map((e) => (
              <polyline class="edge" points={e.points.map((p) => `${p.x},${p.y}`).join(' ')} marker-end="url(#arrow)" />
            ))}
            {layout.nodes.map((n) => {
              const dim = !matches(n, filters);
              const body = (
                <g class={`node ${n.kind} ${n.state ?? ''} ${dim ? 'dim' : ''}`} data-node={n.id}>
                  <title>{n.reason ? `${n.title}: ${n.state}: ${n.reason}` : n.title}</title>
                  <rect x={n.x} y={n.y} width={n.width} height={n.height} rx={4} />
                  <text x={n.x + 8} y={n.y + 16} class="title">{n.title}</text>
                  {n.lines.map((line, k) => <text x={n.x + 8} y={n.y + 32 + k * 16}>{line}</text>)}
                </g>
              );
              return n.href ? <a href={n.href} aria-label={n.title}>{body}</a> : body;
            })}
          </g>
        </svg>
        <aside class="instances" aria-label="instances">
          <h2>{instances.length} instances</h2>
          <VirtualList items={instances} rowHeight={22} height={480} render={(i) => (
            <a href={`#/instance/${encodeURIComponent(i.name)}`} data-instance={i.name}>{i.name} <span class="muted">{clusterName(i.cluster)}/{i.k8s_namespace}</span></a>
          )} />
        </aside>
      </div>
    </div>
  );
}
