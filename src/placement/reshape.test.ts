import { test } from "node:test";
import assert from "node:assert/strict";
import { busyRefusal, isoTime, manualOperator } from "./manual.js";
import { type MergeCollection, clearManualSplit, markManualSplit, pickMerge } from "./reshape.js";
import { INITIAL_PLACEMENT_STATE, type PlacementState, placementCycle } from "./scheduler.js";
import { type ClusterView, DEFAULT_PLACEMENT, type Operator, type PlacementConfig, type ShardView, validatePlacementConfig } from "./types.js";
import { pickSplit } from "./policy.js";

const MIN = 60_000;
const cfg: PlacementConfig = { ...DEFAULT_PLACEMENT, mergeBelowRecords: 1000, splitRequestRate: 0, shardCooldownMs: 30_000, manualSplitCooldownMs: 10 * MIN };

/** One collection created with one shard over the whole hash space, split once at `mid` into shards 1 and 2. */
const mid = 2 ** 31;
const split: MergeCollection[] = [{
  initialShards: 1,
  shards: [
    { id: 1, start: 0, end: mid, records: 10, requestRate: 0 },
    { id: 2, start: mid, end: 2 ** 32, records: 10, requestRate: 0 },
  ],
}];

test("an automatic merge does not undo a split by hand within manualSplitCooldownMs; after it, or for a split the driver made, it does", () => {
  const t0 = 1_000_000;
  const byHand = markManualSplit(INITIAL_PLACEMENT_STATE, 1, 2, t0);
  // The shard cooldown (30 s) passes long before the manual split's (10 min): only the latter holds.
  for (const at of [t0 + 31_000, t0 + 5 * MIN, t0 + 10 * MIN - 1]) assert.equal(pickMerge(split, byHand, cfg, at), null, `at +${at - t0} ms`);
  assert.deepEqual(pickMerge(split, byHand, cfg, t0 + 10 * MIN), { from: 2, into: 1 }, "once the cooldown is over, small neighbours merge again");
  assert.deepEqual(pickMerge(split, INITIAL_PLACEMENT_STATE, cfg, t0 + 31_000), { from: 2, into: 1 }, "a split the driver made (hot, large) has no such hold");
  assert.deepEqual(pickMerge(split, byHand, { ...cfg, manualSplitCooldownMs: 0 }, t0 + 1), { from: 2, into: 1 }, "0 turns the hold off");
  // Either part held is enough: a merge involving the new shard or the parent would undo the shape asked for.
  const onlyChild: PlacementState = { ...INITIAL_PLACEMENT_STATE, manualSplitAtMs: new Map([[2, t0]]) };
  assert.equal(pickMerge(split, onlyChild, cfg, t0 + MIN), null);
  // A merge asked by hand afterwards hands the shards back to the driver.
  assert.deepEqual(pickMerge(split, clearManualSplit(byHand, [2, 1]), cfg, t0 + MIN), { from: 2, into: 1 });
});

test("the scheduler carries the manual-split marks from cycle to cycle and forgets them after the cooldown", () => {
  const view: ClusterView = { nodes: [{ id: 1, labels: {}, state: "ready", health: "healthy" }], shards: [] };
  const one = { ...cfg, replicationFactor: 1 };
  const state = markManualSplit(INITIAL_PLACEMENT_STATE, 1, 2, 0);
  const kept = placementCycle(view, state, one, 5 * MIN).state;
  assert.deepEqual([...kept.manualSplitAtMs.keys()].sort(), [1, 2]);
  assert.equal(pickMerge(split, kept, one, 5 * MIN), null);
  const later = placementCycle(view, kept, one, 10 * MIN).state;
  assert.equal(later.manualSplitAtMs.size, 0, "pruned once the cooldown is over: the state stays bounded");
});

test("other merge rules stay: busy, cooling down, too many records, not below the initial shard count", () => {
  const t = 10 * MIN;
  assert.equal(pickMerge(split, { ...INITIAL_PLACEMENT_STATE, shardSettledAtMs: new Map([[1, t - 1000]]) }, cfg, t), null, "cooling down");
  const big: MergeCollection[] = [{ ...split[0]!, shards: split[0]!.shards.map((s) => ({ ...s, records: 600 })) }];
  assert.equal(pickMerge(big, INITIAL_PLACEMENT_STATE, cfg, t), null, "1200 records > mergeBelowRecords");
  assert.equal(pickMerge([{ ...split[0]!, initialShards: 2 }], INITIAL_PLACEMENT_STATE, cfg, t), null, "never below the initial count");
  const unknown: MergeCollection[] = [{ ...split[0]!, shards: [split[0]!.shards[0]!, { ...split[0]!.shards[1]!, records: null }] }];
  assert.equal(pickMerge(unknown, INITIAL_PLACEMENT_STATE, cfg, t), null, "no fresh report: not merged blind");
  const mergeOp: Operator = { id: 3, shard: 9, epoch: 1, reason: "manual", steps: [], stepIndex: 0, startedAtMs: t, stepStartedAtMs: t, reshape: { kind: "merge", into: 1 } };
  assert.equal(pickMerge(split, { ...INITIAL_PLACEMENT_STATE, operators: [mergeOp] }, cfg, t), null, "a merge in flight holds its target");
});

const shardView = (id: number, leader = 1) => ({ id, epoch: 2, leader, sizeBytes: 0, requestRate: 0, replicas: [{ node: 1, role: "voter" as const, caughtUp: true }] });

test("a shard busy with an operator is refused naming it: id, kind, reason, step, start; a merge holds both its shards", () => {
  const view: ClusterView = {
    nodes: [1, 2].map((id) => ({ id, labels: {}, state: "ready" as const, health: "healthy" as const })),
    shards: [shardView(1), shardView(2)],
  };
  const startedAtMs = Date.UTC(2026, 11, 3, 10, 14, 2, 123);
  const repair: Operator = {
    id: 12, shard: 1, epoch: 2, reason: "repair", steps: [{ kind: "add-learner", node: 2 }, { kind: "promote", node: 2 }], stepIndex: 1, startedAtMs, stepStartedAtMs: startedAtMs,
  };
  const state: PlacementState = { ...INITIAL_PLACEMENT_STATE, operators: [repair], nextOperatorId: 13 };
  const r = manualOperator(view, state, { kind: "transfer-leader", shard: 1, to: 2 }, startedAtMs + 5);
  assert.ok(!r.ok);
  assert.equal(r.code, "shard_busy");
  assert.deepEqual(r.operator, { id: 12, shard: 1, kind: "add-replica", reason: "repair", step: "2/2 promote 2", startedAtMs, started: "2026-12-03T10:14:02.123Z" });
  for (const word of ["operator 12", "add-replica", "repair", "2/2 promote 2", "2026-12-03T10:14:02.123Z"]) assert.ok(r.message.includes(word), `${word} in: ${r.message}`);
  const merging: Operator = { id: 14, shard: 2, epoch: 2, reason: "small-shards", steps: [], stepIndex: 0, startedAtMs, stepStartedAtMs: startedAtMs, reshape: { kind: "merge", into: 1 } };
  const held = busyRefusal({ ...INITIAL_PLACEMENT_STATE, operators: [merging] }, [1]);
  assert.deepEqual([held?.operator?.id, held?.operator?.kind, held?.operator?.step], [14, "merge", "merge into shard 1"], "the merge's target is held too");
  assert.equal(busyRefusal(state, [2]), null);
});

test("splits and merges in flight end when the shard map shows them (or time out), and no repair starts on a shard a merge holds", () => {
  const nodes = [1, 2, 3].map((id) => ({ id, labels: {}, state: "ready" as const, health: "healthy" as const }));
  const t = 1000;
  const merge: Operator = { id: 1, shard: 2, epoch: 2, reason: "manual", steps: [], stepIndex: 0, startedAtMs: t, stepStartedAtMs: t, reshape: { kind: "merge", into: 1 } };
  const splitting: Operator = { id: 2, shard: 3, epoch: 2, reason: "manual", steps: [], stepIndex: 0, startedAtMs: t, stepStartedAtMs: t, reshape: { kind: "split", at: 5, end: 9, child: 4 } };
  const state: PlacementState = { ...INITIAL_PLACEMENT_STATE, operators: [merge, splitting], nextOperatorId: 3 };
  // Every shard lacks two replicas (replication factor 3): repair would add them where it may.
  const running = placementCycle({ nodes, shards: [shardView(1), shardView(2), shardView(3)] }, state, DEFAULT_PLACEMENT, t + 10);
  assert.deepEqual(running.ended, []);
  assert.deepEqual(running.dispatch, [], "nothing to dispatch: the shards' leaders drive splits and merges");
  assert.deepEqual(running.started.map((o) => o.shard), [], "shards 1 and 2 are held by the merge, 3 by the split");
  const after = placementCycle({ nodes, shards: [shardView(1), shardView(3), shardView(4)] }, running.state, DEFAULT_PLACEMENT, t + 20);
  assert.deepEqual(after.ended.map((e) => [e.op.id, e.outcome]), [[1, "done"], [2, "done"]], "source retired; child in the map");
  assert.equal(after.state.shardSettledAtMs.get(1), t + 20, "the merge's target cools down too");
  const stuck = placementCycle({ nodes, shards: [shardView(1), shardView(2), shardView(3)] }, state, DEFAULT_PLACEMENT, t + DEFAULT_PLACEMENT.stepTimeoutMs + 1);
  assert.deepEqual(stuck.ended.map((e) => e.outcome), ["timed-out", "timed-out"], "a merge whose source unfroze frees its shards after the step timeout");
});

test("manualSplitCooldownMs is validated like the other settings; times are written without a clock", () => {
  assert.deepEqual(validatePlacementConfig(DEFAULT_PLACEMENT), []);
  assert.equal(DEFAULT_PLACEMENT.manualSplitCooldownMs, 600_000);
  assert.match(validatePlacementConfig({ ...DEFAULT_PLACEMENT, manualSplitCooldownMs: -1 }).join(), /manualSplitCooldownMs must be a non-negative integer/);
  assert.match(validatePlacementConfig({ ...DEFAULT_PLACEMENT, manualSplitCooldownMs: 1.5 }).join(), /manualSplitCooldownMs/);
  for (const ms of [0, 951_782_400_000, 1_709_164_800_000, 1_764_757_442_123, 4_102_444_799_999]) assert.equal(isoTime(ms), new Date(ms).toISOString());
});

test("a shard of a collection with vectors is split by size only past vectorSplitSizeBytes: each shard is a graph every search walks", () => {
  const shard = (id: number, sizeBytes: number, vectors: boolean): ShardView =>
    ({ id, epoch: 1, replicas: [{ node: 1, role: "voter", caughtUp: true }], leader: 1, sizeBytes, requestRate: 0, ...(vectors ? { vectors: true } : {}) });
  const view = (shards: ShardView[]): ClusterView => ({ nodes: [{ id: 1, labels: {}, state: "ready", health: "healthy" }], shards });
  const sizes = { ...cfg, splitSizeBytes: 64 << 20, vectorSplitSizeBytes: 1 << 30 };
  assert.deepEqual(pickSplit(view([shard(1, 100 << 20, false)]), INITIAL_PLACEMENT_STATE, sizes, MIN), { shard: 1, reason: "large-shard", why: `${100 << 20} bytes` });
  assert.equal(pickSplit(view([shard(1, 100 << 20, true)]), INITIAL_PLACEMENT_STATE, sizes, MIN), null, "100 MiB of vectors stay one graph");
  assert.equal(pickSplit(view([shard(1, (1 << 30) + 1, true)]), INITIAL_PLACEMENT_STATE, sizes, MIN)?.shard, 1, "past 1 GiB it is split");
  assert.equal(pickSplit(view([shard(1, 2 << 30, true)]), INITIAL_PLACEMENT_STATE, { ...sizes, vectorSplitSizeBytes: 0 }, MIN), null, "0 turns it off");
  assert.ok(validatePlacementConfig({ ...DEFAULT_PLACEMENT, vectorSplitSizeBytes: -1 }).some((e) => e.startsWith("vectorSplitSizeBytes")));
});
