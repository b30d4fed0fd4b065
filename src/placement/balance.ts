/**
 * Schedulers that balance (PD-4): replica counts, leader counts, and request load (hot nodes). They act
 * only outside a tolerance band around the ideal, move only from above the ideal to below it, and only
 * when the move narrows the gap by at least one; so every move is one the final layout needs, and no
 * shard is moved back and forth. Shards that moved recently are left alone (cooldown).
 */
import { leaderTarget, replicaMove } from "./checkers.js";
import { type CycleContext, domainPenalty } from "./context.js";
import type { NodeId, NodeView, ShardView } from "./types.js";

/** Left alone by balancing: it moved recently, or a replica of it is catching up by snapshot (PD-5 backoff). */
function cooling(ctx: CycleContext, settledAtMs: ReadonlyMap<number, number>, shard: ShardView): boolean {
  if (shard.snapshotting === true) return true;
  const at = settledAtMs.get(shard.id);
  return at !== undefined && ctx.nowMs - at < ctx.cfg.shardCooldownMs;
}

/** Nodes sorted by a count, ascending (ties by id, for determinism). */
function byCount(nodes: readonly NodeView[], count: (n: NodeId) => number): NodeView[] {
  return [...nodes].sort((a, b) => count(a.id) - count(b.id) || a.id - b.id);
}

/** The band of replica counts per node that counts as balanced. */
export function replicaBand(total: number, nodes: number, tolerance: number): { ideal: number; low: number; high: number } {
  const ideal = total / nodes;
  return { ideal, low: Math.ceil(ideal * (1 - tolerance)), high: Math.floor(ideal * (1 + tolerance)) };
}

/** Balances replica counts; says whether they are balanced (no node outside the band that a move could fix). */
export function balanceReplicas(ctx: CycleContext, settledAtMs: ReadonlyMap<number, number>): boolean {
  const nodes = ctx.placeable;
  if (nodes.length < 2) return true;
  const count = (n: NodeId) => ctx.count(ctx.replicaCount, n);
  const total = nodes.reduce((sum, n) => sum + count(n.id), 0);
  const { low, high } = replicaBand(total, nodes.length, ctx.cfg.replicaTolerance);
  // Bounded: each round starts at most one operator, and the limits end the loop well before this.
  for (let round = 0; round < ctx.cfg.maxMovesTotal && !ctx.exhausted; round++) {
    const sorted = byCount(nodes, count);
    const started = moveOne(ctx, settledAtMs, sorted, count, low, high);
    if (!started) break;
  }
  const sorted = byCount(nodes, count);
  const [min, max] = [count(sorted[0]!.id), count(sorted[sorted.length - 1]!.id)];
  return max - min < 2 || (max <= high && min >= low);
}

/** Tries source-target pairs from the most extreme inwards; starts the first move the limits allow. */
function moveOne(
  ctx: CycleContext, settledAtMs: ReadonlyMap<number, number>, sorted: NodeView[], count: (n: NodeId) => number, low: number, high: number,
): boolean {
  for (let si = sorted.length - 1; si > 0; si--) {
    const source = sorted[si]!;
    for (let ti = 0; ti < si; ti++) {
      const target = sorted[ti]!;
      if (count(source.id) - count(target.id) < 2) break;
      if (count(source.id) <= high && count(target.id) >= low) break;
      if (!ctx.allows([source.id, target.id], ctx.cfg.moveCostMinBytes)) continue;
      const shard = movableShard(ctx, settledAtMs, source.id, target);
      if (shard !== null && ctx.start(shard, "replica-balance", replicaMove(ctx, shard, source.id, target.id)) !== null) return true;
    }
  }
  return false;
}

/** A shard on `from` that `to` does not hold, not busy nor cooling, whose domain spread `to` keeps. */
function movableShard(ctx: CycleContext, settledAtMs: ReadonlyMap<number, number>, from: NodeId, to: NodeView): ShardView | null {
  for (const shard of ctx.shardsOf.get(from) ?? []) {
    if (ctx.busyShards.has(shard.id) || cooling(ctx, settledAtMs, shard)) continue;
    if (shard.replicas.some((r) => r.node === to.id)) continue;
    const others = shard.replicas.filter((r) => r.node !== from).map((r) => ctx.nodes.get(r.node)?.labels ?? {});
    const fromLabels = ctx.nodes.get(from)?.labels ?? {};
    if (domainPenalty(to.labels, others) > domainPenalty(fromLabels, others)) continue;
    return shard;
  }
  return null;
}

export function balanceLeaders(ctx: CycleContext, settledAtMs: ReadonlyMap<number, number>): void {
  const nodes = ctx.placeable;
  if (nodes.length < 2) return;
  const count = (n: NodeId) => ctx.count(ctx.leaderCount, n);
  const total = nodes.reduce((sum, n) => sum + count(n.id), 0);
  const { low, high } = replicaBand(total, nodes.length, ctx.cfg.leaderTolerance);
  const hot = ctx.hotThreshold();
  for (let round = 0; round < ctx.cfg.maxMovesTotal && !ctx.exhausted; round++) {
    const sorted = byCount(nodes, count);
    let started = false;
    for (let si = sorted.length - 1; si > 0 && !started; si--) {
      const source = sorted[si]!;
      if (count(source.id) <= high && count(sorted[0]!.id) >= low) return;
      for (const shard of ctx.shardsOf.get(source.id) ?? []) {
        if (shard.leader !== source.id || ctx.busyShards.has(shard.id) || cooling(ctx, settledAtMs, shard)) continue;
        const to = leaderTarget(ctx, shard, source.id);
        if (to === null || count(source.id) - count(to) < 2) continue;
        // Counts are balanced by leaderships, load by requests: never make a node hot to even counts.
        if (ctx.count(ctx.leaderLoad, to) + shard.requestRate > hot) continue;
        if (ctx.start(shard, "leader-balance", [{ kind: "transfer-leader", to }]) !== null) {
          started = true;
          break;
        }
      }
    }
    if (!started) return;
  }
}

/**
 * A node whose led shards serve more than `hotNodeFactor` times the mean request rate hands over
 * leaderships to the least loaded voters of those shards, as long as the receiver stays under that
 * threshold: first the smallest shard that alone brings the node back under it, else the largest that
 * fits, one per node per cycle. Only hot nodes give and only cool ones take, no receiver leaves the
 * leader-count band, and leader balance never makes a node hot, so nothing swings back. One shard hotter
 * than the threshold by itself stays where it is (the rest of its node's leaderships move away): the
 * placement driver splits it (splitRequestRate).
 */
export function relieveHotNodes(ctx: CycleContext, settledAtMs: ReadonlyMap<number, number>): void {
  if (ctx.placeable.length < 2) return;
  const threshold = ctx.hotThreshold();
  const load = (n: NodeId) => ctx.count(ctx.leaderLoad, n);
  // Nor does relief push a receiver's leader count out of the band, or leader balance would undo it.
  const leaders = (n: NodeId) => ctx.count(ctx.leaderCount, n);
  const { high } = replicaBand(ctx.placeable.reduce((sum, n) => sum + leaders(n.id), 0), ctx.placeable.length, ctx.cfg.leaderTolerance);
  const placeable = new Set(ctx.placeable.map((n) => n.id));
  const hot = ctx.placeable.filter((n) => load(n.id) > threshold).sort((a, b) => load(b.id) - load(a.id) || a.id - b.id);
  for (const node of hot) {
    if (ctx.exhausted) return;
    const excess = load(node.id) - threshold;
    const led = (ctx.shardsOf.get(node.id) ?? [])
      .filter((s) => s.leader === node.id && !ctx.busyShards.has(s.id) && !cooling(ctx, settledAtMs, s))
      .sort((a, b) => a.requestRate - b.requestRate || a.id - b.id);
    const covering = led.filter((s) => s.requestRate >= excess);
    const partial = led.filter((s) => s.requestRate < excess).reverse();
    for (const shard of [...covering, ...partial]) {
      const to = shard.replicas
        .filter((r) => r.role === "voter" && r.node !== node.id && placeable.has(r.node))
        .sort((a, b) => load(a.node) - load(b.node) || a.node - b.node)[0]?.node;
      if (to === undefined || load(to) + shard.requestRate > threshold || leaders(to) + 1 > Math.max(high, 1)) continue;
      if (ctx.start(shard, "hot-shard", [{ kind: "transfer-leader", to }]) !== null) break;
    }
  }
}
