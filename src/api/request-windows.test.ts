import { test } from "node:test";
import assert from "node:assert/strict";
import { RequestWindows } from "./request-windows.js";

test("requests are counted per window, with percentiles within a bucket's width and empty windows shown as such", () => {
  const w = new RequestWindows(1000, 5);
  const t0 = 1_700_000_000_000;
  // Window 0: 100 requests of 1..100 ms, two of them failed.
  for (let i = 1; i <= 100; i++) w.observe(t0 + i, i, i <= 2);
  // Window 2 (window 1 empty): one slow request.
  w.observe(t0 + 2500, 4000, false);
  const shown = w.windows(t0 + 2600);
  assert.equal(shown.length, 5);
  assert.deepEqual(shown.map((x) => x.atMs), [t0 - 2000, t0 - 1000, t0, t0 + 1000, t0 + 2000]);
  assert.deepEqual(shown.map((x) => x.requests), [0, 0, 100, 0, 1]);
  const first = shown[2]!;
  assert.equal(first.failed, 2);
  assert.equal(first.latencyMsMax, 100);
  // Exact: 50 and 99; the buckets are 2^(1/4) wide (+19 %), never below the truth.
  assert.ok(first.latencyMsP50 >= 50 && first.latencyMsP50 <= 50 * 1.19, `p50 ${first.latencyMsP50}`);
  assert.ok(first.latencyMsP99 >= 99 && first.latencyMsP99 <= 100, `p99 ${first.latencyMsP99} (capped at the max seen)`);
  assert.equal(shown[4]!.latencyMsP99, 4000);
  assert.equal(shown[3]!.latencyMsP50, 0);
});

test("only the last windows are kept; a clock stepping back counts in the open window", () => {
  const w = new RequestWindows(100, 3);
  for (let i = 0; i < 50; i++) w.observe(i * 100, 1, false);
  const shown = w.windows(4950);
  assert.deepEqual(shown.map((x) => x.atMs), [4700, 4800, 4900]);
  assert.deepEqual(shown.map((x) => x.requests), [1, 1, 1]);
  w.observe(4000, 2, false); // back in time: still the open window
  assert.equal(w.windows(4950)[2]!.requests, 2);
  // Long silence: every window shown is empty.
  assert.deepEqual(w.windows(100_000).map((x) => x.requests), [0, 0, 0]);
  // Latencies of zero and beyond the last bucket are counted.
  w.observe(100_001, 0, false);
  w.observe(100_002, 600_000, true);
  const last = w.windows(100_050)[2]!;
  assert.deepEqual([last.requests, last.failed, last.latencyMsMax, last.latencyMsP99], [2, 1, 600_000, 600_000]);
});
