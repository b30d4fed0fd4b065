/**
 * The cluster's health as the placement driver sees it (its view: the metadata's nodes and shard map,
 * its failure detectors, the leaders' shard reports), summed up for metrics and alerts. Pure.
 */
import type { ClusterView, PlacementConfig } from "./types.js";

export interface ClusterHealth {
  /** Nodes the failure detector judges dead (not yet removed). */
  deadNodes: number;
  /** Live shards with fewer voters on nodes not dead than their replication factor asks (capped by the cluster's nodes that can hold one). */
  underReplicatedShards: number;
  /** Live shards no leader has reported for. */
  leaderlessShards: number;
  /** The highest request rate a leader reported for one shard, per second (hot-shard detection). */
  hottestShardRequestRate: number;
}

export function clusterHealth(view: ClusterView, cfg: Pick<PlacementConfig, "replicationFactor">): ClusterHealth {
  const dead = new Set(view.nodes.filter((n) => n.health === "dead").map((n) => n.id));
  // Nodes that can hold a voter, dead ones included until they are removed (a dead node's replicas are
  // what "under-replicated" is about): a factor above their count cannot be met, and is not "under".
  const voterHomes = view.nodes.filter((n) => n.learnerOnly !== true && n.state !== "removed").length;
  let underReplicatedShards = 0;
  let leaderlessShards = 0;
  let hottestShardRequestRate = 0;
  for (const s of view.shards) {
    const rf = Math.min(s.replicationFactor ?? cfg.replicationFactor, voterHomes);
    const liveVoters = s.replicas.filter((r) => r.role === "voter" && !dead.has(r.node)).length;
    if (liveVoters < rf) underReplicatedShards++;
    if (s.leader === 0 || dead.has(s.leader)) leaderlessShards++;
    hottestShardRequestRate = Math.max(hottestShardRequestRate, s.requestRate);
  }
  return { deadNodes: dead.size, underReplicatedShards, leaderlessShards, hottestShardRequestRate };
}
