/** Bugs other Raft implementations shipped, and leader transfer. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { ProposalDroppedError } from "../raft.js";
import { EntryType, MessageType, Role, message } from "../types.js";
import { TestCluster, enc } from "../testing.js";

test("a follower that lost persisted entries neither regresses its commit nor crashes (etcd #10166)", () => {
  const c = new TestCluster({ voters: [1, 2, 3] });
  c.elect(1);
  for (let i = 0; i < 6; i++) c.propose(1, `x${i}`);
  const r3 = c.get(3);
  const last = r3.storage.lastIndex();
  // The disk lost the last three entries it had acknowledged; the hard state survived.
  r3.storage.truncateAfter(last - 3);
  const restarted = c.addReplica(3, r3.storage, last - 3);
  const commitAtRestart = restarted.node.status().commit;
  assert.equal(commitAtRestart, last - 3, "commit is clamped to what the log holds");
  let commit = commitAtRestart;
  for (let i = 0; i < 5; i++) {
    c.tickAll(1);
    const now = restarted.node.status().commit;
    assert.ok(now >= commit, "commit never regresses");
    commit = now;
  }
  assert.equal(restarted.node.status().commit, c.node(1).status().commit, "the leader resent what was lost");
  assert.equal(restarted.storage.lastIndex(), c.get(1).storage.lastIndex());
});

test("an append in flight does not overwrite entries of a newer term (async-write ABA race)", () => {
  const c = new TestCluster({ voters: [1, 2, 3] });
  const n2 = c.node(2);
  const r2 = n2.raft;
  const base = r2.raftLog.lastIndex();
  const entry = (term: number, index: number) => ({ term, index, type: EntryType.Normal, data: enc(`t${term}`) });
  // Term 2 leader 1 appends index base+1; the follower starts writing it.
  n2.step(message({ type: MessageType.Append, from: 1, to: 2, term: 2, index: base, logTerm: 1, entries: [entry(2, base + 1)] }));
  const rd = n2.ready();
  assert.equal(rd.entries[0]!.term, 2);
  // Before the write finishes, a term 3 leader replaces that entry.
  n2.step(message({ type: MessageType.Append, from: 3, to: 2, term: 3, index: base, logTerm: 1, entries: [entry(3, base + 1)] }));
  c.get(2).storage.append(rd.entries);
  if (rd.hardState) c.get(2).storage.setHardState(rd.hardState);
  n2.advance(); // the term 2 write is durable; the term 3 entry is not
  assert.equal(r2.raftLog.term(base + 1), 3);
  const next = n2.ready();
  assert.deepEqual(next.entries.map((e) => e.term), [3], "the newer entry is still to be written");
  const ack = next.messagesAfterPersist.find((m) => m.type === MessageType.AppendResponse && m.to === 3);
  assert.ok(ack !== undefined, "and its acknowledgement waits for that write");
});

test("leader transfer: the transferee is caught up first, proposals are refused meanwhile, completion is reported", () => {
  const c = new TestCluster({ voters: [1, 2, 3] });
  c.elect(1);
  c.isolate(2);
  for (let i = 0; i < 5; i++) c.propose(1, `x${i}`);
  c.heal();
  c.node(1).transferLeader(2);
  assert.throws(() => c.node(1).propose(enc("during")), ProposalDroppedError);
  c.stabilize();
  assert.equal(c.node(2).status().role, Role.Leader);
  assert.deepEqual(c.appliedData(2).slice(0, 5), ["x0", "x1", "x2", "x3", "x4"], "caught up before taking over");
  assert.deepEqual(c.leaderTransfers, ["1:2:completed"]);
});

test("a leader transfer that does not finish within an election timeout is abandoned and reported", () => {
  const c = new TestCluster({ voters: [1, 2, 3] });
  c.elect(1);
  c.isolate(2);
  c.node(1).transferLeader(2);
  assert.equal(c.node(1).status().leadTransferee, 2);
  c.node(1).raft.transferResults = [];
  for (let i = 0; i < 10; i++) c.node(1).tick();
  assert.equal(c.node(1).status().leadTransferee, 0);
  assert.deepEqual(c.node(1).raft.transferResults.map((t) => t.outcome), ["aborted"]);
  c.stabilize();
  c.propose(1, "accepted again");
  assert.deepEqual(c.appliedData(1).slice(-1), ["accepted again"]);
});
