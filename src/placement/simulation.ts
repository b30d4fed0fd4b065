/**
 * A scheduler simulation without processes (issue 4): a simulated cluster that carries out the steps
 * the scheduler dispatches (learners catch up after a time that grows with the shard's size), one PD
 * cycle per simulated second. Scenarios: scale-out, drain, node death, a hot shard. Deterministic: the
 * seed fixes shard sizes and loads; the same seed gives the same run.
 */
import { Rng } from "../util/rng.js";
import { replicaBand } from "./balance.js";
import { operatorNodes } from "./operators.js";
import { INITIAL_PLACEMENT_STATE, type PlacementState, placementCycle } from "./scheduler.js";
import type { NodeId, NodeView, Operator, PlacementConfig, ShardView, Step } from "./types.js";

export interface SimOptions {
  nodes: number;
  shards: number;
  zones: number;
  seed: number;
  cfg: PlacementConfig;
  /** Catch-up speed of a new learner (snapshot streaming). */
  snapshotBytesPerSec: number;
  /** Simulated time limit after the event. */
  maxSeconds: number;
}

export type ScenarioEvent =
  | { kind: "scale-out"; add: number }
  | { kind: "drain"; node: NodeId }
  | { kind: "kill"; node: NodeId }
  /** The shards led by `node` get `factor` times their request rate. */
  | { kind: "hot-node"; node: NodeId; shards: number; factor: number };

export interface ScenarioResult {
  scenario: string;
  /** Replica moves made (learners added) and leadership transfers made. */
  replicaMoves: number;
  leaderTransfers: number;
  /** The fewest replica moves that could reach the settled state (see minimumMoves). */
  minimumMoves: number;
  settleSeconds: number | null;
  /** Replica-count imbalance: the largest |count - ideal| / ideal over placeable nodes. */
  replicaImbalanceStart: number;
  replicaImbalanceEnd: number;
  leaderImbalanceEnd: number;
  /** Samples over time: [seconds, replica imbalance, leader imbalance]. */
  timeline: [number, number, number][];
  maxInFlightPerNode: number;
  maxInFlightTotal: number;
  /** The most bytes of replica moves started per node within one window (see maxMoveBytesPerNodePerWindow). */
  maxMoveBytesPerNodeInWindow: number;
  /** A shard given a replica back on a node it lost one from after the event. */
  replicaOscillations: number;
  /** A shard's leadership moved back to a node it left after the event. */
  leaderOscillations: number;
  /** Operators that ended other than done. */
  failedOperators: number;
  /** Peak request load on one node over the mean (hot-shard scenario). */
  hotLoadStart: number;
  hotLoadEnd: number;
}

/** The cluster the simulation runs: mutable, changed only by carrying out steps and by events. */
class SimCluster {
  readonly nodes: NodeView[] = [];
  readonly shards: ShardView[] = [];
  /** When a learner being added is caught up: key `${shard}:${node}`. */
  private readonly catchUpAtMs = new Map<string, number>();
  replicaMoves = 0;
  leaderTransfers = 0;
  /** Nodes each shard lost a replica from, and a leadership from (oscillation detection). */
  private readonly leftReplica = new Map<number, Set<NodeId>>();
  private readonly leftLeader = new Map<number, Set<NodeId>>();
  replicaOscillations = 0;
  leaderOscillations = 0;

  /** Starts counting oscillations afresh (at the scenario's event). */
  resetOscillations(): void {
    this.leftReplica.clear();
    this.leftLeader.clear();
    this.replicaOscillations = 0;
    this.leaderOscillations = 0;
  }

  constructor(private readonly opts: SimOptions, rng: Rng) {
    for (let id = 1; id <= opts.nodes; id++) this.addNode(id);
    const rf = opts.cfg.replicationFactor;
    for (let s = 1; s <= opts.shards; s++) {
      // Consecutive nodes sit in different zones: each shard spans rf zones; every node holds the same count.
      const replicas = Array.from({ length: rf }, (_, j) => ({ node: ((s - 1) * rf + j) % opts.nodes + 1, role: "voter" as const, caughtUp: true }));
      this.shards.push({
        id: s, epoch: 1, replicas, leader: replicas[(s - 1) % rf]!.node,
        sizeBytes: rng.range(1, 64) << 20, requestRate: rng.range(10, 100),
      });
    }
  }

  addNode(id: NodeId): void {
    this.nodes.push({ id, labels: { zone: `z${id % this.opts.zones}`, host: `h${id}` }, state: "ready", health: "healthy" });
  }

  carryOut(step: Step, shard: ShardView, nowMs: number): void {
    switch (step.kind) {
      case "add-learner":
        if (shard.replicas.some((r) => r.node === step.node)) return;
        if (this.leftReplica.get(shard.id)?.has(step.node)) this.replicaOscillations++;
        shard.replicas.push({ node: step.node, role: "learner", caughtUp: false });
        shard.epoch++;
        this.replicaMoves++;
        this.catchUpAtMs.set(`${shard.id}:${step.node}`, nowMs + 1000 + (1000 * shard.sizeBytes) / this.opts.snapshotBytesPerSec);
        return;
      case "promote": {
        const r = shard.replicas.find((x) => x.node === step.node);
        if (r === undefined || !r.caughtUp || r.role === "voter") return;
        r.role = "voter";
        shard.epoch++;
        return;
      }
      case "remove-replica": {
        if (shard.leader === step.node) return;
        const before = shard.replicas.length;
        shard.replicas = shard.replicas.filter((x) => x.node !== step.node);
        if (shard.replicas.length === before) return;
        shard.epoch++;
        note(this.leftReplica, shard.id, step.node);
        return;
      }
      case "transfer-leader":
        if (!shard.replicas.some((r) => r.node === step.to && r.role === "voter") || shard.leader === step.to) return;
        if (this.leftLeader.get(shard.id)?.has(step.to)) this.leaderOscillations++;
        note(this.leftLeader, shard.id, shard.leader);
        shard.leader = step.to;
        this.leaderTransfers++;
        return;
    }
  }

  /** Learners finish catching up; shards whose leader's node died elect a live voter. */
  tick(nowMs: number): void {
    const dead = new Set(this.nodes.filter((n) => n.health === "dead").map((n) => n.id));
    for (const shard of this.shards) {
      for (const r of shard.replicas) {
        if (r.caughtUp) continue;
        const at = this.catchUpAtMs.get(`${shard.id}:${r.node}`);
        if (at !== undefined && at <= nowMs) {
          r.caughtUp = true;
          this.catchUpAtMs.delete(`${shard.id}:${r.node}`);
        }
      }
      if (dead.has(shard.leader)) shard.leader = shard.replicas.find((r) => r.role === "voter" && !dead.has(r.node))?.node ?? 0;
    }
  }
}

function note(left: Map<number, Set<NodeId>>, shard: number, node: NodeId): void {
  let set = left.get(shard);
  if (set === undefined) left.set(shard, (set = new Set()));
  set.add(node);
}

function imbalance(counts: number[]): number {
  if (counts.length === 0) return 0;
  const ideal = counts.reduce((a, b) => a + b, 0) / counts.length;
  return ideal === 0 ? 0 : Math.max(...counts.map((c) => Math.abs(c - ideal))) / ideal;
}

function measure(cluster: SimCluster): { replica: number; leader: number; hotLoad: number; counts: number[] } {
  const placeable = cluster.nodes.filter((n) => n.state === "ready" && n.health === "healthy").map((n) => n.id);
  const replicas = new Map(placeable.map((id) => [id, 0]));
  const leaders = new Map(placeable.map((id) => [id, 0]));
  const load = new Map(placeable.map((id) => [id, 0]));
  for (const s of cluster.shards) {
    for (const r of s.replicas) if (replicas.has(r.node)) replicas.set(r.node, replicas.get(r.node)! + 1);
    if (leaders.has(s.leader)) {
      leaders.set(s.leader, leaders.get(s.leader)! + 1);
      load.set(s.leader, load.get(s.leader)! + s.requestRate);
    }
  }
  const loads = [...load.values()];
  const meanLoad = loads.reduce((a, b) => a + b, 0) / Math.max(1, loads.length);
  return {
    replica: imbalance([...replicas.values()]), leader: imbalance([...leaders.values()]),
    hotLoad: meanLoad === 0 ? 0 : Math.max(...loads) / meanLoad, counts: [...replicas.values()],
  };
}

/** Fewest replica moves that bring every placeable node inside the tolerance band, plus moves the event forces. */
export function minimumMoves(counts: number[], tolerance: number, forced: number): number {
  const total = counts.reduce((a, b) => a + b, 0) + forced;
  const { low, high } = replicaBand(total, counts.length, tolerance);
  let excess = 0;
  let deficit = 0;
  for (const c of counts) {
    excess += Math.max(0, c - high);
    deficit += Math.max(0, low - c);
  }
  // Forced moves (off a drained or dead node) land on nodes below the band first, so they count once.
  return forced + Math.max(excess, deficit - forced, 0);
}

export function runScenario(name: string, event: ScenarioEvent, opts: SimOptions): ScenarioResult {
  const rng = new Rng(opts.seed);
  const cluster = new SimCluster(opts, rng);
  let state: PlacementState = INITIAL_PLACEMENT_STATE;
  let nowMs = 0;
  const step = (): { started: number; running: number; failed: number } => {
    nowMs += 1000;
    cluster.tick(nowMs);
    const r = placementCycle({ nodes: cluster.nodes, shards: cluster.shards }, state, opts.cfg, nowMs);
    state = r.state;
    const byId = new Map(cluster.shards.map((s) => [s.id, s]));
    for (const d of r.dispatch) cluster.carryOut(d.step, byId.get(d.op.shard)!, nowMs);
    return { started: r.started.length, running: r.state.operators.length, failed: r.ended.filter((e) => e.outcome !== "done").length };
  };
  // Settle the initial layout (leader balance may move a few leaderships), then count from the event.
  for (let i = 0; i < 600; i++) if (step().running === 0 && i > 5) break;
  const baseMoves = cluster.replicaMoves;
  const baseTransfers = cluster.leaderTransfers;
  cluster.resetOscillations();
  let forced = 0;
  switch (event.kind) {
    case "scale-out":
      for (let i = 0; i < event.add; i++) cluster.addNode(cluster.nodes.length + 1);
      break;
    case "drain":
    case "kill": {
      const n = cluster.nodes.find((x) => x.id === event.node)!;
      if (event.kind === "drain") n.state = "draining";
      else n.health = "dead";
      forced = cluster.shards.filter((s) => s.replicas.some((r) => r.node === event.node)).length;
      break;
    }
    case "hot-node":
      for (const s of cluster.shards.filter((x) => x.leader === event.node).slice(0, event.shards)) s.requestRate *= event.factor;
      break;
  }
  const start = measure(cluster);
  const result: ScenarioResult = {
    scenario: name, replicaMoves: 0, leaderTransfers: 0,
    minimumMoves: minimumMoves(start.counts, opts.cfg.replicaTolerance, event.kind === "kill" || event.kind === "drain" ? forced : 0),
    settleSeconds: null, replicaImbalanceStart: start.replica, replicaImbalanceEnd: 0, leaderImbalanceEnd: 0, timeline: [],
    maxInFlightPerNode: 0, maxInFlightTotal: 0, maxMoveBytesPerNodeInWindow: 0, replicaOscillations: 0, leaderOscillations: 0, failedOperators: 0,
    hotLoadStart: start.hotLoad, hotLoadEnd: 0,
  };
  const sampleEvery = Math.max(1, Math.floor(opts.maxSeconds / 200));
  let quietCycles = 0;
  for (let sec = 1; sec <= opts.maxSeconds; sec++) {
    const { started, running, failed } = step();
    trackLimits(result, state.operators, state, new Set(cluster.nodes.filter((n) => n.health === "dead").map((n) => n.id)));
    result.failedOperators += failed;
    if (sec % sampleEvery === 0) {
      const m = measure(cluster);
      result.timeline.push([sec, m.replica, m.leader]);
    }
    quietCycles = started === 0 && running === 0 ? quietCycles + 1 : 0;
    // Settled: nothing ran for longer than a cooldown and a rate window (either could be holding a move back).
    if (quietCycles * 1000 > Math.max(opts.cfg.shardCooldownMs, opts.cfg.moveWindowMs)) {
      result.settleSeconds = sec - quietCycles;
      break;
    }
  }
  const end = measure(cluster);
  result.replicaMoves = cluster.replicaMoves - baseMoves;
  result.leaderTransfers = cluster.leaderTransfers - baseTransfers;
  result.replicaOscillations = cluster.replicaOscillations;
  result.leaderOscillations = cluster.leaderOscillations;
  result.replicaImbalanceEnd = end.replica;
  result.leaderImbalanceEnd = end.leader;
  result.hotLoadEnd = end.hotLoad;
  return result;
}

function trackLimits(result: ScenarioResult, operators: readonly Operator[], state: PlacementState, dead: ReadonlySet<NodeId>): void {
  result.maxInFlightTotal = Math.max(result.maxInFlightTotal, operators.length);
  // The limits hold for the nodes that do the work (a dead node's replicas are removed at no cost to it).
  const perNode = new Map<NodeId, number>();
  for (const op of operators) {
    for (const n of operatorNodes(op)) if (!dead.has(n)) perNode.set(n, (perNode.get(n) ?? 0) + 1);
  }
  for (const c of perNode.values()) result.maxInFlightPerNode = Math.max(result.maxInFlightPerNode, c);
  const inWindow = new Map<NodeId, number>();
  for (const m of state.recentMoves) for (const n of m.nodes) if (!dead.has(n)) inWindow.set(n, (inWindow.get(n) ?? 0) + m.bytes);
  for (const c of inWindow.values()) result.maxMoveBytesPerNodeInWindow = Math.max(result.maxMoveBytesPerNodeInWindow, c);
}
