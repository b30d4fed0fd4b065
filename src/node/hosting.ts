/**
 * Which shard groups a node hosts: exactly those whose replica set, as the metadata records it, names
 * the node. The metadata follows each shard's Raft configuration (its leader mirrors every applied
 * change), so a replica added by a configuration change appears here shortly after, and one removed
 * disappears. Pure: (metadata, node, hosted groups) -> groups to create and to drop.
 *
 * Drops are only decided on a metadata state that has caught up (the caller checks): after a restart the
 * metadata replays its log from the state store's applied index, and an intermediate state may predate
 * the change that placed a replica here; dropping on it would throw away a live replica.
 */
import type { MetaState, ShardRecord } from "../meta/state.js";
import type { NodeId } from "../placement/types.js";

export interface HostingChanges {
  /** Shards placed here that this node does not host yet: created empty, filled by the leader (snapshot, log). */
  create: number[];
  /** Shards hosted here that the metadata knows and no longer places here, or dropped with their collection. */
  drop: number[];
}

export function hostingChanges(meta: Readonly<MetaState>, self: NodeId, hosted: ReadonlySet<number>, caughtUp: boolean,
  appliedOf: (group: number) => number): HostingChanges {
  const create: number[] = [];
  const drop: number[] = [];
  // A split's child is made here by the split itself when this node's replica of the parent applies
  // it; an empty one made first would be a second, different start of the same group. So is a child of
  // such a child (split again elsewhere while this node lagged): its parent will be made here, then split
  // here. Bounded by the shard map's size (the origins form a forest).
  const madeBySplit = (id: number, depth: number): boolean => {
    const origin = meta.shards.get(id)?.origin;
    if (origin === undefined || depth > meta.shards.size) return false;
    if (hosted.has(origin.parent)) return appliedOf(origin.parent) < origin.index;
    return madeBySplit(origin.parent, depth + 1);
  };
  for (const shard of meta.shards.values()) {
    const placed = shard.replicas.some((r) => r.node === self);
    if (placed && !hosted.has(shard.id) && !madeBySplit(shard.id, 0)) create.push(shard.id);
    // A shard the metadata does not know yet (a founder's, before the collection is recorded) stays.
    if (!placed && hosted.has(shard.id) && caughtUp) drop.push(shard.id);
  }
  // A dropped collection's shards left the map; their replicas go.
  if (caughtUp) for (const id of hosted) if (meta.droppedShards.has(id)) drop.push(id);
  return { create, drop };
}

/**
 * Whether `self` starts `shard`'s group itself, from the configuration the metadata recorded: the shard
 * is as created (epoch 1: no configuration change mirrored since, no split or merge changed its range;
 * not made by a split) and `self` is one of the voters it was born with. Otherwise a replica placed here
 * starts empty and its leader fills it (a snapshot): started from a later range, a replica would replay
 * the splits and merges it already shows and skip what they moved.
 */
export function bornWithVoters(shard: Readonly<ShardRecord>, self: NodeId): boolean {
  return shard.epoch === 1 && shard.confIndex === 0 && shard.origin === undefined && shard.retiredInto === undefined &&
    shard.replicas.every((r) => r.role === "voter") && shard.replicas.some((r) => r.node === self);
}
