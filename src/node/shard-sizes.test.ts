import { test } from "node:test";
import assert from "node:assert/strict";
import type { StoredRecord } from "./records.js";
import { RECORDS_PER_PASS, REMEASURE_AFTER_MS, SHARDS_PER_PASS, ShardSizes, middleId, recordBytes } from "./shard-sizes.js";

const at = (applied: number, ...shards: number[]) => shards.map((shard) => ({ shard, applied }));
const now = 0;

test("shard sizes: walked a bounded number of records per pass, resumed where the last pass stopped, published when a walk completes", () => {
  const shards = new Map<number, [string, StoredRecord][]>([
    [1, Array.from({ length: RECORDS_PER_PASS * 2 + 10 }, (_, i) => [`k${String(i).padStart(6, "0")}`, { payload: i, version: 1 }] as [string, StoredRecord])],
    [2, [["a", { payload: "x".repeat(100), version: 2 }]]],
  ]);
  let visited = 0;
  const sizes = new ShardSizes((group, limit, after) => {
    const all = shards.get(group)!;
    const page = all.filter(([k]) => after === undefined || k > after).slice(0, limit);
    visited += page.length;
    return page;
  });
  sizes.measure(at(1, 1, 2), now);
  assert.equal(visited, RECORDS_PER_PASS, "one pass visits at most its budget");
  assert.equal(sizes.get(1), undefined, "not published before its walk completes");
  sizes.measure(at(1, 1, 2), now);
  sizes.measure(at(1, 1, 2), now);
  const one = sizes.get(1)!;
  assert.equal(one.records, RECORDS_PER_PASS * 2 + 10);
  const bytes = shards.get(1)!.reduce((n, [k, r]) => n + recordBytes(k, r), 0);
  assert.equal(one.bytes, bytes);
  assert.deepEqual(sizes.get(2), { records: 1, bytes: recordBytes("a", shards.get(2)![0]![1]) });
  sizes.measure(at(1, 2), now);
  assert.equal(sizes.get(1), undefined, "a shard no longer led here is forgotten");
  visited = 0;
  sizes.measure(at(1, 2), now);
  assert.equal(visited, 0, "a shard whose applied index did not move is not walked again");
  sizes.measure(at(2, 2), now + REMEASURE_AFTER_MS - 1);
  assert.equal(visited, 0, "one whose index moved is not walked again until REMEASURE_AFTER_MS after its last walk");
  sizes.measure(at(2, 2), now + REMEASURE_AFTER_MS);
  assert.equal(visited, 1, "then it is");
});

test("a record's estimated size counts its id, payload JSON and vector bytes", () => {
  const small = recordBytes("a", { payload: { tag: 1 }, version: 1 });
  assert.equal(recordBytes("a", { payload: { tag: 1 }, version: 1, vector: new Uint8Array(512) }), small + 512);
  assert.equal(recordBytes("abc", { payload: { tag: 1 }, version: 1 }), small + 2);
  const wide = { tag: 1, name: "x".repeat(100) };
  assert.equal(recordBytes("a", { payload: wide, version: 1 }), small - JSON.stringify({ tag: 1 }).length + JSON.stringify(wide).length);
});

test("a shard whose range changed is measured again from the start", () => {
  const records: [string, StoredRecord][] = Array.from({ length: 10 }, (_, i) => [`r${i}`, { payload: i, version: 1 }]);
  const sizes = new ShardSizes((_g, limit, after) => records.filter(([k]) => after === undefined || k > after).slice(0, limit));
  sizes.measure(at(1, 3), now);
  assert.equal(sizes.get(3)?.records, 10);
  records.splice(5);
  sizes.forget(3);
  assert.equal(sizes.get(3), undefined);
  sizes.measure(at(1, 3), now);
  assert.equal(sizes.get(3)?.records, 5);
});

test("many small shards: a pass starts at most SHARDS_PER_PASS walks, round robin, and idle shards cost no walk", () => {
  const shards = 3 * SHARDS_PER_PASS + 7;
  const walked: number[] = [];
  const sizes = new ShardSizes((group, _limit, after) => {
    if (after === undefined) walked.push(group);
    return [];
  });
  const led = at(5, ...Array.from({ length: shards }, (_, i) => i + 1));
  sizes.measure(led, now);
  assert.equal(walked.length, SHARDS_PER_PASS);
  for (let pass = 0; pass < 3; pass++) sizes.measure(led, now);
  assert.equal(new Set(walked).size, shards, "every shard measured once after enough passes");
  assert.equal(walked.length, shards, "none twice");
  sizes.measure(led, now);
  assert.equal(walked.length, shards, "an idle cluster's pass walks nothing");
  assert.deepEqual(sizes.get(shards), { records: 0, bytes: 0 });
});

test("the middle id of a shard: the ⌊n/2⌋-th of its ids in order, across pages; none with fewer than two records", () => {
  const ids = (n: number) => Array.from({ length: n }, (_, i) => [`u${String(i).padStart(6, "0")}`, { payload: i, version: 1 }] as [string, StoredRecord]);
  const scanOf = (records: [string, StoredRecord][]) => (_group: number, limit: number, after?: string) =>
    records.filter(([k]) => after === undefined || k > after).slice(0, limit);
  assert.equal(middleId(scanOf(ids(12_345)), 1), "u006172", "past one page of the walk");
  assert.equal(middleId(scanOf(ids(2)), 1), "u000001", "above the first id, so strictly inside the shard's range");
  assert.equal(middleId(scanOf(ids(3)), 1), "u000001");
  assert.equal(middleId(scanOf(ids(1)), 1), null);
  assert.equal(middleId(scanOf([]), 1), null);
});
