import { test } from "node:test";
import assert from "node:assert/strict";
import { HASH_SPACE, KEY_SPACE_END, type ShardRange, wholeSpace } from "../meta/ranges.js";
import { type ShardPage, coverSpace, mergePages } from "./scan.js";

const part = (shard: number, start: ShardRange["start"], end: ShardRange["end"], ids: string[] = [], frozen = false): ShardPage =>
  ({ shard, range: { start, end }, frozen, children: [], records: ids.map((id) => [id, { payload: id, version: 1 }]), version: 10 + shard });
const shardsOf = (parts: ShardPage[] | null) => parts?.map((p) => p.shard) ?? null;
const H = HASH_SPACE / 2;

test("the parts must tile the hash space once: gaps and live overlaps are refused, frozen sources under their target left out", () => {
  assert.deepEqual(shardsOf(coverSpace([part(2, H, HASH_SPACE), part(1, 0, H)], wholeSpace("hash"))), [1, 2]);
  assert.equal(coverSpace([part(1, 0, H)], wholeSpace("hash")), null, "a gap: a split child the map does not show yet");
  assert.equal(coverSpace([], wholeSpace("hash")), null);
  assert.equal(coverSpace([part(1, 0, HASH_SPACE), part(2, H, HASH_SPACE)], wholeSpace("hash")), null, "the parent read before its split, the child after");
  // A merge of 2 into 1: frozen and not absorbed yet, then absorbed (both hold the records).
  assert.deepEqual(shardsOf(coverSpace([part(1, 0, H), part(2, H, HASH_SPACE, [], true)], wholeSpace("hash"))), [1, 2]);
  assert.deepEqual(shardsOf(coverSpace([part(1, 0, HASH_SPACE), part(2, H, HASH_SPACE, [], true)], wholeSpace("hash"))), [1]);
  assert.equal(coverSpace([part(1, 0, H + 1), part(2, H, HASH_SPACE, [], true)], wholeSpace("hash")), null, "a frozen part only partly covered leaves a gap");
  assert.deepEqual(shardsOf(coverSpace([part(1, 0, HASH_SPACE), part(3, HASH_SPACE, HASH_SPACE)], wholeSpace("hash"))), [1], "an empty range counts for nothing");
});

test("a range collection's parts must tile the id space once, from \"\" to its open end; a hash range never tiles it", () => {
  const keys = wholeSpace("range");
  assert.deepEqual(shardsOf(coverSpace([part(2, "m", KEY_SPACE_END), part(1, "", "m")], keys)), [1, 2]);
  assert.equal(coverSpace([part(1, "", "m")], keys), null, "a gap");
  assert.equal(coverSpace([part(1, "", KEY_SPACE_END), part(2, "m", KEY_SPACE_END)], keys), null, "a live overlap");
  assert.deepEqual(shardsOf(coverSpace([part(1, "", KEY_SPACE_END), part(2, "m", KEY_SPACE_END, [], true)], keys)), [1], "a frozen source under its target");
  assert.equal(coverSpace([part(1, 0, HASH_SPACE)], keys), null, "another kind of range");
  assert.equal(coverSpace([part(1, "", KEY_SPACE_END)], wholeSpace("hash")), null);
});

test("a merged page: the first `limit` ids of every part, more exactly when the parts hold more, and each part's shard and version as its session token", () => {
  const parts = [part(1, 0, H, ["a", "c", "e"]), part(2, H, HASH_SPACE, ["b", "d"])];
  assert.deepEqual(mergePages(parts, 2), { records: [["a", { payload: "a", version: 1 }], ["b", { payload: "b", version: 1 }]], more: true, session: [[1, 11], [2, 12]] });
  assert.equal(mergePages(parts, 5).more, false, "exactly full: nothing follows");
  assert.equal(mergePages(parts, 5).records.length, 5);
  assert.equal(mergePages(parts, 4).more, true);
  assert.deepEqual(mergePages([part(1, 0, HASH_SPACE)], 3), { records: [], more: false, session: [[1, 11]] }, "an empty shard read is still a read the session saw");
});
