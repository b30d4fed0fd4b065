/**
 * Applying a shard's committed entries: record commands (refused, without writing, for an id whose hash
 * left the shard's range in a split) and splits (PD-6). A split applied at index i, identically on every
 * replica, moves the records of the upper part of the range to a new group `child` whose log starts at
 * SPLIT_LOG_INDEX / SPLIT_LOG_TERM with the shard's configuration as of i (as TiKV starts a split's
 * region), so that every replica of the child starts from the same state; the child's state is staged
 * in the same state-store commit as the parent's, marked unlogged until the host has written the child's
 * log (see MultiRaftNode.landSplits).
 */
import { type HashRange, hashOf, inRange } from "../meta/ranges.js";
import type { ConfState, Entry } from "../raft/index.js";
import { EntryType } from "../raft/index.js";
import type { GroupChanges, ShardState } from "../storage/state-store.js";
import { type CommandResult, type Proposal, type ShardCommand, type StoredRecord, applyCommand, decodeProposal } from "./records.js";

export const SPLIT_LOG_INDEX = 5;
export const SPLIT_LOG_TERM = 5;
/** Splits a shard remembers (its leader records each in the metadata, which needs only the latest few). */
export const SPLITS_KEPT = 16;

export interface ShardReader {
  get(key: string): StoredRecord | undefined;
  /** Every record of the shard (a split walks them once). */
  all(): [string, StoredRecord][];
}

export interface AppliedEntries {
  /** The shard's changes, then one per child a split made. */
  changes: GroupChanges[];
  /** Results of the proposals, by origin. */
  results: [Proposal["origin"], CommandResult][];
  /** Groups made by splits (to be landed by the host). */
  children: number[];
  /** The shard's state after the entries. */
  shard: ShardState;
  sizeBytes: number;
  commands: number;
}

/**
 * Applies `entries` of shard `group`. `applyConf` applies a configuration change entry and returns the
 * configuration after it.
 */
export function applyShardEntries(group: number, entries: readonly Entry[], before: ShardState, reader: ShardReader,
  applyConf: (data: Uint8Array) => ConfState, conf: () => ConfState): AppliedEntries {
  const overlay = new Map<string, StoredRecord | null>();
  const read = (key: string) => (overlay.has(key) ? overlay.get(key) ?? undefined : reader.get(key));
  const out: AppliedEntries = { changes: [], results: [], children: [], shard: before, sizeBytes: 0, commands: 0 };
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
      const r = applyMergeStep(out.shard, cmd, e.index, (key, rec) => overlay.set(key, rec));
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
        out.results.push([p.origin, { ok: false, code: "bad_split", message: `split point ${cmd.at} is not inside shard ${group}'s range [${out.shard.range.start}, ${out.shard.range.end})` }]);
        continue;
      }
      const moved: [string, StoredRecord][] = [];
      const seen = new Set<string>();
      for (const [key, rec] of overlay) {
        seen.add(key);
        if (rec !== null && hashOf(key) >= cmd.at) moved.push([key, rec]);
      }
      for (const [key, rec] of reader.all()) if (!seen.has(key) && hashOf(key) >= cmd.at) moved.push([key, rec]);
      for (const [key] of moved) overlay.set(key, null);
      const split = { child: cmd.child, at: cmd.at, end: out.shard.range.end, index: e.index };
      out.shard = { ...out.shard, range: r.lower, splits: [...out.shard.splits, split].slice(-SPLITS_KEPT) };
      shardChanged = true;
      out.changes.push({
        group: cmd.child, appliedIndex: SPLIT_LOG_INDEX, puts: moved, confState: conf(), shard: { range: r.upper, splits: [] }, unlogged: true,
      });
      out.children.push(cmd.child);
      out.results.push([p.origin, { ok: true, version: e.index }]);
      continue;
    }
    out.commands++;
    // A frozen shard's records are final (a merge ships them): writes go to its target once recorded.
    if (!inRange(hashOf(cmd.key), out.shard.range) || out.shard.frozen !== undefined) {
      out.results.push([p.origin, { ok: false, code: "wrong_shard" }]);
      continue;
    }
    const { result, write } = applyCommand(cmd, e.index, () => read(cmd.key));
    if (write !== undefined) overlay.set(cmd.key, write);
    out.results.push([p.origin, result]);
  }
  const own: GroupChanges = {
    group, appliedIndex: entries[entries.length - 1]!.index, puts: [], deletes: [],
    ...(confState ? { confState } : {}), ...(shardChanged ? { shard: out.shard } : {}),
  };
  for (const [key, rec] of overlay) {
    if (rec === null) own.deletes!.push(key);
    else own.puts!.push([key, rec]);
  }
  // The parent's changes first: the children's follow (one state-store commit holds all of them).
  out.changes.unshift(own);
  return out;
}

/**
 * One step of a merge (see records.ts MergeCommand) on a shard's state; `put` writes an absorbed record.
 * An absorb is taken only when the source borders the shard and the shard is not frozen itself (its own
 * records may have been shipped already); one already taken answers ok again.
 */
export function applyMergeStep(shard: ShardState, cmd: Extract<ShardCommand, { op: "freeze" | "unfreeze" | "absorb" }>, index: number,
  put: (key: string, rec: StoredRecord) => void): { shard: ShardState; result: CommandResult } {
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
      for (const [key, rec] of cmd.records) if (inRange(hashOf(key), { start: cmd.start, end: cmd.end })) put(key, rec);
      const absorbed = [...(shard.absorbed ?? []), { from: cmd.from, end: cmd.end, index }].slice(-SPLITS_KEPT);
      return { shard: { ...shard, range: { start: shard.range.start, end: cmd.end }, absorbed }, result: done };
    }
  }
}

/** The two parts of `range` cut at `at`, or null when `at` is not strictly inside it. */
export function cutRange(range: HashRange, at: number): { lower: HashRange; upper: HashRange } | null {
  if (!Number.isInteger(at) || at <= range.start || at >= range.end) return null;
  return { lower: { start: range.start, end: at }, upper: { start: at, end: range.end } };
}
