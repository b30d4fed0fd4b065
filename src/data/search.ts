/**
 * Searching and counting a collection across its shards (issue 14, DATA-2): the gateway asks one replica
 * of every shard in parallel (the leader at linearizable consistency; at eventual this node's own
 * replica, else the voter with the fewest asks in flight), each answers its local top k (index-service.ts),
 * and the answers are merged.
 *
 * Never silently fewer: every answer carries the shard's range and freeze as of the index state it was
 * computed on, and the answers must tile the position space (node/scan.ts coverSpace), as a scan's
 * pages must. A split the map does not show yet leaves a gap, an answer from before a split overlaps
 * one from after: the shards are asked again, with the children the answers name, until the parts fit
 * or time is up. Then the search fails (504 past `timeoutMs`, 503 otherwise), or, with `allowPartial`,
 * answers from the parts that fit and names the shards and ranges missing.
 */
import { inSpan } from "../util/tracing.js";
import { type ShardRange, comparePositions, wholeSpace } from "../meta/ranges.js";
import { type CollectionRecord, type MetaState, collectionPartitioning } from "../meta/state.js";
import type { VectorSchema } from "../meta/collections.js";
import type { Gateway } from "../node/gateway.js";
import { CollectionNotFoundError } from "../node/group.js";
import { type MultiRaftNode, NotHostedError, NotLeaderError, RequestTimeoutError, WrongShardError } from "../node/multi-raft.js";
import { type TiledPart, askUntilTiled, liveShards, sessionPairs } from "../node/scan.js";
import { vectorBytes, vectorOf } from "../node/records.js";
import { type Filter, filterKeys, indexedPart } from "./filter.js";
import { scoreOf } from "./shard-index.js";
import type { LevelBound, ReadConsistency, ReplicaCountAnswer, ReplicaCountRequest, ReplicaSearchAnswer, ReplicaSearchRequest } from "./index-service.js";

/** Rounds of asking again while the answers do not fit (each after the map changes, or briefly). */
const ROUNDS_MAX = 20;
const ROUND_WAIT_MS = 50;

export interface SearchRequest {
  vector: Float32Array;
  k: number;
  ef?: number;
  exact?: boolean;
  filter: Filter | null;
  consistency: ReadConsistency;
  /** A session's versions, a staleness bound (the levels that need one). */
  bound?: LevelBound;
  timeoutMs: number;
  allowPartial: boolean;
  withPayload: boolean;
  withVector: boolean;
}

export interface SearchResponse {
  results: ({ id: string; score: number; payload?: unknown; vector?: number[] })[];
  shards: { asked: number; answered: number; failed: { shard: number; error: string; message: string }[] };
  /** Ranges no answer covers (a partial answer), with the shards that own them as far as the map says. */
  missing: { range: ShardRange; shards: number[] }[];
  /** Keys of the filter without a payload index (checked on the payloads of the index's candidates). */
  unindexedKeys: string[];
  /** False when a filter on unindexed keys stopped widening on some shard before finding k matches. */
  exhaustive: boolean;
  /** How each shard found its candidates: plan -> shards. */
  plans: Record<string, number>;
  tookMs: number;
  /** Each answering shard and the version it answered at: the answer's session token (not in the body). */
  session: [number, number][];
}

/** The shards' answers did not fit together in time (answered like a split under a request: 503, nothing done). */
class UnsettledError extends WrongShardError {
  constructor(message: string) {
    super(0);
    this.message = message;
  }
}

/** Errors a newer shard map (or a moment) fixes: the shard moved, split or went. */
function moved(e: unknown): boolean {
  return e instanceof WrongShardError || e instanceof NotHostedError || (e instanceof NotLeaderError && e.leader === 0);
}

/**
 * Asks every shard of the collection with `ask` until the answers tile the position space (node/scan.ts
 * askUntilTiled), each answer within what is left of `timeoutMs`; returns the parts that do (all of
 * them), or, with `allowPartial`, the best partial cover with what is missing.
 */
export async function fanOut<A extends TiledPart>(node: MultiRaftNode, gateway: Gateway, collection: string, timeoutMs: number, allowPartial: boolean,
  ask: (shard: number) => Promise<A>): Promise<{ parts: A[]; asked: number; failed: { shard: number; error: Error }[]; missing: { range: ShardRange; shards: number[] }[] }> {
  const clock = gateway.clock;
  const deadlineMs = clock.nowMs() + timeoutMs;
  const space = wholeSpace(collectionPartitioning(node.metaState().collections.get(collection)));
  const t = await askUntilTiled<A>(node, clock, {
    space,
    shards: (meta) => {
      // Dropped while the search ran: its shards are going away, and nothing of it is to be answered.
      if (!meta.collections.has(collection)) throw new CollectionNotFoundError(collection);
      return liveShards(meta, collection);
    },
    ask: (shard) => withDeadline(inSpan("shoal.search.shard", { "shoal.shard": shard, "shoal.collection": collection }, () => ask(shard)),
      deadlineMs - clock.nowMs(), shard, timeoutMs, gateway),
    moved, timeoutMs, roundsMax: ROUNDS_MAX, roundWaitMs: ROUND_WAIT_MS,
  });
  if (t.cover !== null) return { parts: t.cover, asked: t.asked, failed: [], missing: [] };
  if (allowPartial) {
    const { parts, missing } = partialCover(t.parts, node.metaState(), collection, space);
    return { parts, asked: t.asked, failed: t.failed, missing };
  }
  const first = t.failed.find((f) => !moved(f.error))?.error;
  if (first !== undefined) throw first;
  const why = `answered ${t.parts.map((p) => `${p.shard} [${p.range.start}, ${p.range.end})${p.frozen ? " frozen" : ""}`).join(", ") || "none"}` +
    `${t.failed.length > 0 ? `; moved: ${t.failed.map((f) => `${f.shard} (${f.error.name})`).join(", ")}` : ""}`;
  if (t.timedOut) throw new RequestTimeoutError(`the shards' answers did not fit together within ${timeoutMs} ms (splits or merges under way): ${why}`);
  throw new UnsettledError(`the shards' answers did not fit together after ${t.rounds} rounds (splits or merges under way): ${why}; nothing was done, ask again`);
}

function withDeadline<T>(p: Promise<T>, remainingMs: number, shard: number, timeoutMs: number, gateway: Gateway): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = gateway.clock.setTimeout(() => reject(new RequestTimeoutError(`shard ${shard} did not answer within ${timeoutMs} ms`)), Math.max(1, remainingMs));
    p.then((v) => {
      gateway.clock.clear(timer);
      resolve(v);
    }, (e: unknown) => {
      gateway.clock.clear(timer);
      reject(e instanceof Error ? e : new Error(String(e)));
    });
  });
}

/**
 * The answers that fit without overlapping (live parts first, in range order), and the ranges of
 * `space` none covers, each with the shards of the map that own part of it.
 */
function partialCover<A extends { range: ShardRange; frozen: boolean }>(parts: readonly A[], meta: MetaState, collection: string, space: ShardRange): { parts: A[]; missing: { range: ShardRange; shards: number[] }[] } {
  const ordered = [...parts].filter((p) => typeof p.range.start === typeof space.start && p.range.end > p.range.start)
    .sort((a, b) => Number(a.frozen) - Number(b.frozen) || comparePositions(a.range.start, b.range.start));
  const chosen: A[] = [];
  for (const p of ordered) if (!chosen.some((c) => c.range.start < p.range.end && p.range.start < c.range.end)) chosen.push(p);
  chosen.sort((a, b) => comparePositions(a.range.start, b.range.start));
  const missing: { range: ShardRange; shards: number[] }[] = [];
  let at = space.start;
  const owners = (r: ShardRange) => liveShards(meta, collection).filter((id) => {
    const range = meta.shards.get(id)!.range;
    return range.start < r.end && r.start < range.end;
  });
  for (const p of [...chosen, { range: { start: space.end, end: space.end } }]) {
    if (p.range.start > at) missing.push({ range: { start: at, end: p.range.start }, shards: owners({ start: at, end: p.range.start }) });
    if (p.range.end > at) at = p.range.end;
  }
  return { parts: chosen, missing };
}

export async function searchCollection(node: MultiRaftNode, gateway: Gateway, c: CollectionRecord, req: SearchRequest): Promise<SearchResponse> {
  const startedMs = gateway.clock.nowMs();
  const schema = c.schema?.vectors as VectorSchema;
  const indexed = new Set(Object.keys(c.schema?.payloadIndexes ?? {}));
  const split = req.filter === null ? { part: null, complete: true } : indexedPart(req.filter, indexed);
  const body: ReplicaSearchRequest = {
    vector: vectorBytes(req.vector),
    opts: { k: req.k, ...(req.ef !== undefined ? { ef: req.ef } : {}), ...(req.exact === true ? { exact: true } : {}), filter: split.part },
    consistency: req.consistency, ...(req.bound !== undefined ? { bound: req.bound } : {}), withPayload: req.withPayload, withVector: req.withVector, postFilter: split.complete ? null : req.filter,
  };
  const out = await fanOut<ReplicaSearchAnswer>(node, gateway, c.name, req.timeoutMs, req.allowPartial,
    (shard) => gateway.ask("index-search", shard, body, req.consistency !== "linearizable") as Promise<ReplicaSearchAnswer>);
  const hits = out.parts.flatMap((p) => p.hits);
  hits.sort((a, b) => a[1] - b[1] || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  const plans: Record<string, number> = {};
  for (const p of out.parts) plans[p.plan] = (plans[p.plan] ?? 0) + 1;
  return {
    results: hits.slice(0, req.k).map(([id, d, payload, vector]) => ({
      id, score: scoreOf(schema.metric, d),
      ...(req.withPayload ? { payload } : {}),
      ...(req.withVector && vector !== null ? { vector: [...vectorOf(vector)] } : {}),
    })),
    shards: { asked: out.asked, answered: out.parts.length, failed: out.failed.map((f) => ({ shard: f.shard, error: f.error.name, message: f.error.message })) },
    missing: out.missing,
    unindexedKeys: req.filter === null ? [] : filterKeys(req.filter).filter((k) => !indexed.has(k)),
    exhaustive: out.parts.every((p) => p.exhaustive),
    plans,
    tookMs: Math.round((gateway.clock.nowMs() - startedMs) * 10) / 10,
    session: sessionPairs(out.parts),
  };
}

export interface CountResponse {
  count: number;
  shards: SearchResponse["shards"];
  missing: SearchResponse["missing"];
  unindexedKeys: string[];
  tookMs: number;
  session: SearchResponse["session"];
}

/** Records of the collection satisfying the filter, summed over shards whose answers tile the position space. */
export async function countCollection(node: MultiRaftNode, gateway: Gateway, c: CollectionRecord, filter: Filter | null,
  consistency: ReadConsistency, timeoutMs: number, allowPartial: boolean, bound?: LevelBound): Promise<CountResponse> {
  const startedMs = gateway.clock.nowMs();
  const indexed = new Set(Object.keys(c.schema?.payloadIndexes ?? {}));
  const body: ReplicaCountRequest = { filter, consistency, ...(bound !== undefined ? { bound } : {}) };
  const out = await fanOut<ReplicaCountAnswer>(node, gateway, c.name, timeoutMs, allowPartial,
    (shard) => gateway.ask("index-count", shard, body, consistency !== "linearizable") as Promise<ReplicaCountAnswer>);
  return {
    count: out.parts.reduce((s, p) => s + p.count, 0),
    shards: { asked: out.asked, answered: out.parts.length, failed: out.failed.map((f) => ({ shard: f.shard, error: f.error.name, message: f.error.message })) },
    missing: out.missing,
    unindexedKeys: filter === null ? [] : filterKeys(filter).filter((k) => !indexed.has(k)),
    tookMs: Math.round((gateway.clock.nowMs() - startedMs) * 10) / 10,
    session: sessionPairs(out.parts),
  };
}
