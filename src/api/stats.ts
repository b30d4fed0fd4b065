/**
 * What the dashboard charts and ranks (issue 16), where a browser cannot gather it itself: the page is
 * served by one node, the other nodes are other origins.
 *
 * - `GET /v1/node/stats`: this node's request rate and latency over the last minutes (request-windows.ts),
 *   its disk, the shards it leads with their request rate and size as its shard agent last reported
 *   them, and its index replicas' lag.
 * - `GET /v1/cluster/stats`: every node's, gathered by the node asked (each other node over HTTP, at
 *   most STATS_WAIT_MS; one that does not answer is named with why), plus the hot shards (by request
 *   rate, against the split-by-load threshold) and each collection's largest index lag.
 */
import type { FastifyInstance } from "fastify";
import type { MultiRaftNode } from "../node/multi-raft.js";
import type { ShardAgent } from "../node/shard-agent.js";
import type { IndexService } from "../data/index-service.js";
import { currentSettings } from "../meta/state.js";
import { openObject, responses } from "./openapi.js";
import type { RequestWindow, RequestWindows } from "./request-windows.js";
import { statfsOf } from "./metrics.js";

/** How long the node gathering the cluster's stats waits for each other node. */
const STATS_WAIT_MS = 2000;
/** Hot shards listed, hottest first. */
const HOT_SHARDS_MAX = 10;
/** A gathering answers every request for the cluster's stats this long: a page per tab, refreshed every few seconds, costs one gathering. */
const GATHERED_FRESH_MS = 1000;

export interface NodeStats {
  node: number;
  atMs: number;
  windowMs: number;
  requests: RequestWindow[];
  disk: { sizeBytes: number; freeBytes: number } | null;
  /** Shards led here, as last reported to the placement driver. */
  /** `term`: of two nodes listing a shard (a report from before a leader change), the higher term's is current. */
  leads: { shard: number; collection: string; term: number; requestRate: number; records?: number; sizeBytes?: number }[];
  /** Index replicas held here. */
  indexes: { shard: number; collection: string; records: number; lagEntries: number }[];
}

export type GatheredStats = ({ node: number; ok: true } & NodeStats) | { node: number; ok: false; error: string };

export interface StatsSources {
  node: MultiRaftNode;
  windows: RequestWindows;
  shardAgent?: ShardAgent;
  indexes?: IndexService;
  dataDir?: string;
}

export function nodeStats(src: StatsSources, nowMs: number): NodeStats {
  const shards = src.node.metaState().shards;
  const collectionOf = (shard: number) => shards.get(shard)?.collection ?? "";
  const disk = src.dataDir === undefined ? null : statfsOf(src.dataDir);
  return {
    node: src.node.id, atMs: nowMs, windowMs: src.windows.windowMs, requests: src.windows.windows(nowMs),
    disk: disk === null ? null : { sizeBytes: disk.size, freeBytes: disk.free },
    leads: (src.shardAgent?.reports() ?? []).map((r) => ({
      shard: r.shard, collection: collectionOf(r.shard), term: r.term, requestRate: Math.round(r.requestRate * 10) / 10,
      ...(r.records !== undefined ? { records: r.records } : {}), ...(r.sizeBytes !== undefined ? { sizeBytes: r.sizeBytes } : {}),
    })),
    indexes: (src.indexes?.replicaStats() ?? []).map((s) => ({ ...s, collection: collectionOf(s.shard) })),
  };
}

/** The hot shards and each collection's index lag, from every node's stats. Pure. */
export function clusterSummary(gathered: readonly GatheredStats[], splitRequestRate: number): {
  hotShards: { shard: number; collection: string; leader: number; requestRate: number; overSplitThreshold: boolean }[];
  indexLag: { collection: string; lagEntriesMax: number; replicas: number }[];
} {
  const hot: { shard: number; collection: string; leader: number; requestRate: number; overSplitThreshold: boolean }[] = [];
  const lag = new Map<string, { lagEntriesMax: number; replicas: number }>();
  // A shard listed by two nodes (the old leader's last report, the new one's): the higher term's counts.
  const current = new Map<number, number>();
  for (const g of gathered) if (g.ok) for (const l of g.leads) current.set(l.shard, Math.max(current.get(l.shard) ?? 0, l.term));
  for (const g of gathered) {
    if (!g.ok) continue;
    for (const l of g.leads) {
      if (l.term !== current.get(l.shard)) continue;
      if (l.requestRate > 0) hot.push({ shard: l.shard, collection: l.collection, leader: g.node, requestRate: l.requestRate, overSplitThreshold: splitRequestRate > 0 && l.requestRate > splitRequestRate });
    }
    for (const i of g.indexes) {
      const c = lag.get(i.collection) ?? { lagEntriesMax: 0, replicas: 0 };
      lag.set(i.collection, { lagEntriesMax: Math.max(c.lagEntriesMax, i.lagEntries), replicas: c.replicas + 1 });
    }
  }
  hot.sort((a, b) => b.requestRate - a.requestRate || a.shard - b.shard);
  return {
    hotShards: hot.slice(0, HOT_SHARDS_MAX),
    indexLag: [...lag].map(([collection, v]) => ({ collection, ...v })).sort((a, b) => a.collection.localeCompare(b.collection)),
  };
}

export function registerStatsRoutes(app: FastifyInstance, src: StatsSources): void {
  let gathering: { startedMs: number; answer: Promise<unknown> } | null = null;
  app.get("/v1/node/stats", {
    config: { op: "stats" },
    schema: { operationId: "nodeStats", summary: "This node's recent request rate and latency, disk, the shards it leads with their load, its indexes' lag", response: responses({ ...openObject, description: "the node's stats" }) },
  }, async () => nodeStats(src, Date.now()));

  app.get("/v1/cluster/stats", {
    config: { op: "stats" },
    schema: { operationId: "clusterStats", summary: "Every node's stats (a node that does not answer is named), the hot shards and each collection's index lag", response: responses({ ...openObject, description: "the cluster's stats" }) },
  }, () => {
    // One gathering at a time, answering every request that comes while it runs or shortly after.
    if (gathering === null || Date.now() - gathering.startedMs > GATHERED_FRESH_MS) {
      const g = { startedMs: Date.now(), answer: gather(src) };
      gathering = g;
      g.answer.catch(() => {
        if (gathering === g) gathering = null;
      });
    }
    return gathering.answer;
  });
}

async function gather(src: StatsSources): Promise<unknown> {
  const meta = src.node.metaState();
  const members = [...meta.nodes.values()].filter((n) => n.worker !== "removed").sort((a, b) => a.id - b.id);
  const gathered = await Promise.all(members.map(async (m): Promise<GatheredStats> => {
    if (m.id === src.node.id) return { ok: true, ...nodeStats(src, Date.now()) };
    try {
      const r = await fetch(`http://${m.http.host.includes(":") ? `[${m.http.host}]` : m.http.host}:${m.http.port}/v1/node/stats`, { signal: AbortSignal.timeout(STATS_WAIT_MS) });
      if (!r.ok) {
        await r.body?.cancel();
        return { node: m.id, ok: false, error: `answered ${r.status}` };
      }
      return { ok: true, ...(await r.json() as NodeStats), node: m.id };
    } catch (e) {
      const err = e as Error;
      return { node: m.id, ok: false, error: err.name === "TimeoutError" ? `no answer within ${STATS_WAIT_MS} ms` : `unreachable: ${(err.cause as Error | undefined)?.message ?? err.message}` };
    }
  }));
  return { atMs: Date.now(), nodes: gathered, ...clusterSummary(gathered, currentSettings(meta).placement.splitRequestRate) };
}
