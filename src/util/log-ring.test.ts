import { test } from "node:test";
import assert from "node:assert/strict";
import { LogRing } from "./log-ring.js";

test("the log ring keeps the newest lines within its line and byte bounds", () => {
  const ring = new LogRing(3, 1000);
  for (let i = 1; i <= 5; i++) ring.write(`{"n":${i}}\n`);
  assert.deepEqual(ring.recent(), ['{"n":3}', '{"n":4}', '{"n":5}']);
  assert.deepEqual(ring.recent(2), ['{"n":4}', '{"n":5}']);
  const small = new LogRing(100, 10);
  small.write("aaaaaa\n");
  small.write("bbbbbb\n");
  assert.deepEqual(small.recent(), ["bbbbbb"], "over the byte bound the oldest go");
  small.write("a line longer than the whole bound\n");
  assert.deepEqual(small.recent(), ["a line longer than the whole bound"], "the newest line stays even alone over the bound");
  const many = new LogRing(2, 1 << 20);
  for (let i = 0; i < 1000; i++) many.write(`${i}\n`);
  assert.deepEqual(many.recent(), ["998", "999"]);
});
