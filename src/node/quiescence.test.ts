import { test } from "node:test";
import assert from "node:assert/strict";
import { MessageType, message } from "../raft/index.js";
import { TestCluster } from "../raft/testing.js";
import { type QuiescenceState, leaderIdle, quiescenceStep, wakes } from "./quiescence.js";

function cluster(): TestCluster {
  const c = new TestCluster({ voters: [1, 2, 3] });
  c.elect(1);
  c.propose(1, "a");
  c.stabilize();
  return c;
}

test("a leader is idle only when nothing is pending and every member holds and knows everything", () => {
  const c = cluster();
  const r = c.node(1);
  assert.equal(leaderIdle(r, 0), true);
  assert.equal(leaderIdle(r, 1), false, "a client request pending");
  assert.equal(leaderIdle(c.node(2), 0), false, "not a leader");
  c.isolate(3);
  c.propose(1, "b");
  c.stabilize();
  assert.equal(leaderIdle(r, 0), false, "member 3 lacks an entry");
  c.heal();
  c.tick(1, 1); // heartbeat: 3 is probed and caught up
  c.stabilize();
  assert.equal(leaderIdle(r, 0), true);
});

test("quiescence steps: idle ticks accumulate to the bound, reset on activity; a follower wakes when its leader is silent", () => {
  const c = cluster();
  const q: QuiescenceState = { quiesced: false, idleTicks: 0 };
  const leader = c.node(1);
  assert.equal(quiescenceStep(q, leader, 0, 4, 10, false), "none");
  assert.equal(quiescenceStep(q, leader, 1, 4, 10, false), "none", "activity resets the count");
  assert.equal(q.idleTicks, 0);
  assert.equal(quiescenceStep(q, leader, 0, 6, 10, false), "none");
  assert.equal(quiescenceStep(q, leader, 0, 4, 10, false), "quiesce");
  assert.equal(quiescenceStep({ quiesced: false, idleTicks: 100 }, leader, 0, 1, 0, false), "none", "0 turns quiescence off");
  const follower = c.node(2);
  assert.equal(quiescenceStep({ quiesced: true, idleTicks: 0 }, follower, 0, 1, 10, false), "none");
  assert.equal(quiescenceStep({ quiesced: true, idleTicks: 0 }, follower, 0, 1, 10, true), "wake-leader-lost");
  assert.equal(quiescenceStep({ quiesced: true, idleTicks: 0 }, leader, 0, 1, 10, true), "none", "a leader does not wake by silence");
});

test("what wakes a quiescent group: anything for a follower; for a leader all but plain acknowledgements", () => {
  const ack = message({ type: MessageType.AppendResponse, index: 3 });
  const reject = message({ type: MessageType.AppendResponse, index: 3, reject: true });
  const beatAck = message({ type: MessageType.HeartbeatResponse });
  const vote = message({ type: MessageType.PreVote });
  const c = cluster();
  const leaderRole = c.node(1).role();
  const followerRole = c.node(2).role();
  assert.deepEqual([ack, reject, beatAck, vote].map((m) => wakes(leaderRole, m)), [false, true, false, true]);
  assert.deepEqual([ack, reject, beatAck, vote].map((m) => wakes(followerRole, m)), [true, true, true, true]);
});
