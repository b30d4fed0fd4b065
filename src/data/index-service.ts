/**
 * A node's index service (issue 14, DESIGN.md's data/): keeps a payload and vector index for every shard
 * replica of this node whose collection declares vectors or payload indexes, and answers searches and
 * counts of them for the gateway's fan-out (search.ts).
 *
 * Off the write path: the node tells the service of every applied change (ReplicaObserver, on its loop),
 * and the service only posts it to the index worker (index-worker.ts), which takes it into the graph in
 * the background. A search of a replica therefore sees every write applied there before it was asked
 * (the worker scans pending ops exactly), and a linearizable search first makes the replica apply
 * everything committed before it (MultiRaftNode.readBarrier).
 *
 * An index opens when its replica is hosted here and its collection is known (`reconcile`, on every
 * metadata change and every RECONCILE_EVERY_MS): the worker loads the saved one if it is whole, then the
 * replica's records are walked (`catchUp`) and the index takes what differs by version, and drops what
 * the walk did not find. The same walk rebuilds an index from nothing (no saved one, a corrupt one, a
 * replica that received a shard snapshot: it builds its index from the records rather than receiving
 * one). Until the walk is posted, a search of the replica waits for it.
 *
 * Bounded: ops pending in the worker over PENDING_OPS_MAX make `admit` refuse new writes to the
 * collection on this node (503 overloaded) until the worker catches up.
 */
import { Worker } from "node:worker_threads";
import { availableParallelism } from "node:os";
import { assert } from "../util/assert.js";
import type { Logger } from "../util/logger.js";
import type { Timer } from "../util/clock.js";
import type { MultiRaftNode } from "../node/multi-raft.js";
import type { Gateway } from "../node/gateway.js";
import type { GroupChanges, ReplicaObserver } from "../node/replica-observer.js";
import { RECORDS_END } from "../node/idempotency.js";
import { type StoredRecord, isExpired, vectorOf } from "../node/records.js";
import type { VectorSchema } from "../meta/collections.js";
import { type ShardRange, owns } from "../meta/ranges.js";
import { NotHostedError, OverloadedError, WrongShardError } from "../node/group.js";
import { type Filter, filterKeys, matches, valuesAt } from "./filter.js";
import { type ReplicaScanRequest, scanReplica } from "./filtered-scan.js";
import type { CountAnswer, FromWorker, SearchAnswer, ToWorker, WireOp } from "./index-protocol.js";

const RECONCILE_EVERY_MS = 1000;
/** A search whose filter is partly on unindexed keys asks the index for this many times k candidates first, ... */
const POST_FILTER_OVERFETCH = 4;
/** ... widening up to this many (then `exhaustive: false` tells the gateway the answer may lack some). */
const POST_FILTER_WANT_MAX = 4096;
/** Records per page of a catch-up walk (one state-store read and one message each). */
const CATCH_UP_PAGE = 1024;
/** Ops pending in the worker, all indexes together, past which writes to indexed collections are refused here. */
export const PENDING_OPS_MAX = 1_000_000;
/** How long a request to the worker may take before it fails (the gateway's request timeout is 5 s). */
const WORKER_ANSWER_MS = 10_000;
/** Worker restarts after a crash, at most, before the service gives up (searches then fail). */
const WORKER_RESTARTS_MAX = 5;

/** A shard's range and freeze as of an applied index (what a search's answer claims to cover). */
export interface ShardView { shard: number; range: ShardRange; frozen: boolean; children: number[] }

interface Entry {
  /** The worker thread holding its index (an index of `workers`). */
  slot: number;
  collection: string;
  schema: VectorSchema | null;
  keys: string[];
  /** Resolves once the catch-up walk is posted (searches wait for it). */
  ready: Promise<void>;
  /** The applied index of the last ops posted. */
  sentThrough: number;
  /** What the worker last reported: the applied index its graph covers, ops pending, records held. */
  indexedThrough: number;
  pending: number;
  size: number;
  /** Ops and catch-up records posted to the worker, ever, and how many of them it reported received. */
  posted: number;
  received: number;
  /** The shard's views by the applied index they took effect at, oldest first (a few kept). */
  views: [number, ShardView][];
}

export interface IndexServiceOptions {
  /** Where indexes are saved (one folder per shard replica). */
  dir: string;
  logger?: Logger;
  /** The index worker threads' nice value (0..19; Linux): graph building yields to the node's loop. */
  niceness?: number;
  /** Index worker threads; a shard's index lives in one, so a search's shards are searched in parallel. */
  threads?: number;
}

/**
 * Index worker threads by default: one per four cores, one to four. More threads search a fan-out's
 * shards in parallel, but where nodes share few cores they only contend: on 2 cores with 3 nodes, 2 a
 * node gave ~30 % fewer searches a second at 32 clients than 1, and no clear gain for one client.
 */
export const INDEX_THREADS_DEFAULT = Math.max(1, Math.min(4, Math.floor(availableParallelism() / 4)));
/** Most index worker threads a node may run. */
export const INDEX_THREADS_MAX = 64;

/**
 * The index worker's default nice value: under contention it gets ~1/10 of the CPU a loop thread gets
 * (the kernel's weights: 110 against 1024), so writes are acknowledged at the loop's pace and the graphs
 * catch up with what is left; on an idle core it runs at full speed all the same.
 */
export const INDEX_WORKER_NICENESS = 10;

export interface IndexStats {
  indexes: number;
  /** Ops applied but not yet in the graphs, all indexes together. */
  pendingOps: number;
  /** The largest distance, in applied log entries, between what a replica applied and what its index covers. */
  lagEntriesMax: number;
  records: number;
}

export class IndexService implements ReplicaObserver {
  /** The worker threads; null: not started, stopped, or given up on after too many crashes. */
  private readonly workers: (Worker | null)[];
  private readonly entries = new Map<number, Entry>();
  private readonly waiting = new Map<number, { slot: number; resolve: (v: unknown) => void; reject: (e: Error) => void; timer: Timer }>();
  private started = false;
  private nextReq = 1;
  private restarts = 0;
  private stopping = false;
  private timer: Timer | null = null;
  private unobserve: (() => void) | null = null;
  private unwatch: (() => void) | null = null;
  private unserve: (() => void)[] = [];
  private readonly logger: Logger | undefined;
  /** Indexes opened from their saved files, and built from the records (none saved, or not whole). */
  readonly opened = { loaded: 0, rebuilt: 0 };
  /** Searches of a replica answered here. */
  searchesServed = 0;

  constructor(private readonly node: MultiRaftNode, private readonly gateway: Gateway, private readonly opts: IndexServiceOptions) {
    this.logger = opts.logger;
    const threads = opts.threads ?? INDEX_THREADS_DEFAULT;
    assert(Number.isInteger(threads) && threads >= 1 && threads <= INDEX_THREADS_MAX, () => `index threads: 1..${INDEX_THREADS_MAX}, got ${threads}`);
    this.workers = new Array<Worker | null>(threads).fill(null);
  }

  start(): void {
    assert(!this.started, "the index service starts once");
    this.started = true;
    for (let slot = 0; slot < this.workers.length; slot++) this.spawn(slot);
    this.unobserve = this.node.observeReplicas(this);
    this.unwatch = this.node.watchMeta(() => this.reconcile());
    this.timer = this.node.clock.setInterval(() => this.reconcile(), RECONCILE_EVERY_MS);
    this.unserve.push(this.gateway.serve("index-search", (group, body) => this.searchReplica(group, body as ReplicaSearchRequest)));
    this.unserve.push(this.gateway.serve("index-count", (group, body) => this.countReplica(group, body as ReplicaCountRequest)));
    this.unserve.push(this.gateway.serve("records-scan", (group, body) => scanReplica(this.node, group, body as ReplicaScanRequest)));
    this.reconcile();
  }

  /** Saves what is caught up (the rest is caught up from the records on restart) and ends the worker. */
  async stop(): Promise<void> {
    if (!this.started || this.stopping) return;
    this.stopping = true;
    this.node.clock.clear(this.timer);
    this.unobserve?.();
    this.unwatch?.();
    for (const f of this.unserve) f();
    await Promise.all(this.workers.map(async (w, slot) => {
      if (w === null) return;
      try {
        await this.request(slot, { t: "save-all", req: 0 });
      } catch (e) {
        this.logger?.warn({ err: (e as Error).message }, "saving the indexes on stop failed");
      }
    }));
    const workers = this.workers.filter((w): w is Worker => w !== null);
    this.workers.fill(null);
    for (const [, p] of this.waiting) {
      this.node.clock.clear(p.timer);
      p.reject(new Error("the index service stopped"));
    }
    this.waiting.clear();
    await Promise.all(workers.map((w) => w.terminate()));
  }

  private spawn(slot: number): void {
    const w = new Worker(new URL("./index-worker.js", import.meta.url));
    this.workers[slot] = w;
    w.on("message", (m: FromWorker) => this.onWorkerMessage(slot, m));
    w.on("error", (e) => this.logger?.error({ err: e.stack ?? e.message, thread: slot }, "an index worker failed"));
    w.on("exit", (code) => {
      if (this.workers[slot] !== w || this.stopping) return;
      // Every index it held is gone: reopen them (in any thread) from their saved files and the records.
      this.workers[slot] = null;
      for (const [group, e] of this.entries) if (e.slot === slot) this.entries.delete(group);
      for (const [req, p] of this.waiting) {
        if (p.slot !== slot) continue;
        this.waiting.delete(req);
        this.node.clock.clear(p.timer);
        p.reject(new Error(`the index worker exited (code ${code})`));
      }
      if (++this.restarts > WORKER_RESTARTS_MAX) {
        this.logger?.error({ restarts: this.restarts, thread: slot }, "the index workers keep failing: this one is not restarted (its shards' searches go to the others)");
        return;
      }
      this.logger?.warn({ code, thread: slot }, "an index worker exited: restarting it");
      this.spawn(slot);
      this.reconcile();
    });
    this.post(slot, { t: "init", dir: this.opts.dir, niceness: this.opts.niceness ?? INDEX_WORKER_NICENESS });
  }

  /** Tests: ends worker thread `slot` as a crash would (its indexes are reopened from the records). */
  async crashThreadForTest(slot: number): Promise<void> {
    await this.workers[slot]?.terminate();
  }

  /** Whether any worker thread runs (the service answers nothing once none does). */
  private get running(): boolean {
    return this.workers.some((w) => w !== null);
  }

  private post(slot: number, m: ToWorker, transfer: ArrayBuffer[] = []): void {
    const w = this.workers[slot];
    assert(w !== null && w !== undefined, () => `index worker ${slot} runs`);
    w.postMessage(m, transfer);
  }

  private request<T>(slot: number, m: Extract<ToWorker, { req: number }>, transfer: ArrayBuffer[] = []): Promise<T> {
    if ((this.workers[slot] ?? null) === null) return Promise.reject(new OverloadedError("the index worker is not running on this node"));
    const req = this.nextReq++;
    return new Promise<T>((resolve, reject) => {
      const timer = this.node.clock.setTimeout(() => {
        this.waiting.delete(req);
        reject(new OverloadedError(`the index worker did not answer within ${WORKER_ANSWER_MS} ms`));
      }, WORKER_ANSWER_MS);
      this.waiting.set(req, { slot, resolve: resolve as (v: unknown) => void, reject, timer });
      this.post(slot, { ...m, req } as ToWorker, transfer);
    });
  }

  /** Indexes held per worker thread (null: the thread is not running). */
  perThread(): (number | null)[] {
    const held = this.workers.map((w) => (w === null ? null : 0));
    for (const e of this.entries.values()) if (held[e.slot] !== null) held[e.slot]!++;
    return held;
  }

  /** The running worker holding the fewest indexes (a new index goes there), or -1 when none runs. */
  private leastLoadedSlot(): number {
    const held = this.perThread();
    let best = -1;
    for (const [slot, n] of held.entries()) if (n !== null && (best < 0 || n < held[best]!)) best = slot;
    return best;
  }

  private onWorkerMessage(slot: number, m: FromWorker): void {
    switch (m.t) {
      case "answer":
      case "failed": {
        const p = this.waiting.get(m.req);
        if (p === undefined) return;
        this.waiting.delete(m.req);
        this.node.clock.clear(p.timer);
        if (m.t === "answer") p.resolve(m.value);
        else p.reject(new Error(m.message));
        return;
      }
      case "progress":
        for (const [group, indexedThrough, pending, size, received] of m.groups) {
          const e = this.entries.get(group);
          // Not from the thread it is held in now (reopened elsewhere since): its figures are another index's.
          if (e === undefined || e.slot !== slot) continue;
          e.indexedThrough = indexedThrough;
          e.pending = pending;
          e.size = size;
          e.received = received;
        }
        return;
      case "opened":
        if (m.loadedThrough === null) this.opened.rebuilt++;
        else this.opened.loaded++;
        this.logger?.info({ shard: m.group, loadedThrough: m.loadedThrough, records: m.size, ...(m.reason !== undefined ? { rebuilt: m.reason } : {}) },
          m.loadedThrough === null ? "building a shard's index from its records" : "loaded a shard's saved index; catching up from its records");
        return;
      case "saved":
        this.logger?.info({ shard: m.group, indexedThrough: m.indexedThrough, sizeBytes: m.sizeBytes }, "saved a shard's index");
        return;
      case "log":
        this.logger?.[m.level]({ shard: m.group }, m.message);
        return;
    }
  }

  /** The collection's declared payload keys and vector schema, or null when it has neither. */
  private declared(collection: string): { schema: VectorSchema | null; keys: string[] } | null {
    const c = this.node.metaState().collections.get(collection);
    const schema = c?.schema?.vectors ?? null;
    const keys = Object.keys(c?.schema?.payloadIndexes ?? {}).sort();
    return schema === null && keys.length === 0 ? null : { schema, keys };
  }

  /** Opens the indexes of replicas hosted here that need one, closes those of replicas gone. */
  reconcile(): void {
    if (!this.running || this.stopping) return;
    const meta = this.node.metaState();
    for (const sh of meta.shards.values()) {
      if (sh.retiredInto !== undefined || this.entries.has(sh.id) || !this.node.hosts(sh.id)) continue;
      const d = this.declared(sh.collection);
      if (d !== null) this.open(sh.id, sh.collection, d.schema, d.keys, false);
    }
    for (const group of this.entries.keys()) if (!this.node.hosts(group)) this.close(group, true);
  }

  private open(group: number, collection: string, schema: VectorSchema | null, keys: string[], fresh: boolean): void {
    const slot = this.leastLoadedSlot();
    if (slot < 0) return;
    const entry: Entry = {
      slot, collection, schema, keys, ready: Promise.resolve(), sentThrough: 0, indexedThrough: 0, pending: 0, size: 0, posted: 0, received: 0,
      views: [[0, this.node.shardView(group)]],
    };
    this.entries.set(group, entry);
    this.post(slot, { t: "open", group, schema, keys, fresh });
    entry.ready = this.catchUp(group, entry).catch((e: unknown) => {
      this.logger?.warn({ shard: group, err: (e as Error).message }, "catching a shard's index up failed: it is rebuilt");
      if (this.entries.get(group) === entry) this.close(group, true);
    });
  }

  private close(group: number, removeFiles: boolean): void {
    const entry = this.entries.get(group);
    this.entries.delete(group);
    if (entry !== undefined && this.workers[entry.slot] !== null) this.post(entry.slot, { t: "close", group, removeFiles });
  }

  /**
   * Walks the replica's records into its index, a page at a time, yielding to the node's loop between
   * pages. Writes applied meanwhile are posted as they happen, in order with the pages.
   */
  private async catchUp(group: number, entry: Entry): Promise<void> {
    this.post(entry.slot, { t: "sync-begin", group });
    let after: string | undefined;
    for (;;) {
      if (this.entries.get(group) !== entry || this.workers[entry.slot] === null) return;
      if (!this.node.hosts(group)) return;
      const page = this.node.scan(group, CATCH_UP_PAGE, after);
      if (page.length > 0) {
        const { ops, vectors } = this.wire(entry, page.map(([id, rec]) => [id, rec]));
        this.post(entry.slot, { t: "sync-page", group, ops, vectors }, vectors === null ? [] : [vectors.buffer as ArrayBuffer]);
        entry.posted += ops.length;
        after = page[page.length - 1]![0];
      }
      if (page.length < CATCH_UP_PAGE) break;
      await new Promise<void>((resolve) => this.node.clock.defer(resolve));
    }
    if (this.entries.get(group) === entry && this.workers[entry.slot] !== null) this.post(entry.slot, { t: "sync-end", group });
  }

  /** Ops for the worker: records (or null: deleted) with their vectors packed in one array. */
  private wire(entry: Entry, records: readonly [string, StoredRecord | null][]): { ops: WireOp[]; vectors: Float32Array | null } {
    const dim = entry.schema?.dim ?? 0;
    const withVector = dim === 0 ? 0 : records.filter(([, r]) => r?.vector !== undefined).length;
    const vectors = withVector === 0 ? null : new Float32Array(withVector * dim);
    let at = 0;
    const ops = records.map(([id, r]): WireOp => {
      if (r === null) return [id, 0, -1, null];
      const fields: Record<string, unknown[]> = {};
      for (const k of entry.keys) {
        const v = valuesAt(r.payload, k);
        if (v.length > 0) fields[k] = v;
      }
      if (vectors === null || r.vector === undefined) return [id, r.version, -1, fields];
      const v = vectorOf(r.vector);
      if (v.length !== dim) return [id, r.version, -1, fields]; // not written through a checked route
      vectors.set(v, at * dim);
      return [id, r.version, at++, fields];
    });
    return { ops, vectors };
  }

  applied(changes: readonly GroupChanges[]): void {
    if (!this.running) return;
    for (const c of changes) {
      const entry = this.entries.get(c.group);
      if (entry === undefined) continue; // not indexed here (yet: reconcile opens it and walks its records)
      try {
        const m = this.opsOf(entry, c);
        this.post(entry.slot, m, m.vectors === null ? [] : [m.vectors.buffer as ArrayBuffer]);
        entry.posted += m.ops.length;
      } catch (e) {
        // Called on the node's loop: a fault here must cost the index, never the node. It is rebuilt.
        this.logger?.error({ shard: c.group, err: (e as Error).stack }, "an applied change could not be posted to the index: rebuilding it");
        this.close(c.group, true);
        this.reconcile();
      }
    }
  }

  /** The ops message of one group's applied changes; notes the view a change of its range gives. */
  private opsOf(entry: Entry, c: GroupChanges): Extract<ToWorker, { t: "ops" }> {
    const records: [string, StoredRecord | null][] = [];
    for (const [key, value] of c.puts ?? []) if (key < RECORDS_END) records.push([key, value as StoredRecord]);
    for (const key of c.deletes ?? []) if (key < RECORDS_END) records.push([key, null]);
    const { ops, vectors } = this.wire(entry, records);
    entry.sentThrough = c.appliedIndex;
    if (c.shard !== undefined) {
      entry.views.push([c.appliedIndex, this.node.shardView(c.group)]);
      if (entry.views.length > 16) entry.views.shift();
    }
    return { t: "ops", group: c.group, ops, vectors, appliedIndex: c.appliedIndex };
  }

  replaced(group: number): void {
    const entry = this.entries.get(group);
    if (entry === undefined || !this.running) return;
    this.close(group, true);
    this.open(group, entry.collection, entry.schema, entry.keys, true);
  }

  dropped(group: number): void {
    if (this.entries.has(group)) this.close(group, true);
  }

  /**
   * Refuses a write to `collection` while this node's indexes are too far behind (the worker's queue is
   * bounded): 503 overloaded, nothing written.
   */
  admit(collection: string): void {
    if (this.declared(collection) === null) return;
    const pending = this.stats().pendingOps;
    if (pending > PENDING_OPS_MAX) throw new OverloadedError(`the indexes on node ${this.node.id} are ${pending} writes behind (at most ${PENDING_OPS_MAX}): try again shortly`);
  }

  stats(): IndexStats {
    let pendingOps = 0;
    let lagEntriesMax = 0;
    let records = 0;
    for (const e of this.entries.values()) {
      // Pending in the worker as it last said, plus what was posted since it said so.
      const pending = e.pending + e.posted - e.received;
      pendingOps += pending;
      records += e.size;
      if (pending > 0) lagEntriesMax = Math.max(lagEntriesMax, e.sentThrough - e.indexedThrough);
    }
    return { indexes: this.entries.size, pendingOps, lagEntriesMax, records };
  }

  /** Per replica indexed here: its records and how far, in applied entries, its index is behind (0: caught up). */
  replicaStats(): { shard: number; records: number; lagEntries: number }[] {
    return [...this.entries].map(([shard, e]) => {
      const pending = e.pending + e.posted - e.received;
      return { shard, records: e.size, lagEntries: pending > 0 ? e.sentThrough - e.indexedThrough : 0 };
    });
  }

  /** The index of a replica hosted here, opened (and caught up to the walk) if it was not yet. */
  private async entryOf(group: number): Promise<Entry> {
    if (!this.node.hosts(group)) throw new NotHostedError(group);
    if (!this.entries.has(group)) this.reconcile();
    // A split's child is hosted before the map records it (node/shard-agent.ts waits for its leader):
    // its index opens once the map names its collection; the asker tries again meanwhile.
    if (!this.entries.has(group) && !this.node.metaState().shards.has(group)) throw new WrongShardError(group);
    const entry = this.entries.get(group);
    if (entry === undefined) throw new Error(`shard ${group} has no index on node ${this.node.id} (its collection declares no vectors and no payload index)`);
    await entry.ready;
    return entry;
  }

  /** The view of the shard as of the ops the worker had received when it answered. */
  private viewAt(entry: Entry, receivedThrough: number): ShardView {
    let view = entry.views[0]![1];
    for (const [at, v] of entry.views) if (at <= receivedThrough) view = v;
    return view;
  }

  /**
   * A replica's k nearest, with payloads and vectors when asked. A filter on keys the index does not
   * hold is checked here on the records' payloads, over a widening set of the index's candidates (which
   * satisfy the filter's indexed part), up to POST_FILTER_WANT_MAX: `exhaustive` says whether fewer
   * than k hits means that no more match.
   */
  async searchReplica(group: number, req: ReplicaSearchRequest): Promise<ReplicaSearchAnswer> {
    await levelBarrier(this.node, group, req.consistency, req.bound);
    const entry = await this.entryOf(group);
    if (entry.schema === null) throw new Error(`collection ${entry.collection} has no vector schema`);
    const query = vectorOf(req.vector);
    const k = req.opts.k;
    // Under a TTL every hit's record is read: an expired one is not answered, deleted or not yet.
    const ttl = this.node.metaState().collections.get(entry.collection)?.schema?.ttlMs ?? null;
    const needRecord = req.withPayload || req.withVector || req.postFilter !== null || ttl !== null;
    const nowMs = this.node.clock.wallMs();
    let want = req.postFilter === null ? k : k * POST_FILTER_OVERFETCH;
    for (;;) {
      const a = await this.request<SearchAnswer>(entry.slot, { t: "search", req: 0, group, query, opts: { ...req.opts, k: want } });
      // Dropped meanwhile (moved away, or its collection dropped): its records are gone from the store,
      // and an answer without them would claim the shard's range.
      if (!this.node.hosts(group) || this.entries.get(group) !== entry) throw new NotHostedError(group);
      const view = this.viewAt(entry, a.receivedThrough);
      const hits: ReplicaHit[] = [];
      for (const h of a.hits) {
        if (hits.length === k) break;
        // A split's parent keeps its child's records (and their vectors) until they are moved (node/split-fill.ts).
        if (!owns(view.range, h.id)) continue;
        const rec = needRecord ? this.node.localRecord(group, h.id) : undefined;
        if (needRecord && (rec === undefined || isExpired(rec, nowMs))) continue; // deleted since the index answered, or expired
        if (req.postFilter !== null && !matches(req.postFilter, rec!.payload)) continue;
        hits.push([h.id, h.distance, req.withPayload ? rec!.payload : null, req.withVector && rec?.vector !== undefined ? rec.vector : null]);
      }
      const exhausted = a.hits.length < want;
      if (hits.length >= k || exhausted || want >= POST_FILTER_WANT_MAX) {
        this.searchesServed++;
        return { ...view, version: this.node.appliedVersion(group), hits, plan: a.plan, matched: a.matched, pending: a.pending, exhaustive: hits.length >= k || exhausted };
      }
      want = Math.min(POST_FILTER_WANT_MAX, want * 4);
    }
  }

  /**
   * Records of a replica satisfying the filter: from its index when every key of the filter is indexed,
   * else by reading its records (a page at a time, yielding to the loop between pages). A split or
   * merge of the shard during the read makes the count WrongShardError, to be asked again.
   */
  async countReplica(group: number, req: ReplicaCountRequest): Promise<ReplicaCountAnswer> {
    await levelBarrier(this.node, group, req.consistency, req.bound);
    const collection = this.node.metaState().shards.get(group)?.collection;
    const d = collection === undefined ? null : this.declared(collection);
    const indexed = new Set(d?.keys ?? []);
    // Under a TTL the records are read: the index counts expired records until they are deleted.
    const ttl = collection === undefined ? null : this.node.metaState().collections.get(collection)?.schema?.ttlMs ?? null;
    // The index counts a split child's records until they leave its parent (node/split-fill.ts): those are read.
    if (d !== null && ttl === null && !this.node.fillsFrom(group) && (req.filter === null || filterKeys(req.filter).every((k) => indexed.has(k)))) {
      const entry = await this.entryOf(group);
      const a = await this.request<CountAnswer>(entry.slot, { t: "count", req: 0, group, filter: req.filter });
      if (!this.node.hosts(group) || this.entries.get(group) !== entry) throw new NotHostedError(group);
      // Split meanwhile, and its child's records not all moved yet: asked again.
      if (this.node.fillsFrom(group)) throw new WrongShardError(group);
      return { ...this.viewAt(entry, a.receivedThrough), version: this.node.appliedVersion(group), count: a.count };
    }
    const view = this.node.shardView(group);
    const nowMs = this.node.clock.wallMs();
    let count = 0;
    let after: string | undefined;
    for (;;) {
      const page = this.node.scan(group, CATCH_UP_PAGE, after);
      for (const [, r] of page) if (!isExpired(r, nowMs) && (req.filter === null || matches(req.filter, r.payload))) count++;
      if (page.length < CATCH_UP_PAGE) break;
      after = page[page.length - 1]![0];
      await new Promise<void>((resolve) => this.node.clock.defer(resolve));
      if (!this.node.hosts(group)) throw new NotHostedError(group);
    }
    const now = this.node.shardView(group);
    if (now.range.start !== view.range.start || now.range.end !== view.range.end || now.frozen !== view.frozen) throw new WrongShardError(group);
    return { ...view, version: this.node.appliedVersion(group), count };
  }
}

export type ReadConsistency = "linearizable" | "session" | "bounded" | "eventual";

/** What a session or bounded read of several shards needs: the session's version of each shard (by id), the bound. */
export interface LevelBound {
  session?: Record<string, number>;
  maxStalenessMs?: number;
}

/**
 * What a replica waits for before it answers at `consistency` (MultiRaftNode.readBarrier): a ReadIndex
 * round (linearizable), the session's version of this shard (session), a recent enough round (bounded),
 * nothing (eventual).
 */
export async function levelBarrier(node: MultiRaftNode, group: number, consistency: ReadConsistency, bound: LevelBound | undefined): Promise<void> {
  if (consistency === "eventual") return;
  await node.readBarrier(group, consistency, consistency === "session" ? { sessionVersion: bound?.session?.[String(group)] ?? 0 }
    : consistency === "bounded" ? { maxStalenessMs: bound?.maxStalenessMs ?? 1000 } : {});
}

/** What the gateway asks a replica (search.ts): the graph's options with the indexed part of the filter. */
export interface ReplicaSearchRequest {
  vector: Uint8Array;
  opts: { k: number; ef?: number; exact?: boolean; filter: Filter | null };
  consistency: ReadConsistency;
  bound?: LevelBound;
  withPayload: boolean;
  withVector: boolean;
  /** The whole filter when part of it is on keys the index does not hold: the replica reads payloads for it. */
  postFilter: Filter | null;
}

/** [id, distance, payload (null: not asked), vector bytes (null: not asked)] */
export type ReplicaHit = [string, number, unknown, Uint8Array | null];

/**
 * `version`: the replica's applied version when it answered, at least that of the state the answer
 * shows (the answer's pair of a session token: a later session read is held to it).
 */
export interface ReplicaSearchAnswer extends ShardView {
  version: number;
  hits: ReplicaHit[];
  plan: SearchAnswer["plan"];
  matched: number | null;
  pending: number;
  /** Fewer than k hits means no more records of this replica match (false: a post-filter stopped widening). */
  exhaustive: boolean;
}

export interface ReplicaCountRequest { filter: Filter | null; consistency: ReadConsistency; bound?: LevelBound }
export interface ReplicaCountAnswer extends ShardView { version: number; count: number }
