/**
 * The indexes of one shard replica (issue 14): an HNSW graph over its records' vectors (the `usearch`
 * package) and a payload index over the collection's declared keys, fed from the replica's applied
 * writes *off the write path*. A write is acknowledged once applied to the record store; its change
 * reaches this index as an op that waits in `pending` until the index takes it in (`step`, a bounded
 * number at a time, between searches). A search looks at both: the graph for what it holds, and an exact
 * scan of the pending ops, whose record versions supersede what the graph holds for the same ids. So a
 * search sees every write applied before it was asked, however far behind the graph is.
 *
 * Each record id gets a label (the graph's key, a small integer reused after a delete). The replica keeps
 * its own copy of the vectors (`arena`, float32 by label): exact scans and exact re-scoring of the
 * graph's candidates read them, so answers carry exact scores whatever the graph's storage (f16, i8).
 *
 * Runs inside the vector worker (vector-worker.ts), never on a node's Raft loop. Not thread-safe.
 */
import usearch from "usearch";
import { assert } from "../util/assert.js";
import type { VectorSchema } from "../meta/collections.js";
import { type Filter, matchesWith } from "./filter.js";
import { PayloadIndex } from "./payload-index.js";
import { LabelSet } from "./label-set.js";
import { type Hit, TopK } from "./top-k.js";

/**
 * A change of one record, as applied: an upsert (its version, vector when the collection has a vector
 * schema, and the values of the declared payload keys) or a delete.
 */
export type IndexOp =
  | { id: string; version: number; vector?: Float32Array; fields: Record<string, unknown[]> }
  | { id: string; version: number; deleted: true };

/**
 * A filtered search scans its matches exactly when that costs less than the graph search: the graph is
 * asked for ef / selectivity candidates, and each candidate costs the graph about this many exact
 * distances' time. Measured on usearch i8 over 341,000 x 100: 3-4 us a candidate from 256 to 2,560
 * candidates; an exact distance 0.3-0.4 us when the matches are scattered over the arena (a memory
 * and TLB miss each: 0.13 us when they are adjacent). An exact scan also finds the true neighbours.
 */
export const GRAPH_CANDIDATE_COST = 10;

/** Whether scanning `matched` records exactly is cheaper than a graph search at `ef` over `size` records. */
export function exactScanCheaper(matched: number, k: number, ef: number, size: number): boolean {
  if (matched <= k) return true;
  const want = Math.max(k, ef) * (size / matched);
  return matched <= GRAPH_CANDIDATE_COST * want;
}
/** Extra graph candidates asked for ids whose graph version is stale (pending); beyond it, widening covers the rest. */
const STALE_ALLOWANCE_MAX = 1024;
/** Rounds of widening a filtered graph search before it falls back to an exact scan of the matches. */
const WIDEN_ROUNDS_MAX = 3;
/**
 * Graph candidates re-scored exactly, at most: RESCORE_PER_K x k, at least RESCORE_MIN, the nearest by
 * the graph's own distance (it answers nearest first). Under i8 storage on the 340,979 word vectors at
 * ef 256, recall@10 with the first 32 re-scored equalled that with all 256 (0.960; the first 10 alone,
 * unre-scored: 0.901), and the re-scoring had been a fifth of a search's time.
 */
const RESCORE_PER_K = 4;
const RESCORE_MIN = 32;

export interface SearchOptions {
  k: number;
  /** The graph's search breadth (at least k; defaults to the schema's efSearch). */
  ef?: number;
  /** Brute force over every record: ground truth. */
  exact?: boolean;
  /** Only records satisfying it (every key of it indexed here). */
  filter?: Filter | null;
}

export interface SearchResult {
  hits: Hit[];
  /** How the candidates were found. */
  plan: "graph" | "exact" | "filtered-graph" | "filtered-exact";
  /** Records the filter matched (null: no filter). */
  matched: number | null;
  /** Pending ops scanned exactly. */
  pending: number;
}

const METRIC_KIND = { cosine: "cos", dot: "ip", l2: "l2sq" } as const;

function isDelete(op: IndexOp): op is Extract<IndexOp, { deleted: true }> {
  return "deleted" in op;
}

export class ShardIndex {
  private graph: InstanceType<typeof usearch.Index> | null;
  private readonly payload: PayloadIndex;
  private readonly dim: number;
  /** Invariant: labels.get(id) = l <=> ids[l] = id; versions[l] is the version indexed. */
  private readonly labels = new Map<string, number>();
  private readonly ids: (string | undefined)[] = [];
  private readonly versions: number[] = [];
  private free: number[] = [];
  private arena: Float32Array;
  private norms: Float32Array;
  /** Ops applied but not in the graph yet, oldest first; pending[head..] are still to take. */
  private pending: IndexOp[] = [];
  private head = 0;
  /** The latest pending op of each id (what a search sees of it). */
  private readonly pendingById = new Map<string, IndexOp>();
  /** Applied index of the last op received, and of the last op the graph took in. */
  receivedThrough = 0;
  indexedThrough = 0;
  /** Apply indexes at which batches of pending ops end: [end position in `pending`, applied index]. */
  private marks: [number, number][] = [];
  /** During a catch-up walk (beginSync..endSync): the ids the walk or a new write has touched. */
  private syncSeen: Set<string> | null = null;

  constructor(readonly schema: VectorSchema | null, readonly keys: readonly string[]) {
    this.dim = schema?.dim ?? 0;
    this.payload = new PayloadIndex(keys);
    this.graph = schema === null ? null : ShardIndex.newGraph(schema);
    this.arena = new Float32Array(this.dim * 1024);
    this.norms = new Float32Array(1024);
  }

  static newGraph(schema: VectorSchema): InstanceType<typeof usearch.Index> {
    return new usearch.Index({
      dimensions: schema.dim, metric: METRIC_KIND[schema.metric] as never, quantization: schema.storage as never,
      connectivity: schema.hnsw.m, expansion_add: schema.hnsw.efConstruction, expansion_search: schema.hnsw.efSearch, multi: false,
    });
  }

  /** Records indexed (in the graph or the payload index), not counting pending ops. */
  get size(): number {
    return this.labels.size;
  }

  get pendingCount(): number {
    return this.pending.length - this.head;
  }

  /** Receives the ops applied up to `appliedIndex` (in apply order). */
  enqueue(ops: readonly IndexOp[], appliedIndex: number): void {
    assert(appliedIndex >= this.receivedThrough, () => `ops at ${appliedIndex} after ${this.receivedThrough}`);
    for (const op of ops) {
      assert(isDelete(op) || op.vector === undefined || op.vector.length === this.dim, "an op's vector has the schema's dim");
      this.pending.push(op);
      this.pendingById.set(op.id, op);
      this.syncSeen?.add(op.id);
    }
    this.receivedThrough = appliedIndex;
    this.marks.push([this.pending.length, appliedIndex]);
    if (this.pendingCount === 0) this.indexedThrough = appliedIndex;
  }

  /** Takes up to `opsMax` pending ops into the graph and the payload index; returns how many. */
  step(opsMax: number): number {
    const end = Math.min(this.pending.length, this.head + opsMax);
    const addKeys: number[] = [];
    const addAt: number[] = [];
    const inBatch = new Set<string>();
    const flush = () => {
      if (addKeys.length === 0 || this.graph === null) return;
      const matrix = new Float32Array(addKeys.length * this.dim);
      for (const [i, l] of addAt.entries()) matrix.set(this.arena.subarray(l * this.dim, (l + 1) * this.dim), i * this.dim);
      this.graph.add(BigUint64Array.from(addKeys, (l) => BigInt(l)), matrix, 1);
      addKeys.length = 0;
      addAt.length = 0;
      inBatch.clear();
    };
    for (let i = this.head; i < end; i++) {
      const op = this.pending[i]!;
      if (inBatch.has(op.id)) flush();
      if (this.pendingById.get(op.id) === op) this.pendingById.delete(op.id);
      const label = this.labels.get(op.id);
      if (isDelete(op)) {
        if (label !== undefined) this.dropLabel(op.id, label);
        continue;
      }
      let l = label;
      if (l === undefined) l = this.newLabel(op.id);
      else if (this.graph !== null && op.vector !== undefined) this.graph.remove(BigInt(l));
      this.versions[l] = op.version;
      this.payload.set(l, op.fields);
      if (op.vector !== undefined && this.graph !== null) {
        this.arena.set(op.vector, l * this.dim);
        this.norms[l] = norm(op.vector, 0, this.dim);
        addKeys.push(l);
        addAt.push(l);
        inBatch.add(op.id);
      }
    }
    flush();
    const taken = end - this.head;
    this.head = end;
    while (this.marks.length > 0 && this.marks[0]![0] <= this.head) this.indexedThrough = this.marks.shift()![1];
    if (this.head === this.pending.length) {
      this.pending = [];
      this.head = 0;
      this.marks = [];
      this.indexedThrough = this.receivedThrough;
    } else if (this.head > 4096 && this.head * 2 > this.pending.length) {
      this.pending = this.pending.slice(this.head);
      this.marks = this.marks.map(([at, index]) => [at - this.head, index]);
      this.head = 0;
    }
    return taken;
  }

  private newLabel(id: string): number {
    const l = this.free.pop() ?? this.ids.length;
    if (l === this.ids.length) this.ids.push(id);
    else this.ids[l] = id;
    this.labels.set(id, l);
    if ((l + 1) * this.dim > this.arena.length) {
      const grown = new Float32Array(Math.max(this.arena.length * 2, (l + 1) * this.dim));
      grown.set(this.arena);
      this.arena = grown;
    }
    if (l >= this.norms.length) {
      const grown = new Float32Array(this.norms.length * 2);
      grown.set(this.norms);
      this.norms = grown;
    }
    return l;
  }

  private dropLabel(id: string, label: number): void {
    if (this.graph !== null) this.graph.remove(BigInt(label));
    this.payload.remove(label);
    this.labels.delete(id);
    this.ids[label] = undefined;
    this.free.push(label);
  }

  /**
   * The k records nearest `query` among those indexed or pending (a pending op supersedes the indexed
   * version of its id), satisfying the filter if given. Distances are exact (from the arena).
   */
  search(query: Float32Array, opts: SearchOptions): SearchResult {
    assert(this.graph !== null, "a search needs a vector schema");
    assert(query.length === this.dim, "the query has the schema's dim");
    const top = new TopK(opts.k);
    const qNorm = norm(query, 0, this.dim);
    const filter = opts.filter ?? null;
    const selected = filter === null ? null : this.payload.select(filter, this.ids.length);
    const ef = Math.max(opts.k, opts.ef ?? this.schema!.hnsw.efSearch);
    let plan: SearchResult["plan"];
    if (opts.exact === true) {
      plan = "exact";
      this.scanExactly(query, qNorm, selected, top);
    } else if (selected !== null && exactScanCheaper(selected.size, opts.k, ef, this.labels.size)) {
      plan = "filtered-exact";
      this.scanExactly(query, qNorm, selected, top);
    } else {
      plan = selected === null ? "graph" : "filtered-graph";
      this.graphSearch(query, qNorm, opts.k, ef, selected, top);
    }
    // The pending ops: exactly, each the current version of its record.
    let pending = 0;
    for (const op of this.pendingById.values()) {
      if (isDelete(op) || op.vector === undefined) continue;
      if (filter !== null && !matchesWith(filter, (key) => op.fields[key] ?? [])) continue;
      pending++;
      top.offer(op.id, distance(this.schema!.metric, query, qNorm, op.vector, 0, norm(op.vector, 0, this.dim), this.dim));
    }
    return { hits: top.sorted(), plan, matched: selected === null ? null : selected.size, pending };
  }

  /**
   * Candidates from the graph (ef of them, ef >= k), widened until k of them pass (or the graph is
   * exhausted); the nearest of them re-scored exactly (RESCORE_PER_K). The graph holds stale versions of
   * pending ids: those are skipped (their pending op is scanned instead), so the search asks for that
   * many more. A filtered search that still lacks k after WIDEN_ROUNDS_MAX rounds scans its matches exactly.
   */
  private graphSearch(query: Float32Array, qNorm: number, k: number, ef: number, selected: LabelSet | null, top: TopK): void {
    const graph = this.graph!;
    const total = graph.size();
    if (total === 0) return;
    const selectivity = selected === null ? 1 : Math.max(selected.size / Math.max(1, this.labels.size), 1e-6);
    // Under f16 or i8 storage the graph's distances are approximate, but its nearest candidates are
    // re-scored exactly from the arena: on the word vectors (113,000 x 100) recall@10 at each ef was that
    // of f32 storage within 0.003, so no more candidates are asked than under f32.
    let want = Math.min(total, Math.ceil(ef / selectivity) + Math.min(this.pendingById.size, STALE_ALLOWANCE_MAX));
    const rescoreMax = Math.max(RESCORE_MIN, RESCORE_PER_K * k);
    for (let round = 1; ; round++) {
      const m = graph.search(query, want, 1);
      const found = new TopK(k);
      let passed = 0;
      for (let i = 0; i < m.keys.length; i++) {
        const l = Number(m.keys[i]!);
        const id = this.ids[l];
        if (id === undefined || this.pendingById.has(id) || (selected !== null && !selected.has(l))) continue;
        found.offer(id, this.distanceTo(query, qNorm, l));
        if (++passed === rescoreMax) break; // enough: the rest are farther by the graph's measure
      }
      if (passed >= k || want >= total) {
        for (const h of found.sorted()) top.offer(h.id, h.distance);
        return;
      }
      if (round >= WIDEN_ROUNDS_MAX && selected !== null) {
        this.scanExactly(query, qNorm, selected, top);
        return;
      }
      want = Math.min(total, want * 4);
    }
  }

  /**
   * Offers every record of `labels` (null: all) whose indexed version is current (a pending op is
   * scanned apart). Most records are farther than the k held: their id is not even looked at.
   */
  private scanExactly(query: Float32Array, qNorm: number, labels: LabelSet | null, top: TopK): void {
    const offer = (l: number) => {
      const d = this.distanceTo(query, qNorm, l);
      if (d > top.bound) return;
      const id = this.ids[l]!;
      if (this.pendingById.size === 0 || !this.pendingById.has(id)) top.offer(id, d);
    };
    if (labels !== null) labels.forEach(offer);
    else for (let l = 0; l < this.ids.length; l++) if (this.ids[l] !== undefined) offer(l);
  }

  private distanceTo(query: Float32Array, qNorm: number, label: number): number {
    return distance(this.schema!.metric, query, qNorm, this.arena, label * this.dim, this.norms[label]!, this.dim);
  }

  /** Records satisfying `filter` (every key of it indexed here), pending ops included. */
  count(filter: Filter | null): number {
    const selected = filter === null ? null : this.payload.select(filter, this.ids.length);
    let n = selected === null ? this.labels.size : selected.size;
    for (const op of this.pendingById.values()) {
      const l = this.labels.get(op.id);
      if (l !== undefined && (selected === null || selected.has(l))) n--;
      if (!isDelete(op) && (filter === null || matchesWith(filter, (key) => op.fields[key] ?? []))) n++;
    }
    return n;
  }

  /**
   * Catch-up after a restart or a snapshot: the replica's records are walked (syncPage, in pages) and
   * compared with what the index holds by version; endSync deletes what the walk did not find. Writes
   * applied during the walk count as found (their ops came after the page that showed the old state).
   */
  beginSync(): void {
    this.syncSeen = new Set();
  }

  syncPage(records: readonly Extract<IndexOp, { fields: unknown }>[]): number {
    assert(this.syncSeen !== null, "syncPage inside a sync");
    const changed: IndexOp[] = [];
    for (const r of records) {
      if (this.syncSeen.has(r.id)) continue;
      this.syncSeen.add(r.id);
      const l = this.labels.get(r.id);
      if (l !== undefined && this.versions[l] === r.version && !this.pendingById.has(r.id)) continue;
      changed.push(r);
    }
    if (changed.length > 0) this.enqueue(changed, this.receivedThrough);
    return changed.length;
  }

  endSync(): number {
    const seen = this.syncSeen;
    assert(seen !== null, "endSync inside a sync");
    this.syncSeen = null;
    const gone: IndexOp[] = [];
    for (const [id, l] of this.labels) if (!seen.has(id)) gone.push({ id, version: this.versions[l]!, deleted: true });
    if (gone.length > 0) this.enqueue(gone, this.receivedThrough);
    return gone.length;
  }

  /** What a save writes besides the graph (see vector-files.ts). */
  state(): ShardIndexState {
    assert(this.pendingCount === 0, "a save takes an index with nothing pending");
    const entries: [string, number, number][] = [];
    const fields: [number, Record<string, unknown[]>][] = [];
    for (const [id, l] of this.labels) {
      entries.push([id, l, this.versions[l]!]);
      fields.push([l, Object.fromEntries(this.keys.map((k) => [k, [...this.payload.valuesOf(l)(k)]]))]);
    }
    return { indexedThrough: this.indexedThrough, labelsEnd: this.ids.length, entries, fields, vectors: this.arena.subarray(0, this.ids.length * this.dim), norms: this.norms.subarray(0, this.ids.length) };
  }

  get graphHandle(): InstanceType<typeof usearch.Index> | null {
    return this.graph;
  }

  /** An index from a saved state and its graph (already loaded and checked by the caller). */
  static restore(schema: VectorSchema | null, keys: readonly string[], st: ShardIndexState, graph: InstanceType<typeof usearch.Index> | null): ShardIndex {
    const x = new ShardIndex(schema, keys);
    x.graph = graph;
    const dim = x.dim;
    x.arena = new Float32Array(Math.max(dim * 1024, st.labelsEnd * dim));
    x.arena.set(st.vectors);
    x.norms = new Float32Array(Math.max(1024, st.labelsEnd));
    x.norms.set(st.norms);
    for (let l = 0; l < st.labelsEnd; l++) x.ids.push(undefined);
    for (const [id, l, version] of st.entries) {
      x.labels.set(id, l);
      x.ids[l] = id;
      x.versions[l] = version;
    }
    for (const [l, f] of st.fields) x.payload.set(l, f);
    x.free = [];
    for (let l = st.labelsEnd - 1; l >= 0; l--) if (x.ids[l] === undefined) x.free.push(l);
    x.indexedThrough = st.indexedThrough;
    x.receivedThrough = st.indexedThrough;
    return x;
  }
}

export interface ShardIndexState {
  indexedThrough: number;
  labelsEnd: number;
  entries: [string, number, number][];
  fields: [number, Record<string, unknown[]>][];
  vectors: Float32Array;
  norms: Float32Array;
}

function norm(v: Float32Array, at: number, dim: number): number {
  let s = 0;
  for (let i = 0; i < dim; i++) s += v[at + i]! * v[at + i]!;
  return Math.sqrt(s);
}

/** In the graph's terms (smaller is nearer): 1 - cosine, 1 - dot, or the squared L2 distance. */
export function distance(metric: VectorSchema["metric"], q: Float32Array, qNorm: number, v: Float32Array, at: number, vNorm: number, dim: number): number {
  if (metric === "l2") {
    let s = 0;
    for (let i = 0; i < dim; i++) {
      const d = q[i]! - v[at + i]!;
      s += d * d;
    }
    return s;
  }
  let dot = 0;
  for (let i = 0; i < dim; i++) dot += q[i]! * v[at + i]!;
  if (metric === "dot") return 1 - dot;
  return qNorm === 0 || vNorm === 0 ? 1 : 1 - dot / (qNorm * vNorm);
}

/** A distance as answered to clients: similarity for cosine and dot (larger is nearer), distance for l2. */
export function scoreOf(metric: VectorSchema["metric"], d: number): number {
  return metric === "l2" ? Math.sqrt(Math.max(0, d)) : 1 - d;
}
