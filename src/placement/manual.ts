/**
 * Operators asked for by an operator of the cluster (PD-7): move a replica, transfer a leadership,
 * cancel a running operator. Pure: (view, scheduler state, request, now) -> new state or a refusal with
 * a machine-readable code. A manual operator runs like any other (judged from the view, fenced by its
 * epoch, timed out per step) and counts against the in-flight limits; it refuses a shard that already
 * has an operator, so that two never fight over one shard, and the refusal names that operator (a caller
 * may wait for it to end: see Gateway.placementWaiting in node/gateway.ts).
 */
import { moveSteps, operatorKind, operatorShards } from "./operators.js";
import type { PlacementState } from "./scheduler.js";
import type { ClusterView, NodeId, Operator, Step } from "./types.js";

/** A running operator as a refusal names it: enough to wait for it, cancel it, or tell a person. */
export interface OperatorSummary {
  id: number;
  shard: number;
  kind: ReturnType<typeof operatorKind>;
  reason: Operator["reason"];
  /** The current step, in words ("2/3 promote 4", "merge into shard 1"). */
  step: string;
  startedAtMs: number;
  /** startedAtMs as an ISO 8601 time. */
  started: string;
}

export type Refusal = { ok: false; code: string; message: string; operator?: OperatorSummary };

export function summarizeOperator(op: Operator): OperatorSummary {
  const r = op.reshape;
  const current = op.steps[op.stepIndex];
  const step = r?.kind === "split" ? `split at ${r.at}${r.child !== undefined ? ` into shard ${r.child}` : ""}`
    : r?.kind === "merge" ? `merge into shard ${r.into}`
    : current === undefined ? "finishing"
    : `${op.stepIndex + 1}/${op.steps.length} ${current.kind} ${current.kind === "transfer-leader" ? current.to : current.node}`;
  return { id: op.id, shard: op.shard, kind: operatorKind(op), reason: op.reason, step, startedAtMs: op.startedAtMs, started: isoTime(op.startedAtMs) };
}

/**
 * A UTC time as ISO 8601 ("2026-12-03T10:14:02.123Z"), computed rather than read from Date: this layer
 * touches no clock (civil-from-days, H. Hinnant's algorithm).
 */
export function isoTime(ms: number): string {
  const days = Math.floor(ms / 86_400_000);
  const msOfDay = ms - days * 86_400_000;
  const z = days + 719_468;
  const era = Math.floor(z / 146_097);
  const doe = z - era * 146_097;
  const yoe = Math.floor((doe - Math.floor(doe / 1460) + Math.floor(doe / 36_524) - Math.floor(doe / 146_096)) / 365);
  const doy = doe - (365 * yoe + Math.floor(yoe / 4) - Math.floor(yoe / 100));
  const mp = Math.floor((5 * doy + 2) / 153);
  const day = doy - Math.floor((153 * mp + 2) / 5) + 1;
  const month = mp < 10 ? mp + 3 : mp - 9;
  const year = yoe + era * 400 + (month <= 2 ? 1 : 0);
  const pad = (n: number, w = 2) => String(n).padStart(w, "0");
  const [h, m, sec, milli] = [Math.floor(msOfDay / 3_600_000), Math.floor(msOfDay / 60_000) % 60, Math.floor(msOfDay / 1000) % 60, msOfDay % 1000];
  return `${pad(year, 4)}-${pad(month)}-${pad(day)}T${pad(h)}:${pad(m)}:${pad(sec)}.${pad(milli, 3)}Z`;
}

export type ManualRequest =
  | { kind: "move"; shard: number; from: NodeId; to: NodeId }
  | { kind: "transfer-leader"; shard: number; to: NodeId }
  | { kind: "cancel"; operator: number };

export type ManualResult =
  | { ok: true; state: PlacementState; operator: Operator; ended: boolean }
  | Refusal;

const refuse = (code: string, message: string): Refusal => ({ ok: false, code, message });

/**
 * The refusal for work on shards that have an operator running (one actor per shard at a time), or
 * null. It names the operator in its message and as `operator`, so a caller can wait for that one.
 */
export function busyRefusal(state: PlacementState, shards: readonly number[]): Refusal | null {
  // The shard asked about first (a merge's source before its target): that is the operator to name.
  const held = shards.find((id) => state.operators.some((o) => operatorShards(o).includes(id)));
  if (held === undefined) return null;
  const o = summarizeOperator(state.operators.find((op) => operatorShards(op).includes(held))!);
  return {
    ok: false, code: "shard_busy", operator: o,
    message: `shard ${held} has operator ${o.id} running (${o.kind}, ${o.reason}; step ${o.step}; started ${o.started}): wait for it (waitMs, --wait) or cancel it`,
  };
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
