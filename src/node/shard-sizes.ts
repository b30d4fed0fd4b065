/**
 * Sizes of the shards a node leads (records and bytes), for splitting by size and merging small
 * neighbours (PD-6). Measured by walking each shard's records a bounded number per pass, resuming
 * where the last pass stopped, one shard after another; a shard's figures are published when its walk
 * completes, so they trail writes by up to one walk. Bytes are the records' msgpack size plus their ids
 * (what the state store holds, near enough).
 */
import { pack } from "msgpackr";
import type { StoredRecord } from "./records.js";

/** Records visited per pass over all shards: bounds the loop time the measuring takes. */
export const RECORDS_PER_PASS = 5000;

export interface ShardSize {
  records: number;
  bytes: number;
}

type Scan = (group: number, limit: number, after?: string) => [string, StoredRecord][];

export class ShardSizes {
  /** Published sizes of shards led here (bounded by the shards led). */
  private readonly sizes = new Map<number, ShardSize>();
  /** The walk in progress: its shard, the last id visited, and the running totals. */
  private walk: { shard: number; after: string | undefined; records: number; bytes: number } | null = null;

  constructor(private readonly scan: Scan) {}

  get(shard: number): ShardSize | undefined {
    return this.sizes.get(shard);
  }

  /** Drops what was measured of a shard (its range changed); a walk of it in progress starts over. */
  forget(shard: number): void {
    this.sizes.delete(shard);
    if (this.walk?.shard === shard) this.walk = { shard, after: undefined, records: 0, bytes: 0 };
  }

  /** Walks on, over the shards led now (their ids), for at most RECORDS_PER_PASS records. */
  measure(led: readonly number[]): void {
    const ledSet = new Set(led);
    for (const id of this.sizes.keys()) if (!ledSet.has(id)) this.sizes.delete(id);
    if (led.length === 0) return;
    const order = [...led].sort((a, b) => a - b);
    let budget = RECORDS_PER_PASS;
    const completed = new Set<number>();
    // Bounded: each round either spends budget or completes a shard, and no shard completes twice a pass.
    for (let round = 0; budget > 0 && round <= order.length; round++) {
      if (this.walk === null || !ledSet.has(this.walk.shard)) {
        const last = this.walk?.shard ?? 0;
        const next = order.find((id) => id > last) ?? order[0]!;
        this.walk = { shard: next, after: undefined, records: 0, bytes: 0 };
      }
      const w = this.walk;
      const page = this.scan(w.shard, budget, w.after);
      for (const [key, rec] of page) {
        w.records++;
        w.bytes += key.length + (pack(rec) as Uint8Array).byteLength;
      }
      budget -= page.length;
      if (page.length > 0) w.after = page[page.length - 1]![0];
      if (budget > 0) {
        // The walk reached the end of the shard.
        this.sizes.set(w.shard, { records: w.records, bytes: w.bytes });
        completed.add(w.shard);
        const next = order.find((id) => id > w.shard) ?? order[0]!;
        this.walk = { shard: next, after: undefined, records: 0, bytes: 0 };
        if (completed.has(next)) return;
      }
    }
  }
}
