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
 * gateways). The client also follows the cluster's watch stream: a split, merge or move reaches its
 * map as it happens, each shard's entry taken only when its epoch is not older than the one held (events
 * and map reads may cross).
 */
import { KEY_SPACE_END, type Position, RouteTable } from "../meta/ranges.js";
import type { Transport } from "./transport.js";
import { watchEvents } from "./watch.js";

/** Pauses between attempts to open the watch stream again, doubling up to this. */
const WATCH_RETRY_MS_MAX = 10_000;

interface NodeRow {
  id: number;
  http?: string;
  worker?: string;
}

interface ShardRow {
  shard: number;
  collection: string;
  range: [Position, Position | null];
  epoch: number;
  leader: number;
}

export class ShardRouter {
  /** Shard -> its row, the newest epoch seen (from map reads and the watch stream). */
  private rows = new Map<number, ShardRow>();
  private tables = new Map<string, RouteTable>();
  /** Shard -> the base URL of the node leading it (as the node that answered the map knew). */
  private leaders = new Map<number, string>();
  private fetchedAtMs = -Infinity;
  private refreshing: Promise<void> | null = null;
  /** Map reads that failed in a row (the next is tried after maxAgeMs all the same). */
  failures = 0;
  /** Node id -> its base URL. */
  private http = new Map<number, string>();
  private watching = false;
  private closed = false;

  constructor(private readonly t: Transport, private readonly maxAgeMs: number, private readonly protocol: "http:" | "https:") {
    t.onPreferredUnreachable = (base) => this.forget(base);
    t.onLeaderHint = (hint) => this.learn(hint);
  }

  /** Stops following the watch stream (the transport's close ends the stream itself). */
  close(): void {
    this.closed = true;
  }

  /** A gateway forwarded a write to the shard's leader (`shard:node`): the next goes there directly. */
  private learn(hint: string): void {
    // Every forwarded write's answer carries one: parsed without the arrays a split would make.
    const colon = hint.indexOf(":");
    if (colon <= 0) return;
    const shard = Number(hint.slice(0, colon));
    const at = this.http.get(Number(hint.slice(colon + 1)));
    if (Number.isSafeInteger(shard) && at !== undefined) this.leaders.set(shard, at);
  }

  /** The shard the client's map puts `id` of `collection` in, or null when it does not say. */
  shardOf(collection: string, id: string): number | null {
    if (Date.now() - this.fetchedAtMs > this.maxAgeMs) void this.refresh();
    if (!this.watching && !this.closed) void this.watch();
    const table = this.tables.get(collection);
    if (table === undefined) return null;
    try {
      return table.shardOf(id) ?? null;
    } catch {
      return null; // an id the collection cannot hold: the server says why
    }
  }

  /** The endpoint of the leader of the shard holding `id`, or null when the map does not say (ask any gateway). */
  leaderEndpoint(collection: string, id: string): string | null {
    const shard = this.shardOf(collection, id);
    return shard === null ? null : this.leaders.get(shard) ?? null;
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
      get<{ nodes: NodeRow[] }>("/v1/cluster/nodes"),
      get<{ shards: ShardRow[] }>("/v1/cluster/shards"),
    ]);
    this.takeAll(nodes, shards);
  }

  /** A whole map (a read, or the stream's snapshot): rows missing from it are gone (merged, dropped). */
  private takeAll(nodes: NodeRow[], shards: ShardRow[]): void {
    this.http = new Map();
    for (const n of nodes) this.takeNode(n);
    const listed = new Set(shards.map((s) => s.shard));
    for (const id of this.rows.keys()) if (!listed.has(id)) this.rows.delete(id);
    for (const s of shards) this.takeShard(s);
    this.rebuild();
  }

  private takeNode(n: NodeRow & { removed?: boolean }): void {
    const base = n.removed === true || n.worker === "removed" || n.http === undefined ? null : this.baseOf(n.http);
    if (base === null) this.http.delete(n.id);
    else this.http.set(n.id, base);
  }

  /** A shard's row, unless the one held has a newer epoch (an event and a map read crossed). */
  private takeShard(s: ShardRow): void {
    const held = this.rows.get(s.shard);
    if (held !== undefined && held.epoch > s.epoch) return;
    this.rows.set(s.shard, s);
    const at = this.http.get(s.leader);
    if (at !== undefined) this.leaders.set(s.shard, at);
  }

  private rebuild(): void {
    const byCollection = new Map<string, { id: number; range: { start: Position; end: Position } }[]>();
    for (const s of this.rows.values()) {
      let list = byCollection.get(s.collection);
      if (list === undefined) byCollection.set(s.collection, (list = []));
      list.push({ id: s.shard, range: { start: s.range[0], end: s.range[1] ?? KEY_SPACE_END } });
    }
    const tables = new Map<string, RouteTable>();
    for (const [collection, list] of byCollection) tables.set(collection, new RouteTable(typeof list[0]!.range.start === "string" ? "range" : "hash", list));
    this.tables = tables;
    for (const shard of this.leaders.keys()) if (!this.rows.has(shard)) this.leaders.delete(shard);
  }

  /** Follows the watch stream until the client closes, opening it again (with backoff) when it ends. */
  private async watch(): Promise<void> {
    this.watching = true;
    for (let pauseMs = 100; !this.closed; pauseMs = Math.min(WATCH_RETRY_MS_MAX, pauseMs * 2)) {
      try {
        const res = await this.t.open("/v1/cluster/watch");
        // The stream never keeps a program alive by itself (a client that is never closed, say).
        res.socket.unref();
        for await (const e of watchEvents(res)) {
          if (this.closed) break;
          pauseMs = 100;
          this.onEvent(e.event, e.data);
        }
      } catch {
        // Unreachable, refused or cut: the map reads go on meanwhile; try again after a pause.
      }
      if (this.closed) break;
      await new Promise((resolve) => setTimeout(resolve, pauseMs).unref());
    }
  }

  private onEvent(event: string, data: unknown): void {
    if (event === "snapshot") {
      const d = data as { nodes: NodeRow[]; shards: ShardRow[] };
      this.takeAll(d.nodes, d.shards);
    } else if (event === "node") {
      this.takeNode(data as NodeRow & { removed?: boolean });
    } else if (event === "shard") {
      const d = data as ShardRow & { removed?: boolean };
      if (d.removed === true) this.rows.delete(d.shard);
      else this.takeShard(d);
      this.rebuild();
    }
  }
}
