/**
 * Who hears of changes to this node's copy of the metadata: watch streams (API clients, bounded),
 * callers waiting for the next change (a gateway whose shard moved), and the routing table of each
 * collection, rebuilt on first use after the shard map changed.
 */
import { DEFAULT_COLLECTION, type MetaState, collectionPartitioning } from "../meta/state.js";
import { RouteTable } from "../meta/ranges.js";
import { CollectionNotFoundError, OverloadedError, shardOf } from "./group.js";
import { type Logger } from "../util/logger.js";
import type { Clock } from "../util/clock.js";

/** Bound on the watch streams of metadata changes (API clients). */
const MAX_META_WATCHERS = 256;

export class MetaWatch {
  private readonly watchers = new Set<(keys: string[]) => void>();
  /** Bounded by the request queue (each is a waiting request). */
  private waiters: (() => void)[] = [];
  /** Per collection, built on first use; null after the shard map changed. Bounded by the collections. */
  private routes: Map<string, RouteTable> | null = null;

  constructor(
    private readonly meta: () => Readonly<MetaState>,
    private readonly initialShards: number,
    // The node's clock, never the system's: in the node world a wait on the real clock kept the
    // process alive after a run and let real time into a simulated one.
    private readonly clock: Clock,
    private readonly logger?: Logger,
  ) {}

  /**
   * Calls `listener` with the keys of the metadata records each applied batch changed (see
   * meta/records.ts; "*" after a snapshot replaced everything). Returns the unsubscribe function.
   */
  watch(listener: (keys: string[]) => void): () => void {
    if (this.watchers.size >= MAX_META_WATCHERS) throw new OverloadedError(`${MAX_META_WATCHERS} metadata watchers already`);
    this.watchers.add(listener);
    return () => this.watchers.delete(listener);
  }

  /** Resolves at the next change, or after `timeoutMs` (whichever first). */
  next(timeoutMs: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = this.clock.setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== done);
        resolve();
      }, timeoutMs);
      const done = () => {
        this.clock.clear(timer);
        resolve();
      };
      this.waiters.push(done);
    });
  }

  /** The records with these keys changed. */
  changed(keys: string[]): void {
    if (keys.some((k) => k === "*" || k.startsWith("s:"))) this.routes = null;
    const waiting = this.waiters;
    this.waiters = [];
    for (const w of waiting) w();
    for (const w of this.watchers) {
      try {
        w(keys);
      } catch (e) {
        this.logger?.warn(`a metadata watcher failed: ${(e as Error).message}`);
      }
    }
  }

  /**
   * The shard of a record id in `collection`: from the shard map's ranges (splits and merges included;
   * by the id's hash, or by the id itself in a range collection),
   * or, for the default collection before the map is recorded, from its initial ranges. Throws
   * CollectionNotFoundError for a collection the shard map has no shard of.
   */
  shardOf(key: string, collection: string = DEFAULT_COLLECTION): number {
    this.routes ??= new Map();
    let table = this.routes.get(collection);
    if (table === undefined) {
      const meta = this.meta();
      const shards = [...meta.shards.values()].filter((sh) => sh.collection === collection);
      if (shards.length > 0) this.routes.set(collection, (table = new RouteTable(collectionPartitioning(meta.collections.get(collection)), shards)));
    }
    const shard = table?.shardOf(key);
    if (shard !== undefined) return shard;
    if (collection === DEFAULT_COLLECTION) return shardOf(key, this.initialShards);
    throw new CollectionNotFoundError(collection);
  }
}
