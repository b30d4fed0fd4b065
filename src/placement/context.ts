/**
 * One scheduling cycle's view of the cluster, with the operators already in flight projected onto it
 * (a replica being added counts on its target, one being removed no longer counts on its source), and
 * the budget of new operators the rate limits still allow (PD-5).
 */
import { assert } from "../util/assert.js";
import { movesReplica, operatorNodes, operatorShards, stepDone } from "./operators.js";
import type { Labels, NodeId, NodeView, Operator, OperatorReason, PlacementConfig, ShardView, Step } from "./types.js";

export interface RecentMove {
  atMs: number;
  nodes: NodeId[];
  /** Its cost against each node's byte budget of the window (moveCostBytes). */
  bytes: number;
}

/**
 * What moving a replica of `shard` costs against the rate limits: the bytes it copies, and at least
 * `moveCostMinBytes`, since even an empty shard's move takes a snapshot and configuration changes. So
 * small shards move by the hundred while large ones are throttled (TiKV's store limit counts region
 * sizes in the same spirit).
 */
export function moveCostBytes(cfg: PlacementConfig, shard: ShardView): number {
  return Math.max(shard.sizeBytes, cfg.moveCostMinBytes);
}

export class CycleContext {
  readonly nodes = new Map<NodeId, NodeView>();
  /** Ready and healthy: the only nodes that receive replicas or leaderships (PD-1). */
  readonly placeable: NodeView[];
  /** Replicas per node, in-flight operators included. */
  readonly replicaCount = new Map<NodeId, number>();
  /** Leaderships per node, in-flight transfers included. */
  readonly leaderCount = new Map<NodeId, number>();
  /** Request rate of the shards each node leads, in-flight transfers included (hot-node detection). */
  readonly leaderLoad = new Map<NodeId, number>();
  /** Shards per node (the view's replicas). */
  readonly shardsOf = new Map<NodeId, ShardView[]>();
  /** Shards with an operator in flight: one operator per shard at a time. */
  readonly busyShards = new Set<number>();
  readonly started: Operator[] = [];
  private readonly inFlightPerNode = new Map<NodeId, number>();
  private inFlightTotal = 0;
  /** Bytes of the replica moves started per node within the window (the recent ones and this cycle's). */
  private readonly bytesInWindow = new Map<NodeId, number>();

  constructor(
    readonly shards: readonly ShardView[],
    nodes: readonly NodeView[],
    running: readonly Operator[],
    recentMoves: readonly RecentMove[],
    readonly cfg: PlacementConfig,
    readonly nowMs: number,
    private nextId: number,
  ) {
    for (const n of nodes) {
      this.nodes.set(n.id, n);
      this.replicaCount.set(n.id, 0);
      this.leaderCount.set(n.id, 0);
      this.leaderLoad.set(n.id, 0);
      this.shardsOf.set(n.id, []);
    }
    this.placeable = nodes.filter((n) => n.state === "ready" && n.health === "healthy" && n.learnerOnly !== true);
    for (const s of shards) {
      for (const r of s.replicas) {
        this.replicaCount.set(r.node, (this.replicaCount.get(r.node) ?? 0) + 1);
        this.shardsOf.get(r.node)?.push(s);
      }
      if (s.leader !== 0) {
        this.leaderCount.set(s.leader, (this.leaderCount.get(s.leader) ?? 0) + 1);
        this.leaderLoad.set(s.leader, (this.leaderLoad.get(s.leader) ?? 0) + s.requestRate);
      }
    }
    const byId = new Map(shards.map((s) => [s.id, s]));
    for (const op of running) {
      for (const id of operatorShards(op)) this.busyShards.add(id);
      this.charge(op);
      const shard = byId.get(op.shard);
      if (shard !== undefined) this.project(op, shard);
    }
    for (const m of recentMoves) {
      if (nowMs - m.atMs >= cfg.moveWindowMs) continue;
      for (const n of m.nodes) this.bytesInWindow.set(n, (this.bytesInWindow.get(n) ?? 0) + m.bytes);
    }
  }

  get nextOperatorId(): number {
    return this.nextId;
  }

  /**
   * Whether the limits allow one more operator over these nodes; `moveBytes` is its cost when it moves
   * a replica (moveCostBytes), else 0. A move larger than the whole window's budget still goes, alone,
   * once the node's window is empty: a large shard is throttled, never stuck.
   */
  allows(nodes: readonly NodeId[], moveBytes: number): boolean {
    assert(moveBytes >= 0, "a move's cost is never negative");
    if (this.inFlightTotal >= this.cfg.maxMovesTotal) return false;
    for (const n of this.working(nodes)) {
      if ((this.inFlightPerNode.get(n) ?? 0) >= this.cfg.maxMovesPerNode) return false;
      const used = this.bytesInWindow.get(n) ?? 0;
      if (moveBytes > 0 && used > 0 && used + moveBytes > this.cfg.maxMoveBytesPerNodePerWindow) return false;
    }
    return true;
  }

  /** Whether any operator at all may start (cheap early exit for the checkers). */
  get exhausted(): boolean {
    return this.inFlightTotal >= this.cfg.maxMovesTotal;
  }

  /** Starts an operator if the shard is free and the limits allow it. */
  start(shard: ShardView, reason: OperatorReason, steps: Step[]): Operator | null {
    if (this.busyShards.has(shard.id) || steps.length === 0) return null;
    const op: Operator = {
      id: this.nextId, shard: shard.id, epoch: shard.epoch, reason, steps, stepIndex: 0, startedAtMs: this.nowMs, stepStartedAtMs: this.nowMs,
    };
    const nodes = operatorNodes(op);
    const moveBytes = movesReplica(op) ? moveCostBytes(this.cfg, shard) : 0;
    if (!this.allows(nodes, moveBytes)) return null;
    this.nextId++;
    this.busyShards.add(shard.id);
    this.charge(op);
    if (moveBytes > 0) for (const n of this.working(nodes)) this.bytesInWindow.set(n, (this.bytesInWindow.get(n) ?? 0) + moveBytes);
    this.project(op, shard);
    this.started.push(op);
    return op;
  }

  count(map: Map<NodeId, number>, node: NodeId): number {
    return map.get(node) ?? 0;
  }

  /** The request rate above which a placeable node is hot (PD-4): `hotNodeFactor` times the mean. */
  hotThreshold(): number {
    if (this.placeable.length === 0) return Infinity;
    const total = this.placeable.reduce((sum, n) => sum + this.count(this.leaderLoad, n.id), 0);
    return total === 0 ? Infinity : (this.cfg.hotNodeFactor * total) / this.placeable.length;
  }

  private charge(op: Operator): void {
    this.inFlightTotal++;
    for (const n of this.working(operatorNodes(op))) this.inFlightPerNode.set(n, (this.inFlightPerNode.get(n) ?? 0) + 1);
  }

  /** A node that is dead, removed or unknown: it will never serve again. */
  lost(id: NodeId): boolean {
    const n = this.nodes.get(id);
    return n === undefined || n.health === "dead" || n.state === "removed";
  }

  /**
   * The nodes among `nodes` that do work for an operator: not lost ones. Removing a lost node's replica
   * copies nothing and asks nothing of it, so it is not held to the per-node limits: otherwise every
   * repair after a node's death would queue behind that one node's budget.
   */
  private working(nodes: readonly NodeId[]): NodeId[] {
    return nodes.filter((id) => !this.lost(id));
  }

  /** Counts what the operator's unfinished steps will change. */
  private project(op: Operator, shard: ShardView): void {
    for (let i = op.stepIndex; i < op.steps.length; i++) {
      const s = op.steps[i]!;
      if (stepDone(s, shard)) continue;
      if (s.kind === "add-learner") this.replicaCount.set(s.node, this.count(this.replicaCount, s.node) + 1);
      if (s.kind === "remove-replica") this.replicaCount.set(s.node, this.count(this.replicaCount, s.node) - 1);
      if (s.kind === "transfer-leader") {
        this.leaderCount.set(s.to, this.count(this.leaderCount, s.to) + 1);
        this.leaderLoad.set(s.to, this.count(this.leaderLoad, s.to) + shard.requestRate);
        if (shard.leader !== 0) {
          this.leaderCount.set(shard.leader, this.count(this.leaderCount, shard.leader) - 1);
          this.leaderLoad.set(shard.leader, this.count(this.leaderLoad, shard.leader) - shard.requestRate);
        }
      }
    }
  }
}

/**
 * How much placing a replica on `candidate` concentrates the shard in one failure domain (PD-2), given
 * the nodes holding its other replicas: a shared zone costs 100, a shared rack within it 10 more; a
 * shared host is never allowed (Infinity). A missing label is a domain of its own.
 */
export function domainPenalty(candidate: Labels, others: readonly Labels[]): number {
  let penalty = 0;
  for (const o of others) {
    if (candidate.host !== undefined && candidate.host === o.host) return Infinity;
    if (candidate.zone !== undefined && candidate.zone === o.zone) {
      penalty += 100;
      if (candidate.rack !== undefined && candidate.rack === o.rack) penalty += 10;
    }
  }
  return penalty;
}

/**
 * The best node to receive a replica of `shard`: placeable, not holding it, within the limits, the
 * least concentration of failure domains, then the fewest replicas, then the lowest id (determinism).
 * `leaving` is a replica that the move will remove (its domain does not count against the target).
 */
export function pickTarget(ctx: CycleContext, shard: ShardView, leaving: NodeId | null, extraNodes: readonly NodeId[] = []): NodeId | null {
  const holders = new Set(shard.replicas.map((r) => r.node));
  const others = shard.replicas.filter((r) => r.node !== leaving).map((r) => ctx.nodes.get(r.node)?.labels ?? {});
  let best: NodeId | null = null;
  let bestKey: [number, number, number] = [Infinity, Infinity, Infinity];
  for (const n of ctx.placeable) {
    if (holders.has(n.id)) continue;
    if (!ctx.allows([n.id, ...extraNodes], moveCostBytes(ctx.cfg, shard))) continue;
    const key: [number, number, number] = [domainPenalty(n.labels, others), ctx.count(ctx.replicaCount, n.id), n.id];
    if (key[0] === Infinity) continue;
    if (key[0] < bestKey[0] || (key[0] === bestKey[0] && (key[1] < bestKey[1] || (key[1] === bestKey[1] && key[2] < bestKey[2])))) {
      best = n.id;
      bestKey = key;
    }
  }
  return best;
}
