/**
 * The placement driver's decision function (PD-1 … PD-7): pure, (cluster view, state, config, now) ->
 * (new state, operators started and ended, steps to dispatch). The PD loop on the metadata leader calls
 * it once per cycle (the cooldown between cycles is the loop's interval), records operators in the
 * metadata group, and sends each dispatched step to the shard's leader.
 */
import { balanceLeaders, balanceReplicas, relieveHotNodes } from "./balance.js";
import { drain, repair } from "./checkers.js";
import { CycleContext, type RecentMove, moveCostBytes } from "./context.js";
import { advanceOperator, movesReplica, operatorNodes, operatorShards, stepReady, stepTargetLost } from "./operators.js";
import { manualSplitCooldownMs, reshapeProgress } from "./reshape.js";
import type { ClusterView, NodeId, Operator, PlacementConfig, Step } from "./types.js";

export interface PlacementState {
  operators: readonly Operator[];
  nextOperatorId: number;
  /** Replica moves started recently, for the per-node byte budget of the window; pruned to the window. */
  recentMoves: readonly RecentMove[];
  /** When the last operator on each shard ended (balancing leaves the shard alone for a cooldown). */
  shardSettledAtMs: ReadonlyMap<number, number>;
  /**
   * Shards split by hand (parent and new shard) and when, pruned past `manualSplitCooldownMs`: the
   * placement driver does not merge them meanwhile (see pickMerge). A merge asked by hand forgets them.
   */
  manualSplitAtMs: ReadonlyMap<number, number>;
}

export const INITIAL_PLACEMENT_STATE: PlacementState = { operators: [], nextOperatorId: 1, recentMoves: [], shardSettledAtMs: new Map(), manualSplitAtMs: new Map() };

export type Outcome = "done" | "timed-out" | "fenced" | "cancelled";

export interface CycleResult {
  state: PlacementState;
  started: Operator[];
  ended: { op: Operator; outcome: Outcome }[];
  /** The step each running operator needs now, for the shard's leader (dispatch is idempotent). */
  dispatch: { op: Operator; step: Step; leader: NodeId }[];
}

export function placementCycle(view: ClusterView, state: PlacementState, cfg: PlacementConfig, nowMs: number): CycleResult {
  const shards = new Map(view.shards.map((s) => [s.id, s]));
  const nodes = new Map(view.nodes.map((n) => [n.id, n]));
  const running: Operator[] = [];
  const ended: CycleResult["ended"] = [];
  // Bounded by the shard count, and pruned of entries past the cooldown.
  const settled = new Map([...state.shardSettledAtMs].filter(([, at]) => nowMs - at < cfg.shardCooldownMs));
  for (const op of state.operators) {
    if (op.reshape !== undefined) {
      // Splits and merges have no steps: the shard map says when they are done.
      const outcome = reshapeProgress(op, op.reshape, new Set(shards.keys()), nowMs, cfg.stepTimeoutMs);
      if (outcome === "running") {
        running.push(op);
      } else {
        ended.push({ op, outcome });
        for (const id of operatorShards(op)) settled.set(id, nowMs);
      }
      continue;
    }
    const shard = shards.get(op.shard);
    if (shard === undefined) {
      ended.push({ op, outcome: "cancelled" });
      continue;
    }
    const p = advanceOperator(op, shard, nowMs, cfg.stepTimeoutMs);
    if (p.status === "running" && stepTargetLost(p.op, nodes)) {
      // Its next step needs a node that is gone: waiting out the step's timeout would only hold the
      // shard back from repair (one operator per shard).
      ended.push({ op: p.op, outcome: "cancelled" });
      settled.set(op.shard, nowMs);
    } else if (p.status === "running") {
      running.push(p.op);
    } else {
      ended.push({ op: p.op, outcome: p.status });
      settled.set(op.shard, nowMs);
    }
  }
  const recentMoves = state.recentMoves.filter((m) => nowMs - m.atMs < cfg.moveWindowMs);
  const ctx = new CycleContext(view.shards, view.nodes, running, recentMoves, cfg, nowMs, state.nextOperatorId);
  // Priority order: what must happen (repair, drain) before what would be nice (balance).
  repair(ctx);
  drain(ctx);
  const replicasBalanced = balanceReplicas(ctx, settled);
  // Leaderships follow the replicas: balanced once the replica layout is settled, or a leadership
  // moved now could be moved back when the replicas under it move.
  if (replicasBalanced && !running.some(movesReplica) && !ctx.started.some(movesReplica)) balanceLeaders(ctx, settled);
  relieveHotNodes(ctx, settled);
  const operators = [...running, ...ctx.started];
  const newMoves = ctx.started.filter(movesReplica).map((op) => ({ atMs: nowMs, nodes: operatorNodes(op), bytes: moveCostBytes(cfg, shards.get(op.shard)!) }));
  const dispatch: CycleResult["dispatch"] = [];
  for (const op of operators) {
    if (op.reshape !== undefined) continue;
    const shard = shards.get(op.shard)!;
    const step = op.steps[op.stepIndex]!;
    if (stepReady(step, shard)) dispatch.push({ op, step, leader: shard.leader });
  }
  return {
    state: {
      operators, nextOperatorId: ctx.nextOperatorId, recentMoves: [...recentMoves, ...newMoves], shardSettledAtMs: settled,
      manualSplitAtMs: new Map([...state.manualSplitAtMs].filter(([, at]) => nowMs - at < manualSplitCooldownMs(cfg))),
    },
    started: ctx.started,
    ended,
    dispatch,
  };
}
