import { test } from "node:test";
import assert from "node:assert/strict";
import { Breaker } from "./breaker.js";

test("backoff grows with failures (with jitter, capped); the breaker opens, cools down, half-opens", () => {
  const b = new Breaker({ baseDelayMs: 100, maxDelayMs: 1000, failuresToOpen: 4, cooldownMs: 5000 });
  assert.equal(b.nextDelayMs(0.5), 0, "no delay before the first failure");
  b.onFailure(0);
  assert.ok(b.nextDelayMs(0) >= 50 && b.nextDelayMs(0.99) <= 100);
  b.onFailure(0);
  b.onFailure(0);
  assert.ok(b.nextDelayMs(0.99) <= 400 && b.nextDelayMs(0) >= 200);
  assert.equal(b.current(0), "closed");
  b.onFailure(10);
  assert.equal(b.current(10), "open");
  assert.equal(b.allows(4000), false);
  assert.equal(b.current(5010), "half-open");
  b.onFailure(5020);
  assert.equal(b.current(5020), "open", "a failed probe reopens it");
  assert.equal(b.current(10020), "half-open");
  b.onSuccess();
  assert.equal(b.current(10020), "closed");
  assert.ok(b.nextDelayMs(0.5) === 0);
});
