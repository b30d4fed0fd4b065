import { test } from "node:test";
import assert from "node:assert/strict";
import { type ChangerContext, ConfChangeError, ConfChangeTransition, ConfChangeType, applyChange, entersJoint } from "./confchange.js";
import { Progress } from "./progress.js";
import { ProgressTracker, configFromConfState, confStateOf } from "./tracker.js";

function ctx(voters: number[], learners: number[] = []): ChangerContext {
  const trk = new ProgressTracker(4, 0);
  const config = configFromConfState({ voters, votersOutgoing: [], learners, learnersNext: [], autoLeave: false });
  const progress = new Map<number, Progress>();
  for (const id of [...voters, ...learners]) progress.set(id, trk.newProgress(1, learners.includes(id)));
  return { config, progress, lastIndex: 10, newProgress: (n, l) => trk.newProgress(n, l) };
}

const change = (...changes: [ConfChangeType, number][]) => ({
  transition: ConfChangeTransition.Auto, changes: changes.map(([type, nodeId]) => ({ type, nodeId })),
});

test("a single change is simple; several changes go through a joint configuration", () => {
  assert.deepEqual(entersJoint(change([ConfChangeType.AddVoter, 4])), { joint: false, autoLeave: false });
  assert.deepEqual(entersJoint(change([ConfChangeType.AddVoter, 4], [ConfChangeType.RemoveNode, 1])), { joint: true, autoLeave: true });
});

test("entering and leaving a joint configuration swaps voters safely", () => {
  const c0 = ctx([1, 2, 3]);
  const joint = applyChange(c0, change([ConfChangeType.AddVoter, 4], [ConfChangeType.AddLearner, 3]));
  const cs = confStateOf(joint.config);
  assert.deepEqual(cs.voters, [1, 2, 4]);
  assert.deepEqual(cs.votersOutgoing, [1, 2, 3]);
  assert.deepEqual(cs.learnersNext, [3], "3 keeps voting in the outgoing half until the joint config is left");
  const left = applyChange({ ...c0, config: joint.config, progress: joint.progress }, { transition: ConfChangeTransition.Auto, changes: [] });
  const cs2 = confStateOf(left.config);
  assert.deepEqual(cs2.voters, [1, 2, 4]);
  assert.deepEqual(cs2.learners, [3]);
  assert.deepEqual(cs2.votersOutgoing, []);
  assert.equal(left.progress.get(3)!.isLearner, true);
});

test("invalid changes are refused without touching the live configuration", () => {
  const c0 = ctx([1, 2, 3], [4]);
  assert.throws(() => applyChange(c0, change([ConfChangeType.RemoveNode, 1], [ConfChangeType.RemoveNode, 2], [ConfChangeType.RemoveNode, 3])), ConfChangeError);
  assert.throws(() => applyChange(c0, { transition: ConfChangeTransition.Auto, changes: [] }), /non-joint/);
  const before = c0.progress.get(4)!.isLearner;
  // Promotes 4 (changing its role) and then fails: no voters would be left.
  assert.throws(() => applyChange(c0, change([ConfChangeType.AddVoter, 4], [ConfChangeType.RemoveNode, 1],
    [ConfChangeType.RemoveNode, 2], [ConfChangeType.RemoveNode, 3], [ConfChangeType.RemoveNode, 4])), /removed all voters/);
  assert.equal(c0.progress.get(4)!.isLearner, before, "a failed change leaves the old progress as it was");
});
