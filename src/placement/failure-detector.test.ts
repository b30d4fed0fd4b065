import { test } from "node:test";
import assert from "node:assert/strict";
import { DEFAULT_DETECTOR, PhiAccrualDetector } from "./failure-detector.js";

function regular(d: PhiAccrualDetector, everyMs: number, count: number): number {
  let t = 0;
  for (let i = 0; i < count; i++) d.heartbeat((t += everyMs));
  return t;
}

test("phi grows with the silence: healthy on time, unhealthy when late beyond the learnt rhythm, dead after the cleanup timeout", () => {
  const d = new PhiAccrualDetector();
  const last = regular(d, 1000, 50);
  assert.equal(d.health(last + 1000), "healthy");
  assert.ok(d.phi(last + 1500) < 1, "a beat half an interval late is unremarkable");
  assert.ok(d.phi(last + 2000) < d.phi(last + 3000) && d.phi(last + 3000) < d.phi(last + 4000), "monotone in the silence");
  assert.equal(d.health(last + 5000), "unhealthy");
  assert.equal(d.health(last + DEFAULT_DETECTOR.deadAfterMs), "dead");
  d.heartbeat(last + 6000);
  assert.equal(d.health(last + 6500), "healthy", "a heartbeat clears the suspicion");
});

test("a node with irregular heartbeats is given more slack than a regular one", () => {
  const steady = new PhiAccrualDetector();
  const jittery = new PhiAccrualDetector();
  const t1 = regular(steady, 1000, 60);
  let t2 = 0;
  for (let i = 0; i < 60; i++) jittery.heartbeat((t2 += i % 2 === 0 ? 200 : 1800));
  assert.ok(jittery.phi(t2 + 3500) < steady.phi(t1 + 3500));
});

test("no verdict before two heartbeats; the interval window stays bounded", () => {
  const d = new PhiAccrualDetector({ ...DEFAULT_DETECTOR, windowSize: 5 });
  assert.equal(d.health(0), "unhealthy", "never heard from");
  d.heartbeat(0);
  assert.equal(d.phi(10_000), 0, "one heartbeat: no distribution yet");
  // Learns the new rhythm within the window: after 5 beats at 100 ms, the old 10 s intervals are gone.
  regular(d, 10_000, 5);
  let t = 50_000;
  for (let i = 0; i < 5; i++) d.heartbeat((t += 100));
  assert.ok(d.phi(t + 3000) > 1, "the old, slow rhythm is forgotten");
});
