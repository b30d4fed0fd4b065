/**
 * The checkers that must act: replica repair (PD-3, MEM-6) and drain (MEM-5). They run before any
 * balancing and ignore the shard cooldown; the rate limits still bound them.
 */
import { type CycleContext, pickTarget } from "./context.js";
import { moveSteps } from "./operators.js";
import type { NodeId, ReplicaView, ShardView, Step } from "./types.js";

/** Steps that take the leadership off `node` first when it leads, then remove its replica. */
function removeSteps(ctx: CycleContext, shard: ShardView, node: NodeId): Step[] | null {
  if (shard.leader !== node) return [{ kind: "remove-replica", node }];
  const to = leaderTarget(ctx, shard, node);
  return to === null ? null : [{ kind: "transfer-leader", to }, { kind: "remove-replica", node }];
}

/**
 * The steps that move a replica off `from` to `to`; if `from` leads, the leadership goes to whichever
 * of the other voters and `to` leads the fewest shards, so that leader balance need not move it again.
 */
export function replicaMove(ctx: CycleContext, shard: ShardView, from: NodeId, to: NodeId): Step[] {
  if (shard.leader !== from) return moveSteps(shard, from, to);
  const other = leaderTarget(ctx, shard, from);
  const leaderTo = other !== null && ctx.count(ctx.leaderCount, other) < ctx.count(ctx.leaderCount, to) ? other : to;
  return moveSteps(shard, from, to, leaderTo);
}

/** The voter of `shard` on a placeable node other than `except` that leads the fewest shards. */
export function leaderTarget(ctx: CycleContext, shard: ShardView, except: NodeId): NodeId | null {
  let best: NodeId | null = null;
  for (const r of shard.replicas) {
    if (r.node === except || r.role !== "voter") continue;
    const n = ctx.nodes.get(r.node);
    if (n === undefined || n.state !== "ready" || n.health !== "healthy" || n.learnerOnly === true) continue;
    if (best === null || ctx.count(ctx.leaderCount, r.node) < ctx.count(ctx.leaderCount, best) ||
      (ctx.count(ctx.leaderCount, r.node) === ctx.count(ctx.leaderCount, best) && r.node < best)) best = r.node;
  }
  return best;
}

/**
 * Under-replicated shards gain a replica (learner, promoted once caught up) before a lost one is
 * removed; a caught-up learner left behind by an ended operator is promoted; surplus replicas go,
 * the least useful first. Each shard is held to its collection's replication factor, or the settings'.
 */
export function repair(ctx: CycleContext): void {
  for (const shard of ctx.shards) {
    if (ctx.exhausted) return;
    const rf = shard.replicationFactor ?? ctx.cfg.replicationFactor;
    if (ctx.busyShards.has(shard.id)) continue;
    // A replica is lost with its node (CycleContext.lost).
    const live = shard.replicas.filter((r) => !ctx.lost(r.node));
    const gone = shard.replicas.filter((r) => ctx.lost(r.node));
    if (live.length < rf) {
      const from = gone[0]?.node ?? null;
      const to = pickTarget(ctx, shard, from);
      if (to === null) continue;
      const steps: Step[] = [{ kind: "add-learner", node: to }, { kind: "promote", node: to }];
      if (from !== null) steps.push({ kind: "remove-replica", node: from });
      ctx.start(shard, "repair", steps);
      continue;
    }
    const liveVoters = live.filter((r) => r.role === "voter").length;
    const learner = live.find((r) => r.role === "learner" && r.caughtUp);
    if (liveVoters < rf && learner !== undefined) {
      ctx.start(shard, "repair", [{ kind: "promote", node: learner.node }]);
      continue;
    }
    if (gone.length > 0) {
      ctx.start(shard, "repair", [{ kind: "remove-replica", node: gone[0]!.node }]);
      continue;
    }
    if (live.length > rf) {
      const victim = surplusVictim(ctx, live);
      const steps = removeSteps(ctx, shard, victim);
      if (steps !== null) ctx.start(shard, "repair", steps);
    }
  }
}

/** Which surplus replica to remove: a learner, then one on a draining or unhealthy node, then the fullest node's. */
function surplusVictim(ctx: CycleContext, live: ReplicaView[]): NodeId {
  const rank = (r: ReplicaView): [number, number] => {
    const n = ctx.nodes.get(r.node)!;
    const badness = (r.role === "learner" ? 4 : 0) + (n.state === "draining" ? 2 : 0) + (n.health !== "healthy" ? 1 : 0);
    return [badness, ctx.count(ctx.replicaCount, r.node)];
  };
  let victim = live[0]!;
  for (const r of live.slice(1)) {
    const [a, b] = [rank(r), rank(victim)];
    if (a[0] > b[0] || (a[0] === b[0] && (a[1] > b[1] || (a[1] === b[1] && r.node > victim.node)))) victim = r;
  }
  return victim.node;
}

/**
 * Draining nodes give up their leaderships first (quick, no data copied), then their replicas, each
 * moved to the best target (PD-5: leaders before followers). A draining node still serves reads from
 * what it holds until its replicas are gone.
 */
export function drain(ctx: CycleContext): void {
  for (const node of ctx.nodes.values()) {
    if (node.state !== "draining") continue;
    const shards = ctx.shardsOf.get(node.id) ?? [];
    const led = shards.filter((s) => s.leader === node.id);
    for (const shard of led) {
      if (ctx.exhausted) return;
      if (ctx.busyShards.has(shard.id)) continue;
      const to = leaderTarget(ctx, shard, node.id);
      if (to !== null) ctx.start(shard, "drain", [{ kind: "transfer-leader", to }]);
    }
    if (led.length > 0 || ctx.count(ctx.leaderCount, node.id) > 0) continue;
    for (const shard of shards) {
      if (ctx.exhausted) return;
      if (ctx.busyShards.has(shard.id)) continue;
      const to = pickTarget(ctx, shard, node.id, [node.id]);
      if (to !== null) ctx.start(shard, "drain", replicaMove(ctx, shard, node.id, to));
    }
  }
}
