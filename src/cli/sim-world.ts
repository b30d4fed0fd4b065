/** `shoal sim --world node`: the node-world simulator (sim/world/) over a range of seeds. */
import { NODE_MUTATIONS, type NodeMutation } from "../node/mutations.js";
import { type NodeWorldResult, runNodeWorld } from "../sim/world/world.js";
import { int } from "./sim.js";

export interface NodeWorldCommandOptions {
  seeds: string;
  firstSeed: string;
  nodes: string;
  mutation?: string;
  /** Virtual milliseconds of clients and faults per run (the `--steps` option). */
  steps: string;
  verbose?: boolean;
}


export function nodeWorldReplay(seed: number, o: NodeWorldCommandOptions): string {
  return `npx shoal sim --world node --seeds 1 --first-seed ${seed}${o.nodes !== "0" ? ` --nodes ${o.nodes}` : ""}` +
    `${o.mutation !== undefined ? ` --mutation ${o.mutation}` : ""}${o.steps !== "20000" ? ` --steps ${o.steps}` : ""} --verbose`;
}

export async function nodeWorldCommand(o: NodeWorldCommandOptions): Promise<number> {
  let seeds: number, first: number, nodes: number, chaosMs: number;
  try {
    seeds = int("seeds", o.seeds, 1);
    first = int("first-seed", o.firstSeed, 0);
    nodes = int("nodes", o.nodes, 0);
    if (nodes !== 0 && (nodes < 3 || nodes > 5)) throw new Error("--nodes must be 3, 4 or 5 (or 0 for chosen by seed)");
    // --steps keeps its Raft-world default (20000); the node world's chaos phase is 4 s unless asked.
    chaosMs = o.steps === "20000" ? 4_000 : int("steps", o.steps, 500);
    if (o.mutation !== undefined && !(NODE_MUTATIONS as readonly string[]).includes(o.mutation)) {
      throw new Error(`unknown node-world mutation ${o.mutation} (one of ${NODE_MUTATIONS.join(", ")})`);
    }
  } catch (e) {
    console.error(`sim: ${(e as Error).message}`);
    return 2;
  }
  const started = Date.now();
  let lastProgress = started;
  const failed: NodeWorldResult[] = [];
  const totals = { events: 0, virtualMs: 0, operations: 0, acknowledged: 0, historyOps: 0, histories: 0, checks: 0 };
  const nemesis = new Map<string, number>();
  for (let seed = first; seed < first + seeds; seed++) {
    const r = await runNodeWorld({ seed, nodes, chaosMs, ...(o.mutation !== undefined ? { mutation: o.mutation as NodeMutation } : {}) });
    const s = r.stats;
    totals.events += s.events;
    totals.virtualMs += s.virtualMs;
    totals.operations += s.operations;
    totals.acknowledged += s.acknowledgedWrites;
    totals.historyOps += s.historyOperations;
    totals.checks += s.checks;
    if (r.ok) totals.histories++;
    for (const [k, v] of Object.entries(s.nemesis)) nemesis.set(k, (nemesis.get(k) ?? 0) + v);
    if (o.verbose) {
      console.log(`seed ${seed}: ${r.ok ? "ok" : "FAILED"} — ${s.nodes} nodes, ${s.operations} ops, ${s.acknowledgedWrites} acked writes, ` +
        `${s.events} events, ${(s.virtualMs / 1000).toFixed(1)} s simulated; ${Object.entries(s.nemesis).map(([k, v]) => `${k} ${v}`).join(", ")}`);
    }
    if (!r.ok) {
      failed.push(r);
      console.log(`seed ${seed} FAILED: ${r.violation}`);
      console.log(`  replay: ${nodeWorldReplay(seed, o)}`);
    } else if (!o.verbose && Date.now() - lastProgress > 5000) {
      lastProgress = Date.now();
      console.log(`… ${seed - first + 1}/${seeds} seeds, ${failed.length} failed`);
    }
  }
  const secs = ((Date.now() - started) / 1000).toFixed(1);
  console.log(`sim --world node: ${seeds} seeds (${first}..${first + seeds - 1})${o.mutation !== undefined ? `, mutation ${o.mutation}` : ""}, ` +
    `${failed.length} failed, ${secs} s; ${totals.operations} client ops, ${totals.acknowledged} acknowledged writes, ` +
    `${totals.histories} histories checked linearizable (${totals.historyOps} operations), ${totals.events} events, ` +
    `${(totals.virtualMs / 1000).toFixed(0)} s simulated, ${totals.checks} checks`);
  console.log(`sim --world node: faults and operators: ${[...nemesis].sort().map(([k, v]) => `${k} ${v}`).join(", ") || "none"}`);
  if (o.mutation !== undefined && failed.length > 0) console.log(`sim --world node: mutation ${o.mutation} caught first at seed ${failed[0]!.seed}`);
  return failed.length === 0 ? 0 : 1;
}
