/**
 * What the placement driver sees and what it decides. Pure data: the PD loop on the metadata leader
 * builds a ClusterView from the metadata state machine and the nodes' heartbeats, and turns the
 * operators it gets back into Raft configuration changes on the shards' leaders.
 */
import type { Position } from "./positions.js";
import type { NodeId } from "../util/ids.js";
export type { NodeId } from "../util/ids.js";

/** Data-placement lifecycle of a node (MEM-5). Only ready, healthy nodes receive replicas. */
export type WorkerState = "joining" | "ready" | "draining" | "removed";

/** What the failure detector says of a node (MEM-6). */
export type Health = "healthy" | "unhealthy" | "dead";

/** Failure-domain labels, outermost first (PD-2). A missing label is a domain of its own. */
export interface Labels {
  zone?: string;
  rack?: string;
  host?: string;
}

export interface NodeView {
  id: NodeId;
  labels: Labels;
  state: WorkerState;
  health: Health;
  /** A node that never votes (MEM-3 analytics role): it receives no voter replica, so none at all for now. */
  learnerOnly?: boolean;
}

export type ReplicaRole = "voter" | "learner";

export interface ReplicaView {
  node: NodeId;
  role: ReplicaRole;
  /** The replica holds the leader's commit index (the match-index barrier before a promotion, PD-3). */
  caughtUp: boolean;
}

export interface ShardView {
  id: number;
  /** Bumped by every configuration change of the shard: operators carry the epoch they were made at. */
  epoch: number;
  replicas: ReplicaView[];
  /** 0 while the shard has no leader. */
  leader: NodeId;
  sizeBytes: number;
  /** Requests per second, as the leader last reported (hot-shard detection). */
  requestRate: number;
  /** A replica is being sent a snapshot (it compacts behind, or catches up): balancing backs off the shard (PD-5). */
  snapshotting?: boolean;
  /** Replicas its collection asks for; absent: the settings' replicationFactor. */
  replicationFactor?: number;
  /** Its collection declares vectors: it is split by size past `vectorSplitSizeBytes`, not `splitSizeBytes`. */
  vectors?: boolean;
}

export interface ClusterView {
  nodes: readonly NodeView[];
  shards: readonly ShardView[];
}

/** One Raft configuration change or leadership move on one shard. */
export type Step =
  | { kind: "add-learner"; node: NodeId }
  | { kind: "promote"; node: NodeId }
  | { kind: "remove-replica"; node: NodeId }
  | { kind: "transfer-leader"; to: NodeId };

/**
 * Why an operator exists: the checker or scheduler that made it. "large-shard" and "small-shards" are
 * the placement driver's own splits (by size) and merges; a split by load is "hot-shard".
 */
export type OperatorReason = "repair" | "drain" | "replica-balance" | "leader-balance" | "hot-shard" | "large-shard" | "small-shards" | "manual";

/**
 * A change of the shard map rather than of a replica set: a split (of `shard` at `at`, its upper part
 * becoming `child` once an id is reserved) or a merge (of `shard` into its lower neighbour `into`). It has
 * no Raft configuration steps: a split is done when the child is in the shard map, a merge when its
 * source is retired; either ends on the step timeout otherwise.
 */
export type Reshape =
  | { kind: "split"; at: Position; end: Position; child?: number }
  | { kind: "merge"; into: number };

/**
 * A sequence of steps on one shard (PD-7). Steps run in order; a step is done when the cluster view
 * shows its effect, so a step that timed out after its work finished is not redone.
 * Invariant: 0 <= stepIndex <= steps.length.
 */
export interface Operator {
  id: number;
  shard: number;
  /** The shard's epoch when the operator was made; a shard whose epoch moved on elsewhere fences it. */
  epoch: number;
  reason: OperatorReason;
  steps: Step[];
  stepIndex: number;
  startedAtMs: number;
  /** When the current step started (its timeout runs from here). */
  stepStartedAtMs: number;
  /** A split or a merge (its `steps` are empty); a merge holds its target shard too. */
  reshape?: Reshape;
}

export interface PlacementConfig {
  replicationFactor: number;
  /** Operators in flight that touch one node (as source or target of a replica or leadership). */
  maxMovesPerNode: number;
  /** Operators in flight in the whole cluster. */
  maxMovesTotal: number;
  /**
   * Bytes of replica moves started per node (as source or target) within `moveWindowMs`: each move
   * costs its shard's size, at least `moveCostMinBytes` (PD-5; like TiKV's store limit). Small shards
   * move freely, large ones are throttled.
   */
  maxMoveBytesPerNodePerWindow: number;
  moveWindowMs: number;
  /** The least a replica move costs against the byte budget, however small its shard. */
  moveCostMinBytes: number;
  /** A step not done within this is abandoned (its operator ends; finished steps stand). */
  stepTimeoutMs: number;
  /** Replica counts within this fraction of the ideal count per node are balanced (hysteresis). */
  replicaTolerance: number;
  /** Leader counts within this fraction of the ideal count per node are balanced. */
  leaderTolerance: number;
  /** A node serving more than this multiple of the mean request rate is hot. */
  hotNodeFactor: number;
  /** A shard that moved (replica or leader) is left alone for this long, so that nothing oscillates. */
  shardCooldownMs: number;
  /** The placement driver's cycle: the cooldown between two scheduling decisions. */
  scheduleIntervalMs: number;
  /** A node silent this long is dead (MEM-6): its replicas are rebuilt elsewhere (see README: why 15 s). */
  nodeDeadAfterMs: number;
  /**
   * A dead node silent this long, once it holds no replica, is removed from the cluster (MEM-6). Until
   * then it may come back as itself (a restart, a reboot) and is given replicas again.
   */
  nodeRemoveAfterMs: number;
  /** A metadata learner waiting this long for a partner to be promoted with stops waiting (MEM-2). */
  pairingWaitMs: number;
  /** A ready metadata learner not promoted within this becomes a standby learner (MEM-2). */
  promotionWindowMs: number;
  /** A metadata learner lagging or silent this long is stale: downgraded (not promotable) and alerted (MEM-4). */
  staleLearnerMs: number;
  /** A shard serving more requests per second than this is split in two (PD-6); 0 turns it off. */
  splitRequestRate: number;
  /** A shard holding more bytes than this is split in two (PD-6); 0 turns it off. */
  splitSizeBytes: number;
  /**
   * The same for a shard of a collection with vectors. Each such shard is a graph that every search of
   * the collection walks, so more shards cost every search more work (bench:vectors: 6 shards answered
   * 0.4x the searches per second of 1 on 3 nodes); 0 turns it off.
   */
  vectorSplitSizeBytes: number;
  /** Neighbouring shards holding at most this many records together are merged (PD-6); 0 turns it off. */
  mergeBelowRecords: number;
  /** A shard remembers the outcome of a write with an idempotency key this long (a retry within it is answered, not applied). */
  idempotencyKeyTtlMs: number;
  /** ... and at most this many keys per shard (the oldest are forgotten first). */
  idempotencyKeysPerShardMax: number;
  /**
   * A shard split by hand is not merged by the placement driver for this long (its parent and its new
   * shard alike), so that an automatic merge does not undo what the cluster's operator asked for; 0 turns it off.
   */
  manualSplitCooldownMs: number;
}

export const DEFAULT_PLACEMENT: PlacementConfig = {
  replicationFactor: 3,
  maxMovesPerNode: 128,
  maxMovesTotal: 1024,
  maxMoveBytesPerNodePerWindow: 1 << 30,
  moveWindowMs: 60_000,
  moveCostMinBytes: 1 << 20,
  stepTimeoutMs: 120_000,
  replicaTolerance: 0.05,
  leaderTolerance: 0.1,
  hotNodeFactor: 1.5,
  shardCooldownMs: 30_000,
  scheduleIntervalMs: 1000,
  nodeDeadAfterMs: 15_000,
  nodeRemoveAfterMs: 300_000,
  pairingWaitMs: 120_000,
  promotionWindowMs: 300_000,
  staleLearnerMs: 60_000,
  splitRequestRate: 5000,
  splitSizeBytes: 64 << 20,
  vectorSplitSizeBytes: 1 << 30,
  mergeBelowRecords: 1000,
  idempotencyKeyTtlMs: 3_600_000,
  idempotencyKeysPerShardMax: 50_000,
  manualSplitCooldownMs: 600_000,
};

/**
 * Settings as an earlier version may have stored them: the ones it lacks take their defaults, the ones
 * no longer known are dropped (e.g. maxMovesPerNodePerWindow, a count, became a byte budget).
 */
export function upgradePlacementConfig(stored: Readonly<Record<string, unknown>>): PlacementConfig {
  const out = { ...DEFAULT_PLACEMENT };
  for (const k of Object.keys(out) as (keyof PlacementConfig)[]) {
    if (Object.hasOwn(stored, k)) out[k] = stored[k] as number;
  }
  return out;
}

/** Checks a configuration before it applies (PD-8): a list of what is wrong, empty when valid. */
export function validatePlacementConfig(c: PlacementConfig): string[] {
  const errors: string[] = [];
  const positiveInt = (name: keyof PlacementConfig) => {
    const v = c[name];
    if (!Number.isInteger(v) || v < 1) errors.push(`${name} must be a positive integer, got ${v}`);
  };
  positiveInt("replicationFactor");
  positiveInt("maxMovesPerNode");
  positiveInt("maxMovesTotal");
  positiveInt("maxMoveBytesPerNodePerWindow");
  positiveInt("moveCostMinBytes");
  positiveInt("moveWindowMs");
  positiveInt("stepTimeoutMs");
  positiveInt("scheduleIntervalMs");
  positiveInt("nodeDeadAfterMs");
  positiveInt("nodeRemoveAfterMs");
  positiveInt("pairingWaitMs");
  positiveInt("promotionWindowMs");
  positiveInt("staleLearnerMs");
  positiveInt("idempotencyKeyTtlMs");
  positiveInt("idempotencyKeysPerShardMax");
  if (!(c.replicaTolerance >= 0 && c.replicaTolerance < 1)) errors.push(`replicaTolerance must be in [0, 1), got ${c.replicaTolerance}`);
  if (!(c.leaderTolerance >= 0 && c.leaderTolerance < 1)) errors.push(`leaderTolerance must be in [0, 1), got ${c.leaderTolerance}`);
  if (!(c.hotNodeFactor > 1)) errors.push(`hotNodeFactor must be above 1, got ${c.hotNodeFactor}`);
  if (!(Number.isInteger(c.shardCooldownMs) && c.shardCooldownMs >= 0)) errors.push(`shardCooldownMs must be a non-negative integer, got ${c.shardCooldownMs}`);
  if (!(Number.isInteger(c.manualSplitCooldownMs) && c.manualSplitCooldownMs >= 0)) errors.push(`manualSplitCooldownMs must be a non-negative integer, got ${c.manualSplitCooldownMs}`);
  if (!(Number.isInteger(c.mergeBelowRecords) && c.mergeBelowRecords >= 0)) errors.push(`mergeBelowRecords must be a non-negative integer, got ${c.mergeBelowRecords}`);
  if (!(Number.isInteger(c.splitSizeBytes) && c.splitSizeBytes >= 0)) errors.push(`splitSizeBytes must be a non-negative integer, got ${c.splitSizeBytes}`);
  if (!(Number.isInteger(c.vectorSplitSizeBytes) && c.vectorSplitSizeBytes >= 0)) errors.push(`vectorSplitSizeBytes must be a non-negative integer, got ${c.vectorSplitSizeBytes}`);
  if (!(c.splitRequestRate >= 0)) errors.push(`splitRequestRate must be 0 (off) or positive, got ${c.splitRequestRate}`);
  if (c.maxMovesPerNode > c.maxMovesTotal) errors.push("maxMovesPerNode must not exceed maxMovesTotal");
  if (c.nodeRemoveAfterMs < c.nodeDeadAfterMs) errors.push("nodeRemoveAfterMs must not be below nodeDeadAfterMs");
  if (c.moveCostMinBytes > c.maxMoveBytesPerNodePerWindow) errors.push("moveCostMinBytes must not exceed maxMoveBytesPerNodePerWindow");
  return errors;
}
