import { test } from "node:test";
import assert from "node:assert/strict";
import { DEFAULT_PLACEMENT } from "../placement/types.js";
import { applyMetaTracked, metaFromRecords, metaToRecords } from "./records.js";
import { type MetaCommand, initialMetaState } from "./state.js";

test("records written by tracked applies rebuild the same state, command after command", () => {
  const s = initialMetaState(DEFAULT_PLACEMENT, 0);
  const store = new Map<string, unknown>(metaToRecords(s));
  const commands: MetaCommand[] = [
    ...[1, 2, 3].map((i): MetaCommand => ({ kind: "register-node", peer: { host: "h", port: 7000 + i }, http: { host: "h", port: 8000 + i }, labels: { zone: `z${i}` }, role: "standard", atMs: i })),
    { kind: "set-worker-state", node: 2, state: "ready", atMs: 4 },
    { kind: "set-lifecycle", node: 2, lifecycle: "ready", atMs: 5 },
    { kind: "create-collection", name: "default", replicationFactor: 3, placements: [[1, 2, 3], [2, 3, 1]], atMs: 6 },
    { kind: "set-replicas", shard: 1, confIndex: 3, replicas: [{ node: 1, role: "voter" }, { node: 2, role: "learner" }], atMs: 7 },
    { kind: "set-replicas", shard: 1, confIndex: 2, replicas: [], atMs: 8 }, // refused: an older configuration
    { kind: "set-settings", baseVersion: 1, placement: { ...DEFAULT_PLACEMENT, maxMovesTotal: 9 }, note: "x", atMs: 9 },
    { kind: "rollback-settings", toVersion: 1, atMs: 10 },
    { kind: "record-operator", operator: { id: 1, shard: 1, epoch: 2, reason: "repair", steps: [], stepIndex: 0, startedAtMs: 0, stepStartedAtMs: 0 }, status: "running", atMs: 11 },
    { kind: "forget-node", node: 3, atMs: 12 }, // refused: holds replicas
    { kind: "reserve-shard-id", atMs: 13 },
    { kind: "split-shard", shard: 2, child: 3, at: 3 * 2 ** 30, end: 2 ** 32, index: 40, atMs: 14 },
    { kind: "split-shard", shard: 2, child: 4, at: 3 * 2 ** 30, end: 2 ** 32, index: 41, atMs: 15 }, // refused: recorded already
    { kind: "merge-shards", into: 2, from: 3, end: 2 ** 32, atMs: 16 },
  ];
  for (const cmd of commands) {
    const { result, changes } = applyMetaTracked(s, cmd);
    if (!result.ok) assert.deepEqual(changes, { puts: [], deletes: [] }, "a refused command writes nothing");
    for (const [k, v] of changes.puts) store.set(k, structuredClone(v));
    for (const k of changes.deletes) store.delete(k);
    assert.deepEqual(metaFromRecords(store), s, `after ${cmd.kind}`);
  }
  assert.deepEqual(new Map(metaToRecords(s).map(([k, v]) => [k, structuredClone(v)])), store, "the tracked records are exactly the full mapping");
});

test("an unknown record is an error, not a silent skip", () => {
  assert.throws(() => metaFromRecords([["x:1", {}]]), /unknown metadata record x:1/);
});
