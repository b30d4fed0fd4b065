/**
 * Hash ranges of record ids: a shard of a hash-partitioned collection owns a half-open range
 * [start, end) of a 32-bit hash of the id. A collection starts with n equal ranges; a split cuts one in
 * two. Pure.
 */
import { assert } from "../util/assert.js";

export const HASH_SPACE = 2 ** 32;

export interface HashRange {
  start: number;
  end: number;
}

/**
 * The 32-bit hash of a record id: FNV-1a, then murmur3's finalizer, because ranges use the high bits,
 * which FNV-1a alone mixes poorly for short, similar ids.
 */
export function hashOf(key: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) {
    h ^= key.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** Most shards a cluster may be founded with (`--shards`): 16,384 measured to start, replicate and idle on 3 nodes (bench:shards). */
export const SHARDS_MAX = 16_384;

/** Shard i (from 1) of n equal ranges holds the hashes h with floor(h * n / 2^32) = i - 1. */
export function initialRange(shard: number, shards: number): HashRange {
  const startOf = (i: number) => Math.ceil((i * HASH_SPACE) / shards);
  return { start: startOf(shard - 1), end: shard === shards ? HASH_SPACE : startOf(shard) };
}

/**
 * The voters a founded cluster gives shard `shard` (from 1), sorted: `replicationFactor` of the founders
 * (all of them when fewer), taken in turn from founder (shard - 1) mod n, so that replicas come out even
 * over any number of founders, and that founder, which starts the shard's first election, is one of them
 * (issue 13: shards are born replicated and led evenly, without moves). The founders' Raft
 * configurations and the metadata's shard map are both made from this, so they agree.
 */
export function foundingVoters(shard: number, founders: readonly number[], replicationFactor: number): number[] {
  assert(shard >= 1 && founders.length > 0 && replicationFactor >= 1, "a founded shard needs founders and a replication factor");
  const sorted = [...founders].sort((a, b) => a - b);
  const n = Math.min(replicationFactor, sorted.length);
  return Array.from({ length: n }, (_, k) => sorted[(shard - 1 + k) % sorted.length]!).sort((a, b) => a - b);
}

export function inRange(hash: number, r: HashRange): boolean {
  return hash >= r.start && hash < r.end;
}

/** Finds the shard owning a hash among ranges that tile the hash space. Built once per shard-map change. */
export class RouteTable {
  /** Sorted by start. Invariant: ranges do not overlap. */
  private readonly starts: number[];
  private readonly entries: { range: HashRange; shard: number }[];

  constructor(shards: Iterable<{ id: number; range: HashRange }>) {
    this.entries = [...shards].filter((s) => s.range.end > s.range.start).map((s) => ({ range: s.range, shard: s.id }))
      .sort((a, b) => a.range.start - b.range.start);
    this.starts = this.entries.map((e) => e.range.start);
  }

  /** The shard whose range holds `hash`, or undefined when none does (a gap: a split not recorded yet). */
  lookup(hash: number): number | undefined {
    let lo = 0;
    let hi = this.starts.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (this.starts[mid]! <= hash) lo = mid + 1;
      else hi = mid - 1;
    }
    const e = this.entries[hi];
    return e !== undefined && inRange(hash, e.range) ? e.shard : undefined;
  }
}
