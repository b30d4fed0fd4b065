/** One collection's records through the client: `client.collection(name)`. */
import { randomUUID } from "node:crypto";
import type { Transport } from "./transport.js";
import type { ShardRouter } from "./routing.js";
import { ShoalError } from "./errors.js";

/**
 * A read's level. linearizable: sees every write acknowledged before it. session: sees this client's
 * own writes and never goes back on what it read before (the client threads the session's token).
 * bounded: misses no write committed more than `maxStalenessMs` before it. eventual: whatever the
 * answering replica holds now. Searches, counts and scans take the same levels, each shard's replica
 * held to them (their answers add nothing to the session's token).
 */
export type ReadConsistency = "linearizable" | "session" | "bounded" | "eventual";

/** A read's level, and with bounded how stale it may be (default 1,000 ms). */
export interface ReadOptions {
  consistency?: ReadConsistency;
  maxStalenessMs?: number;
}

/** A filter of the filter language (README, Filters): {must, should, must_not} over {key, match | range | exists}. */
export type Filter = Record<string, unknown>;

export type Vector = readonly number[] | Float32Array;

export interface StoredRecord {
  id: string;
  payload: unknown;
  version: number;
  vector?: number[];
  expiresAtMs?: number;
}

export interface PutOptions {
  vector?: Vector;
  /** Compare-and-set: apply only at this version (0: only if the record does not exist). */
  ifVersion?: number;
  /** The write's identity across retries (default: a new random key, reused by this call's retries). */
  idempotencyKey?: string;
  /**
   * sync: answered once a quorum holds the write; async: once the shard leader's log holds it (the
   * answer says `mode: "async"`; a failover before a quorum holds it can lose it). Default: the
   * collection's writeMode. A compare-and-set (ifVersion) is always sync. An async put carries no
   * idempotency key unless given one (a keyed write is answered once applied, as sync): retried, it is
   * at least once, like a batch (the same record, unless another client wrote it in between).
   */
  writeMode?: WriteMode;
}

export type WriteMode = "sync" | "async";

/** A write's answer: the record's version (with `mode: "async"`, the version it gets once applied). */
export interface WriteAnswer {
  version: number;
  mode?: "async";
}

export interface UpsertItem {
  id: string;
  payload: unknown;
  vector?: Vector;
}

/** One record's outcome in upsertMany, in input order. */
export type UpsertResult = { id: string; version: number } | { id: string; error: ShoalError };

export interface SearchOptions extends ReadOptions {
  k?: number;
  ef?: number;
  filter?: Filter;
  exact?: boolean;
  timeoutMs?: number;
  allowPartial?: boolean;
  withPayload?: boolean;
  withVector?: boolean;
}

export interface SearchAnswer {
  results: { id: string; score: number; payload?: unknown; vector?: number[] }[];
  shards: { asked: number; answered: number; failed: { shard: number; error: string; message: string }[] };
  missing: { range: { start: unknown; end: unknown }; shards: number[] }[];
  unindexedKeys: string[];
  exhaustive: boolean;
  plans: Record<string, number>;
  tookMs: number;
}

export interface CountAnswer {
  count: number;
  shards: SearchAnswer["shards"];
  missing: SearchAnswer["missing"];
  unindexedKeys: string[];
  tookMs: number;
}

/** Records one batch request carries, at most (the server's limit). */
export const UPSERT_BATCH_MAX = 1000;
/** Rounds of sending again the records of a batch refused retryably. */
const UPSERT_ROUNDS_MAX = 5;

/** How long to wait for an answer the server may take `timeoutMs` to give (its own default: 5,000). */
const waitMs = (timeoutMs: number | undefined) => (timeoutMs ?? 5_000) + 1_000;

/** A vector as JSON carries it (an array as it is: the server checks it, and says what is wrong with it). */
const vectorValue = (v: Vector) => (v instanceof Float32Array ? Array.from(v) : v);
/**
 * A write's idempotency key header: the one given, else a new one (reused by the call's retries); none
 * for an async write not given one (a keyed write is answered once applied, as sync).
 */
function keyHeader(opts: { idempotencyKey?: string; writeMode?: WriteMode }): Record<string, string> {
  if (opts.writeMode === "async" && opts.idempotencyKey === undefined) return {};
  return { "idempotency-key": opts.idempotencyKey ?? randomUUID() };
}

const vectorJson = (v: Vector | undefined) => (v === undefined ? {} : { vector: vectorValue(v) });

export class Collection {
  private readonly base: string;

  constructor(private readonly t: Transport, readonly name: string, private readonly router: ShardRouter | null = null,
    private readonly consistency: ReadConsistency | undefined = undefined) {
    this.base = `/v1/collections/${encodeURIComponent(name)}`;
  }

  /** The client's default read level, for a request's body. */
  private level(): { consistency?: ReadConsistency } {
    return this.consistency === undefined ? {} : { consistency: this.consistency };
  }

  /** The node leading the record's shard, when the client's shard map knows it. */
  private leaderOf(id: string): string | null {
    return this.router === null ? null : this.router.leaderEndpoint(this.name, id);
  }

  private recordPath(id: string): string {
    return `${this.base}/records/${encodeURIComponent(id)}`;
  }

  /** Creates or replaces a record; retried under one idempotency key, so it is applied at most once. */
  put(id: string, payload: unknown, opts: PutOptions = {}): Promise<WriteAnswer> {
    return this.t.call({
      method: "PUT", path: `${this.recordPath(id)}${opts.writeMode !== undefined ? `?writeMode=${opts.writeMode}` : ""}`, write: true, idempotent: true, prefer: this.leaderOf(id),
      headers: keyHeader(opts),
      body: { payload, ...vectorJson(opts.vector), ...(opts.ifVersion !== undefined ? { ifVersion: opts.ifVersion } : {}) },
    });
  }

  /**
   * The record, or null when there is none. A linearizable read (the default) goes to the shard's
   * leader when the shard map knows it: the leader confirms its leadership with one heartbeat round,
   * where a follower first asks the leader for its commit index, a round more between nodes
   * (bench:client with a 1 ms link between nodes: p50 5.2 ms through a follower). Reads at the other
   * levels are served by whichever node is asked, so they spread over the replicas.
   */
  async get(id: string, opts: ReadOptions & { withVector?: boolean } = {}): Promise<StoredRecord | null> {
    const q = new URLSearchParams();
    const level = opts.consistency ?? this.consistency;
    if (level !== undefined) q.set("consistency", level);
    if (opts.maxStalenessMs !== undefined) q.set("maxStalenessMs", String(opts.maxStalenessMs));
    if (opts.withVector === true) q.set("withVector", "true");
    try {
      return await this.t.call<StoredRecord>({
        method: "GET", path: `${this.recordPath(id)}${q.size > 0 ? `?${q}` : ""}`, write: false, idempotent: true, session: level === "session",
        prefer: level === undefined || level === "linearizable" ? this.leaderOf(id) : null,
      });
    } catch (e) {
      if (e instanceof ShoalError && e.code === "not_found") return null;
      throw e;
    }
  }

  /** Deletes a record (`deleted: false` when there was none; unknown yet in write mode async); retried under one idempotency key. */
  delete(id: string, opts: { ifVersion?: number; idempotencyKey?: string; writeMode?: WriteMode } = {}): Promise<WriteAnswer & { deleted?: boolean }> {
    const q = new URLSearchParams();
    if (opts.ifVersion !== undefined) q.set("ifVersion", String(opts.ifVersion));
    if (opts.writeMode !== undefined) q.set("writeMode", opts.writeMode);
    return this.t.call({
      method: "DELETE", path: `${this.recordPath(id)}${q.size > 0 ? `?${q}` : ""}`,
      write: true, idempotent: true, prefer: this.leaderOf(id),
      headers: keyHeader(opts),
    });
  }

  /**
   * Upserts records in batches of UPSERT_BATCH_MAX, each split per shard leader by the client's map
   * (the parts sent at once, each to its leader; the server groups a part per shard); records
   * refused retryably are sent again, up to UPSERT_ROUNDS_MAX rounds. One result per record, in order:
   * a refusal is a result, not a throw (the call throws only when a whole batch is refused).
   * At least once: a batch carries no idempotency key, and one whose answer was lost is sent again,
   * which leaves the same records but may overwrite a newer write of another client made in between
   * (use put with ifVersion where that matters).
   */
  async upsertMany(records: readonly UpsertItem[]): Promise<UpsertResult[]> {
    const out: UpsertResult[] = new Array(records.length);
    for (let from = 0; from < records.length; from += UPSERT_BATCH_MAX) {
      let todo = Array.from({ length: Math.min(UPSERT_BATCH_MAX, records.length - from) }, (_, i) => from + i);
      for (let round = 1; todo.length > 0; round++) {
        // One request per shard leader the map knows, at once (the rest through a gateway): each goes
        // straight to where its proposals are made. At most one request per node in flight.
        const byLeader = new Map<string | null, number[]>();
        for (const i of todo) {
          const at = this.leaderOf(records[i]!.id);
          const list = byLeader.get(at);
          if (list === undefined) byLeader.set(at, [i]);
          else list.push(i);
        }
        const again: number[] = [];
        await Promise.all([...byLeader].map(async ([prefer, part]) => {
          const answer = await this.t.call<{ results: { id: string; version?: number; error?: { code: string; message: string } & Record<string, unknown> }[] }>({
            method: "POST", path: `${this.base}/records`, write: true, idempotent: true, prefer,
            body: { records: part.map((i) => ({ id: records[i]!.id, payload: records[i]!.payload, ...vectorJson(records[i]!.vector) })) },
          });
          answer.results.forEach((r, j) => {
            const i = part[j]!;
            if (r.error === undefined) {
              out[i] = { id: r.id, version: r.version! };
              return;
            }
            const error = ShoalError.fromAnswer(200, { error: r.error }, true);
            if (error.retryable && round < UPSERT_ROUNDS_MAX) again.push(i);
            else out[i] = { id: r.id, error };
          });
        }));
        todo = again.sort((a, b) => a - b);
        if (todo.length > 0) await new Promise((resolve) => setTimeout(resolve, 100 * round));
      }
    }
    return out;
  }

  /** The k records nearest `vector` (best first), with an optional filter. */
  search(vector: Vector, opts: SearchOptions = {}): Promise<SearchAnswer> {
    return this.t.call({
      method: "POST", path: `${this.base}/search`, write: false, idempotent: true, timeoutMs: waitMs(opts.timeoutMs),
      session: (opts.consistency ?? this.consistency) === "session", body: { vector: vectorValue(vector), ...this.level(), ...opts },
    });
  }

  /** Records satisfying the filter (all without one). */
  count(opts: ReadOptions & { filter?: Filter; allowPartial?: boolean; timeoutMs?: number } = {}): Promise<CountAnswer> {
    return this.t.call({
      method: "POST", path: `${this.base}/count`, write: false, idempotent: true, timeoutMs: waitMs(opts.timeoutMs),
      session: (opts.consistency ?? this.consistency) === "session", body: { ...this.level(), ...opts },
    });
  }

  /**
   * Every record satisfying the filter (all without one), in id order, fetched a page at a time as the
   * loop asks: each record that exists throughout the scan comes once, also while shards split and merge.
   */
  async *scan(opts: ReadOptions & { filter?: Filter; pageSize?: number; withVector?: boolean } = {}): AsyncGenerator<StoredRecord> {
    const level = opts.consistency ?? this.consistency;
    let cursor: string | null | undefined;
    do {
      const page: { records: StoredRecord[]; cursor: string | null } = await this.t.call({
        method: "POST", path: `${this.base}/records/scan`, write: false, idempotent: true, session: level === "session",
        body: {
          ...(opts.filter !== undefined ? { filter: opts.filter } : {}), ...(opts.pageSize !== undefined ? { limit: opts.pageSize } : {}),
          ...(level !== undefined ? { consistency: level } : {}), ...(opts.maxStalenessMs !== undefined ? { maxStalenessMs: opts.maxStalenessMs } : {}),
          ...(opts.withVector === true ? { withVector: true } : {}),
          ...(cursor !== undefined && cursor !== null ? { cursor } : {}),
        },
      });
      yield* page.records;
      cursor = page.cursor;
    } while (cursor !== null);
  }
}
