/**
 * The dashboard's view of load, from GET /v1/cluster/stats (gathered by the serving node from every
 * node): a chart per node of client requests per second and p99 latency over the last minutes, disk,
 * and the hot shards ranked by request rate against the split-by-load threshold.
 */
import { h } from "preact";
import htm from "htm";

const html = htm.bind(h);

export interface RequestWindow { atMs: number; requests: number; failed: number; latencyMsP50: number; latencyMsP99: number; latencyMsMax: number }
export interface NodeStats {
  node: number; ok: true; windowMs: number; requests: RequestWindow[]; disk: { sizeBytes: number; freeBytes: number } | null;
  leads: { shard: number; collection: string; term: number; requestRate: number; records?: number; sizeBytes?: number }[];
  indexes: { shard: number; collection: string; records: number; lagEntries: number }[];
}
export interface ClusterStats {
  /** The serving node's clock when it gathered these (operators' times are the cluster's clocks, not the browser's). */
  atMs: number;
  nodes: (NodeStats | { node: number; ok: false; error: string })[];
  hotShards: { shard: number; collection: string; leader: number; requestRate: number; overSplitThreshold: boolean }[];
  indexLag: { collection: string; lagEntriesMax: number; replicas: number }[];
}

const CHART_W = 240;
const CHART_H = 40;

/** A line over the values, scaled to the chart's height (its maximum is printed beside it). */
function Sparkline({ values, label, kind }: { values: number[]; label: string; kind: string }) {
  const max = Math.max(...values, 0);
  const step = CHART_W / Math.max(1, values.length - 1);
  const points = values.map((v, i) => `${(i * step).toFixed(1)},${(CHART_H - (max === 0 ? 0 : (v / max) * (CHART_H - 2)) - 1).toFixed(1)}`).join(" ");
  return html`<figure class="spark" data-chart=${kind}>
    <svg width=${CHART_W} height=${CHART_H} viewBox=${`0 0 ${CHART_W} ${CHART_H}`} role="img" aria-label=${label}><polyline points=${points} /></svg>
    <figcaption>${label}</figcaption></figure>`;
}

export function formatBytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${n.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}

/** The last full window (the one open now is partial), or an empty one. */
function lastFull(s: NodeStats): RequestWindow | undefined {
  return s.requests[s.requests.length - 2];
}

export function RequestCharts({ stats }: { stats: ClusterStats | null }) {
  if (stats === null) return html`<section id="requests"><h2>Requests per node</h2><p>reading…</p></section>`;
  return html`<section id="requests"><h2>Requests per node <small>client reads and writes, last ${windowMinutes(stats)} min</small></h2>
    <table><thead><tr><th>node</th><th>requests/s</th><th>p50 ms</th><th>p99 ms</th><th>5xx/s</th><th>disk free</th><th>rate</th><th>p99 latency</th></tr></thead>
    <tbody>${stats.nodes.map((n) => {
      if (!n.ok) return html`<tr data-stats-node=${n.node} class="bad"><td>${n.node}</td><td colspan="7">${n.error}</td></tr>`;
      const perS = 1000 / n.windowMs;
      const w = lastFull(n);
      const full = n.requests.slice(0, -1);
      return html`<tr data-stats-node=${n.node}>
        <td>${n.node}</td><td data-field="rate">${w === undefined ? "—" : (w.requests * perS).toFixed(1)}</td>
        <td>${w === undefined || w.requests === 0 ? "—" : w.latencyMsP50.toFixed(2)}</td><td>${w === undefined || w.requests === 0 ? "—" : w.latencyMsP99.toFixed(2)}</td>
        <td>${w === undefined ? "—" : (w.failed * perS).toFixed(1)}</td>
        <td>${n.disk === null ? "—" : `${formatBytes(n.disk.freeBytes)} of ${formatBytes(n.disk.sizeBytes)}`}</td>
        <td><${Sparkline} kind="rate" values=${full.map((x) => x.requests * perS)} label=${`max ${Math.max(0, ...full.map((x) => x.requests * perS)).toFixed(1)}/s`} /></td>
        <td><${Sparkline} kind="p99" values=${full.map((x) => x.latencyMsP99)} label=${`max ${Math.max(0, ...full.map((x) => x.latencyMsP99)).toFixed(1)} ms`} /></td>
      </tr>`;
    })}</tbody></table></section>`;
}

function windowMinutes(stats: ClusterStats): string {
  const n = stats.nodes.find((x): x is NodeStats => x.ok);
  return n === undefined ? "?" : ((n.requests.length - 1) * n.windowMs / 60_000).toFixed(0);
}

export function HotShards({ stats, live }: { stats: ClusterStats | null; live: Set<number> }) {
  // Reports trail the map by a report interval: a shard merged away since is not shown.
  const hot = (stats?.hotShards ?? []).filter((s) => live.has(s.shard));
  return html`<section id="hot-shards"><h2>Hot shards <small>request rate at the leader, as last reported</small></h2>
    ${hot.length === 0 ? html`<p>no requests reported</p>` : html`<table><thead><tr><th>shard</th><th>collection</th><th>leader</th><th>requests/s</th><th></th></tr></thead>
    <tbody>${hot.map((s) => html`<tr data-hot-shard=${s.shard} class=${s.overSplitThreshold ? "warn" : ""}><td>${s.shard}</td><td>${s.collection}</td><td>${s.leader}</td><td>${s.requestRate.toFixed(1)}</td>
      <td>${s.overSplitThreshold ? html`<span class="badge draining">over the split threshold</span>` : null}</td></tr>`)}</tbody></table>`}</section>`;
}

/** Each shard's load as its current leader last reported it (of two reports, an old leader's and the new one's, the higher term's). */
function currentLeads(stats: ClusterStats | null): Map<number, NodeStats["leads"][number]> {
  const out = new Map<number, NodeStats["leads"][number]>();
  for (const n of stats?.nodes ?? []) {
    if (!n.ok) continue;
    for (const l of n.leads) if ((out.get(l.shard)?.term ?? -1) < l.term) out.set(l.shard, l);
  }
  return out;
}

/** A shard's records and size as its leader last measured them (from the stats), if known. */
export function shardSize(stats: ClusterStats | null, shard: number): string {
  const l = currentLeads(stats).get(shard);
  return l === undefined || l.records === undefined ? "—" : `${l.records} rec${l.sizeBytes !== undefined ? `, ${formatBytes(l.sizeBytes)}` : ""}`;
}

/** A collection's records (summed over its shards' leaders' last measures) and index lag. */
export function collectionLoad(stats: ClusterStats | null, collection: string): { records: string; indexLag: string } {
  let records = 0;
  let measured = false;
  for (const l of currentLeads(stats).values()) {
    if (l.collection === collection && l.records !== undefined) {
      records += l.records;
      measured = true;
    }
  }
  const lag = stats?.indexLag.find((l) => l.collection === collection);
  return { records: measured ? String(records) : "—", indexLag: lag === undefined ? "—" : `${lag.lagEntriesMax} entries (${lag.replicas} replicas)` };
}
