/**
 * Operators that compose (issue 11, point 6), on an in-process cluster with the HTTP API: a manual
 * operator asked while the placement driver's own runs on the shard is refused naming it, or, asked
 * with `waitMs`, waits for it and then runs; splits and merges answer the shards they made and retired.
 * Node 1's placement driver runs its cycles only when the test says so at first, so that the repair
 * is running (not yet advanced) when the manual merge is asked: nothing here depends on timing.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:net";
import type { FastifyInstance } from "fastify";
import { pino } from "pino";
import type { HashRange } from "../meta/ranges.js";
import { buildApi } from "../api/server.js";
import { currentSettings } from "../meta/state.js";
import { Gateway } from "./gateway.js";
import { Membership } from "./membership.js";
import { MultiRaftNode } from "./multi-raft.js";
import { PlacementDriver, stateFromMeta } from "./placement-driver.js";
import { ShardAgent } from "./shard-agent.js";
import { tempDir, waitFor } from "./testing.js";

interface Stack {
  node: MultiRaftNode;
  gateway: Gateway;
  membership: Membership;
  agent: ShardAgent;
  pd: PlacementDriver;
}

async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  const port = (srv.address() as { port: number }).port;
  await new Promise((r) => srv.close(r));
  return port;
}

/** Membership and the shard agent run; the placement driver's loop does not (the test drives it). */
function stack(node: MultiRaftNode, port: number, founders: number[]): Stack {
  const gateway = new Gateway(node);
  const membership = new Membership(node, gateway, {
    peer: { host: "127.0.0.1", port }, http: { host: "127.0.0.1", port: 1 }, founders, shards: 2, intervalMs: 50,
  });
  const s = { node, gateway, membership, agent: new ShardAgent(node, gateway), pd: new PlacementDriver(node, gateway) };
  membership.start();
  s.agent.start();
  return s;
}

async function stop(s: Stack): Promise<void> {
  s.membership.stop();
  s.agent.stop();
  s.pd.stop();
  await s.node.stop();
}

interface ErrorBody { error: { code: string; message: string; operator?: { id: number; shard: number; kind: string; reason: string; step: string; startedAtMs: number; started: string } } }

test("a manual merge right after start: refused naming the automatic repair without waitMs; with waitMs it waits for the repair, then runs; split and merge answer the shards they made and retired; a retired shard's id is answered with its survivor", async () => {
  const stacks: Stack[] = [];
  let app: FastifyInstance | null = null;
  try {
    const port1 = await freePort();
    const node1 = await MultiRaftNode.open({ id: 1, dataDir: tempDir("shoal-wait1-"), listen: { host: "127.0.0.1", port: port1 }, peers: new Map(), shards: 2, tickMs: 20 });
    await node1.start();
    const one = stack(node1, port1, [1]);
    stacks.push(one);
    app = await buildApi({ node: node1, gateway: one.gateway, logger: pino({ level: "silent" }) });
    await waitFor("the default collection recorded", () => node1.metaState().collections.has("default"), 15_000);
    const settings = currentSettings(node1.metaState());
    // Nothing splits or merges by itself here: only the repair runs, and the manual operators.
    const quiet = { ...settings.placement, scheduleIntervalMs: 100, stepTimeoutMs: 30_000, mergeBelowRecords: 0, splitRequestRate: 0, splitSizeBytes: 0 };
    assert.ok((await one.gateway.proposeMeta({ kind: "set-settings", baseVersion: settings.version, placement: quiet, note: "test", atMs: Date.now() })).ok);
    for (let i = 0; i < 20; i++) assert.ok((await one.gateway.put(`k${i}`, i)).ok);

    // Node 2 joins: with a replication factor of 3, the placement driver repairs both shards onto it.
    const port2 = await freePort();
    const joined = await one.gateway.join({ peer: { host: "127.0.0.1", port: port2 }, http: { host: "127.0.0.1", port: 1 }, labels: {}, role: "standard" });
    assert.ok(joined.ok, JSON.stringify(joined));
    const node2 = await MultiRaftNode.open({
      id: joined.id, dataDir: tempDir("shoal-wait2-"), listen: { host: "127.0.0.1", port: port2 }, shards: joined.shards, tickMs: 20, join: true,
      peers: new Map(joined.members.filter((m) => m.id !== joined.id).map((m) => [m.id, m.peer])),
    });
    await node2.start();
    stacks.push(stack(node2, port2, []));
    await waitFor("node 2 ready and healthy", () => node1.metaState().nodes.get(2)?.worker === "ready" && node1.peerHealth(2) === "healthy", 15_000);

    // One cycle: the repair starts on both shards (add a learner on node 2, then promote it) and stays
    // running until a later cycle sees its steps done.
    const repairs = () => [...node1.metaState().operators.values()].filter((r) => r.operator.reason === "repair");
    // A cycle is a no-op until this node's metadata has caught up; one that starts operators is the last one run here.
    await waitFor("the repair started", async () => {
      if (repairs().length === 0) await one.pd.cycle();
      return repairs().length > 0;
    }, 10_000);
    assert.deepEqual(repairs().map((r) => [r.operator.shard, r.status]).sort(), [[1, "running"], [2, "running"]]);
    const repairOf2 = repairs().find((r) => r.operator.shard === 2)!.operator;

    // Without waitMs: refused at once, the refusal naming the repair (id, kind, step, start).
    const refused = await app.inject({ method: "POST", url: "/v1/cluster/shards/2/merge" });
    assert.equal(refused.statusCode, 409, refused.body);
    const err = (refused.json() as ErrorBody).error;
    assert.equal(err.code, "shard_busy");
    assert.deepEqual(err.operator, {
      id: repairOf2.id, shard: 2, kind: "add-replica", reason: "repair", step: "1/2 add-learner 2",
      startedAtMs: repairOf2.startedAtMs, started: new Date(repairOf2.startedAtMs).toISOString(),
    });
    assert.match(err.message, new RegExp(`operator ${repairOf2.id} running \\(add-replica, repair; step 1/2 add-learner 2; started ${err.operator!.started}\\)`));

    // With waitMs: the same merge waits while the repair finishes (the driver's loop runs from now on), then runs.
    const waiting = app.inject({ method: "POST", url: "/v1/cluster/shards/2/merge?waitMs=60000" });
    one.pd.start();
    const merged = await waiting;
    assert.equal(merged.statusCode, 200, merged.body);
    const body = merged.json() as { shard: number; into: number; retired: number; surviving: number; range: [number, number]; operator: number };
    const [r1, r2] = [node1.metaState().shards.get(1)!.range as HashRange, node1.metaState().shards.get(2)!.range as HashRange];
    assert.deepEqual({ ...body, operator: 0 }, { shard: 2, into: 1, retired: 2, surviving: 1, range: [r1.start, r2.end], operator: 0 });
    // It ran after the repairs ended, not beside them.
    const mergeRecord = () => node1.metaState().operators.get(body.operator);
    await waitFor("the merge's operator recorded", () => mergeRecord() !== undefined, 5_000);
    const before = repairs().filter((r) => r.operator.id < body.operator);
    assert.ok(before.length >= 2 && before.every((r) => r.status === "done" && r.updatedAtMs <= mergeRecord()!.operator.startedAtMs), JSON.stringify(repairs()));

    // A split of the surviving shard asked while the merge still holds it waits for the merge too.
    const split = await app.inject({ method: "POST", url: "/v1/cluster/shards/1/split?waitMs=60000" });
    assert.equal(split.statusCode, 200, split.body);
    assert.equal(node1.metaState().shards.get(2)!.retiredInto, 1, "the split ran once the merge was done");
    assert.equal(mergeRecord()!.status, "done");
    // A script holding the retired shard's id is told where its range went.
    for (const url of ["/v1/cluster/shards/2/split", "/v1/cluster/shards/2/merge"]) {
      const gone: Awaited<ReturnType<FastifyInstance["inject"]>> = await app.inject({ method: "POST", url });
      assert.equal(gone.statusCode, 409, gone.body);
      assert.equal((gone.json() as ErrorBody).error.code, "shard_retired");
      assert.match((gone.json() as ErrorBody).error.message, /^shard 2 was merged into shard 1/);
    }
    const s = split.json() as { shard: number; range: [number, number]; child: number; childRange: [number, number]; operator: number };
    const mid = Math.floor((r1.start + r2.end) / 2);
    assert.deepEqual({ ...s, child: 0, operator: 0 }, { shard: 1, range: [r1.start, mid], child: 0, childRange: [mid, r2.end], operator: 0 });
    await waitFor("the new shard in the shard map", () => node1.metaState().shards.has(s.child), 10_000);
    assert.deepEqual(node1.metaState().shards.get(s.child)!.range, { start: mid, end: r2.end });
    // The split by hand is recorded, so a placement driver taking over keeps both parts from automatic merges.
    await waitFor("the split's operator recorded as done", () => node1.metaState().operators.get(s.operator)?.status === "done", 5_000);
    assert.deepEqual([...stateFromMeta(node1.metaState()).manualSplitAtMs.keys()].sort((a, b) => a - b), [1, s.child].sort((a, b) => a - b));
    const listed = (await app.inject({ url: "/v1/cluster/operators" })).json() as { operators: { id: number; reshape?: unknown }[] };
    assert.deepEqual(listed.operators.find((o) => o.id === s.operator)?.reshape, { kind: "split", at: mid, end: r2.end, child: s.child });
    for (let i = 0; i < 20; i++) assert.equal((await one.gateway.get(`k${i}`, "linearizable"))?.payload, i, `k${i}`);
  } finally {
    await app?.close();
    for (const s of stacks) await stop(s);
  }
});
