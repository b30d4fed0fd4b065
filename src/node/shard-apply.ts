/**
 * Applying a shard's committed entries: record commands (refused, without writing, for an id whose
 * position, its hash or in a range collection the id itself, left the shard's range in a split), splits
 * and merges (PD-6), and idempotency keys (idempotency.ts). The shard's range says which positions it
 * uses (meta/ranges.ts partitioningOf), so this step needs nothing of its collection.
 *
 * Versions only grow. A record's version is the shard's `versionBase` plus the log index of its write,
 * so within one shard it grows with the log, also across delete and re-create. A record changes shard
 * only by a split or a merge, and both lift the receiving shard's base above every version the giving
 * shard ever handed out:
 *   - a split applied at index i of a shard with base b hands out at most b + i so far; the child's log
 *     starts at SPLIT_LOG_INDEX, so its base is b + i - SPLIT_LOG_INDEX and its first write (index
 *     SPLIT_LOG_INDEX + 1 or later) gets at least b + i + 1;
 *   - a frozen merge source hands out nothing after its freeze index f, so its highest version is
 *     b_s + f (`versionMax` in the absorb); a target absorbing at index j takes the base
 *     max(b_t, versionMax - j), so its next write (index j + 1 or later) gets at least versionMax + 1,
 *     and its own older versions (at most b_t + j) stay below too.
 * The base is part of the shard's state: replicated by the log, carried by snapshots and restarts, so
 * replica moves and leader changes do not touch it.
 *
 * A split applied at index i, identically on every replica, gives the upper part of the range to a new
 * group `child` whose log starts at SPLIT_LOG_INDEX / SPLIT_LOG_TERM with the shard's configuration as
 * of i (as TiKV starts a split's region), so that every replica of the child starts from the same state.
 * The child's state is staged in the same state-store commit as the parent's, marked unlogged until the
 * host has written the child's log (NodeApply.landSplits) and marked filling until the host has moved
 * the upper part's records, which the split leaves where they are (split-fill.ts): a shard's entries
 * after i never write there, so what the fill moves is the state as of i.
 */
import { assert } from "../util/assert.js";
import { cutRange, describeRange, owns } from "../meta/ranges.js";
import type { ConfState, Entry } from "../raft/index.js";
import { EntryType } from "../raft/index.js";
import type { GroupChanges, ShardState } from "../storage/state-store.js";
import { type CommandResult, type DeleteManyCommand, type Proposal, type PutManyCommand, type RecordCommand, type ShardCommand, type StoredRecord, applyCommand, decodeProposal } from "./records.js";
import { NO_MUTATIONS, type NodeMutations, RANGE_UNCHECKED } from "./mutations.js";
import { type RememberedOutcome, type RememberedQueue, isFinal, isOutcomeKey, outcomeKey, ownerOf, writeKeyOf } from "./idempotency.js";
import { sameWrite } from "./write-fingerprint.js";

export const SPLIT_LOG_INDEX = 5;
export const SPLIT_LOG_TERM = 5;
/** Splits a shard remembers (its leader records each in the metadata, which needs only the latest few). */
export const SPLITS_KEPT = 16;

export interface ShardReader {
  /** A record, or a remembered outcome (idempotency.ts). */
  get(key: string): unknown;
  /** The shard's remembered outcomes, oldest first (the apply step keeps it up to date). */
  remembered(): RememberedQueue;
  /** Split children still being filled from this shard by the host (split-fill.ts), with their ranges. */
  pendingFills(): readonly { child: number; range: ShardState["range"] }[];
  /**
   * The shard's stored records and remembered outcomes whose key `pick` selects (staged ones too), with
   * their values as stored, encoded: what an absorb makes a pending fill move at once.
   */
  packed(pick: (key: string) => boolean): Iterable<[string, Uint8Array]>;
}

export interface AppliedEntries {
  /** The shard's changes, then one per child a split made. */
  changes: GroupChanges[];
  /** Results of the proposals, by origin. */
  results: [Proposal["origin"], CommandResult][];
  /** Groups made by splits (to be filled and landed by the host), each with its range and remembered outcomes (its part of the parent's queue). */
  children: { child: number; range: ShardState["range"]; remembered: RememberedQueue }[];
  /** Split children (of these entries or pending before) whose fill an absorb finished here: to be landed, not filled. */
  filled: number[];
  /** The shard's state after the entries. */
  shard: ShardState;
  sizeBytes: number;
  commands: number;
}

/** Whether a stored key (a record, or a remembered outcome: by its record's id) belongs in `range`. */
export function ownedBy(range: ShardState["range"]): (key: string) => boolean {
  return (key) => owns(range, ownerOf(key));
}

/** The version a write applied at log index `index` gets (or, for the applied index, the replica's applied version). */
export function versionAt(shard: ShardState, index: number): number {
  return (shard.versionBase ?? 0) + index;
}

/**
 * Applies `entries` of shard `group`. `applyConf` applies a configuration change entry and returns the
 * configuration after it.
 */
export function applyShardEntries(group: number, entries: readonly Entry[], before: ShardState, reader: ShardReader,
  applyConf: (data: Uint8Array) => ConfState, conf: () => ConfState, mutations: NodeMutations = NO_MUTATIONS): AppliedEntries {
  const overlay = new Map<string, unknown>();
  const read = (key: string): unknown => (overlay.has(key) ? overlay.get(key) ?? undefined : reader.get(key));
  const write = (key: string, value: unknown) => void overlay.set(key, value);
  const out: AppliedEntries = { changes: [], results: [], children: [], filled: [], shard: before, sizeBytes: 0, commands: 0 };
  let confState: ConfState | undefined;
  let shardChanged = false;
  for (const e of entries) {
    if (e.type === EntryType.ConfChange) {
      confState = applyConf(e.data);
      continue;
    }
    if (e.data.byteLength === 0) continue;
    out.sizeBytes += e.data.byteLength;
    const p = decodeProposal(e.data);
    const cmd = p.cmd;
    if (cmd.op === "freeze" || cmd.op === "unfreeze" || cmd.op === "absorb") {
      // An absorb may give this shard back a range whose records a split left here to be moved (its
      // child merged back before this replica filled it): the move is finished first, or the fill
      // would take the absorbed records away, and the stale ones would show in the range again.
      if (cmd.op === "absorb") finishFills(out, overlay, reader);
      const r = applyMergeStep(out.shard, mutations.has("merge-drops-last-batch") ? dropLastBatch(cmd) : cmd, e.index, (key, value) => {
        overlay.set(key, value);
        if (isOutcomeKey(key)) reader.remembered().add(key, value as RememberedOutcome);
      });
      out.results.push([p.origin, r.result]);
      if (r.shard !== out.shard) {
        out.shard = r.shard;
        shardChanged = true;
      }
      continue;
    }
    if (cmd.op === "split") {
      const r = out.shard.frozen === undefined ? cutRange(out.shard.range, cmd.at) : null;
      if (r === null) {
        out.results.push([p.origin, { ok: false, code: "bad_split", message: `split point ${JSON.stringify(cmd.at)} is not inside shard ${group}'s range ${describeRange(out.shard.range)}` }]);
        continue;
      }
      // Records and their remembered outcomes move together (an outcome goes where its record's id
      // goes), but not here: they stay stored under this shard, outside its range now, until the host
      // moves them in bounded parts (split-fill.ts). Only the queue of outcomes is split at once, so
      // that this shard no longer forgets what the child remembers.
      const remembered = reader.remembered().split((recordId) => owns(r.upper, recordId));
      const split = { child: cmd.child, at: cmd.at, end: out.shard.range.end, index: e.index };
      out.shard = { ...out.shard, range: r.lower, splits: [...out.shard.splits, split].slice(-SPLITS_KEPT) };
      shardChanged = true;
      // Mutation split-restarts-versions: the child starts its versions over (the bug of issue 11).
      const versionBase = mutations.has("split-restarts-versions") ? 0 : (out.shard.versionBase ?? 0) + e.index - SPLIT_LOG_INDEX;
      out.changes.push({
        group: cmd.child, appliedIndex: SPLIT_LOG_INDEX, confState: conf(), shard: { range: r.upper, splits: [], versionBase }, unlogged: true, fillFrom: group,
      });
      out.children.push({ child: cmd.child, range: r.upper, remembered });
      out.results.push([p.origin, { ok: true, version: e.index }]);
      continue;
    }
    out.commands++;
    if (cmd.op === "put-many" || cmd.op === "delete-many") {
      const version = versionAt(out.shard, e.index);
      out.results.push([p.origin, cmd.op === "put-many" ? applyPutMany(cmd, out.shard, version, write) : applyDeleteMany(cmd, out.shard, version, read, write)]);
      continue;
    }
    // A frozen shard's records are final (a merge ships them): writes go to its target once recorded.
    const rangeUnchecked = (cmd as { [RANGE_UNCHECKED]?: true })[RANGE_UNCHECKED] === true; // gateway-skips-epoch
    if ((!owns(out.shard.range, cmd.key) && !rangeUnchecked) || out.shard.frozen !== undefined) {
      out.results.push([p.origin, { ok: false, code: "wrong_shard" }]);
      continue;
    }
    out.results.push([p.origin, applyRecordCommand(cmd, versionAt(out.shard, e.index), read, write, reader.remembered)]);
  }
  const own: GroupChanges = {
    group, appliedIndex: entries[entries.length - 1]!.index, puts: [], deletes: [],
    ...(confState ? { confState } : {}), ...(shardChanged ? { shard: out.shard } : {}),
  };
  // forEach: a for-of over the entries would make an array per change.
  overlay.forEach((rec, key) => {
    if (rec === null) own.deletes!.push(key);
    else own.puts!.push([key, rec]);
  });
  // The parent's changes first: the children's follow (one state-store commit holds all of them).
  out.changes.unshift(own);
  return out;
}

/**
 * A record command at `version`. With an idempotency key: a key remembered for the record answers its
 * first outcome (or, for another write, idempotency_key_reused) and applies nothing; otherwise the
 * command applies and its outcome is remembered, and the oldest outcomes beyond the command's limits are
 * forgotten.
 */
function applyRecordCommand(cmd: RecordCommand, version: number, read: (key: string) => unknown,
  write: (key: string, value: unknown) => void, remembered: () => RememberedQueue): CommandResult {
  const tag = cmd.idem;
  // Most keys are new: the queue knows which are stored, so only a remembered one is read from the store.
  const writeKey = tag === undefined ? undefined : writeKeyOf(cmd.key, tag.key);
  const storedAt = writeKey === undefined ? undefined : remembered().storedAt(writeKey);
  if (tag !== undefined && storedAt !== undefined) {
    const known = read(storedAt) as RememberedOutcome | undefined;
    assert(known !== undefined, () => `the remembered outcome ${JSON.stringify(storedAt)} is in the store`);
    if (known.exp >= tag.atMs) {
      if (!sameWrite(known.fp, tag.fingerprint, cmd)) return { ok: false, code: "idempotency_key_reused" };
      return { ...known.r, replayed: true };
    }
  }
  const { result, write: record } = applyCommand(cmd, version, () => read(cmd.key) as StoredRecord | undefined);
  if (record !== undefined) write(cmd.key, record);
  if (tag !== undefined) {
    assert(isFinal(result), "a record command's outcome is final");
    const q = remembered();
    // An expired outcome of the same key goes: the write key's new outcome is stored under its new version.
    if (storedAt !== undefined) {
      q.remove(storedAt);
      write(storedAt, null);
    }
    const o: RememberedOutcome = { v: version, exp: tag.atMs + tag.ttlMs, fp: tag.fingerprint, r: result };
    const k = outcomeKey(version, cmd.key, tag.key);
    write(k, o);
    q.add(k, o, writeKey);
    q.forget(tag.atMs, tag.keysMax, (key) => write(key, null));
  }
  return result;
}

/**
 * A batch of plain puts at `version`: items outside the shard's range are refused alone (the gateway
 * routes them again); a frozen shard refuses the whole batch, as it does any write.
 */
function applyPutMany(cmd: PutManyCommand, shard: ShardState, version: number, write: (key: string, value: unknown) => void): CommandResult {
  if (shard.frozen !== undefined) return { ok: false, code: "wrong_shard" };
  const refused: number[] = [];
  for (const [i, item] of cmd.items.entries()) {
    if (!owns(shard.range, item.key)) {
      refused.push(i);
      continue;
    }
    const record: StoredRecord = { payload: item.payload, version };
    if (item.vector !== undefined) record.vector = item.vector;
    if (item.expiresAtMs !== undefined) record.expiresAtMs = item.expiresAtMs;
    write(item.key, record);
  }
  return refused.length === 0 ? { ok: true, version } : { ok: true, version, refused };
}

/** Deletes of a batch at `version` (its entry's): as applyPutMany, and `deleted` counts those that existed. */
function applyDeleteMany(cmd: DeleteManyCommand, shard: ShardState, version: number, read: (key: string) => unknown, write: (key: string, value: unknown) => void): CommandResult {
  if (shard.frozen !== undefined) return { ok: false, code: "wrong_shard" };
  const refused: number[] = [];
  let deleted = 0;
  for (const [i, key] of cmd.keys.entries()) {
    if (!owns(shard.range, key)) {
      refused.push(i);
      continue;
    }
    const current = read(key) as StoredRecord | undefined;
    if (current === undefined || (cmd.versions !== undefined && current.version !== cmd.versions[i])) continue;
    write(key, null);
    deleted++;
  }
  return refused.length === 0 ? { ok: true, version, removed: deleted } : { ok: true, version, removed: deleted, refused };
}

/**
 * Moves at once, whole, what the split children of this batch and the host's pending fills from this
 * shard have not moved yet (as the split step did before fills were spread over turns: O(entries of the
 * shard), on this rare path only). Each child's change clears its filling mark.
 */
function finishFills(out: AppliedEntries, overlay: Map<string, unknown>, reader: ShardReader): void {
  const pending = [...reader.pendingFills().filter((f) => !out.filled.includes(f.child)), ...out.children.filter((c) => !out.filled.includes(c.child))];
  for (const { child, range } of pending) {
    const pick = ownedBy(range);
    const moved: [string, unknown][] = [];
    const movedPacked: [string, Uint8Array][] = [];
    for (const [key, value] of overlay) if (value !== null && pick(key)) moved.push([key, value]);
    for (const entry of reader.packed((key) => !overlay.has(key) && pick(key))) movedPacked.push(entry);
    for (const [key] of moved) overlay.set(key, null);
    for (const [key] of movedPacked) overlay.set(key, null);
    out.changes.push({ group: child, appliedIndex: SPLIT_LOG_INDEX, puts: moved, packedPuts: movedPacked, fillFrom: null });
    out.filled.push(child);
  }
}

/**
 * One step of a merge (see records.ts MergeCommand) on a shard's state; `put` writes an absorbed record.
 * An absorb is taken only when the source borders the shard and the shard is not frozen itself (its own
 * records may have been shipped already); one already taken answers ok again.
 */
export function applyMergeStep(shard: ShardState, cmd: Extract<ShardCommand, { op: "freeze" | "unfreeze" | "absorb" }>, index: number,
  put: (key: string, value: unknown) => void): { shard: ShardState; result: CommandResult } {
  const done: CommandResult = { ok: true, version: index };
  switch (cmd.op) {
    case "freeze":
      return { shard: shard.frozen !== undefined ? shard : { ...shard, frozen: { into: cmd.into, index } }, result: done };
    case "unfreeze": {
      if (shard.frozen === undefined) return { shard, result: done };
      const { frozen: _frozen, ...rest } = shard;
      return { shard: rest, result: done };
    }
    case "absorb": {
      if ((shard.absorbed ?? []).some((a) => a.from === cmd.from) || (shard.range.start <= cmd.start && shard.range.end >= cmd.end)) {
        return { shard, result: done };
      }
      if (shard.frozen !== undefined || shard.range.end !== cmd.start) return { shard, result: { ok: false, code: "not_adjacent" } };
      for (const [key, value] of cmd.records) if (owns({ start: cmd.start, end: cmd.end }, ownerOf(key))) put(key, value);
      const absorbed = [...(shard.absorbed ?? []), { from: cmd.from, end: cmd.end, index }].slice(-SPLITS_KEPT);
      // Versions continue above every version the source handed out (see the header).
      const versionBase = Math.max(shard.versionBase ?? 0, cmd.versionMax - index);
      return { shard: { ...shard, range: { start: shard.range.start, end: cmd.end }, absorbed, versionBase }, result: done };
    }
  }
}

/** Mutation merge-drops-last-batch: an absorb without the last quarter of the source's records. */
function dropLastBatch<C extends Extract<ShardCommand, { op: "freeze" | "unfreeze" | "absorb" }>>(cmd: C): C {
  if (cmd.op !== "absorb" || cmd.records.length === 0) return cmd;
  const kept = cmd.records.length - Math.max(1, Math.ceil(cmd.records.length / 4));
  return { ...cmd, records: cmd.records.slice(0, kept) };
}
