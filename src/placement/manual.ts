/**
 * Operators asked for by an operator of the cluster (PD-7): move a replica, transfer a leadership,
 * cancel a running operator. Pure: (view, scheduler state, request, now) -> new state or a refusal with
 * a machine-readable code. A manual operator runs like any other (judged from the view, fenced by its
 * epoch, timed out per step) and counts against the in-flight limits; it refuses a shard that already
 * has an operator, so that two never fight over one shard.
 */
import { moveSteps } from "./operators.js";
import type { PlacementState } from "./scheduler.js";
import type { ClusterView, NodeId, Operator, Step } from "./types.js";

export type ManualRequest =
  | { kind: "move"; shard: number; from: NodeId; to: NodeId }
  | { kind: "transfer-leader"; shard: number; to: NodeId }
  | { kind: "cancel"; operator: number };

export type ManualResult =
  | { ok: true; state: PlacementState; operator: Operator; ended: boolean }
  | { ok: false; code: string; message: string };

const refuse = (code: string, message: string): ManualResult => ({ ok: false, code, message });

/** The refusal for work on shards that have an operator running (one actor per shard at a time), or null. */
export function busyRefusal(state: PlacementState, shards: readonly number[]): { ok: false; code: string; message: string } | null {
  const busy = state.operators.find((o) => shards.includes(o.shard));
  return busy === undefined ? null : refuse("shard_busy", `shard ${busy.shard} has operator ${busy.id} running (${busy.reason}); cancel it first`) as { ok: false; code: string; message: string };
}

export function manualOperator(view: ClusterView, state: PlacementState, req: ManualRequest, nowMs: number): ManualResult {
  if (req.kind === "cancel") {
    const op = state.operators.find((o) => o.id === req.operator);
    if (op === undefined) return refuse("operator_not_found", `no running operator ${req.operator}`);
    // Finished steps stand; an added learner left unpromoted is surplus, and repair removes it.
    const settled = new Map(state.shardSettledAtMs);
    settled.set(op.shard, nowMs);
    return { ok: true, state: { ...state, operators: state.operators.filter((o) => o !== op), shardSettledAtMs: settled }, operator: op, ended: true };
  }
  const shard = view.shards.find((s) => s.id === req.shard);
  if (shard === undefined) return refuse("shard_not_found", `no shard ${req.shard}`);
  const busy = busyRefusal(state, [shard.id]);
  if (busy !== null) return busy;
  const placeable = (id: NodeId) => view.nodes.some((n) => n.id === id && n.state === "ready" && n.health === "healthy" && n.learnerOnly !== true);
  let steps: Step[];
  if (req.kind === "move") {
    if (!shard.replicas.some((r) => r.node === req.from)) return refuse("replica_not_found", `node ${req.from} holds no replica of shard ${shard.id}`);
    if (shard.replicas.some((r) => r.node === req.to)) return refuse("replica_exists", `node ${req.to} already holds a replica of shard ${shard.id}`);
    if (!placeable(req.to)) return refuse("node_not_placeable", `node ${req.to} is not a ready, healthy node`);
    // If `from` leads, the leadership goes to the new replica once it votes.
    steps = moveSteps(shard, req.from, req.to);
  } else {
    if (!shard.replicas.some((r) => r.node === req.to && r.role === "voter")) return refuse("not_a_voter", `node ${req.to} holds no voter of shard ${shard.id}`);
    if (shard.leader === req.to) return refuse("already_leader", `node ${req.to} leads shard ${shard.id} already`);
    steps = [{ kind: "transfer-leader", to: req.to }];
  }
  const operator: Operator = {
    id: state.nextOperatorId, shard: shard.id, epoch: shard.epoch, reason: "manual", steps, stepIndex: 0, startedAtMs: nowMs, stepStartedAtMs: nowMs,
  };
  return { ok: true, state: { ...state, operators: [...state.operators, operator], nextOperatorId: state.nextOperatorId + 1 }, operator, ended: false };
}
