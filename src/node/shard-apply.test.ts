import { test } from "node:test";
import assert from "node:assert/strict";
import { hashOf } from "../meta/ranges.js";
import { type ConfState, type Entry, EntryType } from "../raft/index.js";
import { encodeProposal, type ShardCommand, type StoredRecord } from "./records.js";
import { SPLIT_LOG_INDEX, applyShardEntries, cutRange } from "./shard-apply.js";

const conf: ConfState = { voters: [1, 2, 3], votersOutgoing: [], learners: [], learnersNext: [], autoLeave: false };
let index = 10;
const entry = (cmd: ShardCommand, seq: number): Entry => ({ term: 2, index: ++index, type: EntryType.Normal, data: encodeProposal({ origin: [1, seq], cmd }) });

test("a split moves the records of the upper part to the child (stored ones and ones applied in the same batch); later commands for moved ids are refused", () => {
  const keys = Array.from({ length: 200 }, (_, i) => `k${i}`);
  const at = 2 ** 31;
  const stored = new Map<string, StoredRecord>(keys.slice(0, 100).map((k, i) => [k, { payload: i, version: 1 }]));
  const reader = { get: (k: string) => stored.get(k), all: () => [...stored] };
  const upper = keys.find((k) => hashOf(k) >= at)!;
  const lower = keys.find((k) => hashOf(k) < at)!;
  const entries = [
    ...keys.slice(100).map((k, i) => entry({ op: "put", key: k, payload: `new${i}` }, i)),
    entry({ op: "split", at, child: 9 }, 500),
    entry({ op: "put", key: upper, payload: "late" }, 501),
    entry({ op: "put", key: lower, payload: "stays" }, 502),
    entry({ op: "split", at: at + 5, child: 10 }, 503), // outside what is left: refused
  ];
  const r = applyShardEntries(1, entries, { range: { start: 0, end: 2 ** 32 }, splits: [] }, reader, () => conf, () => conf);
  assert.deepEqual(r.shard.range, { start: 0, end: at });
  assert.equal(r.shard.splits.length, 1);
  assert.deepEqual(r.shard.splits[0], { child: 9, at, end: 2 ** 32, index: entries[100]!.index });
  assert.deepEqual(r.children, [9]);
  const [parent, child] = r.changes;
  assert.equal(child!.group, 9);
  assert.equal(child!.appliedIndex, SPLIT_LOG_INDEX);
  assert.equal(child!.unlogged, true);
  assert.deepEqual(child!.confState, conf, "the child starts with the parent's configuration as of the split");
  assert.deepEqual(child!.shard, { range: { start: at, end: 2 ** 32 }, splits: [] });
  const moved = new Set(child!.puts!.map(([k]) => k));
  assert.deepEqual([...moved].sort(), keys.filter((k) => hashOf(k) >= at).sort(), "exactly the upper part moved, stored and new alike");
  assert.ok(parent!.deletes!.every((k) => moved.has(k)) && parent!.deletes!.length === moved.size, "and left the parent");
  assert.ok(parent!.puts!.every(([k]) => hashOf(k) < at));
  const results = new Map(r.results.map(([o, res]) => [o[1], res]));
  assert.deepEqual(results.get(501), { ok: false, code: "wrong_shard" }, "an id that moved is refused, nothing written");
  assert.equal(results.get(502)?.ok, true);
  assert.equal(parent!.puts!.find(([k]) => k === lower)?.[1] && (parent!.puts!.find(([k]) => k === lower)![1] as StoredRecord).payload, "stays");
  assert.equal(results.get(503)?.ok ? null : (results.get(503) as { code: string }).code, "bad_split");
  assert.equal(parent!.shard, r.shard);
});

test("a split point must be strictly inside the range", () => {
  assert.equal(cutRange({ start: 10, end: 20 }, 10), null);
  assert.equal(cutRange({ start: 10, end: 20 }, 20), null);
  assert.equal(cutRange({ start: 10, end: 20 }, 15.5), null);
  assert.deepEqual(cutRange({ start: 10, end: 20 }, 11), { lower: { start: 10, end: 11 }, upper: { start: 11, end: 20 } });
});

test("merge steps: a frozen shard refuses writes; an absorb takes a bordering neighbour's records and range once, and refuses one that does not border", () => {
  const reader = { get: () => undefined, all: () => [] as [string, StoredRecord][] };
  const half = 2 ** 31;
  const upperKey = Array.from({ length: 100 }, (_, i) => `m${i}`).find((k) => hashOf(k) >= half)!;
  const lowerKey = Array.from({ length: 100 }, (_, i) => `m${i}`).find((k) => hashOf(k) < half)!;
  const source = applyShardEntries(2, [entry({ op: "freeze", into: 1 }, 1), entry({ op: "put", key: upperKey, payload: 1 }, 2)],
    { range: { start: half, end: 2 ** 32 }, splits: [] }, reader, () => conf, () => conf);
  assert.equal(source.shard.frozen?.into, 1);
  assert.deepEqual(source.results[1]![1], { ok: false, code: "wrong_shard" }, "a frozen shard's records are final");
  const records: [string, StoredRecord][] = [[upperKey, { payload: "moved", version: 3 }], [lowerKey, { payload: "not mine", version: 3 }]];
  const absorb = { op: "absorb" as const, from: 2, start: half, end: 2 ** 32, records };
  const targetEntries = [entry(absorb, 3), entry(absorb, 4), entry({ op: "put", key: upperKey, payload: 2 }, 5)];
  const target = applyShardEntries(1, targetEntries, { range: { start: 0, end: half }, splits: [] }, reader, () => conf, () => conf);
  assert.deepEqual(target.shard.range, { start: 0, end: 2 ** 32 });
  assert.deepEqual(target.shard.absorbed?.map((a) => a.from), [2], "absorbed once");
  assert.deepEqual(target.results.map(([, r]) => r.ok), [true, true, true], "the second absorb answers ok again; the merged id is writable");
  const puts = new Map(target.changes[0]!.puts!);
  assert.deepEqual(puts.get(upperKey), { payload: 2, version: targetEntries[2]!.index });
  assert.equal(puts.has(lowerKey), false, "only ids of the absorbed range are taken");
  const far = applyShardEntries(1, [entry({ ...absorb, start: half + 10 }, 6)], { range: { start: 0, end: half }, splits: [] }, reader, () => conf, () => conf);
  assert.deepEqual(far.results[0]![1], { ok: false, code: "not_adjacent" });
  const thawed = applyShardEntries(2, [entry({ op: "unfreeze" }, 7), entry({ op: "put", key: upperKey, payload: 3 }, 8)], source.shard, reader, () => conf, () => conf);
  assert.equal(thawed.shard.frozen, undefined);
  assert.equal(thawed.results[1]![1].ok, true, "unfrozen, it takes writes again");
});
