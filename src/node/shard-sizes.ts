/**
 * Sizes of the shards a node leads (records and bytes), for splitting by size and merging small
 * neighbours (PD-6). Measured by walking each shard's records a bounded number per pass, resuming
 * where the last pass stopped, one shard after another; a shard's figures are published when its walk
 * completes, so they trail writes by up to one walk. Bytes are estimated by recordBytes.
 */
import type { StoredRecord } from "./records.js";

/** Per record beside its id, payload and vector: the version and the store's framing, near enough. */
const RECORD_OVERHEAD_BYTES = 16;

/**
 * What a record costs in the state store, near enough: its id, its payload as JSON, its vector's bytes
 * and a fixed overhead. Not the msgpack size: packing every record walked was ~6 % of a node's loop
 * time during a batch load (profiled), and splitting by size needs an estimate, not the exact figure.
 */
export function recordBytes(key: string, rec: StoredRecord): number {
  return key.length + RECORD_OVERHEAD_BYTES + (JSON.stringify(rec.payload)?.length ?? 0) + (rec.vector?.byteLength ?? 0);
}

/** Records visited per pass over all shards: bounds the loop time the measuring takes. */
export const RECORDS_PER_PASS = 5000;

export interface ShardSize {
  records: number;
  bytes: number;
}

type Scan = (group: number, limit: number, after?: string) => [string, StoredRecord][];

/**
 * A shard measured once is walked again only this long after that walk completed (and only if written
 * since): a continuous walk under a steady load cost each node ~15 us a record, ~6 % of a core.
 */
export const REMEASURE_AFTER_MS = 10_000;

/** Walks a pass starts, at most: bounds the scans one pass makes over many small shards. */
export const SHARDS_PER_PASS = 256;

/** A shard led here and its applied index: a shard whose index did not move since it was measured is not walked again. */
export interface LedShardIndex {
  shard: number;
  applied: number;
}

export class ShardSizes {
  /** Published sizes of shards led here (bounded by the shards led). */
  private readonly sizes = new Map<number, ShardSize>();
  /** Per shard with a published size: its applied index when the walk that measured it started. */
  private readonly measuredAt = new Map<number, number>();
  /** Per shard with a published size: when its walk completed (ms, the caller's clock). */
  private readonly measuredAtMs = new Map<number, number>();
  /** The walk in progress: its shard and applied index, the last id visited, and the running totals. */
  private walk: { shard: number; applied: number; after: string | undefined; records: number; bytes: number } | null = null;
  /** The shard whose walk completed last: the next walk starts after it (round robin). */
  private cursor = 0;

  constructor(private readonly scan: Scan) {}

  get(shard: number): ShardSize | undefined {
    return this.sizes.get(shard);
  }

  /** Drops what was measured of a shard (its range changed); a walk of it in progress starts over. */
  forget(shard: number): void {
    this.sizes.delete(shard);
    this.measuredAt.delete(shard);
    this.measuredAtMs.delete(shard);
    if (this.walk?.shard === shard) this.walk = null;
  }

  /**
   * Walks on over the shards led now, for at most RECORDS_PER_PASS records and SHARDS_PER_PASS walks
   * started: the walk in progress first, then, round robin, shards never measured, or whose applied index
   * moved since and whose last walk completed REMEASURE_AFTER_MS ago (an idle shard is not walked again).
   */
  measure(led: readonly LedShardIndex[], nowMs: number): void {
    const applied = new Map(led.map((s) => [s.shard, s.applied]));
    for (const id of this.sizes.keys()) {
      if (applied.has(id)) continue;
      this.sizes.delete(id);
      this.measuredAt.delete(id);
      this.measuredAtMs.delete(id);
    }
    if (this.walk !== null && !applied.has(this.walk.shard)) this.walk = null;
    const rested = (shard: number) => nowMs - (this.measuredAtMs.get(shard) ?? -Infinity) >= REMEASURE_AFTER_MS;
    const due = led.filter((s) => this.measuredAt.get(s.shard) !== s.applied && rested(s.shard)).map((s) => s.shard).sort((a, b) => a - b);
    let budget = RECORDS_PER_PASS;
    let started = 0;
    // Bounded: each round spends the budget (and returns), or completes a walk; at most SHARDS_PER_PASS start.
    for (;;) {
      if (this.walk === null) {
        if (started >= SHARDS_PER_PASS) return;
        const next = due.find((id) => id > this.cursor && this.measuredAt.get(id) !== applied.get(id)) ??
          due.find((id) => this.measuredAt.get(id) !== applied.get(id));
        if (next === undefined) return;
        this.walk = { shard: next, applied: applied.get(next)!, after: undefined, records: 0, bytes: 0 };
        started++;
      }
      const w = this.walk;
      const page = this.scan(w.shard, budget, w.after);
      for (const [key, rec] of page) {
        w.records++;
        w.bytes += recordBytes(key, rec);
      }
      budget -= page.length;
      if (budget === 0) {
        if (page.length > 0) w.after = page[page.length - 1]![0];
        return;
      }
      // The walk reached the end of the shard.
      this.sizes.set(w.shard, { records: w.records, bytes: w.bytes });
      this.measuredAt.set(w.shard, w.applied);
      this.measuredAtMs.set(w.shard, nowMs);
      this.cursor = w.shard;
      this.walk = null;
    }
  }
}

/** Records read per page while looking for a shard's middle id. */
const MIDDLE_PAGE = 5000;

/**
 * The id in the middle of a shard's records in id order (the ⌊n/2⌋-th of n, from 0), or null when it
 * holds fewer than two: where a range collection's shard is split by default, so that both parts get
 * half its records. Strictly inside the shard's range: above its first id (itself at or above the
 * range's start) and below its end. Two walks of the shard's ids in pages (count, then find), reading
 * nothing but the replica's store: a hint the split's apply step checks against the range it has then.
 */
export function middleId(scan: Scan, group: number): string | null {
  let count = 0;
  let after: string | undefined;
  for (;;) {
    const page = scan(group, MIDDLE_PAGE, after);
    count += page.length;
    if (page.length < MIDDLE_PAGE) break;
    after = page[page.length - 1]![0];
  }
  if (count < 2) return null;
  let skip = Math.floor(count / 2);
  after = undefined;
  for (;;) {
    const page = scan(group, Math.min(MIDDLE_PAGE, skip + 1), after);
    if (skip < page.length) return page[skip]![0];
    // Fewer records than counted (deleted between the walks): no middle to trust.
    if (page.length === 0) return null;
    skip -= page.length;
    after = page[page.length - 1]![0];
  }
}
