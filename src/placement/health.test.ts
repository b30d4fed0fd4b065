import { test } from "node:test";
import assert from "node:assert/strict";
import { clusterHealth } from "./health.js";
import type { ClusterView, NodeView, ShardView } from "./types.js";

const node = (id: number, health: NodeView["health"] = "healthy", extra: Partial<NodeView> = {}): NodeView => ({ id, labels: {}, state: "ready", health, ...extra });
const shard = (id: number, voters: number[], leader: number, extra: Partial<ShardView> = {}): ShardView => ({
  id, epoch: 1, leader, sizeBytes: 0, requestRate: 0, replicas: voters.map((n) => ({ node: n, role: "voter", caughtUp: true })), ...extra,
});

test("cluster health: dead nodes, shards short of live voters (their own factor, capped by the cluster's nodes that can hold one), leaderless shards, the hottest rate", () => {
  const view: ClusterView = {
    nodes: [node(1), node(2), node(3, "dead"), node(4, "healthy", { learnerOnly: true }), node(5)],
    shards: [
      shard(1, [1, 2, 3], 1, { requestRate: 40 }), // a voter on the dead node: 2 live of 3
      shard(2, [1, 2, 5], 2), // whole
      shard(3, [1], 0, { replicationFactor: 2, requestRate: 900 }), // its own factor 2: under; no leader
      shard(4, [1, 2, 5], 3), // led by the dead node: leaderless
    ],
  };
  assert.deepEqual(clusterHealth(view, { replicationFactor: 3 }), { deadNodes: 1, underReplicatedShards: 2, leaderlessShards: 2, hottestShardRequestRate: 900 });
  assert.deepEqual(clusterHealth({ nodes: [node(1), node(2, "healthy", { state: "removed" })], shards: [shard(1, [1], 1)] }, { replicationFactor: 3 }),
    { deadNodes: 0, underReplicatedShards: 0, leaderlessShards: 0, hottestShardRequestRate: 0 }, "a one-node cluster is whole with one voter");
});
