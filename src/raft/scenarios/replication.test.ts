/** Log replication scenarios: the Raft paper's figures 7 and 8, durability order, flow control. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { EntryType, MessageType, Role } from "../types.js";
import { TestCluster, enc, logTerms, storageWithLog } from "../testing.js";

test("figure 7: a new leader brings followers with missing, extra and conflicting entries in line", () => {
  const ids = [1, 2, 3, 4, 5, 6, 7];
  // The paper's logs for indexes 2.. (index 1 is the bootstrap snapshot, term 1).
  const logs: Record<number, number[]> = {
    1: [1, 1, 4, 4, 5, 5, 6, 6, 6], // the leader for term 8
    2: [1, 1, 4, 4, 5, 5, 6, 6], // (a) missing one
    3: [1, 1, 4], // (b) missing many
    4: [1, 1, 4, 4, 5, 5, 6, 6, 6, 6], // (c) one extra
    5: [1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7], // (d) extra uncommitted entries of term 7
    6: [1, 1, 4, 4, 4, 4], // (e) conflicting term 4 entries
    7: [1, 1, 2, 2, 2, 3, 3, 3, 3, 3], // (f) a leader of terms 2 and 3 that never committed
  };
  const c = new TestCluster({ voters: [], config: { preVote: false, checkQuorum: false } });
  for (const id of ids) c.addReplica(id, storageWithLog(ids, logs[id]!, 7));
  c.elect(1);
  assert.equal(c.node(1).status().role, Role.Leader);
  assert.equal(c.node(1).status().term, 8);
  c.propose(1, "after");
  const leaderLog = logTerms(c.get(1));
  assert.deepEqual(leaderLog, [...logs[1]!, 8, 8]);
  for (const id of ids) assert.deepEqual(logTerms(c.get(id)), leaderLog, `follower ${id}'s log`);
  for (const id of ids) assert.equal(c.node(id).status().commit, leaderLog.length + 1);
});

/**
 * Figure 8 (§5.4.2): S1 leads term 4 with an entry of term 2 at index 2, S5 holds a term 3 entry there.
 * S1 replicates index 2 to a majority, but its term 4 entry does not get through. Counting replicas
 * must not commit index 2: S5 can still win an election and overwrite it.
 */
function figure8(mutate: boolean): TestCluster {
  const ids = [1, 2, 3, 4, 5];
  const logs: Record<number, number[]> = { 1: [2], 2: [2], 3: [], 4: [], 5: [3] };
  const c = new TestCluster({
    voters: [],
    config: { preVote: false, checkQuorum: false, maxSizePerMsgBytes: 1, mutations: { commitPreviousTermByCount: mutate } },
  });
  for (const id of ids) c.addReplica(id, storageWithLog(ids, logs[id]!, 3));
  // The leader's term 4 entry (index 3) never reaches anyone.
  c.filters.push((m) => m.type === MessageType.Append && m.entries.some((e) => e.index === 3));
  c.elect(1);
  assert.equal(c.node(1).status().role, Role.Leader);
  assert.equal(c.node(1).status().term, 4);
  // Have S1 send index 2 to S2 and S3 (as its probes would after rejections).
  const raft = c.node(1).raft;
  for (const id of [2, 3]) {
    const pr = raft.trk.progress.get(id)!;
    pr.next = 2;
    pr.probeSent = false;
    raft.maybeSendAppend(id, true);
  }
  c.stabilize();
  return c;
}

test("figure 8: an entry of an earlier term is not committed by counting replicas", () => {
  const c = figure8(false);
  assert.equal(c.node(1).raft.trk.progress.get(3)!.match, 2, "index 2 is on a majority (S1, S2, S3)");
  assert.equal(c.node(1).status().commit, 1, "but it is not committed");
  // S1 fails; S5 (last term 3) wins and overwrites index 2. Nothing committed is lost.
  c.heal();
  c.isolate(1);
  c.elect(5);
  assert.equal(c.node(5).status().role, Role.Leader);
  c.heal();
  c.tickAll(2); // heartbeats reach the old leader, which steps down
  c.propose(5, "next");
  for (const id of [1, 2, 3, 4, 5]) {
    const at2 = c.get(id).applied.find((e) => e.index === 2)!;
    assert.equal(at2.term, 3, `node ${id} applied S5's entry at index 2`);
  }
});

test("figure 8 with the commit rule broken: the simulator-style check sees a committed entry lost", () => {
  const c = figure8(true);
  assert.equal(c.node(1).status().commit, 2, "the mutation commits index 2 by counting");
  const appliedBy1 = c.get(1).applied.find((e) => e.index === 2);
  assert.equal(appliedBy1?.term, 2, "S1 applied the term 2 entry");
  c.heal();
  c.isolate(1);
  c.elect(5);
  c.propose(5, "next");
  const appliedBy2 = c.get(2).applied.find((e) => e.index === 2);
  assert.equal(appliedBy2?.term, 3, "S2 applied a different entry at the same index: state-machine safety is broken");
});

test("a follower's append acknowledgement leaves only after its entries are durable", () => {
  const c = new TestCluster({ voters: [1, 2, 3] });
  c.elect(1);
  c.node(1).propose(enc("x"));
  const rd1 = c.node(1).ready();
  const append = rd1.messages.find((m) => m.type === MessageType.Append && m.to === 2)!;
  c.handleReady(c.get(1), rd1);
  c.queue = [];
  c.node(2).step(append);
  const rd2 = c.node(2).ready();
  assert.equal(rd2.entries.length, 1);
  assert.ok(rd2.messages.every((m) => m.type !== MessageType.AppendResponse), "no ack before persisting");
  assert.ok(rd2.messagesAfterPersist.some((m) => m.type === MessageType.AppendResponse && m.index === append.index + 1));
  assert.equal(rd2.mustSync, true);
});

test("the leader sends appends while its own write is in flight, and counts itself only once durable", () => {
  const c = new TestCluster({ voters: [1, 2, 3] });
  c.elect(1);
  const before = c.node(1).raft.trk.progress.get(1)!.match;
  c.node(1).propose(enc("x"));
  const rd = c.node(1).ready();
  assert.equal(rd.entries.length, 1, "its own entry is still to be written");
  assert.equal(rd.messages.filter((m) => m.type === MessageType.Append).length, 2, "appends leave at once");
  assert.equal(c.node(1).raft.trk.progress.get(1)!.match, before, "not counted before it is durable");
  c.handleReady(c.get(1), rd);
  assert.equal(c.node(1).raft.trk.progress.get(1)!.match, before + 1, "counted once durable");
});

test("proposals of one turn are batched: one Append per follower carries them all", () => {
  const c = new TestCluster({ voters: [1, 2, 3] });
  c.elect(1);
  c.node(1).propose(...Array.from({ length: 100 }, (_, i) => enc(`p${i}`)));
  const rd = c.node(1).ready();
  const appends = rd.messages.filter((m) => m.type === MessageType.Append);
  assert.equal(appends.length, 2);
  for (const m of appends) assert.equal(m.entries.length, 100);
  c.handleReady(c.get(1), rd);
  c.stabilize();
  assert.equal(c.appliedData(3).length, 100);
});

test("flow control: at most maxInflightMsgs appends are outstanding to a follower", () => {
  const c = new TestCluster({ voters: [1, 2, 3], config: { maxInflightMsgs: 3, maxSizePerMsgBytes: 1 } });
  c.elect(1);
  c.isolate(3);
  let appendsTo3 = 0;
  c.filters.unshift((m) => {
    if (m.type === MessageType.Append && m.to === 3 && m.entries.length > 0) appendsTo3++;
    return false;
  });
  for (let i = 0; i < 20; i++) c.propose(1, `p${i}`);
  assert.equal(appendsTo3, 3, "the window stops further appends until acknowledgements arrive");
  c.heal();
  c.tickAll(5);
  assert.equal(c.appliedData(3).length, 20, "the follower catches up after the window reopens");
});

test("fast backtracking: a long divergent tail is resolved in a few round trips", () => {
  const ids = [1, 2, 3];
  const c = new TestCluster({ voters: [], config: { preVote: false, checkQuorum: false } });
  c.addReplica(1, storageWithLog(ids, [2, 2, 2, 5, 5], 5));
  c.addReplica(2, storageWithLog(ids, [2, 2, 2, 5, 5], 5));
  c.addReplica(3, storageWithLog(ids, [2, 2, 2, ...Array(200).fill(3)], 5));
  let rejections = 0;
  c.filters.push((m) => {
    if (m.type === MessageType.AppendResponse && m.reject) rejections++;
    return false;
  });
  c.elect(1);
  c.propose(1, "x");
  assert.deepEqual(logTerms(c.get(3)), logTerms(c.get(1)));
  assert.ok(rejections <= 3, `${rejections} rejections for a 200-entry divergent tail`);
});

test("log matching: entries with the same index and term are identical on every node", () => {
  const c = new TestCluster({ voters: [1, 2, 3, 4, 5], seed: 3 });
  c.elect(1);
  for (let round = 0; round < 5; round++) {
    c.isolate(round % 5 + 1);
    for (let i = 0; i < 3; i++) {
      const leader = c.leader();
      if (leader !== null) c.node(leader).propose(enc(`r${round}i${i}`));
      c.stabilize();
    }
    c.heal();
    c.tickAll(25);
  }
  const logs = [1, 2, 3, 4, 5].map((id) => c.node(id).raft.raftLog);
  for (const a of logs) {
    for (const b of logs) {
      const hi = Math.min(a.lastIndex(), b.lastIndex());
      for (let i = 2; i <= hi; i++) {
        if (a.term(i) !== b.term(i)) continue;
        const ea = a.slice(i, i + 1, Infinity)[0]!;
        const eb = b.slice(i, i + 1, Infinity)[0]!;
        assert.deepEqual(ea.data, eb.data, `index ${i}`);
        assert.equal(ea.type === EntryType.Normal, eb.type === EntryType.Normal);
      }
    }
  }
});
