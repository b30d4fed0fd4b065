import { test } from "node:test";
import assert from "node:assert/strict";
import { describeFailures, runSeeds } from "./testing.js";

// Seeds 251..500 (seeds-1.test.ts runs 1..250; the two files run in parallel).
test("simulator: seeds 251..500 keep every invariant, recover liveness and produce linearizable histories", () => {
  const failures = runSeeds(251, 250, { chaosMs: 12000, healMs: 8000 });
  assert.equal(failures.length, 0, describeFailures(failures));
});
