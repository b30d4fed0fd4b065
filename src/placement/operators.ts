/**
 * Operator progress, judged from the cluster view alone: a step is done when the view shows its effect.
 * That makes dispatch idempotent (the PD may ask a shard leader for the same step again after a lost
 * reply or a PD failover) and means a step whose work finished late is never redone (PD-7).
 */
import { assert } from "../util/assert.js";
import type { NodeId, NodeView, Operator, ShardView, Step } from "./types.js";

export function stepDone(step: Step, shard: ShardView): boolean {
  const replica = shard.replicas.find((r) => r.node === (step.kind === "transfer-leader" ? step.to : step.node));
  switch (step.kind) {
    case "add-learner":
      return replica !== undefined;
    case "promote":
      return replica?.role === "voter";
    case "remove-replica":
      return replica === undefined;
    case "transfer-leader":
      return shard.leader === step.to;
  }
}

/** Whether the shard leader can carry the step out now (else the operator waits, up to its timeout). */
export function stepReady(step: Step, shard: ShardView): boolean {
  if (shard.leader === 0) return false;
  switch (step.kind) {
    case "add-learner":
      return true;
    case "promote":
      // The match-index barrier: a learner is promoted only once it holds the leader's commit index.
      return shard.replicas.some((r) => r.node === step.node && r.role === "learner" && r.caughtUp);
    case "remove-replica":
      // A leader does not remove itself: the operator moves the leadership first.
      return shard.leader !== step.node;
    case "transfer-leader":
      return shard.replicas.some((r) => r.node === step.to && r.role === "voter");
  }
}

export type Progress =
  | { status: "running"; op: Operator }
  | { status: "done"; op: Operator }
  | { status: "timed-out"; op: Operator }
  /** The shard's configuration changed under the operator (another actor, or a stale PD). */
  | { status: "fenced"; op: Operator };

/** Moves the operator past every step the view shows done; ends it when all are, or on timeout or fencing. */
export function advanceOperator(op: Operator, shard: ShardView, nowMs: number, stepTimeoutMs: number): Progress {
  assert(op.stepIndex >= 0 && op.stepIndex <= op.steps.length, "operator step index out of range");
  let next = op;
  while (next.stepIndex < next.steps.length && stepDone(next.steps[next.stepIndex]!, shard)) {
    // Our own configuration changes bump the epoch: the operator follows the epoch its steps produced.
    next = { ...next, stepIndex: next.stepIndex + 1, stepStartedAtMs: nowMs, epoch: shard.epoch };
  }
  if (next.stepIndex === next.steps.length) return { status: "done", op: next };
  if (shard.epoch !== next.epoch) return { status: "fenced", op: next };
  if (nowMs - next.stepStartedAtMs > stepTimeoutMs) return { status: "timed-out", op: next };
  return { status: "running", op: next };
}

/**
 * Whether the operator's current step gives a replica or a leadership to a node that is dead, removed or
 * unknown. A leadership is not handed to a node that merely stopped answering either: a transfer to a
 * node killed just after it was chosen would otherwise hold the shard (one operator per shard) until the
 * node is declared dead, and a transfer is cheap to choose again.
 */
export function stepTargetLost(op: Operator, nodes: ReadonlyMap<NodeId, NodeView>): boolean {
  const step = op.steps[op.stepIndex];
  if (step === undefined || step.kind === "remove-replica") return false;
  const n = nodes.get(step.kind === "transfer-leader" ? step.to : step.node);
  if (n === undefined || n.health === "dead" || n.state === "removed") return true;
  return step.kind === "transfer-leader" && n.health !== "healthy";
}

/** The shards an operator holds (one operator per shard at a time): its own, and a merge's target. */
export function operatorShards(op: Operator): number[] {
  return op.reshape?.kind === "merge" ? [op.shard, op.reshape.into] : [op.shard];
}

/** What an operator does, in a word: for people and scripts (a refusal names the operator in the way). */
export function operatorKind(op: Operator): "split" | "merge" | "move" | "add-replica" | "remove-replica" | "promote" | "transfer-leader" {
  if (op.reshape !== undefined) return op.reshape.kind;
  const kinds = new Set(op.steps.map((s) => s.kind));
  if (kinds.has("add-learner")) return kinds.has("remove-replica") ? "move" : "add-replica";
  if (kinds.has("remove-replica")) return "remove-replica";
  return kinds.has("promote") ? "promote" : "transfer-leader";
}

/** Every node an operator involves (for the per-node concurrency limits). */
export function operatorNodes(op: Operator): NodeId[] {
  const nodes = new Set<NodeId>();
  for (const s of op.steps) nodes.add(s.kind === "transfer-leader" ? s.to : s.node);
  return [...nodes];
}

/** Whether the operator moves a replica (rather than only leadership): rate limits count these. */
export function movesReplica(op: Operator): boolean {
  return op.steps.some((s) => s.kind === "add-learner" || s.kind === "remove-replica");
}

/**
 * The steps that move a shard's replica from `from` to `to`: the new replica joins as a learner, is
 * promoted once caught up, the leadership moves (to `leaderTo`, default `to`) if `from` led, and only
 * then is the old one removed, so the shard never has fewer voters than it started with (PD-3, PD-5:
 * leaders move before followers).
 */
export function moveSteps(shard: ShardView, from: NodeId, to: NodeId, leaderTo: NodeId = to): Step[] {
  const steps: Step[] = [{ kind: "add-learner", node: to }, { kind: "promote", node: to }];
  if (shard.leader === from) steps.push({ kind: "transfer-leader", to: leaderTo });
  steps.push({ kind: "remove-replica", node: from });
  return steps;
}
