/**
 * Splits and merges as the scheduler sees them (PD-6): when one in flight is done, which neighbours the
 * placement driver merges by itself, and the shards it must leave alone because the cluster's operator
 * split them by hand. Pure: time comes in as `nowMs`.
 */
import { type Position, comparePositions } from "./positions.js";
import type { PlacementState } from "./scheduler.js";
import { DEFAULT_PLACEMENT, type Operator, type PlacementConfig, type Reshape } from "./types.js";

/**
 * How a split or merge in flight stands, from the live shards of the shard map: a split is done once
 * its new shard is in the map, a merge once its source is gone from it (retired). A split whose parent
 * is gone was overtaken (cancelled). Either ends after `stepTimeoutMs` (a merge whose source unfroze,
 * its target no longer adjacent, is never recorded: the timeout frees both shards).
 */
export function reshapeProgress(op: Operator, r: Reshape, live: ReadonlySet<number>, nowMs: number, stepTimeoutMs: number): "running" | "done" | "cancelled" | "timed-out" {
  if (r.kind === "split") {
    if (r.child !== undefined && live.has(r.child)) return "done";
    if (!live.has(op.shard)) return "cancelled";
  } else if (!live.has(op.shard)) {
    return "done";
  }
  return nowMs - op.startedAtMs > stepTimeoutMs ? "timed-out" : "running";
}

/** The cooldown in force; a settings version written before the setting existed has none. */
export function manualSplitCooldownMs(cfg: PlacementConfig): number {
  return cfg.manualSplitCooldownMs ?? DEFAULT_PLACEMENT.manualSplitCooldownMs;
}

/** Whether the shard was split by hand (as parent or new shard) less than the cooldown ago. */
export function splitByHandRecently(state: PlacementState, shard: number, cfg: PlacementConfig, nowMs: number): boolean {
  const at = state.manualSplitAtMs.get(shard);
  return at !== undefined && nowMs - at < manualSplitCooldownMs(cfg);
}

/** Remembers a split asked by hand: neither part is merged automatically within the cooldown. */
export function markManualSplit(state: PlacementState, parent: number, child: number, nowMs: number): PlacementState {
  const marks = new Map(state.manualSplitAtMs);
  marks.set(parent, nowMs);
  marks.set(child, nowMs);
  return { ...state, manualSplitAtMs: marks };
}

/** A merge asked by hand overrides an earlier split by hand: its shards are the driver's to manage again. */
export function clearManualSplit(state: PlacementState, shards: readonly number[]): PlacementState {
  if (!shards.some((id) => state.manualSplitAtMs.has(id))) return state;
  const marks = new Map(state.manualSplitAtMs);
  for (const id of shards) marks.delete(id);
  return { ...state, manualSplitAtMs: marks };
}

/** A live shard of a collection, with what its leader last reported (null: no fresh report). */
export interface MergeShard {
  id: number;
  /** Its range [start, end) of its collection's positions (placement/positions.ts). */
  start: Position;
  end: Position;
  records: number | null;
  requestRate: number;
}

export interface MergeCollection {
  /** Shards it was created with: merging never goes below this (undefined: never merged automatically). */
  initialShards?: number;
  shards: readonly MergeShard[];
}

/**
 * The pair of neighbours the placement driver merges now, if any (one pair per cycle): together at
 * most `mergeBelowRecords` records, serving under a quarter of `splitRequestRate` (so nothing swings
 * between split and merge), never below the collection's initial shard count, neither with an operator
 * or cooling down (`shardCooldownMs`), and neither split by hand within `manualSplitCooldownMs`.
 * The upper shard merges into the lower.
 */
export function pickMerge(collections: readonly MergeCollection[], state: PlacementState, cfg: PlacementConfig, nowMs: number): { from: number; into: number } | null {
  if (cfg.mergeBelowRecords <= 0) return null;
  const busy = new Set<number>();
  for (const op of state.operators) {
    busy.add(op.shard);
    if (op.reshape?.kind === "merge") busy.add(op.reshape.into);
  }
  const free = (id: number) => !busy.has(id) && nowMs - (state.shardSettledAtMs.get(id) ?? -Infinity) >= cfg.shardCooldownMs &&
    !splitByHandRecently(state, id, cfg, nowMs);
  const rateMax = cfg.splitRequestRate > 0 ? cfg.splitRequestRate / 4 : Infinity;
  for (const c of collections) {
    if (c.initialShards === undefined || c.shards.length <= c.initialShards) continue;
    const live = [...c.shards].sort((x, y) => comparePositions(x.start, y.start));
    for (let i = 1; i < live.length; i++) {
      const [a, b] = [live[i - 1]!, live[i]!];
      if (a.records === null || b.records === null || a.end !== b.start || !free(a.id) || !free(b.id)) continue;
      if (a.records + b.records > cfg.mergeBelowRecords || a.requestRate + b.requestRate >= rateMax) continue;
      return { from: b.id, into: a.id };
    }
  }
  return null;
}
