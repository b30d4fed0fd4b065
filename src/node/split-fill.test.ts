import { after, test } from "node:test";
import assert from "node:assert/strict";
import { hashOf } from "../meta/ranges.js";
import { type StoreWait, holdStoreWaits, openNode, put, startCluster, stopAll, stopLeftovers, waitFor, waitForLeaders } from "./testing.js";

after(stopLeftovers);

/** An id no test writes before the split, in the lower half of a split at 2^31: a write to the parent. */
const PARENT_ID = Array.from({ length: 100 }, (_, i) => `w${i}`).find((id) => hashOf(id) < 2 ** 31)!;

/**
 * Three nodes with 50 records in shard 1, every replica's store holding `waits` back (holdStoreWaits),
 * and shard 1 split at 2^31 into shard 9 by its leader. The caller releases the hold.
 */
async function splitWhileStoresHold(waits: readonly StoreWait[]) {
  const c = await startCluster(3, 1);
  await waitForLeaders(c);
  for (let i = 0; i < 50; i++) await put(c, `r${i}`, { i });
  const leader = [...c.nodes.values()].find((n) => n.leaderOf(1) === n.id)!;
  const hold = holdStoreWaits(c.nodes.values(), waits);
  try {
    const r = await leader.propose(1, { op: "split", at: 2 ** 31, child: 9 });
    assert.equal(r.ok, true, JSON.stringify(r));
  } catch (e) {
    hold.release();
    throw e;
  }
  return { c, leader, hold };
}

test("a split's records move to the child a part a turn: meanwhile the parent shows only its own and the child is not hosted; a stop midway finishes the move on the next start", async () => {
  // Not eager, 10 keys a turn, one node: the fill moves a part a tick (20 ms), ~30 parts for 300 records.
  const c = await startCluster(1, 1, { splitFillKeysPerTurn: 10, splitFillTurnsEager: false });
  await waitForLeaders(c);
  const ids = Array.from({ length: 300 }, (_, i) => `r${i}`);
  for (const id of ids) await put(c, id, { id });
  const at = 2 ** 31;
  const upper = ids.filter((id) => hashOf(id) >= at).sort();
  const lower = ids.filter((id) => hashOf(id) < at).sort();
  assert.ok(upper.length > 100 && lower.length > 100);
  const node = c.nodes.get(1)!;
  const r = await node.propose(1, { op: "split", at, child: 9 });
  assert.equal(r.ok, true, JSON.stringify(r));
  assert.ok(node.fillsFrom(1), "the split applied, its child's records not moved yet");
  assert.equal(node.hosts(9), false, "the child is not hosted before its records are there");
  const keys = (group: number) => node.scan(group, 1000).map(([k]) => k);
  assert.deepEqual(keys(1), lower, "the parent's scan shows its own records only, though its child's are still stored under it");
  assert.deepEqual(node.scan(1, 7, lower[2]).map(([k]) => k), lower.slice(3, 10), "pages too, whatever lies between");
  assert.deepEqual(node.replicaState(1)!.contents.map(([k]) => k), lower, "and so does what checkers compare");
  await waitFor("a few parts moved", () => node.counters.splitFillParts >= 5, 10_000);
  assert.ok(node.fillsFrom(1), `stopped midway (${node.counters.splitFillKeysMoved} of ${upper.length} moved)`);
  await stopAll(c);

  const back = await openNode(c, 1);
  assert.equal(back.fillsFrom(1), false, "finished on open");
  assert.ok(back.hosts(9), "and the child landed");
  await waitFor("a leader of shard 9", () => back.leaderOf(9) === 1, 10_000);
  assert.deepEqual(back.scan(9, 1000).map(([k]) => k), upper, "the child holds exactly the upper part, each record once");
  assert.deepEqual(back.scan(1, 1000).map(([k]) => k), lower, "the parent exactly the lower part");
  const id = upper[0]!;
  assert.deepEqual((await back.read(9, id, "linearizable"))?.payload, { id });
  assert.equal((await back.propose(9, { op: "put", key: id, payload: "after" })).ok, true, "the child takes writes");
  await stopAll(c);
});

test("a split's child waits for the store's sync beside the loop before it is landed: the node's groups keep answering meanwhile", async () => {
  // The landing awaited the sync inside a turn: up to ~160 ms of silence for every group of the node,
  // once per split on every replica (turn-timer.ts `land`, 2026-12-06).
  // Every replica's store holds its syncs back until released (its commits go on).
  const { c, leader, hold } = await splitWhileStoresHold(["durable", "flushed"]);
  try {
    await waitFor("every replica moved the split's records", () => [...c.nodes.values()].every((n) => n.replicaState(1)?.shard?.range.end === 2 ** 31 && !n.fillsFrom(1)), 10_000);
    const turns = leader.counters.turns;
    const w = await leader.propose(1, { op: "put", key: PARENT_ID, payload: "during" });
    assert.equal(w.ok, true, `a write to the parent while its child waits for the sync: ${JSON.stringify(w)}`);
    assert.ok(leader.counters.turns > turns, "the leader's loop turned meanwhile");
    assert.ok([...c.nodes.values()].every((n) => !n.hosts(9)), "the child not landed anywhere before its state is durable");
  } finally {
    hold.release();
  }
  await waitFor("the child hosted and led", () => [...c.nodes.values()].every((n) => n.hosts(9)) && leader.leaderOf(9) !== null && leader.leaderOf(9) !== 0, 10_000);
  hold.restore();
  await stopAll(c);
});

test("a split's fill waits for the store's commit beside the loop: while LMDB holds it back, the node's groups keep answering", async () => {
  // The wait for LMDB was awaited inside a turn: no group of the node sent or answered until LMDB did
  // (a run on 2026-12-06 saw a replica's fill take 71 s, its peers calling the node dead meanwhile).
  // Every replica's store holds its commits (and syncs) back until released.
  const { c, leader, hold } = await splitWhileStoresHold(["committed", "flushed"]);
  try {
    await waitFor("every replica applied the split", () => [...c.nodes.values()].every((n) => n.fillsFrom(1)), 10_000);
    const turns = leader.counters.turns;
    // The parent's lower half takes writes while every fill waits (each needs its turns, and a quorum's).
    const w = await leader.propose(1, { op: "put", key: PARENT_ID, payload: "during" });
    assert.equal(w.ok, true, `a write to the parent while its fills wait for LMDB: ${JSON.stringify(w)}`);
    assert.ok(leader.counters.turns > turns, "the leader's loop turned meanwhile");
    assert.equal(leader.counters.splitFillParts, 0, "no part moved before the commit it reads");
    assert.ok([...c.nodes.values()].every((n) => n.fillsFrom(1) && !n.hosts(9)), "the child not hosted anywhere yet");
  } finally {
    hold.release();
  }
  await waitFor("the child hosted and led", () => [...c.nodes.values()].every((n) => n.hosts(9)) && leader.leaderOf(9) !== null && leader.leaderOf(9) !== 0, 10_000);
  hold.restore();
  await stopAll(c);
});

test("a replica whose split's fill waits is sent a snapshot of the parent: its fill finishes first, and the child lands with its records, once", async () => {
  // The install replaces the parent's keys, the child's among them (finishFillsFrom). Seen in 0 of 300
  // seeds of the node world, so it is made to happen here: the replica's fill is held at its start,
  // the replica is cut off, and the leader compacts its log past it.
  const c = await startCluster(3, 1, { testFaults: true, compactAfterEntries: 40, requestTimeoutMs: 20_000 });
  await waitForLeaders(c);
  const ids = Array.from({ length: 60 }, (_, i) => `r${i}`);
  for (const id of ids) await put(c, id, { id });
  const leader = [...c.nodes.values()].find((n) => n.leaderOf(1) === n.id)!;
  const lagging = [...c.nodes.values()].find((n) => n !== leader)!;
  const others = [...c.nodes.values()].filter((n) => n !== lagging);
  const hold = holdStoreWaits([lagging], ["committed"]);
  try {
    const at = 2 ** 31;
    const r = await leader.propose(1, { op: "split", at, child: 9 });
    assert.equal(r.ok, true, JSON.stringify(r));
    await waitFor("the lagging replica applied the split, its fill held", () => lagging.fillsFrom(1), 10_000);
    lagging.transport.setFaults({ cut: new Set(others.map((n) => n.id)) });
    for (const n of others) n.transport.setFaults({ cut: new Set([lagging.id]) });
    const lowerIds = Array.from({ length: 2000 }, (_, i) => `w${i}`).filter((id) => hashOf(id) < at).slice(0, 150);
    for (const id of lowerIds) await put(c, id, { id });
    assert.ok(lagging.fillsFrom(1), "the lagging replica's fill still waits");
    const installed = lagging.counters.snapshotsInstalled;
    lagging.transport.setFaults(null);
    for (const n of others) n.transport.setFaults(null);
    await waitFor("a snapshot of the parent installed on the lagging replica", () => lagging.counters.snapshotsInstalled > installed, 15_000);
    assert.equal(lagging.fillsFrom(1), false, "the install finished the fill first");
  } finally {
    hold.release();
  }
  await waitFor("the child hosted on every replica and led", () => [...c.nodes.values()].every((n) => n.hosts(9)) && (leader.leaderOf(9) ?? 0) !== 0, 15_000);
  const upper = ids.filter((id) => hashOf(id) >= 2 ** 31).sort();
  assert.ok(upper.length > 10);
  await waitFor("the lagging replica's child caught up", () => lagging.replicaState(9)!.applied >= leader.replicaState(9)!.applied, 10_000);
  assert.deepEqual(lagging.scan(9, 1000).map(([k]) => k), upper, "the child holds exactly the upper part of what was written before the split, each record once");
  assert.deepEqual(lagging.replicaState(1)!.contents, leader.replicaState(1)!.contents, "the parent as its leader holds it");
  await stopAll(c);
});
