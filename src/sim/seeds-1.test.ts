import { test } from "node:test";
import assert from "node:assert/strict";
import { describeFailures, runSeeds } from "./testing.js";

// Seeds 1..250 (seeds-2.test.ts runs 251..500; the two files run in parallel).
test("simulator: seeds 1..250 keep every invariant, recover liveness and produce linearizable histories", () => {
  const failures = runSeeds(1, 250, { chaosMs: 12000, healMs: 8000 });
  assert.equal(failures.length, 0, describeFailures(failures));
});
