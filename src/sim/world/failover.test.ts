/**
 * The successor rule (node/multi-raft-liveness.ts leaderGone) in the node world, where a crashed node's
 * peers learn of the crash from their kernels 1 ms after it and read a last frame from it 3 ms
 * later, before their next turn (network.ts lastFrameAfterCloseMs): as a real node may read a dead peer's last frame on one connection
 * after the close of another.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { Rng } from "../../util/rng.js";
import { Role } from "../../raft/index.js";
import { SimNetwork } from "./network.js";
import { SimScheduler } from "./scheduler.js";
import { WorldNode } from "./world-node.js";

const SHARDS = 24;
/** The node world's shard groups: the meta group is 0, the default collection's shards 1..SHARDS. */
const groups = Array.from({ length: SHARDS }, (_, i) => i + 1);

async function runUntil(scheduler: SimScheduler, untilMs: number, done: () => boolean): Promise<boolean> {
  while (scheduler.nowMs < untilMs && !done()) if (!(await scheduler.step())) break;
  return done();
}

/** The node leading `g` (as its own Raft says), with its term; null while none does. */
function leaderOf(nodes: WorldNode[], g: number): { id: number; term: number } | null {
  for (const n of nodes) {
    const r = n.serving() ? n.node!.group(g).raft : undefined;
    if (r !== undefined && r.role() === Role.Leader) return { id: n.id, term: r.term() };
  }
  return null;
}

test("a crashed node's shards are taken over by their chosen successors, also when its last frames arrive after its connections closed (seeds 1-6)", async () => {
  const report: string[] = [];
  let missedTotal = 0;
  for (let seed = 1; seed <= 6; seed++) {
    const rng = new Rng(seed);
    const scheduler = new SimScheduler();
    const network = new SimNetwork(scheduler, rng.fork());
    network.lastFrameAfterCloseMs = 3;
    const ids = [1, 2, 3];
    const nodes = ids.map((id) => new WorldNode({ id, founders: ids, shards: SHARDS, mutations: new Set(), scheduler, network, rng: rng.fork() }));
    await Promise.all(nodes.map((n) => n.start()));
    assert.ok(await runUntil(scheduler, 20_000, () => groups.every((g) => leaderOf(nodes, g) !== null)), `seed ${seed}: every shard led at the start`);
    // Settle: heartbeats flowing, so that every survivor counts the other live.
    await runUntil(scheduler, scheduler.nowMs + 1_000, () => false);
    const led = new Map<number, number[]>();
    for (const g of groups) {
      const id = leaderOf(nodes, g)!.id;
      led.set(id, [...(led.get(id) ?? []), g]);
    }
    const victim = nodes.reduce((a, b) => ((led.get(b.id)?.length ?? 0) > (led.get(a.id)?.length ?? 0) ? b : a));
    const lost = led.get(victim.id)!;
    const termBefore = new Map(lost.map((g) => [g, leaderOf(nodes, g)!.term]));
    const survivors = nodes.filter((n) => n !== victim).map((n) => n.id).sort((a, b) => a - b);
    const campaignsBefore = new Map(survivors.map((id) => [id, nodes[id - 1]!.node!.counters.successorCampaigns]));
    victim.crash();
    assert.ok(await runUntil(scheduler, scheduler.nowMs + 10_000, () => lost.every((g) => leaderOf(nodes, g) !== null)), `seed ${seed}: every shard of node ${victim.id} led again`);
    const missed = lost.filter((g) => {
      const now = leaderOf(nodes, g)!;
      return now.id !== survivors[g % 2] || now.term !== termBefore.get(g)! + 1;
    });
    missedTotal += missed.length;
    const campaigns = survivors.map((id) => `node ${id} ${nodes[id - 1]!.node!.counters.successorCampaigns - campaignsBefore.get(id)!} successor campaigns`);
    report.push(`seed ${seed}: node ${victim.id} led ${lost.length}; missed ${missed.map((g) => `${g} (now ${leaderOf(nodes, g)!.id}, successor ${survivors[g % 2]}, term +${leaderOf(nodes, g)!.term - termBefore.get(g)!})`).join(", ") || "none"}; ${campaigns.join(", ")}`);
    for (const n of nodes) if (n.up) n.crash();
  }
  if (process.env.SHOAL_FAILOVER_REPORT === "1") console.log(report.join("\n"));
  assert.equal(missedTotal, 0, `every shard of the crashed node led by its successor in the next term:\n${report.join("\n")}`);
});
