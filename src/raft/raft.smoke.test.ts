import { test } from "node:test";
import assert from "node:assert/strict";
import { TestCluster, enc } from "./testing.js";
import { Role } from "./index.js";

test("three voters elect a leader and replicate a proposal to all", () => {
  const c = new TestCluster({ voters: [1, 2, 3] });
  c.elect(1);
  assert.equal(c.leader(), 1);
  c.node(1).propose(enc("hello"));
  c.stabilize();
  for (const id of [1, 2, 3]) assert.deepEqual(c.appliedData(id), ["hello"]);
  const st = c.node(1).status();
  // Index 1 is the bootstrap snapshot, 2 the leader's empty entry, 3 the proposal.
  assert.equal(st.commit, 3);
  assert.equal(st.progress!.get(2)!.match, 3);
});

/**
 * Three voters under pre-vote and check-quorum; node 1 led, and its node is gone. Node 2 campaigns at
 * once, and node 3, in its lease of node 1, ignores its pre-vote.
 */
function leaderLostCampaignIgnored(): TestCluster {
  const c = new TestCluster({ voters: [1, 2, 3], config: { preVote: true, checkQuorum: true } });
  c.elect(1);
  c.stabilize();
  c.isolate(1);
  c.node(2).campaign();
  c.stabilize();
  return c;
}

test("forgetLeader: a follower that forgot its lost leader grants pre-votes at once, campaigns only at its own timeout, and follows the leader again if it hears from it", () => {
  // Without forgetting node 1, node 3 ignores node 2's pre-vote (it is in its lease).
  const c = leaderLostCampaignIgnored();
  assert.notEqual(c.node(2).role(), Role.Leader, "node 3 in its lease: no election");
  assert.equal(c.node(3).lead(), 1);
  // Node 3 forgets its leader (the host saw node 1's connection break): node 2's campaign succeeds at once.
  c.node(3).forgetLeader();
  assert.equal(c.node(3).lead(), 0);
  assert.equal(c.node(3).role(), Role.Follower, "it does not campaign itself");
  c.node(2).campaign();
  c.stabilize();
  assert.equal(c.node(2).role(), Role.Leader);
  assert.equal(c.node(3).lead(), 2);
  // A follower that forgot a leader that is in fact alive follows it again at its next heartbeat.
  c.heal();
  c.tick(2, 5);
  c.stabilize();
  c.node(3).forgetLeader();
  c.tick(2, 5);
  c.stabilize();
  assert.equal(c.node(3).lead(), 2);
});

test("restartElectionClock: a follower whose timer was about to fire campaigns only a whole election timeout later", () => {
  const c = new TestCluster({ voters: [1, 2, 3], config: { preVote: true, checkQuorum: true } });
  c.elect(1);
  c.stabilize();
  c.isolate(1);
  // Node 3 has heard nothing for one tick short of its randomized timeout: its next tick would campaign.
  const r3 = c.node(3).raft;
  c.tick(3, r3.randomizedElectionTimeout - 1 - r3.electionElapsed);
  assert.equal(c.node(3).role(), Role.Follower);
  c.node(3).forgetLeader();
  c.node(3).restartElectionClock();
  c.tick(3, 9);
  c.stabilize();
  assert.equal(c.node(3).role(), Role.Follower, "no campaign within electionTicks of the restart");
  assert.equal(c.node(3).status().term, c.node(2).status().term, "nor a pre-vote that moved a term");
  c.node(2).forgetLeader(); // node 2's host saw the loss too: it grants node 3's pre-vote
  c.tick(3, 11);
  c.stabilize();
  assert.equal(c.node(3).role(), Role.Leader, "it campaigns by twice electionTicks after the restart, and wins");
  assert.throws(() => c.node(3).restartElectionClock(), /not a follower/);
});

test("yieldCampaign: a pre-candidate follows again in the same term, and another voter's campaign wins at once", () => {
  // Node 2's timer ran out first: a pre-candidate whose pre-votes node 3 (still trusting node 1) ignores.
  const c = leaderLostCampaignIgnored();
  assert.equal(c.node(2).role(), Role.PreCandidate);
  assert.equal(c.node(2).lastLead(), 1, "it remembers whom it followed");
  const term = c.node(2).status().term;
  c.node(2).yieldCampaign();
  assert.equal(c.node(2).role(), Role.Follower);
  assert.deepEqual([c.node(2).status().term, c.node(2).lead()], [term, 0], "same term, no leader");
  assert.throws(() => c.node(2).yieldCampaign(), /not a pre-candidate/);
  // Node 3, the successor, campaigns: node 2 grants its pre-vote and vote, so one election decides.
  c.node(3).forgetLeader();
  c.node(3).campaign();
  c.stabilize();
  assert.equal(c.node(3).role(), Role.Leader);
  assert.deepEqual([c.node(3).status().term, c.node(2).lead()], [term + 1, 3]);
});

test("a leaderless follower that refuses a pre-vote because the candidate's log is behind its own campaigns at once", () => {
  const c = new TestCluster({ voters: [1, 2, 3], config: { preVote: true, checkQuorum: true } });
  c.elect(1);
  c.stabilize();
  // Node 2 misses an entry that nodes 1 and 3 hold.
  c.isolate(2);
  c.node(1).propose(enc("x"));
  c.stabilize();
  c.heal();
  // Node 1's node is gone; node 2 is the successor the host picked, but its log is behind node 3's.
  c.isolate(1);
  c.node(2).forgetLeader();
  c.node(3).forgetLeader();
  c.node(2).campaign();
  c.stabilize();
  // Node 3 cannot grant it, and knows it holds more: it campaigns now instead of at its own timeout.
  assert.equal(c.node(3).role(), Role.Leader);
  assert.equal(c.node(2).lead(), 3);
});
