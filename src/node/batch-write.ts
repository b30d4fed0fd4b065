/**
 * Batches of record commands by id (a batch upsert, a delete by filter): the items grouped by shard, one
 * proposal per shard, the shards written in parallel. Items a shard refuses because a split or merge
 * moved them (wrong_shard, or the shard gone from the map) are routed again by the new map, bounded by
 * attempts and one request timeout. The outcomes are in the items' order: each item's version, or the
 * error that stopped its shard's proposal (the error table says whether it may have been applied).
 */
import { assert } from "../util/assert.js";
import type { Clock } from "../util/clock.js";
import type { CommandResult, ShardCommand } from "./records.js";
import { type MultiRaftNode, NotHostedError, NotLeaderError, WrongShardError } from "./multi-raft.js";

/** One item's outcome in a batch: its version and the shard that applied it, or the error that stopped its shard's proposal. */
export type PutManyOutcome = { ok: true; version: number; shard: number } | { ok: false; error: Error };

export interface BatchDeps {
  node: MultiRaftNode;
  clock: Clock;
  timeoutMs: number;
  /** Rounds of routing moved items again, at most, and how long a round waits for the map to change. */
  attemptsMax: number;
  waitMs: number;
  /** Proposes a command on a shard's leader (the gateway's routing). */
  propose(group: number, cmd: ShardCommand): Promise<CommandResult>;
}

/** Writes `command(items of a shard)` for every shard the keys route to; `onAnswer` sees each shard's success. */
export async function writeMany(d: BatchDeps, keys: readonly string[], command: (idx: number[]) => ShardCommand, collection: string | undefined,
  onAnswer: (r: Extract<CommandResult, { ok: true }>) => void): Promise<PutManyOutcome[]> {
  const out: PutManyOutcome[] = new Array<PutManyOutcome>(keys.length);
  const deadlineMs = d.clock.nowMs() + d.timeoutMs;
  let todo = keys.map((_, i) => i);
  for (let round = 1; todo.length > 0; round++) {
    const byShard = new Map<number, number[]>();
    for (const i of todo) {
      const group = d.node.shardOf(keys[i]!, collection);
      const list = byShard.get(group);
      if (list === undefined) byShard.set(group, [i]);
      else list.push(i);
    }
    const again: number[] = [];
    await Promise.all([...byShard].map(async ([group, idx]) => {
      try {
        const r = await d.propose(group, command(idx));
        if (!r.ok) {
          if (r.code !== "wrong_shard") throw new Error(`shard ${group} refused a batch with ${r.code}`);
          again.push(...idx);
          return;
        }
        onAnswer(r);
        const refused = new Set(r.refused ?? []);
        for (const [j, i] of idx.entries()) {
          if (refused.has(j)) again.push(i);
          else out[i] = { ok: true, version: r.version, shard: group };
        }
      } catch (e) {
        const err = e instanceof Error ? e : new Error(String(e));
        const moved = e instanceof WrongShardError || ((e instanceof NotLeaderError || e instanceof NotHostedError) && d.node.shardOf(keys[idx[0]!]!, collection) !== group);
        if (moved) again.push(...idx);
        else for (const i of idx) out[i] = { ok: false, error: err };
      }
    }));
    todo = again;
    if (todo.length === 0) break;
    if (round >= d.attemptsMax || d.clock.nowMs() >= deadlineMs) {
      for (const i of todo) out[i] = { ok: false, error: new WrongShardError(d.node.shardOf(keys[i]!, collection)) };
      break;
    }
    // The map routes the moved items elsewhere once it shows the split or merge.
    await d.node.awaitMetaChange(Math.max(1, Math.min(d.waitMs, deadlineMs - d.clock.nowMs())));
  }
  assert(out.every((o) => o !== undefined) && out.length === keys.length, "every item of a batch has an outcome");
  return out;
}
