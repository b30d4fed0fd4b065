/**
 * A shard that lost its quorum answers within about an election timeout (tickMs 20 x electionTicks 10
 * = 200 ms here), with NoQuorumError (not applied) or QuorumLostError (outcome unknown), never by
 * waiting for the request timeout; once the stopped nodes are back, writes succeed again.
 */
import { after, type TestContext, test } from "node:test";
import assert from "node:assert/strict";
import { rmSync } from "node:fs";
import { Gateway } from "./gateway.js";
import type { MultiRaftNode, NodeConfig } from "./multi-raft.js";
import { type TestCluster, leaderOf, openNode, startCluster, stopAll, stopLeftovers, waitFor, waitForLeaders } from "./testing.js";

/** The acceptance bound: far below the 5 s request timeout, well above one election timeout. */
const ANSWER_BOUND_MS = 2000;
const RESTART_DEADLINE_MS = 20_000;

const dirs: string[] = [];
after(async () => {
  await stopLeftovers();
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

/** A cluster of 3 with one shard and its leader elected; every node has a gateway (forwarded requests need one). */
async function cluster(options: Partial<NodeConfig> = {}): Promise<{ c: TestCluster; gateways: Map<number, Gateway> }> {
  const c = await startCluster(3, 1, options);
  dirs.push(...c.dirs.values());
  await waitForLeaders(c);
  return { c, gateways: new Map([...c.nodes].map(([id, node]) => [id, new Gateway(node)])) };
}

interface Outcome { error: Error | null; ms: number }

/** How `request` ends, and how long it took from the call. */
async function outcome(request: () => Promise<unknown>): Promise<Outcome> {
  const startedMs = performance.now();
  try {
    await request();
    return { error: null, ms: performance.now() - startedMs };
  } catch (e) {
    return { error: e as Error, ms: performance.now() - startedMs };
  }
}

function assertRefused(t: TestContext, what: string, o: Outcome, name: "NoQuorumError" | "QuorumLostError" | "either"): void {
  assert.ok(o.error !== null, `${what} succeeded without a quorum`);
  t.diagnostic(`${what}: ${o.error.name} after ${o.ms.toFixed(0)} ms (${o.error.message})`);
  const expected = name === "either" ? ["NoQuorumError", "QuorumLostError"] : [name];
  assert.ok(expected.includes(o.error.name), `${what}: ${o.error.name}: ${o.error.message}`);
  assert.ok(o.ms < ANSWER_BOUND_MS, `${what} answered after ${o.ms.toFixed(0)} ms`);
}

/** Stops every node but `survivor`; returns the ids stopped. */
async function stopOthers(c: TestCluster, survivor: MultiRaftNode): Promise<number[]> {
  const stopped = [...c.nodes.keys()].filter((id) => id !== survivor.id);
  for (const id of stopped) {
    await c.nodes.get(id)!.stop();
    c.nodes.delete(id);
  }
  return stopped;
}

/** Restarts the stopped nodes (each with a gateway, to take forwarded writes) and waits for a write through `gw`. */
async function restartAndWrite(t: TestContext, c: TestCluster, stopped: number[], gw: Gateway): Promise<void> {
  const restartedMs = performance.now();
  for (const id of stopped) new Gateway(await openNode(c, id));
  for (const [id, node] of c.nodes) {
    for (const [peer, port] of c.ports) if (peer !== id) node.transport.setPeer(peer, { host: "127.0.0.1", port });
  }
  await waitFor("a write through the survivor to succeed again", async () => (await gw.put("after", 1).catch(() => null))?.ok === true, RESTART_DEADLINE_MS);
  t.diagnostic(`writes succeed again ${(performance.now() - restartedMs).toFixed(0)} ms after the restart`);
  assert.equal((await gw.get("after", "linearizable"))?.payload, 1);
}

test("two of three nodes stopped: a follower's gateway refuses writes, linearizable reads and leader waits within an election timeout; restarted, writes succeed", async (t) => {
  const { c, gateways } = await cluster();
  const leader = leaderOf(c, 1)!;
  const survivor = [...c.nodes.values()].find((n) => n !== leader)!;
  const gw = gateways.get(survivor.id)!;
  assert.equal((await gw.put("k", 1)).ok, true);
  const stopped = await stopOthers(c, survivor);
  // Sent while the dead leader may still look alive, the write may have left: unknown is then the truth.
  assertRefused(t, "write", await outcome(() => gw.put("k", 2)), "either");
  // The survivor knows now: nothing more is forwarded to a leader that cannot answer.
  assertRefused(t, "write after the loss", await outcome(() => gw.put("k", 3)), "NoQuorumError");
  assertRefused(t, "linearizable read", await outcome(() => gw.get("k", "linearizable")), "NoQuorumError");
  assertRefused(t, "sequential read", await outcome(() => gw.get("k", "sequential")), "NoQuorumError");
  assertRefused(t, "wait for a new leader", await outcome(() => survivor.awaitLeader(1, leader.id, 10_000)), "NoQuorumError");
  assert.equal((await gw.get("k", "eventual"))?.payload, 1, "eventual reads are still served from the replica");
  await restartAndWrite(t, c, stopped, gw);
  await stopAll(c);
});

test("two of three nodes stopped under the leader: its write in flight fails as QuorumLostError, the next is refused unproposed as NoQuorumError; restarted, writes succeed", async (t) => {
  const { c, gateways } = await cluster({ testFaults: true });
  const survivor = leaderOf(c, 1)!;
  const gw = gateways.get(survivor.id)!;
  assert.equal((await gw.put("k", 1)).ok, true);
  const followers = [...c.nodes.keys()].filter((id) => id !== survivor.id);
  const lastIndex = () => survivor.status().groups[0]!.lastIndex;
  // Frames to the followers are dropped: the next write is appended on the leader and cannot commit.
  survivor.transport.setFaults({ cut: new Set(followers) });
  const appendedBefore = lastIndex();
  const inFlight = outcome(() => gw.put("k", 2));
  await waitFor("the write appended on the leader", () => lastIndex() > appendedBefore);
  const stopped = await stopOthers(c, survivor);
  assertRefused(t, "write in flight", await inFlight, "QuorumLostError");
  const appended = lastIndex();
  assertRefused(t, "write after the loss", await outcome(() => gw.put("k", 3)), "NoQuorumError");
  assert.equal(lastIndex(), appended, "the refused write was not proposed");
  assertRefused(t, "linearizable read", await outcome(() => gw.get("k", "linearizable")), "NoQuorumError");
  survivor.transport.setFaults(null);
  await restartAndWrite(t, c, stopped, gw);
  await stopAll(c);
});

test("a single-node cluster always reaches its quorum: writes and linearizable reads through its gateway succeed", async () => {
  const c = await startCluster(1, 1);
  dirs.push(...c.dirs.values());
  await waitForLeaders(c);
  const gw = new Gateway(c.nodes.get(1)!);
  assert.equal((await gw.put("solo", 1)).ok, true);
  assert.equal((await gw.get("solo", "linearizable"))?.payload, 1);
  await stopAll(c);
});
