/**
 * Each node mutation (node/mutations.ts) must be caught within 50 seeds: a mutation the node world
 * lets through means one of its checks is missing. Runs stop at the first seed that catches it.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { NODE_MUTATIONS } from "../../node/mutations.js";
import { runWorldSeeds } from "./testing.js";

const SEED_BOUND = 50;

const EXPECTED: Record<(typeof NODE_MUTATIONS)[number], RegExp> = {
  "split-restarts-versions": /versions went back|not linearizable/,
  "gateway-skips-epoch": /one owner per range|not linearizable|acknowledged write lost|versions went back/,
  "ack-before-apply": /not linearizable|acknowledged write lost|versions went back/,
  "merge-drops-last-batch": /acknowledged write lost|not linearizable/,
};

for (const mutation of NODE_MUTATIONS) {
  test(`node world: mutation ${mutation} is caught within ${SEED_BOUND} seeds`, async () => {
    const [caught] = await runWorldSeeds(1, SEED_BOUND, mutation, true);
    assert.ok(caught !== undefined, `${mutation}: no violation within ${SEED_BOUND} seeds`);
    assert.match(caught.violation!, EXPECTED[mutation]);
  });
}
