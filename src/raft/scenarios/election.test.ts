/** Leader election scenarios: the Raft paper's election rules, pre-vote, check-quorum. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { Role, MessageType, message } from "../types.js";
import { TestCluster } from "../testing.js";

test("a candidate that wins a majority becomes leader and the others follow it", () => {
  const c = new TestCluster({ voters: [1, 2, 3] });
  c.elect(1);
  for (const id of [1, 2, 3]) {
    assert.equal(c.node(id).status().lead, 1);
    assert.equal(c.node(id).status().term, 2);
  }
  assert.equal(c.node(1).status().role, Role.Leader);
});

test("election safety: simultaneous candidates never yield two leaders in one term", () => {
  for (let seed = 1; seed <= 30; seed++) {
    const c = new TestCluster({ voters: [1, 2, 3, 4, 5], seed, config: { preVote: false } });
    c.node(1).campaign();
    c.node(2).campaign();
    c.node(3).campaign();
    c.stabilize();
    const leadersByTerm = new Map<number, number[]>();
    for (const id of [1, 2, 3, 4, 5]) {
      const st = c.node(id).status();
      if (st.role === Role.Leader) leadersByTerm.set(st.term, [...(leadersByTerm.get(st.term) ?? []), id]);
    }
    for (const [term, leaders] of leadersByTerm) assert.equal(leaders.length, 1, `seed ${seed} term ${term}: ${leaders}`);
  }
});

test("a candidate whose log is behind is refused votes (election restriction, §5.4.1)", () => {
  // Without check-quorum, followers consider every vote request at once (no lease to respect).
  const c = new TestCluster({ voters: [1, 2, 3], config: { preVote: false, checkQuorum: false } });
  c.elect(1);
  c.isolate(3);
  c.propose(1, "x"); // 1 and 2 have it, 3 does not
  c.heal();
  c.isolate(1);
  c.node(3).campaign();
  c.stabilize();
  assert.notEqual(c.node(3).status().role, Role.Leader, "3 lacks a committed entry and must not win");
  c.node(2).campaign();
  c.stabilize();
  assert.equal(c.node(2).status().role, Role.Leader);
});

test("pre-vote: a node that was partitioned away does not disrupt the leader when it returns", () => {
  const c = new TestCluster({ voters: [1, 2, 3] });
  c.elect(1);
  const term = c.node(1).status().term;
  c.isolate(3);
  c.tick(3, 50); // it times out again and again, but pre-vote keeps its term
  assert.equal(c.node(3).status().term, term);
  c.heal();
  c.tickAll(3);
  assert.equal(c.node(1).status().role, Role.Leader);
  assert.equal(c.node(1).status().term, term);
});

test("check-quorum: a leader that hears from no quorum for an election timeout steps down", () => {
  const c = new TestCluster({ voters: [1, 2, 3] });
  c.elect(1);
  c.isolate(1);
  // Activity is sampled once per election timeout: the round in progress at the partition still
  // counts the followers, the next one does not.
  c.tick(1, 10);
  assert.equal(c.node(1).status().role, Role.Leader);
  c.tick(1, 10);
  assert.equal(c.node(1).status().role, Role.Follower);
});

test("granting a pre-vote does not reset the election timer (hashicorp/raft #609)", () => {
  const c = new TestCluster({ voters: [1, 2, 3] });
  const r2 = c.node(2).raft;
  for (let i = 0; i < 5; i++) r2.tick(); // no leader yet; 5 < the randomized timeout (>= 10)
  assert.equal(r2.electionElapsed, 5);
  c.node(2).step(message({ type: MessageType.PreVote, from: 3, to: 2, term: r2.term + 1, index: 1, logTerm: 1 }));
  const rd = c.node(2).ready();
  const resp = [...rd.messages, ...rd.messagesAfterPersist].find((m) => m.type === MessageType.PreVoteResponse);
  assert.ok(resp !== undefined && !resp.reject, "the pre-vote is granted");
  c.node(2).advance();
  assert.equal(r2.electionElapsed, 5, "granting a pre-vote must not postpone our own election");
  // A real vote does reset it.
  c.node(2).step(message({ type: MessageType.Vote, from: 3, to: 2, term: r2.term + 1, index: 1, logTerm: 1 }));
  assert.equal(r2.electionElapsed, 0);
});

test("a leader that sees a higher term in any response steps down", () => {
  const responses = [
    MessageType.AppendResponse, MessageType.HeartbeatResponse, MessageType.VoteResponse,
    MessageType.SnapshotChunkResponse, MessageType.ReadIndexResponse,
  ];
  for (const type of responses) {
    const c = new TestCluster({ voters: [1, 2, 3] });
    c.elect(1);
    const term = c.node(1).status().term;
    c.node(1).step(message({
      type, from: 2, to: 1, term: term + 1, reject: type === MessageType.VoteResponse, context: new Uint8Array([1]),
    }));
    const st = c.node(1).status();
    assert.equal(st.role, Role.Follower, `${MessageType[type]} with a higher term`);
    assert.equal(st.term, term + 1);
  }
});

test("a learner never becomes leader: it neither campaigns on timeout nor on request", () => {
  const c = new TestCluster({ voters: [1, 2], learners: [3] });
  c.isolate(1, 2);
  c.tick(3, 100);
  c.node(3).campaign();
  c.stabilize();
  assert.equal(c.node(3).status().role, Role.Follower);
  assert.equal(c.node(3).status().term, 1, "a learner never starts an election");
});

test("a new leader is elected within the bound after the leader is lost (10 ms ticks, < 1 s)", () => {
  const c = new TestCluster({ voters: [1, 2, 3], seed: 7 });
  c.elect(1);
  c.isolate(1);
  let ticks = 0;
  while (![2, 3].some((id) => c.node(id).status().role === Role.Leader)) {
    c.tickAll(1);
    ticks++;
    assert.ok(ticks < 100, "no new leader within 100 ticks");
  }
  // Randomized timeouts are in [10, 20) ticks, plus the pre-vote and vote rounds.
  assert.ok(ticks <= 2 * 10 + 1, `took ${ticks} ticks`);
});
