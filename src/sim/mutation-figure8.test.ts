/**
 * The figure-8 bug (commit an entry of an earlier term by counting replicas) needs three leaders in
 * quick succession to turn into a loss, so the simulator needs more seeds to find it than for the other
 * mutations: the leader-churn profile finds it within the first 400 seeds (runs are deterministic).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { runSeed } from "./simulation.js";

const SEED_BOUND = 400;

test("mutation: committing an earlier term's entry by counting replicas (figure 8) is caught", () => {
  let found: { seed: number; failure: string } | null = null;
  for (let seed = 1; seed <= SEED_BOUND && found === null; seed++) {
    const r = runSeed({
      seed, profile: "leader-churn", chaosMs: 12000, healMs: 8000, mutations: { commitPreviousTermByCount: true },
    });
    if (!r.ok) found = { seed, failure: r.failure! };
  }
  assert.ok(found !== null, `no violation within ${SEED_BOUND} seeds`);
  assert.match(found.failure, /leader completeness|state-machine safety|acknowledged write lost|linearizability/);
});
