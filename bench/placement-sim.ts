/**
 * The placement driver's scheduler on a simulated cluster (no processes): scale-out, drain, node death
 * and a hot node on 100 nodes and 10,000 shards (3 replicas each, 5 zones). Per scenario: moves made
 * next to the fewest that could reach the settled layout (the reference), simulated time to settle,
 * replica and leader imbalance (largest |count - ideal| / ideal over nodes) at the event, along the way
 * and at the end, the rate limits' peaks next to the limits, oscillations.
 *
 *   npm run bench:placement [-- --nodes 100 --shards 10000 --zones 5 --seed 1 --max-seconds 7200]
 *
 * Targets (issue 4): imbalance < 10 % after settling; moves <= 1.2x the minimum; limits never exceeded;
 * no oscillation.
 */
import { type ScenarioEvent, type ScenarioResult, runScenario } from "../src/placement/simulation.js";
import { DEFAULT_PLACEMENT } from "../src/placement/types.js";

const args = process.argv.slice(2);
const arg = (name: string, dflt: string): number => {
  const i = args.indexOf(`--${name}`);
  const v = Number(i >= 0 && args[i + 1] !== undefined ? args[i + 1] : dflt);
  if (!Number.isFinite(v) || v < 0) throw new Error(`--${name} must be a non-negative number`);
  return v;
};
const nodes = arg("nodes", "100");
const opts = {
  nodes, shards: arg("shards", "10000"), zones: arg("zones", "5"), seed: arg("seed", "1"), cfg: DEFAULT_PLACEMENT,
  snapshotBytesPerSec: 50 << 20, maxSeconds: arg("max-seconds", "7200"),
};
const scenarios: [string, ScenarioEvent][] = [
  [`scale-out +${Math.ceil(nodes / 10)}`, { kind: "scale-out", add: Math.ceil(nodes / 10) }],
  ["drain 1 node", { kind: "drain", node: 3 }],
  ["node death", { kind: "kill", node: 5 }],
  ["hot node (10 shards x20)", { kind: "hot-node", node: 2, shards: 10, factor: 20 }],
];
const c = opts.cfg;
console.log(`${opts.nodes} nodes, ${opts.shards} shards x ${c.replicationFactor} replicas, ${opts.zones} zones, seed ${opts.seed}; ` +
  `limits: ${c.maxMovesPerNode} per node, ${c.maxMovesTotal} total, ${c.maxMoveBytesPerNodePerWindow >> 20} MiB moved per node per ${c.moveWindowMs / 1000} s (a move costs at least ${c.moveCostMinBytes >> 20} MiB)`);
const results: ScenarioResult[] = [];
for (const [name, event] of scenarios) {
  const started = performance.now();
  const r = runScenario(name, event, opts);
  results.push(r);
  console.log(`  ${name}: simulated in ${((performance.now() - started) / 1000).toFixed(1)} s`);
}
const pct = (x: number) => `${(100 * x).toFixed(1)} %`;
console.log("");
console.log("| scenario | replica moves | minimum | ratio | leader moves | settle s | replica imbalance start -> end | leader imbalance end | peak load / mean start -> end | in flight per node / total / per window | oscillations | failed ops |");
console.log("|---|---:|---:|---:|---:|---:|---|---:|---|---|---:|---:|");
for (const r of results) {
  const ratio = r.minimumMoves === 0 ? (r.replicaMoves === 0 ? "-" : "inf") : (r.replicaMoves / r.minimumMoves).toFixed(2);
  console.log(`| ${r.scenario} | ${r.replicaMoves} | ${r.minimumMoves} | ${ratio} | ${r.leaderTransfers} | ${r.settleSeconds ?? "not settled"} | ` +
    `${pct(r.replicaImbalanceStart)} -> ${pct(r.replicaImbalanceEnd)} | ${pct(r.leaderImbalanceEnd)} | ${r.hotLoadStart.toFixed(2)} -> ${r.hotLoadEnd.toFixed(2)} | ` +
    `${r.maxInFlightPerNode}/${c.maxMovesPerNode}, ${r.maxInFlightTotal}/${c.maxMovesTotal}, ${r.maxMoveBytesPerNodeInWindow >> 20}/${c.maxMoveBytesPerNodePerWindow >> 20} MiB | ` +
    `${r.replicaOscillations + r.leaderOscillations} | ${r.failedOperators} |`);
}
console.log("");
console.log("Replica imbalance over time (simulated seconds after the event):");
for (const r of results) {
  if (r.timeline.length === 0) continue;
  const picks = [0.1, 0.25, 0.5, 0.75, 1].map((f) => r.timeline[Math.min(r.timeline.length - 1, Math.floor(f * (r.timeline.length - 1)))]!);
  console.log(`  ${r.scenario}: ${picks.map(([t, rep, lead]) => `${t} s ${pct(rep)} (leaders ${pct(lead)})`).join(", ")}`);
}
const bad = results.filter((r) => r.settleSeconds === null || r.replicaImbalanceEnd >= 0.1 || (r.minimumMoves > 0 && r.replicaMoves > 1.2 * r.minimumMoves) ||
  r.maxInFlightPerNode > c.maxMovesPerNode || r.maxInFlightTotal > c.maxMovesTotal || r.maxMoveBytesPerNodeInWindow > c.maxMoveBytesPerNodePerWindow ||
  r.replicaOscillations + r.leaderOscillations > 0);
console.log("");
console.log(bad.length === 0 ? "targets: met in every scenario" : `targets: NOT met in ${bad.map((r) => r.scenario).join(", ")}`);
