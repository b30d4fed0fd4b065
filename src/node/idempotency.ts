/**
 * Idempotency keys (issue 11): a shard remembers the outcome of every write that carried a key, so that
 * a client that did not learn the outcome (a timeout, a lost connection, a leader that died) can ask
 * again with the same key and get the first outcome instead of a second application.
 *
 * What is remembered lives in the shard's own key space, next to the records, under a prefix no record
 * id can start with ("\u007f" sorts after every character an id may hold), keyed by the write's version,
 * record id and idempotency key. So it is carried by snapshots, restarts and replica moves like the
 * records, and a split or a merge moves it with the record it belongs to: a retry that lands on the
 * record's new shard still finds it. Keys are scoped to their record: the same key sent for another
 * record is another write.
 *
 * The version comes first so that outcomes are stored in the order they are made and forgotten: a
 * commit adds them at one end of the shard's outcomes and deletes them at the other, touching a few
 * pages of LMDB's tree. Keyed by record id first, each commit rewrote most of the tree's leaf pages
 * (random keys): at 256 connections the disk took 9-16 KB per keyed write against 5 KB per plain one,
 * growing as a shard's outcomes grew (measured). Stores written before keep their outcomes under the
 * older key (record id first) until they are forgotten; both are read, except older keys that may have
 * been cut (orphans, see writeKeyOfStored), which are deleted unanswered.
 *
 * Forgetting is part of the replicated state machine: it happens while entries are applied, decided
 * only by the entries (the proposer's clock and limits travel in each command), so every replica
 * forgets the same keys at the same log index.
 */
import { assert } from "../util/assert.js";
import type { CommandResult } from "./records.js";

/** Record ids sort below this; remembered outcomes sort at and above it. */
export const RECORDS_END = "\u007f";
/** Outcomes stored before they were ordered by version: PREFIX_BY_RECORD + record id + NUL + key. */
const PREFIX_BY_RECORD = "\u007fk";
const NUL = "\u0000";
/** Outcomes: PREFIX_BY_VERSION + version (VERSION_DIGITS decimal digits) + SEPARATOR + record id + SEPARATOR + key. */
const PREFIX_BY_VERSION = "\u007fv";
const VERSION_DIGITS = 16;
/**
 * Neither a record id nor an idempotency key holds it, and LMDB's array keys (ordered-binary) keep it:
 * they end a string at NUL once it is 64 characters or longer, which split the older keys on reading.
 */
const SEPARATOR = "\u001f";
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

/** Where the outcome of a keyed write at `version` is stored. */
export function outcomeKey(version: number, recordId: string, idempotencyKey: string): string {
  assert(Number.isSafeInteger(version) && version >= 0, () => `an outcome's version must be a count, got ${version}`);
  return PREFIX_BY_VERSION + String(version).padStart(VERSION_DIGITS, "0") + SEPARATOR + recordId + SEPARATOR + idempotencyKey;
}

/** Where stores written before outcomes were ordered by version keep an outcome (read, never written). */
export function outcomeKeyByRecord(recordId: string, idempotencyKey: string): string {
  return PREFIX_BY_RECORD + recordId + NUL + idempotencyKey;
}

/** What a remembered outcome answers for, whatever its store key: record id + SEPARATOR + idempotency key. */
export function writeKeyOf(recordId: string, idempotencyKey: string): string {
  return recordId + SEPARATOR + idempotencyKey;
}

export function isOutcomeKey(storeKey: string): boolean {
  return storeKey >= RECORDS_END;
}

/**
 * Older keys (PREFIX_BY_RECORD) this long or longer may differ between replicas: ordered-binary ends a
 * string of 64 characters or more at its NUL, and before 2026-12-05 snapshot installs, splits, merges
 * and queue rebuilds read such keys back cut to their record id, then stored or deleted them so. One
 * replica may hold the whole key, another the cut one (one per record, whichever came last), another
 * neither.
 */
const LEGACY_KEY_EXACT_LENGTH_MAX = 63;

/**
 * The write key (writeKeyOf) of a stored outcome, from either form of its store key; undefined for an
 * orphan: an older key that is cut (no NUL) or long enough to have been cut on another replica. An
 * orphan answers no retry and counts toward no limit: replicas must decide alike, and what they hold of
 * orphans differs (LEGACY_KEY_EXACT_LENGTH_MAX). Each replica deletes its own (`forget`).
 */
function writeKeyOfStored(storeKey: string): string | undefined {
  if (storeKey.startsWith(PREFIX_BY_VERSION)) {
    const at = PREFIX_BY_VERSION.length + VERSION_DIGITS;
    assert(storeKey[at] === SEPARATOR && storeKey.indexOf(SEPARATOR, at + 1) > at + 1,
      () => `malformed remembered outcome key ${JSON.stringify(storeKey)}`);
    return storeKey.slice(at + 1);
  }
  const { recordId, idempotencyKey } = legacyParts(storeKey);
  if (idempotencyKey === null || storeKey.length > LEGACY_KEY_EXACT_LENGTH_MAX) return undefined;
  return writeKeyOf(recordId, idempotencyKey);
}

/** The parts of an older key (PREFIX_BY_RECORD + record id + NUL + key); the key is null where it was cut. */
function legacyParts(storeKey: string): { recordId: string; idempotencyKey: string | null } {
  const at = storeKey.indexOf(NUL, PREFIX_BY_RECORD.length);
  assert(storeKey.startsWith(PREFIX_BY_RECORD) && (at === -1 ? storeKey.length : at) > PREFIX_BY_RECORD.length,
    () => `malformed remembered outcome key ${JSON.stringify(storeKey)}`);
  return at === -1
    ? { recordId: storeKey.slice(PREFIX_BY_RECORD.length), idempotencyKey: null }
    : { recordId: storeKey.slice(PREFIX_BY_RECORD.length, at), idempotencyKey: storeKey.slice(at + 1) };
}

/** The record id a stored key belongs to: the key itself for a record, the embedded id for an outcome (orphans too). */
export function ownerOf(storeKey: string): string {
  if (!isOutcomeKey(storeKey)) return storeKey;
  if (storeKey.startsWith(PREFIX_BY_RECORD)) return legacyParts(storeKey).recordId;
  return recordIdOf(writeKeyOfStored(storeKey)!);
}

/** The record id of a write key (writeKeyOf): what precedes its separator. */
function recordIdOf(writeKey: string): string {
  return writeKey.slice(0, writeKey.indexOf(SEPARATOR));
}

/**
 * One stored outcome, as the queue keeps it. Its store key is derived (keyOf), not kept: the key string
 * was most of what 50,000 remembered outcomes per replica held on the heap, and every keyed write made
 * one that survived into the old generation.
 */
interface Remembered {
  readonly v: number;
  readonly exp: number;
  /** Its write key (writeKeyOf). */
  readonly w: string;
  /** Its store key when stored the older way (PREFIX_BY_RECORD); null when by version (outcomeKey). */
  readonly legacyKey: string | null;
  /** Stored: false once forgotten, removed or moved away (its item is then skipped). */
  live: boolean;
}

function keyOf(r: Remembered): string {
  return r.legacyKey ?? PREFIX_BY_VERSION + String(r.v).padStart(VERSION_DIGITS, "0") + SEPARATOR + r.w;
}

/** Order of forgetting: by version, ties (a merge brings another shard's versions) by store key. */
function older(a: Remembered, b: Remembered): number {
  if (a.v !== b.v) return a.v - b.v;
  const ka = keyOf(a);
  const kb = keyOf(b);
  return ka < kb ? -1 : ka > kb ? 1 : 0;
}

/**
 * The outcomes a shard remembers, oldest first, for forgetting by count and age. Built from the store
 * when a shard first needs it and kept up to date by the apply step. What it forgets must be the same on
 * every replica, whether its queue was built at start or kept up to date for days: so it decides only
 * on the live outcomes (`byWrite` holds exactly the stored ones) in a total order, and skips stale items
 * (an outcome recorded again after it expired, or one moved away by a split) without counting them.
 * Invariant: `byWrite` maps each stored outcome's write key (writeKeyOf) to it, one outcome per write
 * key; its outcomes are exactly the live items. Orphans (writeKeyOfStored) are not live: they are listed
 * in `orphans` only, to be deleted.
 */
export class RememberedQueue {
  /** Invariant: items[head..] are in `older` order (from() sorts, add() keeps it, drop() filters). */
  private items: Remembered[] = [];
  private head = 0;
  private readonly byWrite = new Map<string, Remembered>();
  /** Orphans stored here and not yet deleted (a replica's own: replicas may hold different ones). */
  private orphans: string[] = [];

  static from(entries: Iterable<[string, unknown]>): RememberedQueue {
    const q = new RememberedQueue();
    for (const [k, value] of entries) {
      const w = writeKeyOfStored(k);
      if (w === undefined) {
        q.orphans.push(k);
        continue;
      }
      const r = q.remembered(k, value as RememberedOutcome, w);
      assert(!q.byWrite.has(w), () => `two stored outcomes of one write key: ${JSON.stringify(keyOf(q.byWrite.get(w)!))} and ${JSON.stringify(k)}`);
      q.items.push(r);
      q.byWrite.set(w, r);
    }
    q.items.sort(older);
    return q;
  }

  /**
   * Where the outcome remembered for a write key (writeKeyOf) is stored, if one is (exactly: `byWrite`
   * holds the stored ones), without reading the store.
   */
  storedAt(writeKey: string): string | undefined {
    const r = this.byWrite.get(writeKey);
    return r === undefined ? undefined : keyOf(r);
  }

  /** Outcomes stored. */
  get size(): number {
    return this.byWrite.size;
  }

  /**
   * Records an outcome stored under `k`, whose write key is `w` (the caller may pass the one it has).
   * Precondition: none is stored for its write key under another key.
   */
  add(k: string, o: RememberedOutcome, w: string | undefined = writeKeyOfStored(k)): void {
    if (w === undefined) {
      // An orphan absorbed by a merge.
      this.orphans.push(k);
      return;
    }
    const r = this.remembered(k, o, w);
    const before = this.byWrite.get(w);
    if (before !== undefined) {
      assert(keyOf(before) === k, () => `an outcome of ${JSON.stringify(w)} is stored already, under ${JSON.stringify(keyOf(before))}`);
      before.live = false;
    }
    this.byWrite.set(w, r);
    const last = this.items[this.items.length - 1];
    this.items.push(r);
    // Absorbed outcomes (a merge) may be older than the shard's own: keep the order.
    if (last !== undefined && older(last, r) > 0) this.resort();
  }

  /**
   * Forgets from the oldest while more than `keysMax` are kept or the oldest expired before `nowMs`; and
   * deletes orphans. Replicas delete their orphans at different times, or none: no decision reads them.
   */
  forget(nowMs: number, keysMax: number, remove: (k: string) => void): void {
    for (let n = 0; n < FORGET_PER_WRITE_MAX && this.orphans.length > 0; n++) remove(this.orphans.pop()!);
    let forgotten = 0;
    while (this.head < this.items.length && forgotten < FORGET_PER_WRITE_MAX) {
      const oldest = this.items[this.head]!;
      if (!oldest.live) {
        this.head++;
        continue;
      }
      if (this.byWrite.size <= keysMax && oldest.exp >= nowMs) break;
      this.head++;
      this.unlist(oldest);
      remove(keyOf(oldest));
      forgotten++;
    }
    // The forgotten prefix goes once it is most of the array; what is left is in order already (no sort:
    // sorting 50,000 items stalled the apply step ~30 ms every 50,000 keyed writes).
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
  }

  /** Forgets one outcome ahead of its turn (the caller removes it from the store): its write is recorded again. */
  remove(k: string): void {
    const w = writeKeyOfStored(k);
    const r = w === undefined ? undefined : this.byWrite.get(w);
    assert(r !== undefined && keyOf(r) === k, () => `no outcome is stored under ${JSON.stringify(k)}`);
    this.unlist(r);
  }

  /**
   * A split: the outcomes (and orphans) whose record id `movesAway` leave this queue for the one it
   * returns, the child's, which is then exactly what the split stores on the child (the same outcomes,
   * in the same order), so the child does not build its queue from its store (~100 ms for 25,000
   * outcomes: measured).
   */
  split(movesAway: (recordId: string) => boolean): RememberedQueue {
    const child = new RememberedQueue();
    const stay: Remembered[] = [];
    for (let i = this.head; i < this.items.length; i++) {
      const r = this.items[i]!;
      if (!r.live) continue;
      if (!movesAway(recordIdOf(r.w))) {
        stay.push(r);
        continue;
      }
      this.byWrite.delete(r.w);
      // Items stay in `older` order: a filter of an ordered list.
      child.items.push(r);
      child.byWrite.set(r.w, r);
    }
    this.items = stay;
    this.head = 0;
    child.orphans = this.orphans.filter((k) => movesAway(ownerOf(k)));
    this.orphans = this.orphans.filter((k) => !movesAway(ownerOf(k)));
    assert(this.byWrite.size === this.items.length && child.byWrite.size === child.items.length,
      () => `a split's queues hold ${this.items.length} and ${child.items.length} items for ${this.byWrite.size} and ${child.byWrite.size} outcomes`);
    return child;
  }

  private remembered(k: string, o: RememberedOutcome, w: string): Remembered {
    const legacyKey = k.startsWith(PREFIX_BY_RECORD) ? k : null;
    const r: Remembered = { v: o.v, exp: o.exp, w, legacyKey, live: true };
    // The version in a key is its outcome's (outcomeKey), so the key can be derived from the outcome.
    assert(legacyKey !== null || (k.length === PREFIX_BY_VERSION.length + VERSION_DIGITS + 1 + w.length && k.endsWith(w) &&
      Number(k.slice(PREFIX_BY_VERSION.length, PREFIX_BY_VERSION.length + VERSION_DIGITS)) === o.v),
    () => `the outcome stored under ${JSON.stringify(k)} (version ${o.v}) is not the one its key names`);
    return r;
  }

  private unlist(r: Remembered): void {
    // A live item is the one `byWrite` holds for its write key (add marks the one it replaces not live):
    // deleting it is the test, without a lookup of its own in a map of up to keysMax entries (that
    // lookup was ~5 % of a keyed put's apply step: measured).
    assert(r.live, () => `the outcome ${JSON.stringify(keyOf(r))} is stored`);
    r.live = false;
    const stored = this.byWrite.delete(r.w);
    assert(stored, () => `the outcome ${JSON.stringify(keyOf(r))} was not in the queue's map`);
  }

  private resort(): void {
    this.items = this.items.slice(this.head).sort(older);
    this.head = 0;
  }
}
