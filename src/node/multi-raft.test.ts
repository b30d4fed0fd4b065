import { after, test } from "node:test";
import { StateStore } from "../storage/state-store.js";
import { encodeSnapshot } from "../storage/snapshot-frames.js";
import { SPLIT_LOG_INDEX } from "./shard-apply.js";
import assert from "node:assert/strict";
import { ConfChangeType, Role } from "../raft/index.js";
import { Gateway } from "./gateway.js";
import { CollectionNotFoundError, META_GROUP } from "./group.js";
import { hashOf, inRange } from "../meta/ranges.js";
import { ConfChangeRefusedError, type MultiRaftNode, NotLeaderError } from "./multi-raft.js";
import { type TestCluster, holdStoreWaits, leaderOf, openNode, put, startCluster, stopAll, stopLeftovers, waitFor, waitForLeaders } from "./testing.js";

after(stopLeftovers);

test("three nodes elect a leader per shard and every replica applies the writes", async () => {
  const c = await startCluster(3, 4);
  await waitForLeaders(c);
  const versions = new Map<string, number>();
  for (let i = 0; i < 40; i++) versions.set(`k${i}`, await put(c, `k${i}`, { n: i }));
  for (const node of c.nodes.values()) {
    // Linearizable reads from every node (followers confirm through the leader).
    for (const [key, version] of versions) {
      const r = await node.read(node.shardOf(key), key, "linearizable");
      assert.equal(r?.version, version, `${key} on node ${node.id}`);
    }
  }
  await waitFor("eventual reads everywhere", () =>
    [...c.nodes.values()].every((n) => [...versions.keys()].every((k) => n.read(n.shardOf(k), k, "eventual") !== undefined)));
  const groups = new Set([...versions.keys()].map((k) => c.nodes.get(1)!.shardOf(k)));
  assert.equal(groups.size, 4, "keys spread over every shard");
  await stopAll(c);
});

test("compare-and-set: a stale ifVersion is refused with the current version", async () => {
  const c = await startCluster(3, 1);
  await waitForLeaders(c);
  const v1 = await put(c, "doc", { a: 1 });
  const leader = leaderOf(c, 1)!;
  const ok = await leader.propose(1, { op: "put", key: "doc", payload: { a: 2 }, ifVersion: v1 });
  assert.equal(ok.ok, true);
  const stale = await leader.propose(1, { op: "put", key: "doc", payload: { a: 3 }, ifVersion: v1 });
  assert.deepEqual(stale, { ok: false, code: "version_mismatch", currentVersion: ok.ok ? ok.version : -1 });
  const del = await leader.propose(1, { op: "delete", key: "doc" });
  assert.equal(del.ok, true);
  assert.equal(await leader.read(1, "doc", "linearizable"), undefined);
  await stopAll(c);
});

test("a whole-cluster restart keeps every acknowledged write", async () => {
  const c = await startCluster(3, 2);
  await waitForLeaders(c);
  const versions = new Map<string, number>();
  for (let i = 0; i < 30; i++) versions.set(`r${i}`, await put(c, `r${i}`, `value ${i}`));
  await stopAll(c);
  c.ports.clear();
  for (const id of [1, 2, 3]) await openNode(c, id);
  for (const [id, node] of c.nodes) for (const [peer, port] of c.ports) if (peer !== id) node.transport.setPeer(peer, { host: "127.0.0.1", port });
  await waitForLeaders(c);
  const reader = c.nodes.get(2)!;
  for (const [key, version] of versions) {
    const r = await reader.read(reader.shardOf(key), key, "linearizable");
    assert.equal(r?.version, version, key);
    assert.equal(r?.payload, `value ${key.slice(1)}`);
  }
  await stopAll(c);
});

test("when a shard's leader stops, another takes over; the returning node catches up by snapshot", async () => {
  const c = await startCluster(3, 1, { compactAfterEntries: 20 });
  await waitForLeaders(c);
  await put(c, "first", 1);
  const old = leaderOf(c, 1)!;
  const oldId = old.id;
  await old.stop();
  c.nodes.delete(oldId);
  await waitFor("a new leader", () => leaderOf(c, 1) !== null && leaderOf(c, 1)!.id !== oldId);
  for (let i = 0; i < 60; i++) await put(c, `after${i}`, i);
  const leader = leaderOf(c, 1)!;
  await waitFor("the leader compacted its log", () => leader.status().groups[0]!.firstIndex > 10);
  const back = await openNode(c, oldId);
  for (const [peer, port] of c.ports) if (peer !== oldId) back.transport.setPeer(peer, { host: "127.0.0.1", port });
  for (const [id, node] of c.nodes) if (id !== oldId) node.transport.setPeer(oldId, { host: "127.0.0.1", port: c.ports.get(oldId)! });
  await waitFor("the returning node caught up", () => back.read(1, "after59", "eventual") !== undefined, 15_000);
  assert.equal(back.status().groups[0]!.role, Role.Follower);
  assert.ok(back.read(1, "first", "eventual") !== undefined);
  await stopAll(c);
});

test("a log compaction waits for the store's sync beside the loop: writes go on meanwhile, and the log is cut once the sync is done", async () => {
  // Awaited in a turn, the sync held every group of the node (~100 ms a time under load: turn-timer.ts).
  const c = await startCluster(3, 1, { compactAfterEntries: 20 });
  await waitForLeaders(c);
  const leader = leaderOf(c, 1)!;
  const hold = holdStoreWaits([leader], ["durable"]);
  const firstBefore = leader.status().groups[0]!.firstIndex;
  try {
    for (let i = 0; i < 60; i++) await put(c, `held${i}`, i);
    assert.ok(hold.asked() >= 1, "a compaction was due and waits for the sync");
    assert.equal(leader.status().groups[0]!.firstIndex, firstBefore, "the log is not cut before its sync");
  } finally {
    hold.release();
  }
  await waitFor("the leader compacted its log once the sync was done", () => leader.status().groups[0]!.firstIndex > firstBefore + 20, 10_000);
  hold.restore();
  await stopAll(c);
});

test("a log of large entries is compacted by its bytes, long before its entry count says so", async () => {
  const c = await startCluster(3, 1, { compactAfterEntries: 1_000_000, compactAfterBytes: 64 << 10 });
  await waitForLeaders(c);
  const big = "x".repeat(8 << 10);
  const leader = leaderOf(c, 1)!;
  for (let i = 0; i < 40; i++) assert.ok((await leader.propose(1, { op: "put", key: `big${i}`, payload: big })).ok);
  await waitFor("every replica compacted its log below 64 KiB + one entry", () =>
    [...c.nodes.values()].every((n) => n.status().groups[0]!.firstIndex > 10));
  await stopAll(c);
});

test("reads arriving in one loop turn share one ReadIndex round", async () => {
  const c = await startCluster(3, 1);
  await waitForLeaders(c);
  await put(c, "x", 1);
  const follower = [...c.nodes.values()].find((n) => n.status().groups[0]!.role !== Role.Leader)!;
  const roundsBefore = follower.counters.readIndexRounds;
  const reads = await Promise.all(Array.from({ length: 50 }, () => follower.read(1, "x", "linearizable")));
  assert.ok(reads.every((r) => r?.payload === 1));
  assert.equal(follower.counters.readIndexRounds - roundsBefore, 1, "50 reads issued together: one ReadIndex round");
  await stopAll(c);
});

test("a read in flight when the shard's leader dies is asked again of the new leader, not left to time out", async () => {
  const c = await startCluster(3, 1, { requestTimeoutMs: 60_000, testFaults: true });
  await waitForLeaders(c);
  await put(c, "x", 1);
  const old = leaderOf(c, 1)!;
  const follower = [...c.nodes.values()].find((n) => n !== old)!;
  // The old leader falls silent (nothing it sends arrives) and the read is asked at once, while the
  // follower still believes in it: no election can end within one election timeout of its last
  // heartbeat, so the ReadIndex request goes to the silent leader. Stopping the leader first let a
  // slow stop on a loaded machine outlast the election, and the read found the new leader directly.
  old.transport.setFaults({ cut: new Set([...c.nodes.keys()].filter((id) => id !== old.id)) });
  assert.equal(follower.leaderOf(1), old.id, "the follower still follows the old leader when the read is asked");
  const started = performance.now();
  const reading = follower.read(1, "x", "linearizable");
  await old.stop();
  c.nodes.delete(old.id);
  const r = await reading;
  assert.equal(r?.payload, 1);
  assert.ok(follower.counters.readsRetried >= 1, "the read was asked again after the leader changed");
  assert.ok(performance.now() - started < 30_000, "answered after the election, long before the request timeout");
  await stopAll(c);
});

test("a configuration change refused only because another is in flight is asked again through a gateway; one refused for what it is, is not", async () => {
  const c = await startCluster(3, 1);
  await waitForLeaders(c);
  const leader = leaderOf(c, 1)!;
  const follower = [...c.nodes.values()].find((n) => n !== leader)!;
  const learner = (nodeId: number) => [{ type: ConfChangeType.AddLearner, nodeId }];
  // Raft takes one change at a time: of two proposed in one turn, the second is refused as busy.
  const [first, second] = await Promise.allSettled([leader.proposeConfChange(1, learner(4)), leader.proposeConfChange(1, learner(5))]);
  assert.equal(first.status, "fulfilled");
  assert.ok(second.status === "rejected" && second.reason instanceof ConfChangeRefusedError && second.reason.busy, String(second.status === "rejected" ? second.reason : "taken"));
  const gateways = new Map([...c.nodes].map(([id, n]) => [id, new Gateway(n, 10_000)]));
  const always = () => true;
  // Through the leader's own gateway, proposed in the same turn as another change: refused as busy, then
  // asked again and taken. Without a check to ask again under, the refusal comes back at once.
  const own = gateways.get(leader.id)!;
  const [direct, askedAgain] = await Promise.all([leader.proposeConfChange(1, learner(6)), own.proposeConfChange(1, learner(7), always)]);
  assert.ok(direct.ok && askedAgain.ok);
  // At least once: on a loaded machine the change in flight may not have applied by the first asking again.
  assert.ok(own.confChangesAskedAgain >= 1, `asked again ${own.confChangesAskedAgain} times`);
  const [, refused] = await Promise.allSettled([leader.proposeConfChange(1, learner(8)), own.proposeConfChange(1, learner(9))]);
  assert.ok(refused.status === "rejected" && refused.reason instanceof ConfChangeRefusedError && refused.reason.busy);
  // A check that no longer holds once the change in flight applied ends the asking.
  const [, stale] = await Promise.allSettled([leader.proposeConfChange(1, learner(10)), own.proposeConfChange(1, learner(11), () => false)]);
  assert.ok(stale.status === "rejected" && stale.reason instanceof ConfChangeRefusedError && stale.reason.busy);
  // Through a follower's gateway the refusal travels back from the leader's, busy included.
  const gateway = gateways.get(follower.id)!;
  const both = await Promise.all([gateway.proposeConfChange(1, learner(12), always), gateway.proposeConfChange(1, learner(13), always)]);
  assert.ok(both.every((r) => r.ok), JSON.stringify(both));
  await waitFor("the leader's configuration holds the changes taken", () => [4, 6, 7, 8, 10, 12, 13].every((id) => leader.group(1).raft.confState().learners.includes(id)));
  assert.ok([5, 9, 11].every((id) => !leader.group(1).raft.confState().learners.includes(id)));
  // Leaving a joint configuration when there is none is refused for what it is: at once, not asked again.
  await assert.rejects(gateway.proposeConfChange(1, [], always), (e: unknown) => e instanceof ConfChangeRefusedError && !e.busy && /not in a joint configuration/.test(e.message));
  await stopAll(c);
});

test("idle shards quiesce and stop ticking; traffic wakes them; a dead leader's quiescent followers elect another", async () => {
  const c = await startCluster(3, 4, { quiesceAfterTicks: 10 });
  await waitForLeaders(c);
  await put(c, "before", 1);
  // The metadata group is a group like the shards: idle, it quiesces too.
  await waitFor("every group quiescent on every node", () => [...c.nodes.values()].every((n) => n.quiescedShards() === 4 && n.metaQuiesced()), 15_000);
  const ticksBefore = [...c.nodes.values()].map((n) => n.counters.groupTicks);
  const turnsBefore = [...c.nodes.values()].map((n) => n.counters.turns);
  await waitFor("ten more loop turns on every node", () => [...c.nodes.values()].every((n, i) => n.counters.turns >= turnsBefore[i]! + 10));
  assert.deepEqual([...c.nodes.values()].map((n) => n.counters.groupTicks), ticksBefore, "no group ticked while quiescent");
  // A write wakes its shard (on the leader, then on the followers) and is answered.
  assert.ok(await put(c, "wake-up", 2) > 0);
  const shard = c.nodes.get(1)!.shardOf("wake-up");
  assert.ok([...c.nodes.values()].some((n) => n.counters.groupWakes > 0));
  // Quiescent again, then the leader of that shard dies: the followers notice its node's silence.
  await waitFor("quiescent again", () => [...c.nodes.values()].every((n) => n.quiescedShards() === 4 && n.metaQuiesced()), 15_000);
  const old = leaderOf(c, shard)!;
  await old.stop();
  c.nodes.delete(old.id);
  await waitFor("a new leader for the shard", () => leaderOf(c, shard) !== null && leaderOf(c, shard)!.id !== old.id, 15_000);
  const reader = [...c.nodes.values()][0]!;
  assert.equal((await reader.read(shard, "wake-up", "linearizable"))?.payload, 2);
  await stopAll(c);
});

test("a restarted learner of a quiescent shard learns its leader: the leader wakes the group when the learner's node is heard again", async () => {
  const c = await startCluster(3, 1, { quiesceAfterTicks: 10 });
  await waitForLeaders(c);
  const leader = leaderOf(c, 1)!;
  const learnerId = [...c.nodes.keys()].find((id) => id !== leader.id)!;
  // A learner never campaigns: only its leader can tell it who leads, and a quiescent leader sends nothing.
  assert.ok((await leader.proposeConfChange(1, [{ type: ConfChangeType.AddLearner, nodeId: learnerId }])).ok);
  await waitFor("the learner demoted everywhere", () => [...c.nodes.values()].every((n) => n.group(1).raft.confState().learners.includes(learnerId)));
  await put(c, "before", 1);
  await waitFor("shard 1 quiescent on every node", () => [...c.nodes.values()].every((n) => n.quiescedShards() === 1), 15_000);
  const termBefore = leader.status().groups[0]!.term;
  await c.nodes.get(learnerId)!.stop();
  c.nodes.delete(learnerId);
  const back = await openNode(c, learnerId);
  await waitFor("the restarted learner knows its leader", () => back.leaderOf(1) === leader.id, 10_000);
  assert.ok(leader.counters.groupsWokenForPeer >= 1, "woken for the learner's node");
  assert.equal(leader.status().groups[0]!.term, termBefore, "no election: the same leader in the same term");
  assert.equal((await back.read(1, "before", "eventual"))?.payload, 1);
  await stopAll(c);
});

test("proposals made while the leader hands over wait for the new leader instead of failing", async () => {
  const c = await startCluster(3, 1, {});
  await waitForLeaders(c);
  await put(c, "before", 0);
  const old = leaderOf(c, 1)!;
  const to = [...c.nodes.keys()].find((id) => id !== old.id)!;
  const handedOver = old.transferLeadershipAndWait(1, to);
  const results = await Promise.all(Array.from({ length: 20 }, (_, i) => old.propose(1, { op: "put", key: `during${i}`, payload: i })));
  assert.ok(results.every((r) => r.ok), "every proposal was applied");
  await handedOver;
  await waitFor("the new leader", () => leaderOf(c, 1)?.id === to);
  const reader = c.nodes.get(to)!;
  for (let i = 0; i < 20; i++) assert.equal((await reader.read(1, `during${i}`, "linearizable"))?.payload, i);
  await stopAll(c);
});

test("a leadership transfer answers with Raft's explicit outcome: completed once the transferee leads, aborted when it cannot", async () => {
  const c = await startCluster(3, 1, { requestTimeoutMs: 3000 });
  await waitForLeaders(c);
  const old = leaderOf(c, 1)!;
  const [to, other] = [...c.nodes.keys()].filter((id) => id !== old.id) as [number, number];
  assert.equal(await old.transferLeadershipAndWait(1, to), "completed");
  assert.equal(leaderOf(c, 1)?.id, to);
  assert.equal(await old.transferLeadershipAndWait(1, other), "aborted", "a node that does not lead cannot hand over");
  // A transferee that is down never catches up: the transfer is abandoned after an election timeout.
  const now = c.nodes.get(to)!;
  await c.nodes.get(other)!.stop();
  c.nodes.delete(other);
  assert.equal(await now.transferLeadershipAndWait(1, other), "aborted");
  assert.equal(now.leaderOf(1), to, "the leader stays");
  await stopAll(c);
});

test("a gateway write made while its shard has no leader waits for the election instead of failing", async () => {
  const c = await startCluster(3, 1, { testFaults: true, requestTimeoutMs: 20_000 });
  await waitForLeaders(c);
  const gateways = new Map([...c.nodes].map(([id, n]) => [id, new Gateway(n, 20_000)]));
  await put(c, "before", 0);
  const old = leaderOf(c, 1)!;
  const [a, b] = [...c.nodes.values()].filter((n) => n !== old) as [MultiRaftNode, MultiRaftNode];
  // The leader dies and a's messages never reach b: no election can succeed. b's still reach a, so a
  // hears a quorum of voters (itself and b) and waits for a leader instead of answering no_quorum.
  await old.stop();
  c.nodes.delete(old.id);
  a.transport.setFaults({ cut: new Set([b.id]) });
  await waitFor("node a to know no leader", () => a.leaderOf(1) === 0, 15_000);
  const writes = Array.from({ length: 5 }, (_, i) => gateways.get(a.id)!.put(`leaderless${i}`, i));
  a.transport.setFaults(null);
  b.transport.setFaults(null);
  const results = await Promise.all(writes);
  assert.ok(results.every((r) => r.ok), "every write made while leaderless was applied after the election");
  for (let i = 0; i < 5; i++) assert.equal((await gateways.get(b.id)!.get(`leaderless${i}`, "linearizable"))?.payload, i);
  await stopAll(c);
});

test("awaitLeader answers with a leader other than the one that refused, once the shard elects it", async () => {
  const c = await startCluster(3, 1, {});
  await waitForLeaders(c);
  const old = leaderOf(c, 1)!;
  const follower = [...c.nodes.values()].find((n) => n !== old)!;
  assert.equal(await follower.awaitLeader(1, 0, 1000), old.id, "a known leader is answered at once");
  await old.stop();
  c.nodes.delete(old.id);
  const next = await follower.awaitLeader(1, old.id, 15_000);
  assert.notEqual(next, old.id);
  assert.ok(c.nodes.has(next), "the new leader is a live node");
  await assert.rejects(follower.awaitLeader(1, next, 50), NotLeaderError, "no other leader within the timeout");
  await stopAll(c);
});

test("each node judges its peers' health from what it hears (phi accrual): healthy while frames arrive, unhealthy soon after a peer stops", async () => {
  const c = await startCluster(3, 1, { quiesceAfterTicks: 5 });
  await waitForLeaders(c);
  const one = c.nodes.get(1)!;
  await waitFor("peers healthy", () => one.peerHealth(2) === "healthy" && one.peerHealth(3) === "healthy");
  // Quiescent groups send nothing; node keepalives still do.
  await waitFor("the shard quiescent", () => one.quiescedShards() === 1, 10_000);
  const quietSince = performance.now();
  await waitFor("2 s of quiescence", () => performance.now() - quietSince > 2000);
  assert.equal(one.peerHealth(2), "healthy", "keepalives keep a quiet peer healthy");
  await c.nodes.get(3)!.stop();
  c.nodes.delete(3);
  await waitFor("node 3 unhealthy as node 1 sees it", () => one.peerHealth(3) === "unhealthy", 10_000);
  assert.equal(one.peerHealth(2), "healthy");
  assert.equal(one.peerHealth(1), "healthy", "a node is healthy to itself while it runs");
  await stopAll(c);
});

test("a node whose every group is quiescent sends each peer one keepalive per idle keepalive interval (120 ms), not per heartbeat interval, and its peers stay live", async () => {
  // The defaults of a real node: 30 ms ticks, keepalives every 2 ticks, every 4 while idle.
  const c = await startCluster(3, 2, { quiesceAfterTicks: 5, tickMs: 30 });
  await waitForLeaders(c);
  const one = c.nodes.get(1)!;
  await waitFor("every group quiescent on every node", () => [...c.nodes.values()].every((n) => n.quiescedShards() === 2 && n.metaQuiesced()), 10_000);
  const sent = () => one.transport.stats().reduce((s, l) => s + l.framesSent, 0);
  const before = sent();
  const fromMs = performance.now();
  await waitFor("1.5 s of quiescence", () => performance.now() - fromMs >= 1500);
  const frames = sent() - before;
  const elapsedMs = performance.now() - fromMs;
  // Two peers. A heartbeat interval (60 ms) apart would be 2 * elapsed / 60; timers fire late, never early.
  const atMost = 2 * (Math.floor(elapsedMs / 120) + 1);
  assert.ok(frames <= atMost, `${frames} frames in ${elapsedMs.toFixed(0)} ms: at most ${atMost} expected (one keepalive per peer per 120 ms)`);
  assert.ok(frames >= 4, `${frames} frames in ${elapsedMs.toFixed(0)} ms: keepalives continue while idle`);
  assert.ok(!one.peerLost(2) && !one.peerLost(3), "idle peers are not lost");
  assert.ok(!c.nodes.get(2)!.peerLost(1), "node 1 is not lost to its peers");
  await stopAll(c);
});

test("a collection created at runtime is born replicated: each shard starts on its three voters, elects a leader and takes writes, without moves", async () => {
  const c = await startCluster(3, 1, {});
  await waitForLeaders(c);
  const one = c.nodes.get(1)!;
  const metaLeader = () => [...c.nodes.values()].find((n) => n.leaderOf(META_GROUP) === n.id) ?? one;
  await waitFor("a metadata leader", () => [...c.nodes.values()].some((n) => n.leaderOf(META_GROUP) === n.id));
  for (const id of [1, 2, 3]) {
    const r = await metaLeader().proposeMeta({ kind: "register-node", id, peer: { host: "127.0.0.1", port: c.ports.get(id)! }, http: { host: "127.0.0.1", port: 1 }, labels: {}, role: "standard", atMs: 0 });
    assert.ok(r.ok, `node ${id} registered: ${JSON.stringify(r)}`);
  }
  // As membership records the founders' collection first (its shard 1 is hosted from the start).
  assert.ok((await metaLeader().proposeMeta({ kind: "create-collection", name: "default", replicationFactor: 3, placements: [[1, 2, 3]], atMs: 1 })).ok);
  const placements = [[2, 1, 3], [3, 2, 1], [1, 3, 2]];
  const created = await metaLeader().proposeMeta({ kind: "create-collection", name: "shoes", replicationFactor: 3, placements, targetReplicas: 3, atMs: 1 });
  assert.ok(created.ok, JSON.stringify(created));
  await waitFor("node 1 applied the collection", () => one.metaState().collections.has("shoes"));
  const shards = one.metaState().collections.get("shoes")!.shards;
  assert.equal(shards.length, 3);
  await waitFor("every new shard hosted on its three voters with a leader they agree on", () => shards.every((g) =>
    [...c.nodes.values()].every((n) => n.hosts(g) && n.leaderOf(g) !== 0 && n.leaderOf(g) === one.leaderOf(g))), 10_000);
  for (const g of shards) {
    const leader = c.nodes.get(one.leaderOf(g))!;
    const range = one.metaState().shards.get(g)!.range;
    let key = "k0";
    for (let i = 1; !inRange(hashOf(key), range); i++) key = `k${i}`;
    const r = await leader.propose(g, { op: "put", key, payload: { g } });
    assert.ok(r.ok, `a write to shard ${g} through its leader ${leader.id}: ${JSON.stringify(r)}`);
    assert.deepEqual([...leader.ledShards().find((x) => x.shard === g)!.conf.voters].sort(), [1, 2, 3], `shard ${g} born with three voters`);
  }
  // Records of the new collection go to its shards, through any node; the default collection's are apart.
  const gateways = new Map([...c.nodes].map(([id, n]) => [id, new Gateway(n)]));
  const gateway = gateways.get(2)!;
  for (let i = 0; i < 12; i++) assert.ok((await gateway.put(`shoe-${i}`, { i }, {}, "shoes")).ok);
  for (let i = 0; i < 12; i++) {
    assert.deepEqual((await gateway.get(`shoe-${i}`, "linearizable", "shoes"))?.payload, { i });
    assert.ok(shards.includes(one.shardOf(`shoe-${i}`, "shoes")), "routed to a shard of the collection");
  }
  assert.equal(await gateway.get("shoe-0", "linearizable"), undefined, "not in the default collection");
  await assert.rejects(gateway.put("x", {}, {}, "boots"), CollectionNotFoundError);
  await stopAll(c);
});

/** A one-node cluster that wrote "x" and stopped, with its state store open to be altered as a crash would leave it. */
async function stoppedWithStore(): Promise<{ c: TestCluster; store: StateStore }> {
  const c = await startCluster(1, 1, {});
  await waitForLeaders(c);
  await put(c, "x", 1);
  await stopAll(c);
  return { c, store: StateStore.open({ path: `${c.dirs.get(1)!}/state` }) };
}

test("a split's child whose log a crash kept from being written is landed from its state on the next start", async () => {
  const { c, store } = await stoppedWithStore();
  // The state of a split's child, committed with its parent's, as a crash before its log leaves it.
  const conf = { voters: [1], votersOutgoing: [], learners: [], learnersNext: [], autoLeave: false };
  store.apply([{ group: 7, appliedIndex: SPLIT_LOG_INDEX, puts: [["moved", { payload: 2, version: 3 }]], confState: conf,
    shard: { range: { start: 0, end: 2 ** 32 }, splits: [] }, unlogged: true }]);
  await store.close();
  const back = await openNode(c, 1);
  assert.ok(back.hosts(7), "landed on open");
  await waitFor("a leader of shard 7", () => back.leaderOf(7) === 1, 10_000);
  assert.deepEqual(await back.read(7, "moved", "linearizable"), { payload: 2, version: 3 });
  await stopAll(c);
  const again = await openNode(c, 1);
  assert.ok(again.hosts(7), "recovered from its log the next time");
  await stopAll(c);
});

test("a snapshot the state store installed and the log missed (a crash or a failed WAL write in between) is recorded on the next start", async () => {
  const { c, store } = await stoppedWithStore();
  // What a leader's snapshot at index 100 of term 7 leaves in the store when the node stops before its log records it.
  const conf = store.confState(1)!;
  const range = store.shardState(1)!;
  await store.installSnapshot(1, 100, 7, encodeSnapshot(100, [["moved", { payload: 2, version: 99 }]], 16, range), conf);
  await store.close();
  const back = await openNode(c, 1);
  await waitFor("a leader of shard 1", () => back.leaderOf(1) === 1, 10_000);
  assert.deepEqual(await back.read(1, "moved", "linearizable"), { payload: 2, version: 99 });
  assert.equal(await back.read(1, "x", "linearizable"), undefined, "the snapshot replaced the state");
  await put(c, "y", 3);
  await stopAll(c);
  // The log now starts at the snapshot: the next start recovers from it without the store's help.
  const again = await openNode(c, 1);
  await waitFor("a leader of shard 1 again", () => again.leaderOf(1) === 1, 10_000);
  assert.ok(again.replicaState(1)!.applied > 100, `applied after the snapshot: ${again.replicaState(1)!.applied}`);
  assert.equal((await again.read(1, "y", "linearizable"))?.payload, 3);
  assert.equal((await again.read(1, "moved", "linearizable"))?.payload, 2);
  await stopAll(c);
});

test("a lost node's shards are taken over by their chosen successors in one election each (no split votes)", async () => {
  const c = await startCluster(3, 60);
  await waitForLeaders(c);
  const victim = c.nodes.get(1)!;
  const led = Array.from({ length: 60 }, (_, i) => i + 1).filter((g) => leaderOf(c, g) === victim);
  assert.ok(led.length > 0, "node 1 leads some shards");
  const termBefore = new Map(led.map((g) => [g, victim.status().groups[g - 1]!.term]));
  // Its connections close first (as when its process dies): the survivors learn of the loss at once.
  // A graceful stop alone closes them only after the turn in progress and its fsync: on a loaded
  // machine the survivors' election timers could fire first (CI once saw 10 of 20 by successor).
  await victim.transport.stop();
  await victim.stop();
  c.nodes.delete(1);
  await waitFor("every shard of node 1 led again", () => led.every((g) => leaderOf(c, g) !== null), 10_000);
  // The rule of successorOf: the live voters (2 and 3) in order, picked by the shard's id. A loaded
  // machine may delay a keepalive enough for one survivor to count the other lost for a moment, so
  // most shards, not all, must show the rule.
  const bySuccessor = led.filter((g) => {
    const leader = leaderOf(c, g)!;
    return leader.id === [2, 3][g % 2] && leader.status().groups[g - 1]!.term === termBefore.get(g)! + 1;
  });
  // A failure says how each missed shard went and what the survivors did, to tell the races apart.
  const missed = led.filter((g) => !bySuccessor.includes(g)).map((g) => {
    const leader = leaderOf(c, g)!;
    return `shard ${g}: node ${leader.id} (successor ${[2, 3][g % 2]}), term +${leader.status().groups[g - 1]!.term - termBefore.get(g)!}`;
  });
  const survivors = [2, 3].map((id) => {
    const k = c.nodes.get(id)!.counters;
    return `node ${id}: ${k.successorCampaigns} successor campaigns (${k.successorCampaignRetries} asked again), ${k.electionsStarted} elections`;
  });
  assert.ok(bySuccessor.length >= Math.ceil(led.length * 0.75),
    `${bySuccessor.length} of ${led.length} shards led by their successor, elected in the next term; ${missed.join("; ")}; ${survivors.join("; ")}`);
  await stopAll(c);
});

test("callers waiting on a node are bounded: beyond maxQueuedRequests a request is refused as overloaded, and the count drains", async () => {
  const c = await startCluster(3, 1, { maxQueuedRequests: 3 });
  await waitForLeaders(c);
  const leader = leaderOf(c, 1)!;
  const follower = [...c.nodes.values()].find((n) => n !== leader)!;
  // Waiting for a leader other than the one known waits (until its timeout): three such callers fill the bound.
  const lead = leader.id;
  const waits = [1, 2, 3].map(() => follower.awaitLeader(1, lead, 300).catch((e: unknown) => e));
  assert.throws(() => follower.read(1, "k", "linearizable"), /too many requests queued or waiting/);
  // Each waiter settles: it times out, or (on a slow machine, where an election can happen meanwhile) it
  // sees a leader in a later term. Either way it leaves the bound.
  for (const w of await Promise.all(waits)) {
    assert.ok(w instanceof NotLeaderError || typeof w === "number", `each waiter settles: ${String(w)}`);
  }
  await waitFor("the bound to drain", async () => (await follower.read(1, "k", "linearizable").then(() => true, () => false)));
  await stopAll(c);
});

test("a fresh cluster's shards are led evenly: each founder starts the first election of its share", async () => {
  const c = await startCluster(3, 12);
  await waitForLeaders(c);
  const led = new Map<number, number>();
  for (let g = 1; g <= 12; g++) led.set(leaderOf(c, g)!.id, (led.get(leaderOf(c, g)!.id) ?? 0) + 1);
  assert.equal(led.size, 3, `every founder leads some shards: ${JSON.stringify([...led])}`);
  for (const [id, n] of led) assert.ok(n <= 12 * 0.4, `node ${id} leads ${n} of 12 shards`);
  await stopAll(c);
});
