import { after, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { currentSettings } from "../meta/state.js";
import { Gateway } from "./gateway.js";
import { Membership, drainNode, removeNode } from "./membership.js";
import { META_GROUP, MultiRaftNode } from "./multi-raft.js";
import { PlacementDriver, stateFromMeta } from "./placement-driver.js";
import { ShardAgent, replicasOf } from "./shard-agent.js";
import { waitFor } from "./testing.js";

/** One node with everything `shoal start` runs on it. */
interface Stack {
  node: MultiRaftNode;
  gateway: Gateway;
  membership: Membership;
  agent: ShardAgent;
  pd: PlacementDriver;
}

const stacks: Stack[] = [];
after(async () => {
  for (const s of stacks) await stopStack(s);
});

async function stopStack(s: Stack): Promise<void> {
  s.membership.stop();
  s.agent.stop();
  s.pd.stop();
  await s.node.stop();
}

async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  const port = (srv.address() as { port: number }).port;
  await new Promise((r) => srv.close(r));
  return port;
}

async function stack(node: MultiRaftNode, port: number, founders: number[]): Promise<Stack> {
  const gateway = new Gateway(node);
  const membership = new Membership(node, gateway, {
    peer: { host: "127.0.0.1", port }, http: { host: "127.0.0.1", port: 1 }, founders, shards: 2, intervalMs: 50,
  });
  const s: Stack = { node, gateway, membership, agent: new ShardAgent(node, gateway), pd: new PlacementDriver(node, gateway) };
  membership.start();
  s.agent.start();
  s.pd.start();
  stacks.push(s);
  return s;
}

async function founder(): Promise<Stack> {
  const port = await freePort();
  const node = await MultiRaftNode.open({
    id: 1, dataDir: mkdtempSync(join(tmpdir(), "shoal-pd1-")), listen: { host: "127.0.0.1", port }, peers: new Map(), shards: 2, tickMs: 20, balanceLeaders: false,
  });
  await node.start();
  return stack(node, port, [1]);
}

async function joiner(via: Gateway): Promise<Stack> {
  const port = await freePort();
  const resp = await via.join({ peer: { host: "127.0.0.1", port }, http: { host: "127.0.0.1", port: 1 }, labels: {}, role: "standard" });
  assert.ok(resp.ok, JSON.stringify(resp));
  const node = await MultiRaftNode.open({
    id: resp.id, dataDir: mkdtempSync(join(tmpdir(), `shoal-pd${resp.id}-`)), listen: { host: "127.0.0.1", port }, shards: resp.shards, tickMs: 20, join: true,
    balanceLeaders: false, peers: new Map(resp.members.filter((m) => m.id !== resp.id).map((m) => [m.id, m.peer])),
  });
  await node.start();
  return stack(node, port, []);
}

/** Shard id -> voters, as the metadata on `s` records them. */
function voters(s: Stack): Map<number, number[]> {
  return new Map([...s.node.metaState().shards.values()].map((sh) => [sh.id, sh.replicas.filter((r) => r.role === "voter").map((r) => r.node).sort()]));
}

test("the placement driver places replicas on joined nodes, moves them off a draining node (leaders first), and then the node can be removed", async () => {
  const one = await founder();
  await waitFor("the default collection recorded", () => one.node.metaState().collections.has("default"), 15_000);
  const settings = currentSettings(one.node.metaState());
  const fast = { ...settings.placement, scheduleIntervalMs: 100, shardCooldownMs: 0, stepTimeoutMs: 10_000 };
  assert.ok((await one.gateway.proposeMeta({ kind: "set-settings", baseVersion: settings.version, placement: fast, note: "test", atMs: Date.now() })).ok);
  for (let i = 0; i < 20; i++) assert.ok((await one.gateway.put(`k${i}`, i)).ok);
  const two = await joiner(one.gateway);
  const three = await joiner(one.gateway);
  await waitFor("every shard on nodes 1, 2, 3 (repair up to the replication factor of 3)", () =>
    [...voters(one).values()].every((v) => JSON.stringify(v) === "[1,2,3]"), 30_000);
  // The joined nodes host the replicas and hold the data (by snapshot, then log).
  for (const s of [two, three]) {
    await waitFor(`node ${s.node.id} holds every record`, async () => {
      for (let i = 0; i < 20; i++) if ((await s.node.read(s.node.shardOf(`k${i}`), `k${i}`, "eventual"))?.payload !== i) return false;
      return true;
    }, 15_000);
  }
  // The metadata mirrors Raft: each shard's record is its leader's configuration.
  for (const [shard, v] of voters(one)) {
    const lead = stacks.find((s) => s.node.hosts(shard) && s.node.leaderOf(shard) === s.node.id);
    if (lead !== undefined) assert.deepEqual(replicasOf(lead.node.group(shard).raft.raft.trk.confState()).map((r) => r.node), v);
  }
  const four = await joiner(one.gateway);
  // Node 1 leads shards and the metadata group: draining moves its leaderships first, then its replicas.
  const refused = await removeNode(one.gateway, one.node, 1);
  assert.equal(refused.ok ? null : refused.code, "node_holds_replicas");
  assert.ok((await drainNode(one.gateway, 1)).ok);
  await waitFor("no replica on node 1", () => [...voters(two).values()].every((v) => !v.includes(1) && v.length === 3), 40_000);
  assert.ok([...voters(two).values()].every((v) => v.includes(4)), "node 4 took node 1's replicas");
  const drains = () => [...two.node.metaState().operators.values()].filter((o) => o.operator.reason === "drain");
  await waitFor("the drain operators recorded as done", () => drains().length > 0 && drains().every((o) => o.status === "done"), 10_000);
  // Leaders first: every leadership left node 1 before any of its replicas did.
  const firstMoveAtMs = Math.min(...drains().filter((o) => o.operator.steps.some((st) => st.kind === "add-learner")).map((o) => o.operator.startedAtMs));
  const transfers = drains().filter((o) => o.operator.steps.length === 1 && o.operator.steps[0]!.kind === "transfer-leader");
  assert.ok(transfers.length > 0 && transfers.every((o) => o.updatedAtMs <= firstMoveAtMs), JSON.stringify(drains().map((o) => [o.operator.steps, o.operator.startedAtMs, o.updatedAtMs])));
  await waitFor("node 1 dropped its replicas", () => !one.node.hosts(1) && !one.node.hosts(2), 10_000);
  for (let i = 0; i < 20; i++) assert.equal((await four.gateway.get(`k${i}`, "linearizable"))?.payload, i);
  const removed = await removeNode(two.gateway, two.node, 1);
  assert.ok(removed.ok, JSON.stringify(removed));
  // A placement driver that takes over resumes from the operators the metadata records.
  assert.deepEqual(stateFromMeta(two.node.metaState()).operators.filter((o) => o.reason === "drain"), []);
  assert.ok(stacks.filter((s) => s.pd.active).length <= 1, "one placement driver at a time");
  void META_GROUP;
});
