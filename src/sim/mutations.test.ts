/**
 * The simulator must find deliberate bugs. Each mutation is switched on through the Raft core's test
 * option and the simulator runs seeds until it reports a violation; the test fails if none is found
 * within the bound. Runs are deterministic, so the seed that finds each bug is always the same.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import type { Mutations } from "../raft/index.js";
import type { FaultProfile } from "./nemesis.js";
import { runSeed } from "./simulation.js";

const SEED_BOUND = 60;

function firstViolation(mutations: Mutations, profile: FaultProfile): { seed: number; failure: string } | null {
  for (let seed = 1; seed <= SEED_BOUND; seed++) {
    const r = runSeed({ seed, mutations, profile, chaosMs: 12000, healMs: 8000 });
    if (!r.ok) return { seed, failure: r.failure! };
  }
  return null;
}

test("mutation: granting two votes in one term is caught as an election-safety violation", () => {
  const v = firstViolation({ grantTwoVotesInTerm: true }, "mixed");
  assert.ok(v !== null, `no violation within ${SEED_BOUND} seeds`);
  assert.match(v.failure, /election safety/);
});

test("mutation: a follower acknowledging before persisting is caught when power fails", () => {
  const v = firstViolation({ ackBeforePersist: true }, "power");
  assert.ok(v !== null, `no violation within ${SEED_BOUND} seeds`);
  assert.match(v.failure, /leader completeness|state-machine safety|acknowledged write lost|linearizability/);
});

test("mutation: answering ReadIndex without a quorum round is caught as a stale read", () => {
  const v = firstViolation({ readIndexWithoutQuorum: true }, "leader-churn");
  assert.ok(v !== null, `no violation within ${SEED_BOUND} seeds`);
  assert.match(v.failure, /linearizability/);
});

test("the same seed replays the same run exactly", () => {
  const a = runSeed({ seed: 4242, chaosMs: 3000, healMs: 2000, keepHistory: true });
  const b = runSeed({ seed: 4242, chaosMs: 3000, healMs: 2000, keepHistory: true });
  assert.deepEqual(a.stats, b.stats);
  assert.equal(a.history, b.history);
  assert.ok(a.stats.acknowledgedWrites > 0, "the run did real work");
});
