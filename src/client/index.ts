/**
 * `shoal/client`: a typed client of Shoal's HTTP API for Node programs (no dependency beyond Node).
 *
 *   const client = new ShoalClient({ endpoints: ["http://127.0.0.1:7001"] });
 *   const docs = client.collection("docs");
 *   await docs.put("a", { title: "hello" }, { vector: [0.1, 0.2, 0.3] });
 *   const hits = await docs.search([0.1, 0.2, 0.3], { k: 5 });
 *   client.close();
 *
 * A single-record write (put, delete), and each shard leader's part of a batch, goes straight to the node
 * leading the record's shard, from a shard map the client keeps (routing.ts); everything else (reads are served by the gateway's own replica), and
 * a record whose shard the map does not know yet, goes to a gateway node (the one that answered last; the next endpoint when one cannot be
 * reached), which forwards it. Refusals are ShoalErrors carrying the error table's code, retryable and
 * applied fields; writes are retried under an idempotency key.
 * Reads take a level (ReadConsistency); the client keeps its session's token (session.ts) and sends it
 * with session reads, so they see the client's own writes from whichever node answers.
 * Searches, counts and scans send the token too; their answers do not add to it (not built yet).
 */
import { Collection } from "./collection.js";
import { Transport } from "./transport.js";
import { ShardRouter } from "./routing.js";
import { type WatchEvent, watchEvents } from "./watch.js";
import type { ReadConsistency } from "./collection.js";

export { Collection } from "./collection.js";
export type { CountAnswer, Filter, PutOptions, ReadConsistency, ReadOptions, SearchAnswer, WriteAnswer, WriteMode, SearchOptions, StoredRecord, UpsertItem, UpsertResult, Vector } from "./collection.js";
export { CLIENT_ERRORS, ShoalError } from "./errors.js";
export type { WatchEvent } from "./watch.js";

export interface ShoalClientOptions {
  /** Base URLs of one or more nodes, e.g. `http://127.0.0.1:7001`. */
  endpoints: readonly string[];
  /** One attempt's time limit (default 10,000 ms). */
  timeoutMs?: number;
  /** Attempts of a request that may be retried, the first included (default 5). */
  attemptsMax?: number;
  /** The longest pause between attempts (default 2,000 ms). */
  backoffMsMax?: number;
  /** Keep-alive connections per endpoint, at most (default 64). */
  socketsPerEndpointMax?: number;
  /**
   * Gets in flight on one connection at most, pipelined (default 8; 1: one request per connection at a
   * time). Gets gather on few connections and go out together: less CPU per get, in the client and in
   * the node. A write is never pipelined. A get behind a slow one waits for it (answers come in order;
   * a get joins others on a connection only while the oldest of them is under 10 ms old).
   */
  pipelineDepth?: number;
  /**
   * Send single-record writes straight to the node leading the record's shard, from a shard map the
   * client keeps (default true); false: every request through the endpoints (gateways).
   */
  routing?: boolean;
  /**
   * Requests routed to one node at once, at most (default: socketsPerEndpointMax, as many as the client
   * keeps connections to it): beyond, they go through the endpoints in turn, which forward them, rather
   * than wait for one of that node's connections. A lower bound spreads the parsing of requests off a
   * hot shard's leader, at the cost of a hop for each request spread (bench:client, docs/benchmarks.md
   * "2026-12-06 (fourth)": on 2 cores, 16 gave 16 % fewer puts a second than sending all 256 direct).
   */
  directInFlightMax?: number;
  /** The shard map is read again in the background once older than this (default 5,000 ms). */
  mapMaxAgeMs?: number;
  /** The level of reads that name none (default: the server's, linearizable). */
  consistency?: ReadConsistency;
  /** A session to go on with (`sessionToken()` of another client, saved): its reads at level session see what that one saw. */
  sessionToken?: string;
}

/** A collection's declaration (README, Collections): name, shards, replicationFactor, vectors, payloadIndexes, ttlMs, partitioning. */
export type CollectionDeclaration = { name: string } & Record<string, unknown>;

export class ShoalClient {
  private readonly t: Transport;
  private readonly router: ShardRouter | null;
  private readonly consistency: ReadConsistency | undefined;

  constructor(opts: ShoalClientOptions) {
    if (opts.pipelineDepth !== undefined && (!Number.isSafeInteger(opts.pipelineDepth) || opts.pipelineDepth < 1)) {
      throw new RangeError(`pipelineDepth must be a whole number of at least 1 (1: no pipelining), not ${opts.pipelineDepth}`);
    }
    const socketsPerEndpointMax = opts.socketsPerEndpointMax ?? 64;
    this.t = new Transport({
      endpoints: opts.endpoints, timeoutMs: opts.timeoutMs ?? 10_000, attemptsMax: opts.attemptsMax ?? 5,
      backoffMsMax: opts.backoffMsMax ?? 2_000, socketsPerEndpointMax, pipelineDepthMax: opts.pipelineDepth ?? 8, directInFlightMax: opts.directInFlightMax ?? socketsPerEndpointMax,
    }, opts.sessionToken);
    this.consistency = opts.consistency;
    const protocol = new URL(opts.endpoints[0]!).protocol === "https:" ? "https:" : "http:";
    this.router = opts.routing === false ? null : new ShardRouter(this.t, opts.mapMaxAgeMs ?? 5_000, protocol);
  }

  collection(name: string): Collection {
    return new Collection(this.t, name, this.router, this.consistency);
  }

  /**
   * This client's session as a token (`shard:version` pairs): hand it to another client (the
   * `sessionToken` option) to go on with the session there, e.g. in the next request of a web user.
   */
  sessionToken(): string {
    return this.t.session.token();
  }

  /**
   * Reads the shard map now (it is otherwise read in the background when first needed and when old):
   * after it, single-record writes go straight to their shard's leader. False when it could not be read.
   */
  async refreshShardMap(): Promise<boolean> {
    if (this.router === null) return false;
    await this.router.refresh();
    return this.router.failures === 0;
  }

  /** Creates a collection; answers once every shard has a leader. */
  createCollection(declaration: CollectionDeclaration): Promise<Record<string, unknown>> {
    return this.t.call({ method: "POST", path: "/v1/collections", body: declaration, write: true, idempotent: false });
  }

  listCollections(): Promise<{ collections: Record<string, unknown>[] }> {
    return this.t.call({ method: "GET", path: "/v1/collections", write: false, idempotent: true });
  }

  describeCollection(name: string): Promise<Record<string, unknown>> {
    return this.t.call({ method: "GET", path: `/v1/collections/${encodeURIComponent(name)}`, write: false, idempotent: true });
  }

  dropCollection(name: string): Promise<Record<string, unknown>> {
    return this.t.call({ method: "DELETE", path: `/v1/collections/${encodeURIComponent(name)}`, write: true, idempotent: false });
  }

  /** The answering node's status: its shards, roles, terms, commit and applied indexes. */
  status(): Promise<Record<string, unknown>> {
    return this.t.call({ method: "GET", path: "/v1/cluster/status", write: false, idempotent: true });
  }

  /** The shard map: ranges, replicas, epochs and leaders, as the answering node knows them. */
  shards(): Promise<{ shards: Record<string, unknown>[] }> {
    return this.t.call({ method: "GET", path: "/v1/cluster/shards", write: false, idempotent: true });
  }

  /**
   * Any route of the HTTP API (docs/openapi.json), for what the methods above do not cover (the
   * cluster's nodes, shards, operators, alerts and settings): JSON in and out, a refusal thrown as a
   * ShoalError. A GET is retried as any read; another method is sent once, unless it carries an
   * idempotency key (then retried under it).
   */
  request<T = unknown>(method: "GET" | "PUT" | "POST" | "DELETE" | "PATCH", path: string, opts: { body?: unknown; idempotencyKey?: string; timeoutMs?: number } = {}): Promise<T> {
    const read = method === "GET";
    return this.t.call<T>({
      method, path, write: !read, idempotent: read || opts.idempotencyKey !== undefined,
      ...(opts.body !== undefined ? { body: opts.body } : {}), ...(opts.timeoutMs !== undefined ? { timeoutMs: opts.timeoutMs } : {}),
      ...(opts.idempotencyKey !== undefined ? { headers: { "idempotency-key": opts.idempotencyKey } } : {}),
    });
  }

  /**
   * The cluster's changes as they happen: a `snapshot` event (every node and live shard), then a `node`
   * or `shard` event for each change, until the loop stops (which closes the stream) or the node ends it.
   */
  async *watch(): AsyncGenerator<WatchEvent> {
    yield* watchEvents(await this.t.open("/v1/cluster/watch"));
  }

  /**
   * The shard holding `id` of `collection` by the client's shard map (null: the map does not say yet,
   * or routing is off). The map follows the watch stream, so a split or merge shows here as it happens.
   */
  shardOf(collection: string, id: string): number | null {
    return this.router === null ? null : this.router.shardOf(collection, id);
  }

  /** Ends the client's connections; calls after it fail with `client_closed`. */
  close(): void {
    this.router?.close();
    this.t.close();
  }
}
