import { test } from "node:test";
import assert from "node:assert/strict";
import { type GatheredStats, clusterSummary } from "./stats.js";
import { api, kill9, startCluster, stop } from "../cli/testing.js";
import { waitFor } from "../node/testing.js";

const node = (id: number, leads: { shard: number; collection: string; term: number; requestRate: number }[], indexes: { shard: number; collection: string; records: number; lagEntries: number }[]): GatheredStats =>
  ({ node: id, ok: true, atMs: 0, windowMs: 2000, requests: [], disk: null, leads, indexes });

test("the cluster summary ranks hot shards against the split threshold (an old leader's report left out) and takes each collection's largest index lag", () => {
  const s = clusterSummary([
    node(1, [{ shard: 1, collection: "a", term: 2, requestRate: 10 }, { shard: 2, collection: "a", term: 1, requestRate: 0 }], [{ shard: 5, collection: "v", records: 10, lagEntries: 3 }]),
    { node: 2, ok: false, error: "no answer within 2000 ms" },
    // Shard 1's report from its old leader (term 1) is left out.
    node(3, [{ shard: 4, collection: "b", term: 3, requestRate: 9000 }, { shard: 1, collection: "a", term: 1, requestRate: 50 }], [{ shard: 5, collection: "v", records: 10, lagEntries: 40 }, { shard: 6, collection: "w", records: 1, lagEntries: 0 }]),
  ], 5000);
  assert.deepEqual(s.hotShards, [
    { shard: 4, collection: "b", leader: 3, requestRate: 9000, overSplitThreshold: true },
    { shard: 1, collection: "a", leader: 1, requestRate: 10, overSplitThreshold: false },
  ]);
  assert.deepEqual(s.indexLag, [{ collection: "v", lagEntriesMax: 40, replicas: 2 }, { collection: "w", lagEntriesMax: 0, replicas: 1 }]);
  assert.equal(clusterSummary([node(1, [{ shard: 1, collection: "a", term: 1, requestRate: 9000 }], [])], 0).hotShards[0]!.overSplitThreshold, false, "0: splitting by load is off");
});

interface Stats { nodes: (GatheredStats & { requests?: { requests: number }[] })[]; hotShards: { shard: number; leader: number; requestRate: number }[]; indexLag: { collection: string }[] }

test("one node gathers every node's request rate, disk, led shards' load and index lag; a node that does not answer is named", async () => {
  const c = await startCluster();
  try {
    // Until every node is judged healthy, a collection asking for 3 replicas is refused (409 not_enough_nodes).
    await waitFor("the collection created", async () => (await api(c, 1, "POST", "/v1/collections", { name: "vecs", shards: 2, vectors: { dim: 2, metric: "l2" } })).status === 200, 15_000);
    for (let i = 0; i < 40; i++) assert.equal((await api(c, 1 + (i % 3), "PUT", `/v1/collections/default/records/k${i}`, { payload: { i } })).status, 200);
    let stats: Stats | null = null;
    await waitFor("a shard agent's report with the puts' load", async () => {
      stats = (await api<Stats>(c, 2, "GET", "/v1/cluster/stats")).body;
      return stats.hotShards.length > 0;
    }, 15_000);
    const s = stats!;
    assert.deepEqual(s.nodes.map((n) => [n.node, n.ok]), [[1, true], [2, true], [3, true]]);
    for (const n of s.nodes) {
      assert.ok(n.ok);
      assert.equal(n.requests.length, 90);
      assert.equal(n.requests.reduce((sum, w) => sum + w.requests, 0) >= 13, true, `node ${n.node} counted the puts it took`);
      assert.ok(n.disk !== null && n.disk.freeBytes > 0 && n.disk.sizeBytes >= n.disk.freeBytes);
    }
    assert.ok(s.hotShards.every((h) => h.requestRate > 0 && [1, 2, 3].includes(h.leader)));
    assert.deepEqual(s.indexLag.map((l) => l.collection), ["vecs"], "the vector collection's replicas are indexed");

    await kill9(c, 3);
    const after = (await api<Stats>(c, 1, "GET", "/v1/cluster/stats")).body;
    const three = after.nodes.find((n) => n.node === 3)!;
    assert.equal(three.ok, false);
    assert.match((three as { error: string }).error, /unreachable|no answer/);
    assert.equal(after.nodes.filter((n) => n.ok).length, 2);
  } finally {
    await stop(c);
  }
});
