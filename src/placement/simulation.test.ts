import { test } from "node:test";
import assert from "node:assert/strict";
import { type ScenarioEvent, type SimOptions, runScenario } from "./simulation.js";
import { DEFAULT_PLACEMENT } from "./types.js";

// A zone per node: the moves' minimum counts balance only (with few zones, keeping every shard across
// zones can force moves beyond it; the 100-node bench runs 5 zones).
const opts: SimOptions = { nodes: 12, shards: 300, zones: 12, seed: 11, cfg: DEFAULT_PLACEMENT, snapshotBytesPerSec: 50 << 20, maxSeconds: 3600 };
const scenarios: [string, ScenarioEvent][] = [
  ["scale-out", { kind: "scale-out", add: 3 }],
  ["drain", { kind: "drain", node: 4 }],
  ["node death", { kind: "kill", node: 7 }],
];

for (const [name, event] of scenarios) {
  test(`scheduler simulation, ${name}: settles within 10 % of the ideal, moves <= 1.2x the minimum, limits held, no oscillation`, () => {
    const r = runScenario(name, event, opts);
    const seed = `seed ${opts.seed}`;
    assert.notEqual(r.settleSeconds, null, `${seed}: settled`);
    assert.ok(r.replicaImbalanceEnd < 0.1, `${seed}: replica imbalance ${r.replicaImbalanceEnd}`);
    assert.ok(r.leaderImbalanceEnd < 0.25, `${seed}: leader imbalance ${r.leaderImbalanceEnd}`);
    assert.ok(r.minimumMoves > 0 && r.replicaMoves <= 1.2 * r.minimumMoves, `${seed}: ${r.replicaMoves} moves, minimum ${r.minimumMoves}`);
    assert.ok(r.maxInFlightPerNode <= opts.cfg.maxMovesPerNode && r.maxInFlightTotal <= opts.cfg.maxMovesTotal, `${seed}: concurrency limits`);
    assert.ok(r.maxMoveBytesPerNodeInWindow <= opts.cfg.maxMoveBytesPerNodePerWindow, `${seed}: window limit (${r.maxMoveBytesPerNodeInWindow} bytes)`);
    assert.equal(r.replicaOscillations + r.leaderOscillations, 0, `${seed}: oscillations`);
    assert.equal(r.failedOperators, 0, `${seed}: failed operators`);
  });
}

test("scheduler simulation, hot node: leaderships move off the hot node and the peak load drops, without oscillation", () => {
  const r = runScenario("hot node", { kind: "hot-node", node: 2, shards: 6, factor: 8 }, opts);
  assert.ok(r.hotLoadStart > opts.cfg.hotNodeFactor, `the node is hot at first: ${r.hotLoadStart}`);
  assert.ok(r.hotLoadEnd < r.hotLoadStart * 0.8, `peak over mean ${r.hotLoadStart} -> ${r.hotLoadEnd}`);
  assert.equal(r.replicaMoves, 0, "only leaderships move");
  assert.equal(r.leaderOscillations, 0);
});

test("the simulation is deterministic: the same seed gives the same run", () => {
  const a = runScenario("scale-out", { kind: "scale-out", add: 2 }, { ...opts, nodes: 8, shards: 100 });
  const b = runScenario("scale-out", { kind: "scale-out", add: 2 }, { ...opts, nodes: 8, shards: 100 });
  assert.deepEqual(a, b);
});
