/**
 * Positions in a collection's partitioning space, as the placement driver compares them: a shard owns
 * the half-open range [start, end) of positions. A hash-partitioned collection's positions are numbers
 * (the 32-bit hash of a record id), a range-partitioned collection's are strings (the id itself, in
 * JavaScript's string order: UTF-16 code units, the order of the record store and of scans). The two
 * kinds are never compared with each other (meta/ranges.ts states and checks the invariant). Pure.
 */
import { assert } from "../util/assert.js";

export type Position = number | string;

/**
 * The end of a range collection's position space: above every id a range collection may hold (ids are
 * ASCII, api/records.ts ID_PATTERN; split points are checked below it), so the last shard's range
 * ["…", KEY_SPACE_END) is unbounded above for every id. The API shows it as `null` (meta/ranges.ts
 * rangeView).
 */
export const KEY_SPACE_END = "\uffff";

/** A sort order of positions of one kind (numbers numerically, strings by code unit). */
export function comparePositions(a: Position, b: Position): number {
  assert(typeof a === typeof b, () => `positions of two kinds compared: ${JSON.stringify(a)} and ${JSON.stringify(b)}`);
  return a < b ? -1 : a > b ? 1 : 0;
}
