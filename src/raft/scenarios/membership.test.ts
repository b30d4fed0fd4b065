/** Membership changes (§6): learners, promotion, joint consensus, one change at a time, removal. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { ConfChangeTransition, ConfChangeType, encodeConfChange } from "../confchange.js";
import { EntryType, MessageType, Role, message } from "../types.js";
import { TestCluster } from "../testing.js";

const { AddVoter, AddLearner, RemoveNode } = ConfChangeType;

function withLearner4(): TestCluster {
  const c = new TestCluster({ voters: [1, 2, 3] });
  c.elect(1);
  for (let i = 0; i < 5; i++) c.propose(1, `before${i}`);
  c.addEmptyReplica(4);
  c.changeConf(1, { type: AddLearner, nodeId: 4 });
  c.tickAll(2);
  return c;
}

test("a learner added to a running cluster receives the configuration by snapshot, then the log", () => {
  const c = withLearner4();
  c.propose(1, "after");
  // The leader's log starts after the bootstrap snapshot, which carries the founding configuration.
  assert.ok(c.get(4).applied.some((e) => e.index === 1), "the learner installed the snapshot at index 1");
  assert.deepEqual(c.appliedData(4), ["before0", "before1", "before2", "before3", "before4", "after"]);
  assert.deepEqual(c.config(4).learners, [4]);
  assert.equal(c.node(4).status().isLearner, true);
  assert.equal(c.node(4).status().commit, c.node(1).status().commit);
});

test("a learner does not count toward the quorum", () => {
  const c = withLearner4();
  const commit = c.node(1).status().commit;
  c.isolate(2, 3);
  c.propose(1, "needs a voter");
  assert.equal(c.node(1).status().commit, commit, "leader + learner is not a quorum of {1, 2, 3}");
});

test("a learner is promoted to voter through the log", () => {
  const c = withLearner4();
  c.changeConf(1, { type: AddVoter, nodeId: 4 });
  for (const id of [1, 2, 3, 4]) assert.deepEqual(c.config(id).voters, [1, 2, 3, 4]);
  assert.equal(c.node(4).status().isLearner, false);
});

test("joint consensus: swapping voters enters a joint configuration and leaves it automatically", () => {
  const c = withLearner4();
  c.changeConf(1, { type: AddVoter, nodeId: 4 }, { type: RemoveNode, nodeId: 3 });
  const confEntries = c.get(2).applied.filter((e) => e.type === EntryType.ConfChange);
  const last2 = confEntries.slice(-2).map((e) => JSON.parse(new TextDecoder().decode(e.data)));
  assert.equal(last2[0].changes.length, 2, "the swap entered a joint configuration");
  assert.equal(last2[1].changes.length, 0, "the leader proposed leaving it once applied");
  for (const id of [1, 2, 4]) {
    assert.deepEqual(c.config(id).voters, [1, 2, 4]);
    assert.deepEqual(c.config(id).votersOutgoing, []);
  }
});

test("one change at a time: a change proposed before the previous one applied is refused", () => {
  const c = new TestCluster({ voters: [1, 2, 3] });
  c.elect(1);
  c.addEmptyReplica(4);
  c.addEmptyReplica(5);
  const add5 = { transition: ConfChangeTransition.Auto, changes: [{ type: AddLearner, nodeId: 5 }] };
  assert.equal(c.node(1).confChangeBusy(add5), false);
  c.node(1).proposeConfChange({ transition: ConfChangeTransition.Auto, changes: [{ type: AddLearner, nodeId: 4 }] });
  assert.match(c.node(1).confChangeRefusal(add5) ?? "", /not yet applied/);
  assert.equal(c.node(1).confChangeBusy(add5), true, "refused only until the first is applied");
  c.node(1).proposeConfChange(add5);
  c.stabilize();
  assert.deepEqual(c.config(1).learners, [4], "the second change was replaced by an empty entry");
  assert.equal(c.node(1).confChangeBusy(add5), false);
  const leave = { transition: ConfChangeTransition.Auto, changes: [] };
  assert.match(c.node(1).confChangeRefusal(leave) ?? "", /not in a joint configuration/);
  assert.equal(c.node(1).confChangeBusy(leave), false, "refused for what it is: asking again would not help");
  assert.equal(c.node(2).confChangeBusy(add5), false, "only a leader is busy with changes");
  c.changeConf(1, { type: AddLearner, nodeId: 5 });
  assert.deepEqual(c.config(1).learners, [4, 5], "it is accepted once the first is applied");
});

test("a joint configuration left by hand refuses other changes for what it is (not busy) until the leave is proposed", () => {
  const c = withLearner4();
  c.node(1).proposeConfChange({ transition: ConfChangeTransition.JointExplicit, changes: [{ type: AddVoter, nodeId: 4 }, { type: RemoveNode, nodeId: 3 }] });
  c.stabilize();
  assert.deepEqual(c.config(1).votersOutgoing, [1, 2, 3], "joint, and no automatic leave");
  const add5 = { transition: ConfChangeTransition.Auto, changes: [{ type: AddLearner, nodeId: 5 }] };
  assert.match(c.node(1).confChangeRefusal(add5) ?? "", /must leave the joint configuration first/);
  assert.equal(c.node(1).confChangeBusy(add5), false, "nothing in flight would end it: asking again would not help");
  c.node(1).proposeConfChange({ transition: ConfChangeTransition.Auto, changes: [] });
  assert.equal(c.node(1).confChangeBusy(add5), true, "the leave is in flight");
  c.stabilize();
  assert.equal(c.node(1).confChangeRefusal(add5), null);
});

test("a leader that removes itself steps down after the change commits, and the rest elect a leader", () => {
  const c = new TestCluster({ voters: [1, 2, 3] });
  c.elect(1);
  c.changeConf(1, { type: RemoveNode, nodeId: 1 });
  assert.equal(c.node(1).status().role, Role.Follower);
  assert.deepEqual(c.config(2).voters, [2, 3]);
  c.tickAll(25);
  const leader = c.leader();
  assert.ok(leader === 2 || leader === 3, `new leader ${leader}`);
  c.tick(1, 50);
  assert.notEqual(c.node(1).status().role, Role.Leader, "a removed member never campaigns");
});

test("a member with an unapplied configuration change does not campaign (etcd-io/raft #456)", () => {
  const c = new TestCluster({ voters: [1, 2, 3] });
  c.elect(1);
  const r2 = c.node(2).raft;
  const term = r2.term;
  const cc = encodeConfChange({ transition: ConfChangeTransition.Auto, changes: [{ type: AddLearner, nodeId: 9 }] });
  const last = r2.raftLog.lastIndex();
  // The change arrives committed, but the host has not applied it yet.
  r2.step(message({
    type: MessageType.Append, from: 1, to: 2, term, index: last, logTerm: r2.raftLog.lastTerm(),
    entries: [{ term, index: last + 1, type: EntryType.ConfChange, data: cc }], commit: last + 1,
  }));
  assert.ok(r2.raftLog.committed > r2.raftLog.applied);
  r2.msgs = [];
  c.node(2).campaign();
  assert.equal(r2.role, Role.Follower, "no campaign while the change is unapplied");
  assert.equal(r2.msgs.length, 0);
  c.handleReady(c.get(2));
  c.queue = [];
  c.node(2).campaign();
  assert.notEqual(r2.role, Role.Follower, "once applied, it may campaign");
});

test("a learner promoted by an entry it has not applied yet still grants votes (etcd #10998)", () => {
  const c = new TestCluster({ voters: [1, 2], learners: [3], config: { preVote: false, checkQuorum: false } });
  c.elect(1);
  c.isolate(3);
  c.changeConf(1, { type: AddVoter, nodeId: 3 }); // committed by {1, 2}; 3 never heard of it
  assert.deepEqual(c.config(2).voters, [1, 2, 3]);
  assert.equal(c.node(3).status().isLearner, true);
  c.heal();
  c.isolate(1);
  c.elect(2); // needs 2 of {1, 2, 3}: its own vote and the (locally still learner) 3's
  assert.equal(c.node(2).status().role, Role.Leader);
});

test("TimeoutNow delivered to a removed member does nothing (cockroach #8535)", () => {
  const c = new TestCluster({ voters: [1, 2, 3] });
  c.elect(1);
  c.changeConf(1, { type: RemoveNode, nodeId: 3 });
  const r3 = c.node(3).raft;
  assert.deepEqual(c.config(3).voters, [1, 2]);
  const term = r3.term;
  c.node(3).step(message({ type: MessageType.TimeoutNow, from: 1, to: 3, term }));
  assert.equal(r3.role, Role.Follower);
  assert.equal(r3.term, term);
  assert.equal(r3.msgs.length + r3.msgsAfterPersist.length, 0, "no vote requests");
});

test("a snapshot can turn a voter into a learner (etcd #10864)", () => {
  const c = new TestCluster({ voters: [1, 2, 3] });
  c.elect(1);
  c.isolate(3);
  c.changeConf(1, { type: AddLearner, nodeId: 3 }); // demote 3 while it is away
  for (let i = 0; i < 5; i++) c.propose(1, `x${i}`);
  // The leader compacts its log: 3 can only catch up by snapshot.
  const leader = c.get(1);
  const applied = leader.node.status().applied;
  leader.storage.createSnapshot(applied, leader.node.status().config, new Uint8Array([1, 2, 3]));
  leader.storage.compact(applied);
  assert.equal(c.node(3).status().isLearner, false);
  c.heal();
  c.tickAll(3);
  assert.equal(c.node(3).status().isLearner, true, "the snapshot's configuration demoted it");
  assert.deepEqual(c.config(3).learners, [3]);
  assert.equal(c.node(3).status().commit, c.node(1).status().commit);
});
