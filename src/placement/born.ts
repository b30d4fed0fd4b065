/**
 * Where new shards are born (issue 13 item 1, issue 14): a collection created at runtime gets its
 * shards directly on their voters, chosen by the balance rules the placement driver moves replicas by,
 * so that nothing needs moving afterwards: voters on ready, healthy nodes that may vote, never two on
 * one host, spread over zones and racks, the fewest replicas first; and the first voter of each shard
 * (the one that starts its first election) the one leading the fewest shards, so leaders come out even.
 * Pure: the cluster view in, one voter list per shard out.
 */
import { assert } from "../util/assert.js";

import { domainPenalty } from "./context.js";
import type { ClusterView, NodeId, NodeView } from "./types.js";

export class PlacementError extends Error {
  override name = "PlacementError";
  readonly code = "not_enough_nodes";
}

/** Nodes that may hold a voter of a new shard. */
function placeable(n: NodeView): boolean {
  return n.state === "ready" && n.health === "healthy" && n.learnerOnly !== true;
}

/**
 * Voters for `count` new shards of `replicationFactor` replicas each, the intended first leader first.
 * Throws PlacementError when fewer nodes than `replicationFactor` may hold them on distinct hosts.
 */
export function placeNewShards(view: ClusterView, count: number, replicationFactor: number): NodeId[][] {
  assert(Number.isInteger(count) && count >= 1 && Number.isInteger(replicationFactor) && replicationFactor >= 1, "placeNewShards: a count and a replication factor of at least 1");
  const nodes = view.nodes.filter(placeable).sort((a, b) => a.id - b.id);
  const replicas = new Map<NodeId, number>(nodes.map((n) => [n.id, 0]));
  const leaders = new Map<NodeId, number>(nodes.map((n) => [n.id, 0]));
  for (const s of view.shards) {
    for (const r of s.replicas) if (replicas.has(r.node)) replicas.set(r.node, replicas.get(r.node)! + 1);
    if (leaders.has(s.leader)) leaders.set(s.leader, leaders.get(s.leader)! + 1);
  }
  const out: NodeId[][] = [];
  for (let i = 0; i < count; i++) {
    const chosen: NodeView[] = [];
    while (chosen.length < replicationFactor) {
      let best: NodeView | null = null;
      let bestKey: [number, number] = [Infinity, Infinity];
      for (const n of nodes) {
        if (chosen.includes(n)) continue;
        const key: [number, number] = [domainPenalty(n.labels, chosen.map((c) => c.labels)), replicas.get(n.id)!];
        if (key[0] === Infinity) continue;
        if (key[0] < bestKey[0] || (key[0] === bestKey[0] && key[1] < bestKey[1])) [best, bestKey] = [n, key];
      }
      if (best === null) {
        throw new PlacementError(`${replicationFactor} replicas per shard need ${replicationFactor} ready, healthy nodes on distinct hosts; ${chosen.length} found`);
      }
      chosen.push(best);
      replicas.set(best.id, replicas.get(best.id)! + 1);
    }
    // The first election: the chosen voter leading the fewest shards (lowest id on a tie).
    const first = chosen.reduce((a, b) => (leaders.get(b.id)! < leaders.get(a.id)! || (leaders.get(b.id) === leaders.get(a.id) && b.id < a.id) ? b : a));
    leaders.set(first.id, leaders.get(first.id)! + 1);
    out.push([first.id, ...chosen.filter((n) => n !== first).map((n) => n.id).sort((a, b) => a - b)]);
  }
  return out;
}
