import { test } from "node:test";
import assert from "node:assert/strict";

import { PlacementError, placeNewShards } from "./born.js";
import type { NodeView, ShardView } from "./types.js";

function node(id: number, over: Partial<NodeView> = {}): NodeView {
  return { id, labels: { zone: `z${id % 3}`, host: `h${id}` }, state: "ready", health: "healthy", ...over };
}

const count = (lists: number[][], pick: (l: number[]) => number[]) => {
  const m = new Map<number, number>();
  for (const l of lists) for (const id of pick(l)) m.set(id, (m.get(id) ?? 0) + 1);
  return m;
};

test("new shards spread evenly: replicas and first leaders per node differ by at most one on an empty cluster", () => {
  const placements = placeNewShards({ nodes: [1, 2, 3, 4, 5, 6].map((id) => node(id)), shards: [] }, 64, 3);
  assert.equal(placements.length, 64);
  for (const p of placements) assert.equal(new Set(p).size, 3, "three distinct voters");
  const replicas = [...count(placements, (l) => l).values()];
  const leaders = [...count(placements, (l) => [l[0]!]).values()];
  assert.equal(replicas.length, 6);
  assert.ok(Math.max(...replicas) - Math.min(...replicas) <= 1, `replicas per node ${replicas.join(" ")}`);
  assert.ok(Math.max(...leaders) - Math.min(...leaders) <= 1, `first leaders per node ${leaders.join(" ")}`);
});

test("each shard's voters spread over zones and never share a host", () => {
  // Two nodes per zone, and nodes 7 and 8 on one host.
  const nodes = [1, 2, 3, 4, 5, 6].map((id) => node(id)).concat([node(7, { labels: { zone: "z9", host: "shared" } }), node(8, { labels: { zone: "z8", host: "shared" } })]);
  const zone = new Map(nodes.map((n) => [n.id, n.labels.zone]));
  for (const p of placeNewShards({ nodes, shards: [] }, 40, 3)) {
    assert.equal(new Set(p.map((id) => zone.get(id))).size, 3, `shard on ${p.join(",")}: three zones`);
    assert.ok(!(p.includes(7) && p.includes(8)), "7 and 8 share a host");
  }
});

test("the nodes already holding more replicas and leaders get fewer of the new ones; only ready, healthy voters are placed", () => {
  const nodes = [node(1), node(2), node(3), node(4), node(5, { state: "draining" }), node(6, { health: "unhealthy" }), node(7, { learnerOnly: true })];
  const existing: ShardView[] = Array.from({ length: 9 }, (_, i) => ({
    id: i + 1, epoch: 1, leader: 1, sizeBytes: 0, requestRate: 0, replicas: [1, 2, 3].map((n) => ({ node: n, role: "voter" as const, caughtUp: true })),
  }));
  const placements = placeNewShards({ nodes, shards: existing }, 8, 3);
  for (const p of placements) {
    assert.ok(p.every((id) => id <= 4), `only nodes 1-4 may hold voters: ${p.join(",")}`);
    assert.ok(p.includes(4), "node 4 (empty) is in every new shard until it catches up");
  }
  assert.ok(!placements.some((p) => p[0] === 1), "node 1 leads nine shards already: it starts no first election");
});

test("too few nodes for the replication factor is refused, naming what is missing", () => {
  assert.throws(() => placeNewShards({ nodes: [node(1), node(2)], shards: [] }, 1, 3), (e: unknown) =>
    e instanceof PlacementError && e.code === "not_enough_nodes" && /need 3 ready, healthy nodes on distinct hosts; 2 found/.test(e.message));
  assert.deepEqual(placeNewShards({ nodes: [node(1)], shards: [] }, 2, 1), [[1], [1]]);
});
