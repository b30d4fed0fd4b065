/**
 * A split's fill: the records and remembered outcomes of a split child's range move from under its
 * parent, where the split left them (shard-apply.ts), to the child, a bounded part per loop turn.
 *
 * Why not in the apply step: that walked every key of the shard on every replica at once (a shard of
 * 10,000 records and 50,000 remembered outcomes blocked each loop ~270 ms: `npm run bench:apply`), long
 * enough on a loaded machine for a leader to see its peers, busy with the same split, as silent. Now the
 * split entry costs the same whatever the shard's size, and the walk is spread over turns.
 *
 * Why it is safe to move later: after the split, the parent's entries never write in the child's range
 * (record commands outside the range are refused, and the parent's queue of outcomes was split), so the
 * keys the fill finds there are the state as of the split. Each part's puts to the child and deletes
 * from the parent are staged together, so one LMDB transaction commits them: after a crash every entry
 * is in one place or the other, and the fill walks the parent again from its first key on open.
 *
 * Until its fill is done the child is not hosted (requests for its range are told so, and are retried),
 * and the parent's stored keys include some outside its range: whatever walks them (scans, snapshots, a
 * merge's shipment, the checkers' views) keeps only the parent's own (shard-apply.ts `ownedBy`). A
 * parent's snapshot install or drop finishes its fills first (both delete the parent's keys), and so
 * does an absorb (shard-apply.ts finishFills: a child merged back into its parent before it was filled
 * here would have the fill take the absorbed records away).
 */
import type { ShardRange } from "../meta/ranges.js";
import type { GroupChanges } from "../storage/state-store.js";
import { assert } from "../util/assert.js";
import type { NodeStateStore } from "./host.js";
import type { RememberedQueue } from "./idempotency.js";
import { SPLIT_LOG_INDEX, ownedBy } from "./shard-apply.js";

/** Keys walked in one part of a fill: ~4 ms of loop (`npm run bench:apply`: ~4 us a key when half move). */
export const SPLIT_FILL_KEYS_PER_TURN = 1024;

export interface SplitFill {
  child: number;
  parent: number;
  /** The child's range: the keys the fill moves are those whose record id it owns. */
  range: ShardRange;
  /** The child's part of the parent's queue of outcomes (null after a restart: the child builds its own). */
  remembered: RememberedQueue | null;
  /** Where the walk of the parent's keys stands (the state store's opaque cursor); undefined before the first part. */
  cursor: unknown;
  /** Whether what the parent staged before the split is in LMDB, which is what the walk reads. */
  started: boolean;
  /**
   * A wait for that commit is under way, beside the loop: the loop never waits for it (awaited in a
   * turn, it held every group of the node: no heartbeats, no votes).
   */
  commitAwaited: boolean;
  keysMoved: number;
  parts: number;
  startedAtMs: number;
  /** When its walk started (the store had committed what it reads); undefined before. */
  walkStartedAtMs?: number;
}

/** A fill of `child` from `parent` not started yet. */
export function newFill(child: number, parent: number, range: ShardRange, remembered: RememberedQueue | null, nowMs: number): SplitFill {
  return { child, parent, range, remembered, cursor: undefined, started: false, commitAwaited: false, keysMoved: 0, parts: 0, startedAtMs: nowMs };
}

/**
 * Moves one part of `fill`: of the parent's next `keysMax` stored keys, those of the child's range.
 * Returns the changes to stage (the child's puts and the parent's deletes together; once the walk is
 * done, the child's filling mark cleared with them) and whether the walk is done.
 */
export function fillPart(store: Pick<NodeStateStore, "packedPart" | "applied">, fill: SplitFill, keysMax: number): { changes: GroupChanges[]; done: boolean } {
  assert(fill.started, () => `split child ${fill.child}: its fill walks LMDB before the parent's staged state is committed`);
  const part = store.packedPart(fill.parent, ownedBy(fill.range), fill.cursor, keysMax);
  fill.cursor = part.cursor;
  fill.parts++;
  fill.keysMoved += part.entries.length;
  const done = part.cursor === undefined;
  const changes: GroupChanges[] = [];
  if (part.entries.length > 0) {
    changes.push({ group: fill.parent, appliedIndex: store.applied(fill.parent), deletes: part.entries.map(([key]) => key) });
  }
  if (part.entries.length > 0 || done) {
    changes.push({ group: fill.child, appliedIndex: SPLIT_LOG_INDEX, packedPuts: part.entries, ...(done ? { fillFrom: null } : {}) });
  }
  return { changes, done };
}
