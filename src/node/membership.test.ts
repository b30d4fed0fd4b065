import { after, test } from "node:test";
import assert from "node:assert/strict";
import { Gateway } from "./gateway.js";
import { Membership } from "./membership.js";
import { META_GROUP, MultiRaftNode } from "./multi-raft.js";
import { openNode, put, startCluster, stopAll, stopLeftovers, tempDir, type TestCluster, waitFor, waitForLeaders } from "./testing.js";

const running: Membership[] = [];
after(async () => {
  for (const a of running) a.stop();
  await stopLeftovers();
});

/** The node's one gateway: the membership agent's. */
function gatewayOf(ms: Membership[], id: number): Gateway {
  return ms.find((m) => m.gateway.nodeId === id)!.gateway;
}

function agents(c: TestCluster): Membership[] {
  const founders = [...c.nodes.keys()];
  return [...c.nodes.values()].map((n) => {
    const m = new Membership(n, new Gateway(n), {
      peer: { host: "127.0.0.1", port: c.ports.get(n.id)! }, http: { host: "127.0.0.1", port: 7000 + n.id }, labels: { zone: `z${n.id}` },
      founders, shards: c.shards, intervalMs: 50,
    });
    m.start();
    running.push(m);
    return m;
  });
}

function described(n: MultiRaftNode): string {
  const m = n.metaState();
  return JSON.stringify({
    // Sorted: iteration order depends on how the state was built (from the log, or from records).
    nodes: [...m.nodes.values()].sort((a, b) => a.id - b.id).map((x) => [x.id, x.lifecycle, x.worker, x.labels.zone]),
    shards: [...m.shards.values()].sort((a, b) => a.id - b.id).map((s) => [s.id, s.epoch, s.replicas.map((r) => r.node)]),
  });
}

test("founding members register themselves in the metadata group, become ready voters, and the shard map is recorded on every node", async () => {
  const c = await startCluster(3, 4);
  await waitForLeaders(c);
  const ms = agents(c);
  await waitFor("every node registered, ready and a voter, with the default collection, on every node", () =>
    [...c.nodes.values()].every((n) => {
      const m = n.metaState();
      return m.collections.has("default") && [1, 2, 3].every((id) => m.nodes.get(id)?.worker === "ready" && m.nodes.get(id)?.lifecycle === "voter");
    }), 15_000);
  const views = [...c.nodes.values()].map(described);
  assert.ok(views.every((v) => v === views[0]), "every node holds the same map");
  const shards = [...c.nodes.get(1)!.metaState().shards.values()];
  assert.equal(shards.length, 4);
  assert.deepEqual(shards[0]!.replicas.map((r) => r.node).sort(), [1, 2, 3]);
  assert.equal(c.nodes.get(2)!.metaState().nodes.get(3)!.labels.zone, "z3");
  // A refused command answers with its reason, through any node's gateway.
  const dup = await gatewayOf(ms, 2).proposeMeta({
    kind: "register-node", id: 1, peer: { host: "x", port: 1 }, http: { host: "x", port: 2 }, labels: {}, role: "standard", atMs: 0,
  });
  assert.equal(dup.ok ? null : dup.code, "node_exists");
  for (const m of ms) m.stop();
  await stopAll(c);
});

test("the metadata state survives a restart, and a node that missed it catches up by snapshot", async () => {
  const c = await startCluster(3, 2, { compactAfterEntries: 5 });
  await waitForLeaders(c);
  const ms = agents(c);
  await waitFor("the default collection recorded everywhere", () => [...c.nodes.values()].every((n) => n.metaState().collections.has("default")), 15_000);
  for (const m of ms) m.stop();
  // What the agents proposed last (node 3's promotion) may be applied on one node and not yet on another.
  await waitFor("every node applied the same metadata", () => new Set([...c.nodes.values()].map(described)).size === 1);
  const before = described(c.nodes.get(1)!);
  // Node 3 stops; the others write enough metadata to compact past what it has.
  const lastBefore = c.nodes.get(3)!.metaStatus().lastIndex;
  await c.nodes.get(3)!.stop();
  c.nodes.delete(3);
  const gw = gatewayOf(ms, 1);
  const metaLeader = () => [...c.nodes.values()].find((n) => n.leaderOf(META_GROUP) === n.id)!;
  await waitFor("a metadata leader among the two", () => metaLeader() !== undefined);
  for (let v = 0; v < 12; v++) {
    // The leader's copy: a proposal resolves once applied there.
    const current = metaLeader().metaState().settings.at(-1)!;
    const r = await gw.proposeMeta({ kind: "set-settings", baseVersion: current.version, placement: { ...current.placement, maxMovesTotal: 200 + v }, note: `${v}`, atMs: v });
    assert.ok(r.ok, JSON.stringify(r));
  }
  assert.ok(metaLeader().metaStatus().firstIndex > lastBefore + 1, "the metadata log was compacted past node 3's");
  const back = await openNode(c, 3);
  assert.equal(described(back), before, "recovered from its own disk");
  await waitFor("node 3 to catch up", () => back.metaState().settings.at(-1)!.placement.maxMovesTotal === 211, 15_000);
  // The state is rebuilt as the snapshot lands; the log's start moves once the same turn's WAL write is durable.
  await waitFor("node 3's metadata log to restart after a snapshot", () => back.metaStatus().firstIndex > lastBefore + 1);
  await waitFor("node 1 to apply everything too", () => described(c.nodes.get(1)!) === described(metaLeader()));
  assert.equal(described(back), described(metaLeader()));
  await put(c, "after", 1);
  await stopAll(c);
});

/** A free loopback port (the joining node must name its peer address before it has an id). */
async function freePort(): Promise<number> {
  const { createServer } = await import("node:net");
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  const port = (srv.address() as { port: number }).port;
  await new Promise((r) => srv.close(r));
  return port;
}

async function joinNode(c: TestCluster, via: Gateway, promotion: { pairingWaitMs: number; promotionWindowMs: number }): Promise<{ node: MultiRaftNode; agent: Membership }> {
  const port = await freePort();
  const resp = await via.join({ peer: { host: "127.0.0.1", port }, http: { host: "127.0.0.1", port: 1 }, labels: { zone: "zj" }, role: "standard" });
  assert.ok(resp.ok, JSON.stringify(resp));
  const dir = tempDir(`shoal-join${resp.id}-`);
  c.dirs.set(resp.id, dir);
  c.ports.set(resp.id, port);
  const node = await MultiRaftNode.open({
    id: resp.id, dataDir: dir, listen: { host: "127.0.0.1", port }, shards: c.shards, tickMs: 20, join: true,
    peers: new Map(resp.members.filter((m) => m.id !== resp.id).map((m) => [m.id, m.peer])),
  });
  await node.start();
  c.nodes.set(resp.id, node);
  const agent = new Membership(node, new Gateway(node), {
    peer: { host: "127.0.0.1", port }, http: { host: "127.0.0.1", port: 1 }, founders: [1, 2, 3], shards: c.shards, intervalMs: 50, promotion,
  });
  agent.start();
  running.push(agent);
  return { node, agent };
}

test("nodes join a running cluster as metadata learners, report ready once caught up, and are promoted in a pair to keep voters odd", async () => {
  const c = await startCluster(3, 2);
  await waitForLeaders(c);
  const founders = agents(c);
  await waitFor("the founders registered", () => [1, 2, 3].every((id) => c.nodes.get(1)!.metaState().nodes.get(id)?.lifecycle === "voter"), 15_000);
  const promotion = { pairingWaitMs: 60_000, promotionWindowMs: 120_000 };
  const via = gatewayOf(founders, 2); // any member: the join goes to the metadata leader
  const four = await joinNode(c, via, promotion);
  assert.equal(four.node.id, 4, "the metadata assigns the next id");
  await waitFor("node 4 ready", () => c.nodes.get(1)!.metaState().nodes.get(4)?.lifecycle === "ready", 15_000);
  assert.equal(four.node.metaState().nodes.get(1)?.lifecycle, "voter", "node 4 holds the whole map (it arrived by snapshot and log)");
  const metaLeader = () => [...c.nodes.values()].find((n) => n.leaderOf(META_GROUP) === n.id)!;
  assert.deepEqual(metaLeader().metaStatus().config.learners, [4]);
  // Four members: the target stays 3 voters, so node 4 waits.
  assert.deepEqual(metaLeader().metaStatus().config.voters, [1, 2, 3]);
  // A record write through node 4, which holds no shard: forwarded to a node that does.
  const gw4 = four.agent.gateway;
  assert.ok((await gw4.put("from-4", { n: 4 })).ok);
  assert.deepEqual((await gw4.get("from-4", "linearizable"))?.payload, { n: 4 });
  const five = await joinNode(c, via, promotion);
  await waitFor("4 and 5 promoted together", () => {
    const m = c.nodes.get(1)!.metaState();
    return m.nodes.get(4)?.lifecycle === "voter" && m.nodes.get(5)?.lifecycle === "voter";
  }, 20_000);
  await waitFor("the metadata group's voters are 1-5", () => JSON.stringify(metaLeader().metaStatus().config.voters) === "[1,2,3,4,5]", 10_000);
  assert.deepEqual(metaLeader().metaStatus().config.learners, []);
  // A second node with node 5's peer address is refused with the reason.
  const dup = await via.join({ peer: c.nodes.get(1)!.metaState().nodes.get(5)!.peer, http: { host: "x", port: 1 }, labels: {}, role: "standard" });
  assert.equal(dup.ok ? null : dup.code, "address_in_use");
  // A restart starts Raft from the configuration applied before it (the changes before the applied
  // index are not replayed): node 5 knows it is a voter of 1-5 before it hears from anyone.
  five.agent.stop();
  await five.node.stop();
  const reopened = await MultiRaftNode.open({
    id: 5, dataDir: c.dirs.get(5)!, listen: { host: "127.0.0.1", port: c.ports.get(5)! }, shards: c.shards, tickMs: 20, join: true, peers: new Map(),
  });
  assert.deepEqual(reopened.metaStatus().config.voters, [1, 2, 3, 4, 5]);
  await reopened.stop();
  c.nodes.delete(5);
  for (const a of [...founders, four.agent]) a.stop();
  await stopAll(c);
});
