/**
 * A replica that misses a split while cut off, and catches up by a snapshot of the parent taken past the
 * split, never applies the split entry, so the split does not make the child there. Hosting must then
 * host the child empty for its leader to fill (found by the node world, seed 118 at commit 0892990: the
 * child's replica was never created, 20 s after healing).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { startApiCluster } from "./testing.js";
import { waitFor } from "../node/testing.js";
import { META_GROUP } from "../node/multi-raft.js";

test("a replica that catches up past a split by snapshot hosts the split's child and catches up on it too", { timeout: 60_000 }, async () => {
  const api = await startApiCluster(3, 1, { node: { compactAfterEntries: 20 } });
  try {
    await api.registered();
    const node1 = api.c.nodes.get(1)!;
    await waitFor("shard 1 has a leader all nodes know", () => [...api.c.nodes.values()].every((n) => n.leaderOf(1) !== 0 && n.leaderOf(1) === node1.leaderOf(1)));
    const leaderId = node1.leaderOf(1);
    const leader = api.c.nodes.get(leaderId)!;
    // Not the metadata leader either: the split is asked of its placement driver.
    await waitFor("the metadata group has a leader", () => node1.leaderOf(META_GROUP) !== 0);
    const laggingId = [1, 2, 3].find((id) => id !== leaderId && id !== node1.leaderOf(META_GROUP))!;
    const lagging = api.c.nodes.get(laggingId)!;
    const app = api.apps.get(leaderId)!;
    // With a node cut off a write can be refused or time out on its way (503, 504): asked again, the
    // same blind put, until it is acknowledged.
    const put = async (id: string) => {
      await waitFor(`the write of ${id} acknowledged`, async () => {
        const r = await app.inject({ method: "PUT", url: `/v1/collections/default/records/${id}`, payload: { payload: id } });
        assert.ok(r.statusCode === 200 || r.statusCode === 503 || r.statusCode === 504, r.body);
        return r.statusCode === 200;
      });
    };
    for (let i = 0; i < 10; i++) await put(`a${i}`);
    const cut = async (id: number, peers: number[]) => {
      assert.equal((await api.apps.get(id)!.inject({ method: "POST", url: "/v1/test/faults", payload: { cut: peers } })).statusCode, 200);
    };
    await cut(laggingId, [1, 2, 3].filter((x) => x !== laggingId));
    for (const other of [1, 2, 3].filter((x) => x !== laggingId)) await cut(other, [laggingId]);

    const split = await app.inject({ method: "POST", url: "/v1/cluster/shards/1/split" });
    assert.equal(split.statusCode, 200, split.body);
    const child = (split.json() as { child: number }).child;
    await waitFor("the map records the child", () => leader.metaState().shards.get(child)?.origin !== undefined);
    const splitIndex = leader.metaState().shards.get(child)!.origin!.index;
    // The parent's log moves on and is compacted past the split: the lagging replica can only get a snapshot.
    for (let i = 0; (leader.status().groups.find((g) => g.shard === 1)?.firstIndex ?? 0) <= splitIndex + 1; i++) {
      assert.ok(i < 2000, "the parent's log is compacted past the split");
      await put(`b${i}`);
    }
    assert.ok(!lagging.hosts(child), "cut off, the lagging node has not made the child");

    for (const id of [1, 2, 3]) await cut(id, []);
    await waitFor("the lagging node hosts the child and has applied what its leader has", () => {
      const leadOfChild = [...api.c.nodes.values()].find((n) => n.hosts(child) && n.leaderOf(child) === n.id);
      const st = lagging.replicaState(child);
      return leadOfChild !== undefined && st !== undefined && st.applied >= leadOfChild.replicaState(child)!.applied;
    }, 20_000);
    assert.ok((lagging.replicaState(1)?.applied ?? 0) > splitIndex, "the parent caught up past the split");
  } finally {
    await api.stop();
  }
});
