import { test } from "node:test";
import assert from "node:assert/strict";
import { NoQuorumError, QuorumLostError, quorumReach } from "./group.js";
import { PeerLiveness } from "./peer-liveness.js";

const config = (incoming: number[], outgoing: number[] = []) => ({ incoming: new Set(incoming), outgoing: new Set(outgoing) });
const only = (...ids: number[]) => (id: number) => ids.includes(id);

test("quorumReach: a majority of the voters reachable makes a quorum, a minority does not", () => {
  assert.deepEqual(quorumReach(config([1, 2, 3]), only(1, 3)), { ok: true, reachable: 2, voters: 3 });
  assert.deepEqual(quorumReach(config([1, 2, 3]), only(1)), { ok: false, reachable: 1, voters: 3 });
  assert.deepEqual(quorumReach(config([1, 2, 3, 4]), only(1, 2)), { ok: false, reachable: 2, voters: 4 }, "half is no majority");
  assert.equal(quorumReach(config([1, 2, 3, 4, 5]), only(2, 4, 5)).ok, true);
});

test("quorumReach: a joint configuration needs a majority of each half", () => {
  // Incoming {1,2,3}, outgoing {3,4,5}: 1,2 are a majority of the incoming half only.
  assert.deepEqual(quorumReach(config([1, 2, 3], [3, 4, 5]), only(1, 2)), { ok: false, reachable: 2, voters: 5 });
  assert.equal(quorumReach(config([1, 2, 3], [3, 4, 5]), only(3, 4)).ok, false, "a majority of the outgoing half only");
  assert.equal(quorumReach(config([1, 2, 3], [3, 4, 5]), only(1, 3, 4)).ok, true, "a majority of both");
});

test("quorumReach: a single voter reaches its quorum; a group with no voters known has nothing to refuse on", () => {
  assert.deepEqual(quorumReach(config([1]), only(1)), { ok: true, reachable: 1, voters: 1 });
  assert.deepEqual(quorumReach(config([]), only()), { ok: true, reachable: 0, voters: 0 });
});

test("the quorum errors carry their group and say whether the request was applied", () => {
  const refused = new NoQuorumError(3, "1 of 3 voters reachable from node 1");
  assert.equal(refused.name, "NoQuorumError");
  assert.equal(refused.group, 3);
  assert.equal(refused.message, "shard 3 cannot reach a quorum: 1 of 3 voters reachable from node 1");
  const lost = new QuorumLostError(3, "1 of 3 voters reachable from node 1");
  assert.equal(lost.name, "QuorumLostError");
  assert.equal(lost.group, 3);
  assert.match(lost.message, /outcome is unknown/);
});

test("PeerLiveness.live: silence counts only while this node listens (a grace after start and after a stall)", () => {
  const peers = new PeerLiveness(1000);
  assert.equal(peers.live(2, 1100, 500), true, "just started: a peer not heard yet is not held silent");
  assert.equal(peers.live(2, 1600, 500), false, "an election timeout after start, still unheard");
  peers.heard(2, 1700);
  assert.equal(peers.live(2, 2100, 500), true);
  assert.equal(peers.live(2, 2300, 500), false);
  peers.known(3, 2000);
  assert.equal(peers.live(3, 2300, 500), true, "a peer that joined later gets its grace from then");
  // The loop stalled until 3000: nothing could be heard before.
  peers.deafUntil(3000);
  assert.equal(peers.live(2, 3400, 500), true);
  assert.equal(peers.live(2, 3600, 500), false);
  peers.deafUntil(2000);
  assert.equal(peers.live(2, 3600, 500), false, "an older mark moves nothing back");
});
