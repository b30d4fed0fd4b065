import { test } from "node:test";
import assert from "node:assert/strict";
import { Inflights } from "./inflights.js";

test("the window fills by count and by bytes, and frees up to an acknowledged index", () => {
  const w = new Inflights(3, 100);
  w.add(1, 10);
  w.add(2, 10);
  assert.equal(w.full(), false);
  w.add(3, 10);
  assert.equal(w.full(), true, "count limit");
  w.freeLE(2);
  assert.equal(w.count(), 1);
  w.add(4, 95);
  assert.equal(w.full(), true, "byte limit");
  w.freeFirstOne();
  assert.equal(w.count(), 1);
  assert.throws(() => w.add(4, 1), /not increasing/);
});
