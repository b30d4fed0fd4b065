import { test } from "node:test";
import assert from "node:assert/strict";
import { DEFAULT_PROMOTION, planPromotions, targetVoters } from "./promotion.js";
import type { MemberLifecycle, MetaNode, NodeRole } from "./state.js";

function member(id: number, lifecycle: MemberLifecycle, readyAtMs: number | null = 0, role: NodeRole = "standard", pairingSinceMs: number | null = null): MetaNode {
  return {
    id, peer: { host: "h", port: id }, http: { host: "h", port: id }, labels: {}, role, lifecycle, worker: "ready", joinedAtMs: 0, readyAtMs, pairingSinceMs,
  };
}

test("the voter target is odd: 1, 1, 3, 3, then 5 from five members up", () => {
  assert.deepEqual([1, 2, 3, 4, 5, 9].map(targetVoters), [1, 1, 3, 3, 5, 5]);
});

test("from one voter, two ready learners are promoted together (a single one would make the count even)", () => {
  const d = planPromotions([member(1, "voter"), member(2, "ready", 10), member(3, "ready", 20)], DEFAULT_PROMOTION, 30);
  assert.deepEqual(d, [{ kind: "promote", nodes: [2, 3] }]);
});

test("a lone ready learner waits for a partner; a second one arriving is promoted with it, in readiness order", () => {
  const lone = planPromotions([member(1, "voter"), member(2, "ready", 10), member(3, "joining", null)], DEFAULT_PROMOTION, 20);
  assert.deepEqual(lone, [{ kind: "set-lifecycle", node: 2, lifecycle: "pairing" }]);
  const both = planPromotions([member(1, "voter"), member(2, "pairing", 10, "standard", 20), member(3, "ready", 30)], DEFAULT_PROMOTION, 40);
  assert.deepEqual(both, [{ kind: "promote", nodes: [2, 3] }]);
});

test("an even voter count (a voter was lost) is made odd by one promotion", () => {
  const d = planPromotions([member(1, "voter"), member(2, "voter"), member(3, "ready", 5), member(4, "ready", 1)], DEFAULT_PROMOTION, 10);
  assert.deepEqual(d, [{ kind: "promote", nodes: [4] }], "the earliest ready goes first");
});

test("five members: 3 voters grow to 5 with a pair; beyond the target, learners stay learners and become standby after the window", () => {
  const nodes = [member(1, "voter"), member(2, "voter"), member(3, "voter"), member(4, "ready", 1), member(5, "ready", 2), member(6, "ready", 3)];
  assert.deepEqual(planPromotions(nodes, DEFAULT_PROMOTION, 10), [{ kind: "promote", nodes: [4, 5] }]);
  const full = [member(1, "voter"), member(2, "voter"), member(3, "voter"), member(4, "voter"), member(5, "voter"), member(6, "ready", 0)];
  assert.deepEqual(planPromotions(full, DEFAULT_PROMOTION, 1000), []);
  assert.deepEqual(planPromotions(full, DEFAULT_PROMOTION, DEFAULT_PROMOTION.promotionWindowMs),
    [{ kind: "set-lifecycle", node: 6, lifecycle: "standby-learner" }]);
});

test("a pairing that finds no partner in time is cancelled; past the promotion window the learner becomes a StandbyLearner", () => {
  const waitedMs = DEFAULT_PROMOTION.pairingWaitMs;
  const cancelled = planPromotions([member(1, "voter"), member(2, "pairing", 0, "standard", 0)], DEFAULT_PROMOTION, waitedMs);
  assert.deepEqual(cancelled, [{ kind: "set-lifecycle", node: 2, lifecycle: "ready" }]);
  const standby = planPromotions([member(1, "voter"), member(2, "pairing", 0, "standard", 0)], DEFAULT_PROMOTION, DEFAULT_PROMOTION.promotionWindowMs);
  assert.deepEqual(standby, [{ kind: "set-lifecycle", node: 2, lifecycle: "standby-learner" }]);
});

test("analytics nodes are never promoted (KeepAsLearner); standby nodes become StandbyLearners", () => {
  const d = planPromotions([member(1, "voter"), member(2, "ready", 0, "analytics"), member(3, "ready", 0, "analytics"), member(4, "ready", 0, "standby")], DEFAULT_PROMOTION, 10);
  assert.deepEqual(d, [
    { kind: "set-lifecycle", node: 2, lifecycle: "keep-as-learner" },
    { kind: "set-lifecycle", node: 3, lifecycle: "keep-as-learner" },
    { kind: "set-lifecycle", node: 4, lifecycle: "standby-learner" },
  ]);
});
