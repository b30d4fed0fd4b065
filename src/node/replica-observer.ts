/**
 * What a service above the node (data/: payload and vector indexes per replica) is told about the shard
 * replicas of this node, on the node's loop, synchronously: so it must only take note (post a message,
 * queue work), never do the work there. Changes arrive in apply order, once staged in the state store,
 * so a read of the store after the call sees them.
 */
import type { GroupChanges } from "../storage/state-store.js";

export type { GroupChanges };

export interface ReplicaObserver {
  /**
   * The records one turn applied, per shard group: puts and deletes of record ids (and of remembered
   * idempotency outcomes, under keys from RECORDS_END on, which an index skips). A split child's first
   * records come here too, before the child is hosted.
   */
  applied(changes: readonly GroupChanges[]): void;
  /** A snapshot replaced the replica's records wholesale. */
  replaced(group: number): void;
  /** The replica left this node (moved away, or its shard was merged and retired). */
  dropped(group: number): void;
}
