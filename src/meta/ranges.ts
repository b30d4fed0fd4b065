/**
 * Ranges of record ids: a shard owns a half-open range [start, end) of its collection's positions. A
 * record's position is the 32-bit hash of its id in a hash-partitioned collection (ids spread evenly,
 * a collection starts with n equal ranges), and the id itself in a range-partitioned one (contiguous ids
 * live on one shard, so an ordered scan of an id range asks only the shards covering it; a collection
 * starts with the ranges its split points cut). A split cuts a range in two, a merge joins two
 * neighbours. Pure.
 */
import { assert } from "../util/assert.js";
import { KEY_SPACE_END, type Position, comparePositions } from "../placement/positions.js";
import type { Partitioning } from "./collections.js";

export { KEY_SPACE_END, type Position, comparePositions } from "../placement/positions.js";

export const HASH_SPACE = 2 ** 32;

/**
 * A shard's half-open range [start, end) of positions. Invariants: start and end are of one kind, the
 * collection's partitioning's (numbers within [0, HASH_SPACE] for hash, strings within ["",
 * KEY_SPACE_END] for range: see partitioningOf); start <= end, and start === end is an empty range (a
 * retired merge source, a replica that has not received its shard's state yet), which owns nothing.
 */
export interface ShardRange {
  start: Position;
  end: Position;
}

export interface HashRange extends ShardRange {
  start: number;
  end: number;
}

/** The partitioning a range belongs to, by the kind of its bounds (see ShardRange). */
export function partitioningOf(range: ShardRange): Partitioning {
  return typeof range.start === "string" ? "range" : "hash";
}

/** Where a record id sits in a collection partitioned so: its hash, or the id itself. */
export function positionOf(partitioning: Partitioning, id: string): Position {
  if (partitioning === "hash") return hashOf(id);
  assert(id < KEY_SPACE_END, "a record id sorts below KEY_SPACE_END");
  return id;
}

/** The whole position space of a partitioning: what the shards of a collection tile. */
export function wholeSpace(partitioning: Partitioning): ShardRange {
  return partitioning === "hash" ? { start: 0, end: HASH_SPACE } : { start: "", end: KEY_SPACE_END };
}

/** Whether the range holds the record id (by its position in the range's own partitioning). */
export function owns(range: ShardRange, id: string): boolean {
  return inRange(positionOf(partitioningOf(range), id), range);
}

export function isEmptyRange(range: ShardRange): boolean {
  return !(range.start < range.end);
}

/** The two parts of `range` cut at `at`, or null when `at` is not a position of its kind strictly inside it. */
export function cutRange(range: ShardRange, at: Position): { lower: ShardRange; upper: ShardRange } | null {
  if (typeof at !== typeof range.start || (typeof at === "number" && !Number.isInteger(at)) || at <= range.start || at >= range.end) return null;
  return { lower: { start: range.start, end: at }, upper: { start: at, end: range.end } };
}

/** A range for messages: `[0, 2147483648)`, `["", "k")`. */
export function describeRange(range: ShardRange): string {
  return `[${JSON.stringify(range.start)}, ${range.end === KEY_SPACE_END ? "end" : JSON.stringify(range.end)})`;
}

/** A range bound as the API shows it: a range collection's open end (KEY_SPACE_END) is null. */
export function boundView(p: Position): Position | null {
  return p === KEY_SPACE_END ? null : p;
}

/** A range as the API shows it, [start, end]: ids for a range collection's shard, its open end null. */
export function rangeView(range: ShardRange): [Position, Position | null] {
  return [range.start, boundView(range.end)];
}

/**
 * The ranges of a new collection's `shards` shards: equal hash ranges, or the id ranges `splitPoints`
 * cut (sorted, distinct, non-empty strings below KEY_SPACE_END: one fewer than the shards). Null when
 * the split points do not fit (the metadata refuses the collection).
 */
export function initialRanges(partitioning: Partitioning, shards: number, splitPoints: readonly string[] = []): ShardRange[] | null {
  if (partitioning === "hash") return splitPoints.length > 0 ? null : Array.from({ length: shards }, (_, i) => initialRange(i + 1, shards));
  if (splitPoints.length !== shards - 1) return null;
  const bounds = ["", ...splitPoints, KEY_SPACE_END];
  for (let i = 1; i < bounds.length; i++) if (typeof bounds[i] !== "string" || !(bounds[i - 1]! < bounds[i]!)) return null;
  return splitPoints.length === 0 ? [wholeSpace("range")] : bounds.slice(1).map((end, i) => ({ start: bounds[i]!, end }));
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

/** Whether the position is in the range: of the range's kind (a position of the other kind never is), start <= p < end. */
export function inRange(p: Position, r: ShardRange): boolean {
  return typeof p === typeof r.start && p >= r.start && p < r.end;
}

/**
 * Finds the shard owning a position among one collection's ranges, which tile its position space.
 * Built once per shard-map change.
 */
export class RouteTable {
  /** Sorted by start. Invariant: ranges do not overlap, and are of `partitioning`'s kind. */
  private readonly starts: Position[];
  private readonly entries: { range: ShardRange; shard: number }[];

  constructor(readonly partitioning: Partitioning, shards: Iterable<{ id: number; range: ShardRange }>) {
    this.entries = [...shards].filter((s) => !isEmptyRange(s.range)).map((s) => ({ range: s.range, shard: s.id }))
      .sort((a, b) => comparePositions(a.range.start, b.range.start));
    assert(this.entries.every((e) => partitioningOf(e.range) === partitioning), () => `a ${partitioning} collection's shard map holds a range of another kind`);
    this.starts = this.entries.map((e) => e.range.start);
  }

  /** The shard whose range holds position `p`, or undefined when none does (a gap: a split not recorded yet). */
  lookup(p: Position): number | undefined {
    let lo = 0;
    let hi = this.starts.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (this.starts[mid]! <= p) lo = mid + 1;
      else hi = mid - 1;
    }
    const e = this.entries[hi];
    return e !== undefined && inRange(p, e.range) ? e.shard : undefined;
  }

  /** The shard of a record id. */
  shardOf(id: string): number | undefined {
    return this.lookup(positionOf(this.partitioning, id));
  }
}
