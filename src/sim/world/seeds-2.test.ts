import { test } from "node:test";
import assert from "node:assert/strict";
import { describeWorldFailures, runWorldSeeds } from "./testing.js";

// Node world seeds 51..100; seeds-{1..4}.test.ts cover 1..200 and run in parallel.
test("node world: seeds 51..100 keep every check, heal whole, lose no acknowledged write, stay linearizable", async () => {
  const failures = await runWorldSeeds(51, 50);
  assert.equal(failures.length, 0, describeWorldFailures(failures));
});
