import { test } from "node:test";
import assert from "node:assert/strict";
import { manualOperator } from "./manual.js";
import { INITIAL_PLACEMENT_STATE } from "./scheduler.js";
import type { ClusterView } from "./types.js";

const view: ClusterView = {
  nodes: [1, 2, 3, 4].map((id) => ({ id, labels: {}, state: id === 4 ? "ready" : "ready", health: id === 3 ? "unhealthy" : "healthy" })),
  shards: [{ id: 7, epoch: 3, leader: 1, sizeBytes: 0, requestRate: 0, replicas: [1, 2].map((node) => ({ node, role: "voter" as const, caughtUp: true })) }],
};

test("manual operators: a move (the leadership goes first when the source leads), a transfer, and cancelling one; bad requests refused with a reason", () => {
  const moved = manualOperator(view, INITIAL_PLACEMENT_STATE, { kind: "move", shard: 7, from: 1, to: 4 }, 100);
  assert.ok(moved.ok);
  assert.deepEqual(moved.operator.steps.map((s) => s.kind), ["add-learner", "promote", "transfer-leader", "remove-replica"]);
  assert.equal(moved.operator.epoch, 3, "fenced by the shard's epoch");
  const busy = manualOperator(view, moved.state, { kind: "transfer-leader", shard: 7, to: 2 }, 101);
  assert.equal(busy.ok ? null : busy.code, "shard_busy");
  const cancelled = manualOperator(view, moved.state, { kind: "cancel", operator: moved.operator.id }, 102);
  assert.ok(cancelled.ok && cancelled.ended && cancelled.state.operators.length === 0);
  assert.equal(cancelled.state.shardSettledAtMs.get(7), 102, "a cancelled shard cools down like an ended one");
  const transfer = manualOperator(view, cancelled.state, { kind: "transfer-leader", shard: 7, to: 2 }, 103);
  assert.ok(transfer.ok);
  assert.equal(transfer.operator.id, 2, "ids keep increasing");
  const codes = [
    manualOperator(view, INITIAL_PLACEMENT_STATE, { kind: "move", shard: 9, from: 1, to: 4 }, 0),
    manualOperator(view, INITIAL_PLACEMENT_STATE, { kind: "move", shard: 7, from: 4, to: 2 }, 0),
    manualOperator(view, INITIAL_PLACEMENT_STATE, { kind: "move", shard: 7, from: 1, to: 2 }, 0),
    manualOperator(view, INITIAL_PLACEMENT_STATE, { kind: "move", shard: 7, from: 1, to: 3 }, 0),
    manualOperator(view, INITIAL_PLACEMENT_STATE, { kind: "transfer-leader", shard: 7, to: 4 }, 0),
    manualOperator(view, INITIAL_PLACEMENT_STATE, { kind: "transfer-leader", shard: 7, to: 1 }, 0),
    manualOperator(view, INITIAL_PLACEMENT_STATE, { kind: "cancel", operator: 5 }, 0),
  ].map((r) => (r.ok ? "ok" : r.code));
  assert.deepEqual(codes, ["shard_not_found", "replica_not_found", "replica_exists", "node_not_placeable", "not_a_voter", "already_leader", "operator_not_found"]);
});
