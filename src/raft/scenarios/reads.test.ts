/** Linearizable reads without a log write: ReadIndex on leader and followers, leases. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { ReadOnlyOption } from "../config.js";
import { MessageType, Role } from "../types.js";
import { TestCluster, enc } from "../testing.js";

const ctx = (s: string) => enc(s);
const ctxs = (c: TestCluster, id: number) => c.get(id).readStates.map((r) => new TextDecoder().decode(r.context));

test("ReadIndex on the leader: one confirmed heartbeat round releases every read waiting before it", () => {
  const c = new TestCluster({ voters: [1, 2, 3] });
  c.elect(1);
  c.propose(1, "x");
  c.node(1).readIndex(ctx("a"));
  c.node(1).readIndex(ctx("b"));
  // Acknowledgements of the first round are lost: the second round confirms both reads.
  c.filters.push((m) => m.type === MessageType.HeartbeatResponse && new TextDecoder().decode(m.context ?? new Uint8Array()) === "a");
  c.stabilize();
  assert.deepEqual(ctxs(c, 1), ["a", "b"]);
  for (const rs of c.get(1).readStates) assert.equal(rs.index, c.node(1).status().commit);
});

test("ReadIndex from a follower: the leader confirms leadership and answers with its commit index", () => {
  const c = new TestCluster({ voters: [1, 2, 3] });
  c.elect(1);
  c.propose(1, "x");
  c.node(3).readIndex(ctx("f"));
  c.stabilize();
  assert.deepEqual(ctxs(c, 3), ["f"]);
  assert.equal(c.get(3).readStates[0]!.index, c.node(1).status().commit);
});

test("a new leader answers no read until it has committed an entry of its own term (tikv #6340)", () => {
  const c = new TestCluster({ voters: [1, 2, 3] });
  c.elect(1);
  c.propose(1, "x");
  // 2 takes over, but its first entry cannot commit: acknowledgements of appends do not reach it.
  c.filters.push((m) => m.type === MessageType.AppendResponse && m.to === 2);
  c.node(1).transferLeader(2);
  c.stabilize();
  assert.equal(c.node(2).status().role, Role.Leader);
  c.node(2).readIndex(ctx("early"));
  c.tickAll(3);
  assert.deepEqual(ctxs(c, 2), [], "no answer before the first commit of the term");
  c.heal();
  c.tickAll(2);
  assert.deepEqual(ctxs(c, 2), ["early"]);
  const st = c.node(2).status();
  assert.equal(c.node(2).raft.raftLog.term(c.get(2).readStates[0]!.index), st.term, "the read index is in the new term");
});

/** A cluster with lease reads; fresh replicas refuse votes for one election timeout, so tick to a leader. */
function leaseCluster(): { c: TestCluster; leader: number; others: number[] } {
  const c = new TestCluster({
    voters: [1, 2, 3], config: { readOnlyOption: ReadOnlyOption.Lease, leaseClockDriftTicks: 2 },
  });
  const leader = c.tickUntilLeader();
  return { c, leader, others: [1, 2, 3].filter((id) => id !== leader) };
}

test("no stale read after a leader transfer (tikv #9239): the old leader drops its lease", () => {
  const { c, leader: old, others } = leaseCluster();
  const next = others[0]!;
  c.propose(old, "x");
  c.tickAll(2); // a heartbeat round: the lease is valid
  c.node(old).readIndex(ctx("lease"));
  c.stabilize();
  assert.deepEqual(ctxs(c, old), ["lease"], "served from the lease");
  const staleCommit = c.node(old).status().commit;
  // Transfer; the old leader hears nothing back from anyone afterwards.
  c.filters.push((m) => m.to === old && m.from !== old);
  c.node(old).transferLeader(next);
  c.stabilize();
  assert.equal(c.node(next).status().role, Role.Leader);
  c.propose(next, "newer");
  assert.ok(c.node(next).status().commit > staleCommit);
  c.get(old).readStates = [];
  c.node(old).readIndex(ctx("after-transfer"));
  c.stabilize();
  assert.deepEqual(ctxs(c, old), [], "the old leader must not serve a read at its stale commit index");
});

test("lease reads: answered without a heartbeat round while the lease holds, never after it lapses", () => {
  const { c, leader } = leaseCluster();
  c.propose(leader, "x");
  c.tickAll(2);
  c.node(leader).readIndex(ctx("now"));
  const rd = c.node(leader).ready();
  assert.equal(rd.readStates.length, 1, "answered in the same Ready");
  assert.equal(rd.messages.filter((m) => m.type === MessageType.Heartbeat).length, 0, "without a heartbeat round");
  c.handleReady(c.get(leader), rd);
  c.isolate(leader);
  c.tick(leader, 10 - 2); // the lease lapses drift ticks before the followers may elect someone else
  c.get(leader).readStates = [];
  c.node(leader).readIndex(ctx("late"));
  c.stabilize();
  assert.deepEqual(ctxs(c, leader), [], "no lease: the read waits for a quorum that cannot answer");
});
