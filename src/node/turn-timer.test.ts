import { test } from "node:test";
import assert from "node:assert/strict";
import { TurnTimer } from "./turn-timer.js";

test("a turn under the bound is not reported; a slow one names its longest phase and every phase that took time", () => {
  const t = new TurnTimer(250);
  t.start(1000);
  t.lap("fill", 1001);
  t.lap("wal", 1200);
  assert.equal(t.end(1240), null, "240 ms is under the bound");

  t.start(2000);
  t.lap("fill", 2000.2);
  t.ready(3, 0);
  t.ready(0, 120);
  t.lap("ready", 2010);
  t.lap("apply", 2030);
  t.lap("wal", 2300);
  t.lap("apply", 2305);
  const slow = t.end(2310);
  assert.deepEqual(slow, { totalMs: 310, phase: "wal", phaseMs: 270, phasesMs: { ready: 10, apply: 25, wal: 270 },
    groups: 2, entriesAppended: 3, entriesApplied: 120 });

  t.start(3000);
  t.lap("compact", 3400);
  assert.deepEqual(t.end(3400), { totalMs: 400, phase: "compact", phaseMs: 400, phasesMs: { compact: 400 }, groups: 0, entriesAppended: 0, entriesApplied: 0 },
    "laps and counts of an earlier turn are gone");
});
