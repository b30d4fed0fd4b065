/**
 * The client's copy of the shard map (DATA-7): for a record id, the shard that owns it and the HTTP
 * endpoint of the node leading that shard, so that a write or a linearizable read goes straight there
 * instead of through a gateway that forwards it (one hop fewer). The map is read from any endpoint
 * (`/v1/cluster/nodes`, `/v1/cluster/shards`) and read again in the background once older than
 * `maxAgeMs`; a request never waits for it. A stale map costs a hop, never an error: the node a request
 * reaches forwards it to the shard's leader as any gateway does; a node that cannot be reached is
 * forgotten at once, and a write a gateway forwarded comes back naming the leader it reached (the
`Shoal-Leader` header), which the map takes at once. A node reports a shard's leader only for shards it holds a replica of, so with more
 * nodes than replicas the map routes the shards of the node it was read from (the others go through the
 * gateways).
 */
import { KEY_SPACE_END, type Position, RouteTable } from "../meta/ranges.js";
import type { Transport } from "./transport.js";

interface ShardRow {
  shard: number;
  collection: string;
  range: [Position, Position | null];
  epoch: number;
  leader: number;
}

export class ShardRouter {
  private tables = new Map<string, RouteTable>();
  /** Shard -> the base URL of the node leading it (as the node that answered the map knew). */
  private leaders = new Map<number, string>();
  private fetchedAtMs = -Infinity;
  private refreshing: Promise<void> | null = null;
  /** Map reads that failed in a row (the next is tried after maxAgeMs all the same). */
  failures = 0;

  /** Node id -> its base URL, from the last map read. */
  private http = new Map<number, string>();

  constructor(private readonly t: Transport, private readonly maxAgeMs: number, private readonly protocol: "http:" | "https:") {
    t.onPreferredUnreachable = (base) => this.forget(base);
    t.onLeaderHint = (hint) => this.learn(hint);
  }

  /** A gateway forwarded a write to the shard's leader (`shard:node`): the next goes there directly. */
  private learn(hint: string): void {
    const [shard, node] = hint.split(":").map(Number);
    const at = node === undefined ? undefined : this.http.get(node);
    if (shard !== undefined && Number.isSafeInteger(shard) && at !== undefined) this.leaders.set(shard, at);
  }

  /** The endpoint of the leader of the shard holding `id`, or null when the map does not say (ask any gateway). */
  leaderEndpoint(collection: string, id: string): string | null {
    if (Date.now() - this.fetchedAtMs > this.maxAgeMs) void this.refresh();
    const table = this.tables.get(collection);
    if (table === undefined) return null;
    let shard: number | undefined;
    try {
      shard = table.shardOf(id);
    } catch {
      return null; // an id the collection cannot hold: the server says why
    }
    return shard === undefined ? null : this.leaders.get(shard) ?? null;
  }

  /** A node that could not be reached leads nothing until the map is read again (now). */
  private forget(base: string): void {
    for (const [shard, at] of this.leaders) if (at === base) this.leaders.delete(shard);
    void this.refresh();
  }

  /**
   * A node's HTTP address as the map gives it (`host:port`, an IPv6 host unbracketed) as a base URL, or
   * null for an address a client cannot reach it at (the node listens on every interface: 0.0.0.0, ::).
   */
  private baseOf(address: string): string | null {
    const colon = address.lastIndexOf(":");
    const host = address.slice(0, colon);
    const port = address.slice(colon + 1);
    if (colon <= 0 || host === "0.0.0.0" || host === "::" || !/^\d+$/.test(port)) return null;
    return `${this.protocol}//${host.includes(":") ? `[${host}]` : host}:${port}`;
  }

  /** Reads the map again (one read at a time; a failure leaves the old map in place). */
  refresh(): Promise<void> {
    this.refreshing ??= this.read().then(() => {
      this.failures = 0;
    }, () => {
      this.failures++;
    }).finally(() => {
      this.fetchedAtMs = Date.now();
      this.refreshing = null;
    });
    return this.refreshing;
  }

  private async read(): Promise<void> {
    const get = <T>(path: string) => this.t.call<T>({ method: "GET", path, write: false, idempotent: true });
    const [{ nodes }, { shards }] = await Promise.all([
      get<{ nodes: { id: number; http: string; worker: string }[] }>("/v1/cluster/nodes"),
      get<{ shards: ShardRow[] }>("/v1/cluster/shards"),
    ]);
    const http = new Map<number, string>();
    for (const n of nodes) {
      const base = n.worker === "removed" ? null : this.baseOf(n.http);
      if (base !== null) http.set(n.id, base);
    }
    const byCollection = new Map<string, { id: number; range: { start: Position; end: Position } }[]>();
    const leaders = new Map<number, string>();
    for (const s of shards) {
      const range = { start: s.range[0], end: s.range[1] ?? KEY_SPACE_END };
      let list = byCollection.get(s.collection);
      if (list === undefined) byCollection.set(s.collection, (list = []));
      list.push({ id: s.shard, range });
      const at = http.get(s.leader);
      if (at !== undefined) leaders.set(s.shard, at);
    }
    const tables = new Map<string, RouteTable>();
    for (const [collection, list] of byCollection) tables.set(collection, new RouteTable(typeof list[0]!.range.start === "string" ? "range" : "hash", list));
    this.tables = tables;
    this.leaders = leaders;
    this.http = http;
  }
}
