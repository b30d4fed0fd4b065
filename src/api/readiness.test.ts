import { after, test } from "node:test";
import assert from "node:assert/strict";
import { META_GROUP } from "../node/multi-raft.js";
import { stopLeftovers, waitFor } from "../node/testing.js";
import { startApiCluster } from "./testing.js";

after(stopLeftovers);

interface ShardsView { shards: { shard: number; leader: number; range: [number, number] }[] }

test("a fresh cluster's /readyz answers 200 only once the node knows the shard map and every shard has a leader", async () => {
  // Membership records the nodes and the shard map: held back, the shards elect leaders with no map.
  const ac = await startApiCluster(3, 3, { membership: false });
  try {
    await waitFor("every group has a leader on every node", () => [...ac.c.nodes.values()].every((n) =>
      n.leaderOf(META_GROUP) !== 0 && n.status().groups.every((g) => g.lead !== 0)));
    for (const [id, app] of ac.apps) {
      const shards = (await app.inject({ url: "/v1/cluster/shards" })).json() as ShardsView;
      assert.deepEqual(shards.shards, [], "no map yet");
      const r = await app.inject({ url: "/readyz" });
      assert.deepEqual([r.statusCode, (r.json() as { error?: { code: string } }).error?.code], [503, "not_ready"], `node ${id}: ready without a map: ${r.body}`);
    }
    ac.startMembership();
    // Every answer of every node until all are ready: a 200 must come with the map and its leaders.
    const readyAt = new Map<number, number>();
    let probes = 0;
    await waitFor("every node ready", async () => {
      for (const [id, app] of ac.apps) {
        if (readyAt.has(id)) continue;
        probes++;
        const ready = await app.inject({ url: "/readyz" });
        if (ready.statusCode !== 200) {
          assert.equal(ready.statusCode, 503, ready.body);
          continue;
        }
        const shards = ((await app.inject({ url: "/v1/cluster/shards" })).json() as ShardsView).shards;
        assert.equal(shards.length, 3, `node ${id} ready with the map ${JSON.stringify(shards)}`);
        for (const s of shards) assert.notEqual(s.leader, 0, `node ${id} ready while shard ${s.shard} has no leader`);
        readyAt.set(id, probes);
      }
      return readyAt.size === ac.apps.size;
    });
    assert.ok(probes > 3, "probed while the map was being recorded");
  } finally {
    await ac.stop();
  }
});

test("/readyz: a shard of the map without a leader makes the node not ready", async () => {
  const ac = await startApiCluster(3, 2);
  try {
    const app = ac.apps.get(1)!;
    await waitFor("ready", async () => (await app.inject({ url: "/readyz" })).statusCode === 200);
    // Nodes 2 and 3 stop: node 1 holds every shard and loses their leaders once its election timeout passes.
    await ac.c.nodes.get(2)!.stop();
    await ac.c.nodes.get(3)!.stop();
    await waitFor("not ready", async () => (await app.inject({ url: "/readyz" })).statusCode === 503);
    const r = (await app.inject({ url: "/readyz" })).json() as { error: { code: string; message: string } };
    assert.equal(r.error.code, "not_ready");
    assert.match(r.error.message, /no leader|without a leader/);
  } finally {
    await ac.stop();
  }
});
