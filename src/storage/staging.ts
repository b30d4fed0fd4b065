/**
 * Staging: a turn's applied changes held in memory, per group, until a commit writes them to LMDB.
 * Shared by the state store (state-store.ts) and the node world's simulated disk (sim/world/disk.ts), so
 * that both stage exactly alike.
 */
import { assert } from "../util/assert.js";
import type { ConfState } from "../raft/index.js";
import type { GroupChanges, RecordKey, ShardState } from "./state-store.js";

/** A group's changes applied but not yet committed to LMDB. */
export interface Staged {
  appliedIndex: number;
  /**
   * Each staged put's value as LMDB stores it, `null` for a delete. Bytes rather than the value: a
   * staged value lives until its commit (up to a second), long enough to outlive two scavenges, so each
   * record's object tree was copied twice and promoted, then died in the old space (most of the nodes'
   * scavenge work at 256 connections: measured). Reads decode, as they do from LMDB.
   */
  records: Map<RecordKey, Uint8Array | null>;
  confState?: ConfState;
  shard?: ShardState;
  unlogged?: boolean;
  fillFrom?: number | null;
}

/**
 * Stages changes over `staged` (a group's newest layer), refusing an applied index that goes back from
 * `appliedOf`; returns how many record changes were staged.
 */
export function stageChanges(staged: Map<number, Staged>, changes: readonly GroupChanges[], appliedOf: (group: number) => number,
  encode: (value: unknown) => Uint8Array): number {
  let count = 0;
  for (const c of changes) {
    const prev = appliedOf(c.group);
    assert(c.appliedIndex >= prev, () => `group ${c.group}: applied index regresses from ${prev} to ${c.appliedIndex}`);
    let st = staged.get(c.group);
    if (st === undefined) staged.set(c.group, (st = { appliedIndex: c.appliedIndex, records: new Map() }));
    st.appliedIndex = c.appliedIndex;
    if (c.confState !== undefined) st.confState = c.confState;
    if (c.shard !== undefined) st.shard = c.shard;
    if (c.unlogged !== undefined) st.unlogged = c.unlogged;
    if (c.fillFrom !== undefined) st.fillFrom = c.fillFrom;
    for (const key of c.deletes ?? []) st.records.set(key, null);
    for (const [key, value] of c.puts ?? []) {
      // null is a staged delete: a put of it would read back as a delete from memory and as null from LMDB.
      assert(value !== null && value !== undefined, () => `group ${c.group}: a put of ${JSON.stringify(key)} without a value`);
      st.records.set(key, encode(value));
    }
    for (const [key, bytes] of c.packedPuts ?? []) {
      assert(bytes instanceof Uint8Array && bytes.byteLength > 0, () => `group ${c.group}: a packed put of ${JSON.stringify(key)} without bytes`);
      st.records.set(key, bytes);
    }
    count += (c.deletes?.length ?? 0) + (c.puts?.length ?? 0) + (c.packedPuts?.length ?? 0) + 1;
  }
  return count;
}
