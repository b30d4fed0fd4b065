/**
 * Idempotency keys (issue 11): a shard remembers the outcome of every write that carried a key, so that
 * a client that did not learn the outcome (a timeout, a lost connection, a leader that died) can ask
 * again with the same key and get the first outcome instead of a second application.
 *
 * What is remembered lives in the shard's own key space, next to the records, under a prefix no record
 * id can start with ("\u007f" sorts after every character an id may hold), keyed by record id and
 * idempotency key. So it is carried by snapshots, restarts and replica moves like the records, and a
 * split or a merge moves it with the record it belongs to: a retry that lands on the record's new shard
 * still finds it. Keys are scoped to their record: the same key sent for another record is another write.
 *
 * Forgetting is part of the replicated state machine: it happens while entries are applied, decided
 * only by the entries (the proposer's clock and limits travel in each command), so every replica
 * forgets the same keys at the same log index.
 */
import { assert } from "../util/assert.js";
import type { CommandResult } from "./records.js";

/** Record ids sort below this; remembered outcomes sort at and above it. */
export const RECORDS_END = "\u007f";
const PREFIX = "\u007fk";
const SEPARATOR = "\u0000";
/** An idempotency key: 1-255 printable ASCII characters (what the Idempotency-Key header may carry). */
export const IDEMPOTENCY_KEY_PATTERN = "^[\\x21-\\x7e]{1,255}$";
/** Keys forgotten per applied write at most (bounds the work of one apply; the queue drains over writes). */
const FORGET_PER_WRITE_MAX = 64;

/** The outcome of a keyed write, as the shard stores it. */
export interface RememberedOutcome {
  /** The version of the write (orders what is forgotten first). */
  v: number;
  /** Forgotten after this time (the proposer's clock). */
  exp: number;
  /** The write's fingerprint: the same key with another write is refused. */
  fp: string;
  r: FinalOutcome;
}

/** The outcomes worth remembering: final ones (a write applied, or refused by compare-and-set). */
export type FinalOutcome = Extract<CommandResult, { ok: true } | { code: "version_mismatch" }>;

export function isFinal(r: CommandResult): r is FinalOutcome {
  return r.ok || r.code === "version_mismatch";
}

export function outcomeKey(recordId: string, idempotencyKey: string): string {
  return PREFIX + recordId + SEPARATOR + idempotencyKey;
}

export function isOutcomeKey(storeKey: string): boolean {
  return storeKey >= RECORDS_END;
}

/** The record id a stored key belongs to: the key itself for a record, the embedded id for an outcome. */
export function ownerOf(storeKey: string): string {
  if (!isOutcomeKey(storeKey)) return storeKey;
  const end = storeKey.indexOf(SEPARATOR, PREFIX.length);
  assert(storeKey.startsWith(PREFIX) && end > PREFIX.length, () => `malformed remembered outcome key ${JSON.stringify(storeKey)}`);
  return storeKey.slice(PREFIX.length, end);
}

/** Order of forgetting: by version, ties (a merge brings another shard's versions) by key. */
function older(a: { v: number; k: string }, b: { v: number; k: string }): number {
  return a.v - b.v || (a.k < b.k ? -1 : a.k > b.k ? 1 : 0);
}

/**
 * The outcomes a shard remembers, oldest first, for forgetting by count and age. Built from the store
 * when a shard first needs it and kept up to date by the apply step. What it forgets must be the same on
 * every replica, whether its queue was built at start or kept up to date for days: so it decides only
 * on the live outcomes (`live` holds exactly the stored ones) in a total order, and skips stale items
 * (an outcome recorded again after it expired, or one moved away by a split) without counting them.
 * Invariant: `live` maps each stored outcome's key to its version; every live outcome has an item.
 */
export class RememberedQueue {
  /** Invariant: items[head..] are in `older` order (from() sorts, add() keeps it, drop() filters). */
  private items: { v: number; exp: number; k: string }[] = [];
  private head = 0;
  private readonly live = new Map<string, number>();

  static from(entries: Iterable<[string, unknown]>): RememberedQueue {
    const q = new RememberedQueue();
    for (const [k, value] of entries) {
      const o = value as RememberedOutcome;
      q.items.push({ v: o.v, exp: o.exp, k });
      q.live.set(k, o.v);
    }
    q.items.sort(older);
    return q;
  }

  /** Whether an outcome is stored under `k` (exactly: `live` holds the stored ones), without reading the store. */
  has(k: string): boolean {
    return this.live.has(k);
  }

  /** Outcomes stored. */
  get size(): number {
    return this.live.size;
  }

  add(k: string, o: RememberedOutcome): void {
    const last = this.items[this.items.length - 1];
    const item = { v: o.v, exp: o.exp, k };
    this.items.push(item);
    this.live.set(k, o.v);
    // Absorbed outcomes (a merge) may be older than the shard's own: keep the order.
    if (last !== undefined && older(last, item) > 0) this.resort();
  }

  /** Forgets from the oldest while more than `keysMax` are kept or the oldest expired before `nowMs`. */
  forget(nowMs: number, keysMax: number, remove: (k: string) => void): void {
    let forgotten = 0;
    while (this.head < this.items.length && forgotten < FORGET_PER_WRITE_MAX) {
      const oldest = this.items[this.head]!;
      if (this.live.get(oldest.k) !== oldest.v) {
        this.head++;
        continue;
      }
      if (this.live.size <= keysMax && oldest.exp >= nowMs) break;
      this.head++;
      this.live.delete(oldest.k);
      remove(oldest.k);
      forgotten++;
    }
    // The forgotten prefix goes once it is most of the array; what is left is in order already (no sort:
    // sorting 50,000 items stalled the apply step ~30 ms every 50,000 keyed writes).
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
  }

  /** Drops the outcomes whose record moved to another shard (a split). */
  drop(moved: (k: string) => boolean): void {
    for (const k of [...this.live.keys()]) if (moved(k)) this.live.delete(k);
    this.items = this.items.slice(this.head).filter((it) => this.live.get(it.k) === it.v);
    this.head = 0;
  }

  private resort(): void {
    this.items = this.items.slice(this.head).sort(older);
    this.head = 0;
  }
}
