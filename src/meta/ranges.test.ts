import { test } from "node:test";
import assert from "node:assert/strict";
import {
  HASH_SPACE, KEY_SPACE_END, RouteTable, comparePositions, cutRange, hashOf, inRange, initialRange, initialRanges, owns, partitioningOf, positionOf,
  rangeView, wholeSpace,
} from "./ranges.js";

test("a record's position is its id's hash in a hash collection and the id itself in a range collection; a range owns the ids of its own kind", () => {
  assert.equal(positionOf("hash", "user42"), hashOf("user42"));
  assert.equal(positionOf("range", "user42"), "user42");
  const keys = { start: "g", end: "p" };
  assert.equal(partitioningOf(keys), "range");
  assert.equal(partitioningOf({ start: 0, end: 10 }), "hash");
  assert.ok(owns(keys, "g"), "the start is inside");
  assert.ok(owns(keys, "hello"));
  assert.ok(owns(keys, "ozzz"));
  assert.ok(!owns(keys, "p"), "the end is outside");
  assert.ok(!owns(keys, "apple"));
  assert.ok(!owns(keys, "G"), "upper case sorts before lower case (code units)");
  assert.ok(owns(wholeSpace("range"), "~~~"), "the whole id space holds the highest ASCII id");
  assert.ok(owns(wholeSpace("range"), ""));
  const h = hashOf("x");
  assert.ok(owns({ start: h, end: h + 1 }, "x"));
  assert.ok(!inRange("5", { start: 0, end: 10 }), "a string position is never inside a hash range");
  assert.ok(!inRange(5, { start: "", end: KEY_SPACE_END }), "nor a hash inside an id range");
  assert.ok(!owns({ start: 0, end: 0 }, "x"), "an empty range owns nothing");
  assert.throws(() => comparePositions(1, "1"), /two kinds/);
  assert.equal(comparePositions("a", "b"), -1);
  assert.equal(comparePositions(10, 9), 1);
});

test("initial ranges: equal hash ranges, or the id ranges the split points cut, tiling the whole space; points that do not fit give null", () => {
  assert.deepEqual(initialRanges("hash", 3), [initialRange(1, 3), initialRange(2, 3), initialRange(3, 3)]);
  assert.deepEqual(initialRanges("range", 1), [{ start: "", end: KEY_SPACE_END }]);
  assert.deepEqual(initialRanges("range", 3, ["g", "p"]), [{ start: "", end: "g" }, { start: "g", end: "p" }, { start: "p", end: KEY_SPACE_END }]);
  assert.equal(initialRanges("range", 3, ["g"]), null, "one point fewer than the shards");
  assert.equal(initialRanges("range", 3, ["p", "g"]), null, "unsorted");
  assert.equal(initialRanges("range", 3, ["g", "g"]), null, "duplicate");
  assert.equal(initialRanges("range", 2, [""]), null, "an empty first shard");
  assert.equal(initialRanges("hash", 2, ["g"]), null, "a hash collection takes no split points");
  assert.equal(wholeSpace("hash").end, HASH_SPACE);
});

test("a range is cut only at a position of its own kind strictly inside it", () => {
  assert.deepEqual(cutRange({ start: "", end: KEY_SPACE_END }, "m"), { lower: { start: "", end: "m" }, upper: { start: "m", end: KEY_SPACE_END } });
  assert.equal(cutRange({ start: "g", end: "p" }, "g"), null, "at the start");
  assert.equal(cutRange({ start: "g", end: "p" }, "p"), null, "at the end");
  assert.equal(cutRange({ start: "g", end: "p" }, "z"), null, "outside");
  assert.equal(cutRange({ start: "g", end: "p" }, 5), null, "a hash in an id range");
  assert.equal(cutRange({ start: 0, end: 10 }, "5"), null, "an id in a hash range");
  assert.deepEqual(cutRange({ start: 0, end: 10 }, 5), { lower: { start: 0, end: 5 }, upper: { start: 5, end: 10 } });
});

test("a range collection's route table sends each id to the shard whose id range holds it, in string order", () => {
  const table = new RouteTable("range", [
    { id: 7, range: { start: "p", end: KEY_SPACE_END } }, { id: 5, range: { start: "", end: "g" } }, { id: 6, range: { start: "g", end: "p" } },
    { id: 9, range: { start: "p", end: "p" } }, // retired by a merge: an empty range routes nothing
  ]);
  const routed = ["", "0001", "Zebra", "apple", "g", "go", "oz", "p", "p0", "zzz", "~"].map((id) => [id, table.shardOf(id)]);
  assert.deepEqual(routed, [["", 5], ["0001", 5], ["Zebra", 5], ["apple", 5], ["g", 6], ["go", 6], ["oz", 6], ["p", 7], ["p0", 7], ["zzz", 7], ["~", 7]]);
  const gap = new RouteTable("range", [{ id: 1, range: { start: "", end: "g" } }, { id: 2, range: { start: "m", end: KEY_SPACE_END } }]);
  assert.equal(gap.shardOf("h"), undefined, "a gap routes nowhere");
  assert.throws(() => new RouteTable("hash", [{ id: 1, range: { start: "", end: KEY_SPACE_END } }]), /another kind/);
});

test("the API shows a range collection's open end as null, and hash ranges as they are", () => {
  assert.deepEqual(rangeView({ start: "p", end: KEY_SPACE_END }), ["p", null]);
  assert.deepEqual(rangeView({ start: "g", end: "p" }), ["g", "p"]);
  assert.deepEqual(rangeView({ start: 0, end: HASH_SPACE }), [0, HASH_SPACE]);
});
