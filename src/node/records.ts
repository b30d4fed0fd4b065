/**
 * The state machine of a shard: records with a JSON payload, an optional vector (float32, little-endian
 * bytes: the collection's schema was checked by the gateway) and a version.
 * A record's version is the shard's version base plus the log index of the write that produced it (see
 * shard-apply.ts for why versions only grow across splits and merges). Commands travel in log entries as
 * msgpack.
 */
import { RANGE_UNCHECKED } from "./mutations.js";
import { pack, unpack } from "msgpackr";
import { assert } from "../util/assert.js";
import type { Position } from "../meta/ranges.js";

/** A range bound in the log: a hash (number) or an id (string), as the shard's range has it. */
const isPosition = (v: unknown): v is Position => typeof v === "number" || typeof v === "string";

/**
 * `idem`: the client's idempotency key. The shard remembers the outcome of a write that carried one, by
 * record id and key, so the same write asked again returns that outcome instead of applying twice.
 */
export type RecordCommand =
  | { op: "put"; key: string; payload: unknown; vector?: Uint8Array; ifVersion?: number; idem?: IdempotencyTag; expiresAtMs?: number }
  | { op: "delete"; key: string; ifVersion?: number; idem?: IdempotencyTag };

/**
 * What a write with an idempotency key carries. The limits travel in the command, not in each replica's
 * settings, so that every replica forgets the same keys at the same log index (the settings a replica
 * sees may lag); `atMs` is the proposer's clock for the same reason.
 */
export interface IdempotencyTag {
  key: string;
  /** A digest of the write (op, payload, ifVersion): the same key with another write is refused. */
  fingerprint: string;
  atMs: number;
  /** The shard remembers the outcome until atMs + ttlMs ... */
  ttlMs: number;
  /** ... and at most this many keys (the oldest are forgotten first). */
  keysMax: number;
}

/**
 * Cuts the shard at position `at` (a hash, or an id in a range collection): the positions from there to
 * its end go to the new shard `child` (PD-6).
 */
export interface SplitCommand { op: "split"; at: Position; child: number }

/**
 * A merge (PD-6) in three entries: the source shard freezes (refuses writes from then on; its records
 * are final), the target absorbs the source's records and range through its own log, and the source
 * unfreezes if the target cannot absorb it (no longer adjacent).
 */
export type MergeCommand =
  | { op: "freeze"; into: number }
  | { op: "unfreeze" }
  /**
   * `records`: the source's final records and remembered idempotency keys. `versionMax`: the highest
   * version the source ever handed out (its version base plus its freeze index): the target's versions
   * continue above it.
   */
  | { op: "absorb"; from: number; start: Position; end: Position; records: [string, unknown][]; versionMax: number };

/**
 * A batch upsert (DATA-5): plain puts of records of one shard in one log entry, all at the entry's
 * version. An item whose id is outside the shard's range (a split raced the routing) is refused alone
 * (`refused` in the result) and routed again by the gateway. A batch carries no idempotency key: a
 * plain put asked twice leaves the same record (at a higher version), so a batch may be sent again.
 */
export interface PutManyCommand { op: "put-many"; items: PutItem[] }
export interface PutItem { key: string; payload: unknown; vector?: Uint8Array; expiresAtMs?: number }

/**
 * Deletes of records of one shard in one log entry (delete by filter, expiry); refused items as for a
 * batch of puts. With `versions`, a record is deleted only while at that version (an expired record
 * written again since keeps its new life).
 */
export interface DeleteManyCommand { op: "delete-many"; keys: string[]; versions?: number[] }

export type ShardCommand = RecordCommand | PutManyCommand | DeleteManyCommand | SplitCommand | MergeCommand;

export interface StoredRecord {
  payload: unknown;
  version: number;
  /** float32 little-endian bytes, in a collection with a vector schema. */
  vector?: Uint8Array;
  /**
   * Wall-clock ms after which the record is expired, in a collection with a TTL: the proposer's clock
   * plus the TTL, fixed in the command so every replica stores the same. Reads hide it from then on;
   * the shard's leader deletes it soon after (data/expiry.ts).
   */
  expiresAtMs?: number;
}

/** Whether a record is expired at `nowMs` (a wall-clock time). */
export function isExpired(r: StoredRecord, nowMs: number): boolean {
  return r.expiresAtMs !== undefined && r.expiresAtMs <= nowMs;
}

/** A vector as it travels in the log and rests in the store: its float32 bytes. */
export function vectorBytes(v: Float32Array): Uint8Array {
  return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
}

/** A stored vector's values (copied when the bytes are not aligned for a Float32Array view). */
export function vectorOf(bytes: Uint8Array): Float32Array {
  assert(bytes.byteLength % 4 === 0, "a stored vector has whole float32 values");
  if (bytes.byteOffset % 4 === 0) return new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
  // A copy (Buffer's own slice() would be a view again, over a pool that may be any size).
  return new Float32Array(new Uint8Array(bytes).buffer);
}

/**
 * An async write's answer (write mode async): its entry is durable in the leader's log, not yet
 * committed; `version` is the version it gets when applied, `index` its log index. A failover before a
 * quorum holds it can lose it.
 */
export interface AsyncAck { ok: true; async: true; version: number; index: number }

export type CommandResult =
  /**
   * `deleted`: a delete found the record (false: there was nothing to delete). `replayed`: the outcome of
   * an earlier write with the same idempotency key, not applied again. `removed`: records a batch delete
   * found (and deleted).
   */
  | { ok: true; version: number; deleted?: boolean; replayed?: true; refused?: number[]; removed?: number }
  | { ok: false; code: "version_mismatch"; currentVersion: number; replayed?: true }
  /** The idempotency key was used for another write of the same record. Nothing was written. */
  | { ok: false; code: "idempotency_key_reused" }
  /**
   * The record's hash is outside the shard's range (it was split), or the shard is frozen for a merge:
   * route again. Nothing was written. (`refused`, on a batch: the items this applies to; the rest were.)
   */
  | { ok: false; code: "wrong_shard" }
  | { ok: false; code: "bad_split"; message: string }
  /** An absorb whose source no longer borders the shard (it split, or absorbed something else). */
  | { ok: false; code: "not_adjacent" };

/** A proposal: a command plus the id the proposing node uses to answer its client. */
export interface Proposal {
  /** Node id of the proposer and its request number: unique in the cluster. */
  origin: [number, number];
  cmd: ShardCommand;
}

/**
 * On the log as a tuple (no key strings): [origin node, origin seq, op (0 put, 1 delete), key, payload,
 * ifVersion?], or [origin node, origin seq, 2 (split), at, child].
 */
const UNCHECKED_OP = 10;

export function encodeProposal(p: Proposal): Uint8Array {
  const c = p.cmd;
  const [node, seq] = p.origin;
  if (c.op === "split") return pack([node, seq, 2, c.at, c.child]) as Uint8Array;
  if (c.op === "freeze") return pack([node, seq, 3, c.into]) as Uint8Array;
  if (c.op === "unfreeze") return pack([node, seq, 4]) as Uint8Array;
  if (c.op === "absorb") return pack([node, seq, 5, c.from, c.start, c.end, c.records, c.versionMax]) as Uint8Array;
  if (c.op === "put-many") return pack([node, seq, 6, c.items.map((i) => (i.expiresAtMs === undefined ? [i.key, i.payload, i.vector ?? null] : [i.key, i.payload, i.vector ?? null, i.expiresAtMs]))]) as Uint8Array;
  if (c.op === "delete-many") return pack(c.versions === undefined ? [node, seq, 7, c.keys] : [node, seq, 7, c.keys, c.versions]) as Uint8Array;
  // Op 0 put, 1 delete; 10 + op under the gateway-skips-epoch mutation (never in production; mutations.ts).
  const unchecked = (c as { [RANGE_UNCHECKED]?: true })[RANGE_UNCHECKED] === true ? UNCHECKED_OP : 0;
  const t: unknown[] = [p.origin[0], p.origin[1], (c.op === "put" ? 0 : 1) + unchecked, c.key, c.op === "put" ? c.payload : null];
  const vector = c.op === "put" ? c.vector : undefined;
  const expires = c.op === "put" ? c.expiresAtMs : undefined;
  const more = expires !== undefined ? 4 : vector !== undefined ? 3 : c.idem !== undefined ? 2 : c.ifVersion !== undefined ? 1 : 0;
  if (more >= 1) t.push(c.ifVersion ?? null);
  if (more >= 2) t.push(c.idem === undefined ? null : [c.idem.key, c.idem.fingerprint, c.idem.atMs, c.idem.ttlMs, c.idem.keysMax]);
  if (more >= 3) t.push(vector ?? null);
  if (more >= 4) t.push(expires);
  return pack(t) as Uint8Array;
}

export function decodeProposal(data: Uint8Array): Proposal {
  const t = unpack(data) as unknown[];
  const unchecked = Array.isArray(t) && (t[2] === UNCHECKED_OP || t[2] === UNCHECKED_OP + 1);
  if (unchecked) t[2] = (t[2] as number) - UNCHECKED_OP;
  if (Array.isArray(t) && typeof t[2] === "number" && t[2] >= 2) {
    const origin: [number, number] = [t[0] as number, t[1] as number];
    switch (t[2]) {
      case 2:
        assert(t.length === 5 && isPosition(t[3]) && typeof t[4] === "number", "malformed split in the log");
        return { origin, cmd: { op: "split", at: t[3], child: t[4] } };
      case 3:
        assert(t.length === 4 && typeof t[3] === "number", "malformed freeze in the log");
        return { origin, cmd: { op: "freeze", into: t[3] } };
      case 4:
        return { origin, cmd: { op: "unfreeze" } };
      case 6: {
        assert(t.length === 4 && Array.isArray(t[3]), "malformed batch in the log");
        const items = (t[3] as unknown[]).map((i): PutItem => {
          assert(Array.isArray(i) && (i.length === 3 || (i.length === 4 && typeof i[3] === "number")) && typeof i[0] === "string" &&
            (i[2] === null || i[2] instanceof Uint8Array), "malformed batch item in the log");
          const item: PutItem = { key: i[0], payload: i[1] };
          if (i[2] !== null) item.vector = i[2] as Uint8Array;
          if (i.length === 4) item.expiresAtMs = i[3] as number;
          return item;
        });
        return { origin, cmd: { op: "put-many", items } };
      }
      case 7:
        assert((t.length === 4 || t.length === 5) && Array.isArray(t[3]) && (t[3] as unknown[]).every((k) => typeof k === "string"), "malformed batch delete in the log");
        if (t.length === 4) return { origin, cmd: { op: "delete-many", keys: t[3] as string[] } };
        assert(Array.isArray(t[4]) && t[4].length === (t[3] as unknown[]).length && (t[4] as unknown[]).every((v) => typeof v === "number"), "malformed batch delete versions in the log");
        return { origin, cmd: { op: "delete-many", keys: t[3] as string[], versions: t[4] as number[] } };
      case 5:
        assert(t.length === 8 && typeof t[3] === "number" && isPosition(t[4]) && isPosition(t[5]) && Array.isArray(t[6]) &&
          typeof t[7] === "number", "malformed absorb in the log");
        return { origin, cmd: { op: "absorb", from: t[3], start: t[4], end: t[5], records: t[6] as [string, unknown][], versionMax: t[7] } };
      default:
        assert(false, `unknown shard command ${String(t[2])} in the log`);
    }
  }
  assert(Array.isArray(t) && t.length >= 5 && t.length <= 9 && typeof t[3] === "string", "malformed proposal in the log");
  const [node, seq, op, key, payload, ifVersion, idem, vector, expiresAtMs] = t as [number, number, 0 | 1, string, unknown, number | null | undefined, unknown, unknown, unknown];
  const cmd: RecordCommand = op === 0 ? { op: "put", key, payload } : { op: "delete", key };
  if (typeof ifVersion === "number") cmd.ifVersion = ifVersion;
  if (vector !== undefined && vector !== null) {
    assert(op === 0 && vector instanceof Uint8Array, "malformed vector in the log");
    (cmd as Extract<RecordCommand, { op: "put" }>).vector = vector;
  }
  if (expiresAtMs !== undefined) {
    assert(op === 0 && typeof expiresAtMs === "number", "malformed expiry in the log");
    (cmd as Extract<RecordCommand, { op: "put" }>).expiresAtMs = expiresAtMs;
  }
  if (idem !== undefined && idem !== null) {
    assert(Array.isArray(idem) && idem.length === 5 && typeof idem[0] === "string" && typeof idem[1] === "string" &&
      typeof idem[2] === "number" && typeof idem[3] === "number" && typeof idem[4] === "number", "malformed idempotency key in the log");
    cmd.idem = { key: idem[0], fingerprint: idem[1], atMs: idem[2], ttlMs: idem[3], keysMax: idem[4] };
  }
  if (unchecked) (cmd as { [RANGE_UNCHECKED]?: true })[RANGE_UNCHECKED] = true;
  return { origin: [node, seq], cmd };
}

/**
 * Applies a command as version `version` (see shard-apply.ts: the shard's version base plus the entry's
 * log index): the result for the client, and the record's new state (null:
 * deleted; undefined: unchanged). The current record is read for a compare-and-set and a delete (whose
 * client is told whether there was anything to delete); a plain put does not depend on it.
 */
export function applyCommand(cmd: RecordCommand, version: number, readCurrent: () => StoredRecord | undefined):
  { result: CommandResult; write: StoredRecord | null | undefined } {
  if (cmd.ifVersion !== undefined) {
    const currentVersion = readCurrent()?.version ?? 0;
    if (cmd.ifVersion !== currentVersion) return { result: { ok: false, code: "version_mismatch", currentVersion }, write: undefined };
  }
  if (cmd.op === "put") {
    const write: StoredRecord = { payload: cmd.payload, version };
    if (cmd.vector !== undefined) write.vector = cmd.vector;
    if (cmd.expiresAtMs !== undefined) write.expiresAtMs = cmd.expiresAtMs;
    return { result: { ok: true, version }, write };
  }
  const deleted = readCurrent() !== undefined;
  return { result: { ok: true, version, deleted }, write: deleted ? null : undefined };
}
