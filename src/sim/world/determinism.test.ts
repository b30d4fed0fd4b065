import { test } from "node:test";
import assert from "node:assert/strict";
import { runNodeWorld } from "./world.js";

test("node world: a seed replays exactly (same events, history and faults); another seed differs", async () => {
  const a = await runNodeWorld({ seed: 7 });
  const b = await runNodeWorld({ seed: 7 });
  const c = await runNodeWorld({ seed: 8 });
  assert.equal(a.ok, true, a.violation ?? "");
  assert.deepEqual(b.stats, a.stats);
  assert.equal(b.history, a.history);
  assert.deepEqual(b.trace, a.trace);
  assert.ok(a.stats.events > 1000 && a.stats.operations > 50, `the run did something (${a.stats.events} events, ${a.stats.operations} ops)`);
  assert.notEqual(c.history, a.history);
});

test("node world: a failing seed says so, with a reason (the mutation ack-before-apply on seed 1)", async () => {
  const r = await runNodeWorld({ seed: 1, mutation: "ack-before-apply" });
  assert.equal(r.ok, false);
  assert.ok(r.violation !== null && r.violation.length > 0);
});
