import { test } from "node:test";
import assert from "node:assert/strict";
import { advanceOperator, moveSteps, stepDone, stepReady } from "./operators.js";
import type { Operator, ShardView } from "./types.js";

const shard = (over: Partial<ShardView> = {}): ShardView => ({
  id: 1, epoch: 5, leader: 1, sizeBytes: 0, requestRate: 0,
  replicas: [{ node: 1, role: "voter", caughtUp: true }, { node: 2, role: "voter", caughtUp: true }, { node: 3, role: "voter", caughtUp: true }],
  ...over,
});

const op = (s: ShardView, steps: Operator["steps"]): Operator => ({
  id: 1, shard: s.id, epoch: s.epoch, reason: "replica-balance", steps, stepIndex: 0, startedAtMs: 0, stepStartedAtMs: 0,
});

test("a move adds a learner, promotes it, hands over the leadership if the source led, then removes the source", () => {
  assert.deepEqual(moveSteps(shard(), 1, 4).map((s) => s.kind), ["add-learner", "promote", "transfer-leader", "remove-replica"]);
  assert.deepEqual(moveSteps(shard(), 2, 4).map((s) => s.kind), ["add-learner", "promote", "remove-replica"]);
});

test("a step is done when the view shows its effect; promotion waits for the learner to catch up (match-index barrier)", () => {
  const s = shard({ replicas: [...shard().replicas, { node: 4, role: "learner", caughtUp: false }] });
  assert.ok(stepDone({ kind: "add-learner", node: 4 }, s));
  assert.ok(!stepDone({ kind: "promote", node: 4 }, s));
  assert.ok(!stepReady({ kind: "promote", node: 4 }, s), "not caught up: not promoted");
  s.replicas[3]!.caughtUp = true;
  assert.ok(stepReady({ kind: "promote", node: 4 }, s));
  assert.ok(!stepReady({ kind: "remove-replica", node: 1 }, s), "a leader does not remove itself");
  assert.ok(!stepReady({ kind: "transfer-leader", to: 4 }, s), "leadership only to a voter");
  assert.ok(!stepReady({ kind: "add-learner", node: 5 }, { ...s, leader: 0 }), "nothing is carried out without a leader");
});

test("an operator skips steps already done (never redoes finished work), ends when all are, and follows its own epoch bumps", () => {
  const before = shard();
  const o = op(before, moveSteps(before, 2, 4));
  // Meanwhile the learner was added and promoted (the PD lost the replies): two epochs later.
  const after = shard({ epoch: 7, replicas: [...before.replicas, { node: 4, role: "voter", caughtUp: true }] });
  const p = advanceOperator(o, after, 1000, 60_000);
  assert.equal(p.status, "running");
  assert.equal(p.op.stepIndex, 2);
  assert.equal(p.op.epoch, 7);
  const done = shard({ epoch: 8, replicas: after.replicas.filter((r) => r.node !== 2) });
  assert.equal(advanceOperator(p.op, done, 2000, 60_000).status, "done");
});

test("a step not done in time ends the operator; a configuration changed by someone else fences it", () => {
  const s = shard();
  const o = op(s, moveSteps(s, 2, 4));
  assert.equal(advanceOperator(o, s, 60_001, 60_000).status, "timed-out");
  assert.equal(advanceOperator(o, shard({ epoch: 6 }), 1000, 60_000).status, "fenced");
});
