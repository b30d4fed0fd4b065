import { test } from "node:test";
import assert from "node:assert/strict";
import { KEY_SPACE_END, cutRange, hashOf } from "../meta/ranges.js";
import { type ConfState, type Entry, EntryType } from "../raft/index.js";
import { encodeProposal, type ShardCommand, type StoredRecord } from "./records.js";
import { SPLIT_LOG_INDEX, applyShardEntries } from "./shard-apply.js";
import { RememberedQueue, outcomeKey, outcomeKeyByRecord, ownerOf } from "./idempotency.js";
import { sha256WriteFingerprint, writeFingerprint } from "./write-fingerprint.js";
import { pack, unpack } from "msgpackr";
import type { GroupChanges } from "../storage/state-store.js";
import { type SplitFill, fillPart } from "./split-fill.js";

const conf: ConfState = { voters: [1, 2, 3], votersOutgoing: [], learners: [], learnersNext: [], autoLeave: false };
let index = 10;
/** A reader over a store of values, which hands them out packed, as the state store does. */
const readerOf = (stored: Map<string, unknown>, remembered = () => new RememberedQueue(), pendingFills: { child: number; range: { start: number; end: number } }[] = []) => ({
  get: (k: string) => stored.get(k), remembered, pendingFills: () => pendingFills,
  packed: (pick: (k: string) => boolean) => [...stored].filter(([k]) => pick(k)).map(([k, v]): [string, Uint8Array] => [k, pack(v)]),
});
const NO_STORE = readerOf(new Map());
/** A split child's puts, packed ones unpacked: what its replicas store. */
const childPuts = (c: { puts?: [string, unknown][]; packedPuts?: [string, Uint8Array][] }): [string, unknown][] =>
  [...(c.puts ?? []), ...(c.packedPuts ?? []).map(([k, b]): [string, unknown] => [k, unpack(b)])];
/** A store's state after a group's changes. */
const stateAfter = (stored: Map<string, unknown>, c: GroupChanges) => {
  const s = new Map(stored);
  for (const k of c.deletes ?? []) s.delete(k);
  for (const [k, v] of c.puts ?? []) s.set(k, v);
  return s;
};
/**
 * What the host's fill (split-fill.ts) moves from a parent's stored state to a split child, walking 3
 * keys a part: the child's entries (as stored, read back), and the parent's state after.
 */
function filled(parent: Map<string, unknown>, childChange: GroupChanges): { moved: [string, unknown][]; parentAfter: Map<string, unknown> } {
  const keys = [...parent.keys()].sort();
  const store = {
    applied: () => 1,
    packedPart: (_group: number, pick: (k: string) => boolean, cursor: unknown, keysMax: number) => {
      const walked = keys.filter((k) => cursor === undefined || k > (cursor as string)).slice(0, keysMax);
      return { entries: walked.filter(pick).map((k): [string, Uint8Array] => [k, pack(parent.get(k))]), cursor: walked.length < keysMax ? undefined : walked[walked.length - 1] };
    },
  };
  assert.equal(childChange.fillFrom, 1, "the child is marked filling from its parent");
  assert.equal(childPuts(childChange).length, 0, "the split itself moves nothing");
  const fill: SplitFill = { child: childChange.group, parent: 1, range: childChange.shard!.range, remembered: null, cursor: undefined, started: true, commitAwaited: false, keysMoved: 0, parts: 0, startedAtMs: 0 };
  const moved: [string, unknown][] = [];
  const parentAfter = new Map(parent);
  for (let done = false; !done;) {
    const part = fillPart(store, fill, 3);
    for (const c of part.changes) {
      if (c.group === fill.child) moved.push(...childPuts(c));
      else for (const k of c.deletes ?? []) parentAfter.delete(k);
      if (c.group === fill.child && part.done) assert.equal(c.fillFrom, null, "the last part clears the mark");
    }
    done = part.done;
  }
  assert.equal(fill.parts, Math.floor(keys.length / 3) + 1);
  return { moved, parentAfter };
}
const entry = (cmd: ShardCommand, seq: number): Entry => ({ term: 2, index: ++index, type: EntryType.Normal, data: encodeProposal({ origin: [1, seq], cmd }) });

test("a split gives the upper part to the child, whose fill moves its records from the parent (stored ones and ones applied in the same batch); later commands for moved ids are refused", () => {
  const keys = Array.from({ length: 200 }, (_, i) => `k${i}`);
  const at = 2 ** 31;
  const stored = new Map<string, StoredRecord>(keys.slice(0, 100).map((k, i) => [k, { payload: i, version: 1 }]));
  const reader = readerOf(stored);
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
  assert.deepEqual(r.children.map((c) => c.child), [9]);
  const [parent, child] = r.changes;
  assert.equal(child!.group, 9);
  assert.equal(child!.appliedIndex, SPLIT_LOG_INDEX);
  assert.equal(child!.unlogged, true);
  assert.deepEqual(child!.confState, conf, "the child starts with the parent's configuration as of the split");
  assert.deepEqual(child!.shard, { range: { start: at, end: 2 ** 32 }, splits: [], versionBase: entries[100]!.index - SPLIT_LOG_INDEX },
    "the child's versions continue above the parent's");
  const { moved: movedEntries, parentAfter } = filled(stateAfter(stored, parent!), child!);
  const moved = new Set(movedEntries.map(([k]) => k));
  assert.equal(movedEntries.length, moved.size, "each once");
  const storedUpper = keys.slice(0, 100).find((id) => hashOf(id) >= at)!;
  assert.deepEqual(movedEntries.find(([k]) => k === storedUpper), [storedUpper, { payload: keys.indexOf(storedUpper), version: 1 }], "a stored record moves as stored");
  assert.deepEqual([...moved].sort(), keys.filter((k) => hashOf(k) >= at).sort(), "exactly the upper part moved, stored and new alike");
  assert.ok([...parentAfter.keys()].every((k) => hashOf(k) < at), "and left the parent");
  assert.equal(parentAfter.size, keys.length - moved.size);
  const results = new Map(r.results.map(([o, res]) => [o[1], res]));
  assert.deepEqual(results.get(501), { ok: false, code: "wrong_shard" }, "an id that moved is refused, nothing written");
  assert.equal(results.get(502)?.ok, true);
  assert.equal(parent!.puts!.find(([k]) => k === lower)?.[1] && (parent!.puts!.find(([k]) => k === lower)![1] as StoredRecord).payload, "stays");
  assert.equal(results.get(503)?.ok ? null : (results.get(503) as { code: string }).code, "bad_split");
  assert.equal(parent!.shard, r.shard);
});

test("a range collection's shard splits by id order: ids from the split point on (and their remembered outcomes) move to the child; writes are checked against the id range", () => {
  const keys = ["a1", "b2", "k", "k0", "m5", "z9"];
  const stored = new Map<string, unknown>(keys.map((k, i) => [k, { payload: i, version: 1 } satisfies StoredRecord]));
  // One outcome under each form of key: by version (written now), by record id (stores written before).
  stored.set(outcomeKey(1, "m5", "idem-1"), { v: 1, exp: 1e15, fp: "f", r: { ok: true, version: 1 } });
  stored.set(outcomeKeyByRecord("z9", "idem-2"), { v: 1, exp: 1e15, fp: "f", r: { ok: true, version: 1 } });
  stored.set(outcomeKey(1, "b2", "idem-3"), { v: 1, exp: 1e15, fp: "f", r: { ok: true, version: 1 } });
  const reader = readerOf(stored);
  const entries = [
    entry({ op: "put", key: "c3", payload: "new" }, 1),
    entry({ op: "split", at: "k", child: 9 }, 2),
    entry({ op: "put", key: "k1", payload: "late" }, 3),
    entry({ op: "put", key: "j", payload: "stays" }, 4),
    entry({ op: "split", at: 7, child: 10 }, 5), // a hash in an id range: refused
    entry({ op: "put-many", items: [{ key: "b", payload: 1 }, { key: "x", payload: 2 }] }, 6),
  ];
  const r = applyShardEntries(1, entries, { range: { start: "", end: KEY_SPACE_END }, splits: [] }, reader, () => conf, () => conf);
  assert.deepEqual(r.shard.range, { start: "", end: "k" });
  assert.deepEqual(r.shard.splits.map((sp) => [sp.child, sp.at, sp.end]), [[9, "k", KEY_SPACE_END]]);
  const [parent, child] = r.changes;
  assert.deepEqual(child!.shard!.range, { start: "k", end: KEY_SPACE_END });
  const { moved, parentAfter } = filled(stateAfter(stored, parent!), child!);
  assert.deepEqual(moved.map(([k]) => k).sort(), ["k", "k0", "m5", outcomeKey(1, "m5", "idem-1"), "z9", outcomeKeyByRecord("z9", "idem-2")].sort(), "the ids from \"k\" on, with their outcomes");
  assert.deepEqual([...parentAfter.keys()].sort(), ["a1", "b", "b2", "c3", "j", outcomeKey(1, "b2", "idem-3")].sort());
  assert.deepEqual(parent!.puts!.map(([k]) => k).sort(), ["b", "c3", "j"]);
  const results = new Map(r.results.map(([o, res]) => [o[1], res]));
  assert.deepEqual(results.get(3), { ok: false, code: "wrong_shard" }, "an id at or above the split point left the shard");
  assert.equal(results.get(4)?.ok, true);
  assert.equal(results.get(5)?.ok ? null : (results.get(5) as { code: string }).code, "bad_split");
  assert.deepEqual((results.get(6) as { refused?: number[] }).refused, [1], "a batch item above the range is refused alone");
});

test("a child merged back into its parent before this replica filled it: the absorb finishes the fill first, so the parent holds the absorbed records and none of the stale ones", () => {
  const at = 2 ** 31;
  const ids = Array.from({ length: 60 }, (_, i) => `a${i}`);
  const upper = ids.filter((id) => hashOf(id) >= at);
  const lower = ids.filter((id) => hashOf(id) < at);
  const stored = new Map<string, unknown>(ids.map((id) => [id, { payload: "before", version: 1 } satisfies StoredRecord]));
  // What the child held when it was merged back: its first record rewritten, its second deleted.
  const absorbed: [string, StoredRecord][] = upper.slice(2).map((id) => [id, { payload: "child's", version: 50 }]);
  absorbed.unshift([upper[0]!, { payload: "rewritten", version: 60 }]);
  const absorb = { op: "absorb" as const, from: 9, start: at, end: 2 ** 32, records: absorbed, versionMax: 60 };
  const whole = { range: { start: 0, end: 2 ** 32 }, splits: [] };
  const check = (r: ReturnType<typeof applyShardEntries>, what: string) => {
    assert.deepEqual(r.filled, [9], `${what}: the fill is finished by the absorb`);
    const parent = r.changes.find((c) => c.group === 1)!;
    const after = stateAfter(stored, parent);
    assert.deepEqual([...after.keys()].sort(), [...lower, upper[0]!, ...upper.slice(2)].sort(), `${what}: the deleted record stays deleted`);
    assert.deepEqual((after.get(upper[0]!) as StoredRecord).payload, "rewritten", `${what}: the absorbed version, not the stale one`);
    const child = r.changes.filter((c) => c.group === 9).at(-1)!;
    assert.equal(child.fillFrom, null, `${what}: the child's filling mark is cleared`);
    assert.deepEqual(childPuts(child).map(([k]) => k).sort(), [...upper].sort(), `${what}: the child got what the split gave it`);
  };
  // The split and the absorb in one batch (a replica catching up), and an absorb while a fill from an earlier batch is pending.
  check(applyShardEntries(1, [entry({ op: "split", at, child: 9 }, 1), entry(absorb, 2)], whole, readerOf(stored), () => conf, () => conf), "one batch");
  const split = applyShardEntries(1, [entry({ op: "split", at, child: 9 }, 3)], whole, readerOf(stored), () => conf, () => conf);
  assert.deepEqual(split.filled, [], "without an absorb the host fills the child");
  check(applyShardEntries(1, [entry(absorb, 4)], split.shard, readerOf(stored, undefined, [{ child: 9, range: { start: at, end: 2 ** 32 } }]), () => conf, () => conf), "pending fill");
});

test("a split point must be strictly inside the range", () => {
  assert.equal(cutRange({ start: 10, end: 20 }, 10), null);
  assert.equal(cutRange({ start: 10, end: 20 }, 20), null);
  assert.equal(cutRange({ start: 10, end: 20 }, 15.5), null);
  assert.deepEqual(cutRange({ start: 10, end: 20 }, 11), { lower: { start: 10, end: 11 }, upper: { start: 11, end: 20 } });
});

test("merge steps: a frozen shard refuses writes; an absorb takes a bordering neighbour's records and range once, and refuses one that does not border", () => {
  const reader = NO_STORE;
  const half = 2 ** 31;
  const upperKey = Array.from({ length: 100 }, (_, i) => `m${i}`).find((k) => hashOf(k) >= half)!;
  const lowerKey = Array.from({ length: 100 }, (_, i) => `m${i}`).find((k) => hashOf(k) < half)!;
  const source = applyShardEntries(2, [entry({ op: "freeze", into: 1 }, 1), entry({ op: "put", key: upperKey, payload: 1 }, 2)],
    { range: { start: half, end: 2 ** 32 }, splits: [] }, reader, () => conf, () => conf);
  assert.equal(source.shard.frozen?.into, 1);
  assert.deepEqual(source.results[1]![1], { ok: false, code: "wrong_shard" }, "a frozen shard's records are final");
  const records: [string, StoredRecord][] = [[upperKey, { payload: "moved", version: 3 }], [lowerKey, { payload: "not mine", version: 3 }]];
  const absorb = { op: "absorb" as const, from: 2, start: half, end: 2 ** 32, records, versionMax: 3 };
  const targetEntries = [entry(absorb, 3), entry(absorb, 4), entry({ op: "put", key: upperKey, payload: 2 }, 5)];
  const target = applyShardEntries(1, targetEntries, { range: { start: 0, end: half }, splits: [] }, reader, () => conf, () => conf);
  assert.deepEqual(target.shard.range, { start: 0, end: 2 ** 32 });
  assert.deepEqual(target.shard.absorbed?.map((a) => a.from), [2], "absorbed once");
  assert.deepEqual(target.results.map(([, r]) => r.ok), [true, true, true], "the second absorb answers ok again; the merged id is writable");
  const puts = new Map(target.changes[0]!.puts!);
  assert.deepEqual(puts.get(upperKey), { payload: 2, version: targetEntries[2]!.index }, "a target ahead of its source keeps its versions");
  assert.equal(puts.has(lowerKey), false, "only ids of the absorbed range are taken");
  const far = applyShardEntries(1, [entry({ ...absorb, start: half + 10 }, 6)], { range: { start: 0, end: half }, splits: [] }, reader, () => conf, () => conf);
  assert.deepEqual(far.results[0]![1], { ok: false, code: "not_adjacent" });
  const thawed = applyShardEntries(2, [entry({ op: "unfreeze" }, 7), entry({ op: "put", key: upperKey, payload: 3 }, 8)], source.shard, reader, () => conf, () => conf);
  assert.equal(thawed.shard.frozen, undefined);
  assert.equal(thawed.results[1]![1].ok, true, "unfrozen, it takes writes again");
});

/** A shard applied entry by entry over an in-memory store, as the host does. */
class ShardModel {
  readonly store = new Map<string, unknown>();
  queue: RememberedQueue | null = null;
  /** The children the last command's split made, with their queues. */
  children: { child: number; remembered: RememberedQueue }[] = [];
  state;
  nextIndex: number;
  constructor(readonly group: number, state: { range: { start: number; end: number }; splits: []; versionBase?: number }, firstIndex = 1) {
    this.state = state as ReturnType<typeof applyShardEntries>["shard"];
    this.nextIndex = firstIndex;
  }
  apply(cmd: ShardCommand, seq = this.nextIndex) {
    const e: Entry = { term: 1, index: this.nextIndex++, type: EntryType.Normal, data: encodeProposal({ origin: [1, seq], cmd }) };
    const reader = readerOf(this.store, () => (this.queue ??= RememberedQueue.from([...this.store].filter(([k]) => k >= "\u007f"))));
    const r = applyShardEntries(this.group, [e], this.state, reader, () => conf, () => conf);
    this.children = r.children;
    for (const ch of r.changes.filter((c) => c.group === this.group)) {
      for (const k of ch.deletes ?? []) this.store.delete(k);
      for (const [k, v] of ch.puts ?? []) this.store.set(k, v);
    }
    this.state = r.shard;
    return { result: r.results[0]![1], changes: r.changes };
  }
  /** Splits at `at`: the child shard as its replicas start it. */
  split(at: number, childId: number): ShardModel {
    const changes = this.apply({ op: "split", at, child: childId }).changes.find((c) => c.group === childId)!;
    const child = new ShardModel(childId, changes.shard as never, SPLIT_LOG_INDEX + 1);
    const { moved, parentAfter } = filled(this.store, changes);
    for (const [k, v] of moved) child.store.set(k, v);
    this.store.clear();
    for (const [k, v] of parentAfter) this.store.set(k, v);
    // The child takes its part of the parent's queue, as the host hands it over; it must be the queue
    // the child's own store would build.
    const handed = this.children.find((c) => c.child === childId)!.remembered;
    const built = RememberedQueue.from([...child.store].filter(([k]) => k >= "\u007f"));
    assert.deepEqual(handed, built, "the handed-over queue is the one the child's store builds");
    child.queue = handed;
    return child;
  }
}

const tag = (key: string, atMs: number, over: Partial<{ fingerprint: string; ttlMs: number; keysMax: number }> = {}) =>
  ({ key, fingerprint: "f1", atMs, ttlMs: 60_000, keysMax: 100, ...over });

test("versions only grow: across a split (child above parent) and a merge into a target whose log is behind its source's", () => {
  const at = 2 ** 31;
  const ids = Array.from({ length: 40 }, (_, i) => `r${i}`);
  const parent = new ShardModel(1, { range: { start: 0, end: 2 ** 32 }, splits: [] });
  const last = new Map<string, number>();
  for (let round = 0; round < 5; round++) for (const id of ids) last.set(id, (parent.apply({ op: "put", key: id, payload: round }).result as { version: number }).version);
  // A deleted record's delete version must stay below its re-creation's too.
  const gone = ids.find((id) => hashOf(id) >= at)!;
  last.set(gone, (parent.apply({ op: "delete", key: gone }).result as { version: number }).version);
  const child = parent.split(at, 2);
  for (const id of ids) {
    const shard = hashOf(id) >= at ? child : parent;
    const r = shard.apply({ op: "put", key: id, payload: "after split" }).result as { ok: true; version: number };
    assert.ok(r.ok && r.version > last.get(id)!, `${id}: version ${r.version} after the split, ${last.get(id)} before`);
    last.set(id, r.version);
  }
  // The child keeps writing (its log is far behind the parent's) and then merges into a fresh target.
  for (let i = 0; i < 3; i++) {
    for (const id of ids.filter((x) => hashOf(x) >= at)) last.set(id, (child.apply({ op: "put", key: id, payload: i }).result as { version: number }).version);
  }
  child.apply({ op: "freeze", into: 3 });
  const target = new ShardModel(3, { range: { start: 0, end: at }, splits: [] }, 1);
  const versionMax = (child.state.versionBase ?? 0) + child.state.frozen!.index;
  assert.ok(target.nextIndex < versionMax, "the target's log is behind the source's versions");
  const absorbed = target.apply({ op: "absorb", from: 2, start: at, end: 2 ** 32, records: [...child.store], versionMax });
  assert.equal(absorbed.result.ok, true);
  for (const id of ids.filter((x) => hashOf(x) >= at)) {
    const r = target.apply({ op: "put", key: id, payload: "after merge" }).result as { ok: true; version: number };
    assert.ok(r.version > last.get(id)!, `${id}: version ${r.version} after the merge, ${last.get(id)} before`);
    // A compare-and-set holding a version from before the merge is refused.
    assert.equal(target.apply({ op: "put", key: id, payload: "stale", ifVersion: last.get(id)! }).result.ok, false);
    last.set(id, r.version);
  }
});

test("across an upgrade of the fingerprint, a retry still gets its first outcome, and another write under the key is refused", () => {
  const s = new ShardModel(1, { range: { start: 0, end: 2 ** 32 }, splits: [] });
  const w = { op: "put" as const, key: "a", payload: { n: 1 } };
  const other = { op: "put" as const, key: "a", payload: { n: 2 } };
  // Applied as proposed by an older build (a SHA-256 fingerprint), asked again through this one.
  const first = s.apply({ ...w, idem: tag("k1", 1000, { fingerprint: sha256WriteFingerprint(w) }) }).result;
  assert.deepEqual(s.apply({ ...w, idem: tag("k1", 2000, { fingerprint: writeFingerprint(w) }) }).result, { ...first, replayed: true });
  assert.deepEqual(s.apply({ ...other, idem: tag("k1", 2000, { fingerprint: writeFingerprint(other) }) }).result, { ok: false, code: "idempotency_key_reused" });
  // And the other way round.
  const second = s.apply({ ...w, key: "b", idem: tag("k2", 3000, { fingerprint: writeFingerprint(w) }) }).result;
  assert.deepEqual(s.apply({ ...w, key: "b", idem: tag("k2", 4000, { fingerprint: sha256WriteFingerprint(w) }) }).result, { ...second, replayed: true });
  assert.deepEqual(s.apply({ ...other, key: "b", idem: tag("k2", 4000, { fingerprint: sha256WriteFingerprint(other) }) }).result, { ok: false, code: "idempotency_key_reused" });
});

test("an idempotency key answers the first outcome again without applying; another write under the key is refused", () => {
  const s = new ShardModel(1, { range: { start: 0, end: 2 ** 32 }, splits: [] });
  const first = s.apply({ op: "put", key: "a", payload: 1, idem: tag("k1", 1000) }).result;
  assert.deepEqual(first, { ok: true, version: 1 });
  s.apply({ op: "put", key: "b", payload: "other record" });
  const again = s.apply({ op: "put", key: "a", payload: 1, idem: tag("k1", 2000) }).result;
  assert.deepEqual(again, { ok: true, version: 1, replayed: true }, "the retry gets the first outcome");
  assert.equal((s.store.get("a") as StoredRecord).version, 1, "and applied nothing");
  assert.deepEqual(s.apply({ op: "put", key: "a", payload: 2, idem: tag("k1", 2000, { fingerprint: "f2" }) }).result, { ok: false, code: "idempotency_key_reused" });
  assert.equal(s.apply({ op: "put", key: "c", payload: 1, idem: tag("k1", 2000) }).result.ok, true, "keys are scoped to their record");
  // A compare-and-set refused is remembered as refused: asking again does not apply it later.
  const cas = s.apply({ op: "put", key: "a", payload: 3, ifVersion: 99, idem: tag("k2", 3000) }).result;
  assert.equal(cas.ok ? "" : cas.code, "version_mismatch");
  s.apply({ op: "put", key: "a", payload: 4 });
  assert.deepEqual(s.apply({ op: "put", key: "a", payload: 3, ifVersion: 99, idem: tag("k2", 4000) }).result, { ...cas, replayed: true });
  // Past its time to live, the key is forgotten: the same write applies again.
  const late = s.apply({ op: "put", key: "a", payload: 1, idem: tag("k1", 1000 + 60_001) }).result as { ok: true; version: number; replayed?: true };
  assert.equal(late.replayed, undefined);
  assert.ok(late.version > 1);
  // Deletes are remembered too.
  const del = s.apply({ op: "delete", key: "b", idem: tag("d", 70_000) }).result;
  assert.deepEqual(s.apply({ op: "delete", key: "b", idem: tag("d", 70_001) }).result, { ...del, replayed: true });
});

test("outcomes are stored in the order they are made; one stored under the older key (record id first) still answers, and goes when its key is used again", () => {
  const s = new ShardModel(1, { range: { start: 0, end: 2 ** 32 }, splits: [] });
  // A store written before outcomes were ordered by version: record "old", key "k-old", version 7.
  s.store.set("old", { payload: "first", version: 7 } satisfies StoredRecord);
  s.store.set(outcomeKeyByRecord("old", "k-old"), { v: 7, exp: 1000 + 60_000, fp: "f1", r: { ok: true, version: 7 } });
  s.nextIndex = 8;
  for (const id of ["zz", "aa", "mm", "bb"]) s.apply({ op: "put", key: id, payload: id, idem: tag(`k-${id}`, 1000) });
  const byVersion = [...s.store.keys()].filter((k) => k.startsWith("\u007fv")).sort();
  assert.deepEqual(byVersion.map((k) => k.split("\u001f")[1]), ["zz", "aa", "mm", "bb"], "sorted as written, whatever the record ids");
  assert.deepEqual(byVersion, [8, 9, 10, 11].map((v, i) => outcomeKey(v, ["zz", "aa", "mm", "bb"][i]!, `k-${["zz", "aa", "mm", "bb"][i]}`)));
  // A retry of the old write is answered from the older key, applying nothing.
  assert.deepEqual(s.apply({ op: "put", key: "old", payload: "first", idem: tag("k-old", 2000) }).result, { ok: true, version: 7, replayed: true });
  // After a restart the queue is rebuilt from both forms and answers the same.
  s.queue = null;
  assert.deepEqual(s.apply({ op: "put", key: "old", payload: "first", idem: tag("k-old", 3000) }).result, { ok: true, version: 7, replayed: true });
  assert.deepEqual(s.apply({ op: "put", key: "aa", payload: "aa", idem: tag("k-aa", 3000) }).result, { ok: true, version: 9, replayed: true });
  // Past its time to live the key applies again: the older key goes and the new outcome is stored by version.
  const again = s.apply({ op: "put", key: "old", payload: "second", idem: tag("k-old", 1000 + 60_001) }).result as { ok: true; version: number };
  assert.equal(again.ok, true);
  assert.equal(s.store.has(outcomeKeyByRecord("old", "k-old")), false);
  assert.ok(s.store.has(outcomeKey(again.version, "old", "k-old")));
  assert.deepEqual(s.apply({ op: "put", key: "old", payload: "second", idem: tag("k-old", 1000 + 60_002) }).result, { ...again, replayed: true });
  // The same again, from a store written by version: one outcome per key, always.
  const once = s.apply({ op: "put", key: "aa", payload: "aa2", idem: tag("k-aa", 1000 + 60_001) }).result as { ok: true; version: number };
  assert.deepEqual([...s.store.keys()].filter((k) => k.endsWith("k-aa")), [outcomeKey(once.version, "aa", "k-aa")]);
});

test("older outcome keys that a replica may hold cut (cut ones, and long ones another replica may hold cut) answer no retry, count toward no limit and are deleted: replicas holding different ones decide alike", () => {
  const long = `long-${"x".repeat(60)}`;
  const whole = outcomeKeyByRecord(long, "k-long");
  const cut = "\u007fk" + long; // what a snapshot install before 2026-12-05 stored for it
  assert.equal(ownerOf(whole), long);
  assert.equal(ownerOf(cut), long, "a cut key still names its record (splits move it with the record)");
  const replicas = [new ShardModel(1, { range: { start: 0, end: 2 ** 32 }, splits: [] }), new ShardModel(1, { range: { start: 0, end: 2 ** 32 }, splits: [] }),
    new ShardModel(1, { range: { start: 0, end: 2 ** 32 }, splits: [] })];
  const outcome = (v: number) => ({ v, exp: 1000 + 60_000, fp: "f1", r: { ok: true, version: v } });
  for (const s of replicas) {
    s.store.set("old", { payload: "first", version: 7 } satisfies StoredRecord);
    s.store.set(long, { payload: "first", version: 8 } satisfies StoredRecord);
    s.store.set(outcomeKeyByRecord("old", "k-old"), outcome(7)); // short: whole on every replica
    s.nextIndex = 9;
  }
  replicas[0]!.store.set(whole, outcome(8));
  replicas[1]!.store.set(cut, outcome(8));
  // replicas[2] holds neither (an older queue rebuild deleted the cut key's twin, say).
  const steps: ShardCommand[] = [
    { op: "put", key: "a", payload: 1, idem: tag("k-a", 2000, { keysMax: 2 }) },
    { op: "put", key: "old", payload: "first", idem: tag("k-old", 2000, { keysMax: 2 }) },
    { op: "put", key: long, payload: "first", idem: tag("k-long", 2000, { keysMax: 2 }) },
    { op: "put", key: "b", payload: 2, idem: tag("k-b", 2000, { keysMax: 2 }) },
    { op: "put", key: "c", payload: 3, idem: tag("k-c", 2000, { keysMax: 2 }) },
    { op: "put", key: "a", payload: 1, idem: tag("k-a", 2000, { keysMax: 2 }) },
  ];
  const results = steps.map((cmd, i) => {
    replicas[1]!.queue = null; // rebuilt from the store each time, as after a restart: the cut key stopped a node here
    const rs = replicas.map((s) => s.apply(cmd).result);
    assert.deepEqual(rs[1], rs[0], `step ${i}`);
    assert.deepEqual(rs[2], rs[0], `step ${i}`);
    const stores = replicas.map((s) => [...s.store].sort());
    assert.deepEqual(stores[1], stores[0], `step ${i}: the same state on every replica once orphans are deleted`);
    assert.deepEqual(stores[2], stores[0], `step ${i}`);
    return rs[0]!;
  });
  assert.deepEqual(results[1], { ok: true, version: 7, replayed: true }, "a short older key still answers");
  assert.equal((results[2] as { replayed?: true }).replayed, undefined, "a long older key answers no retry: applied again, on every replica");
  assert.equal((results[5] as { replayed?: true }).replayed, undefined, "k-a was forgotten by count (keysMax 2)");
  assert.ok(replicas.every((s) => !s.store.has(whole) && !s.store.has(cut)));
});

test("the queue: an older key of 63 characters is an outcome, one of 64 an orphan; orphans are not counted, move with a split, and go 64 per forget", () => {
  const o = (v: number) => ({ v, exp: 1e15, fp: "f", r: { ok: true as const, version: v } });
  const id = (n: number) => `id-${"y".repeat(n - 3)}`;
  const k63 = outcomeKeyByRecord(id(50), "k".repeat(10)); // 2 + 50 + 1 + 10
  const k64 = outcomeKeyByRecord(id(51), "k".repeat(10));
  assert.deepEqual([k63.length, k64.length], [63, 64]);
  const orphans = Array.from({ length: 100 }, (_, i) => `\u007fkcut-${i}`);
  const q = RememberedQueue.from([[k63, o(1)], [k64, o(2)], ...orphans.map((k, i): [string, unknown] => [k, o(3 + i)])]);
  assert.equal(q.size, 1, "only the 63-character key is an outcome");
  assert.equal(q.storedAt(`${id(50)}\u001f${"k".repeat(10)}`), k63);
  assert.equal(q.storedAt(`${id(51)}\u001f${"k".repeat(10)}`), undefined);
  const removed: string[] = [];
  q.forget(0, 1, (k) => removed.push(k));
  assert.equal(removed.length, 64, "orphans deleted 64 at a time; the one outcome kept (1 <= keysMax, not expired)");
  assert.ok(!removed.includes(k63));
  // A split that moves the records of some orphans: those are the child's to delete now.
  const child = q.split((recordId) => recordId === "cut-0" || recordId === id(51));
  q.forget(0, 1, (k) => removed.push(k));
  assert.equal(new Set(removed).size, removed.length);
  assert.deepEqual(new Set(removed), new Set([k64, ...orphans].filter((k) => ownerOf(k) !== "cut-0" && ownerOf(k) !== id(51))));
  assert.equal(q.size, 1);
  const childRemoved: string[] = [];
  child.forget(0, 1, (k) => childRemoved.push(k));
  assert.deepEqual(childRemoved.sort(), [k64, "\u007fkcut-0"].sort(), "the moved orphans are the child's to delete");
  assert.equal(child.size, 0);
});

test("remembered keys are bounded by count (oldest forgotten first) and record scans never see them", () => {
  const s = new ShardModel(1, { range: { start: 0, end: 2 ** 32 }, splits: [] });
  for (let i = 0; i < 50; i++) s.apply({ op: "put", key: `r${i}`, payload: i, idem: tag(`k${i}`, 1000 + i, { keysMax: 10 }) });
  const outcomes = [...s.store.keys()].filter((k) => k >= "\u007f");
  assert.equal(outcomes.length, 10, "at most keysMax kept");
  const kept = outcomes.map((k) => k.split("\u001f").at(-1)).sort();
  assert.deepEqual(kept, Array.from({ length: 10 }, (_, i) => `k${40 + i}`), "the newest are kept");
  assert.equal(s.apply({ op: "put", key: "r0", payload: 0, idem: tag("k0", 2000, { keysMax: 10 }) }).result.ok, true);
  assert.equal((s.apply({ op: "put", key: "r49", payload: 49, idem: tag("k49", 2000, { keysMax: 10 }) }).result as { replayed?: true }).replayed, true);
});

test("remembered outcomes move with their records in a split and a merge: a retry on the new shard is answered, not applied", () => {
  const at = 2 ** 31;
  const ids = Array.from({ length: 30 }, (_, i) => `x${i}`);
  const parent = new ShardModel(1, { range: { start: 0, end: 2 ** 32 }, splits: [] });
  const first = new Map(ids.map((id) => [id, parent.apply({ op: "put", key: id, payload: id, idem: tag(`key-${id}`, 1000) }).result]));
  const child = parent.split(at, 2);
  for (const id of ids) {
    const shard = hashOf(id) >= at ? child : parent;
    assert.deepEqual(shard.apply({ op: "put", key: id, payload: id, idem: tag(`key-${id}`, 2000) }).result, { ...first.get(id)!, replayed: true }, id);
  }
  assert.ok([...parent.store.keys()].every((k) => hashOf(ownerOf(k)) < at), "the parent kept only its own");
  child.apply({ op: "freeze", into: 1 });
  const versionMax = (child.state.versionBase ?? 0) + child.state.frozen!.index;
  assert.equal(parent.apply({ op: "absorb", from: 2, start: at, end: 2 ** 32, records: [...child.store], versionMax }).result.ok, true);
  for (const id of ids) {
    assert.deepEqual(parent.apply({ op: "put", key: id, payload: id, idem: tag(`key-${id}`, 3000) }).result, { ...first.get(id)!, replayed: true }, id);
  }
});

test("what a shard forgets does not depend on when its queue was built: a replica that restarts forgets the same keys as one that kept running", () => {
  for (let seed = 1; seed <= 20; seed++) {
    let x = seed;
    const rand = (n: number) => {
      x = (x * 1103515245 + 12345) % 2 ** 31;
      return x % n;
    };
    const kept = new ShardModel(1, { range: { start: 0, end: 2 ** 32 }, splits: [] });
    const restarted = new ShardModel(1, { range: { start: 0, end: 2 ** 32 }, splits: [] });
    let nowMs = 0;
    for (let step = 0; step < 300; step++) {
      nowMs += rand(400);
      // Few records and keys, short and uneven lives and varying bounds: keys expire behind longer-lived
      // ones, are recorded again while their old place is still queued, and are evicted.
      const cmd: ShardCommand = { op: "put", key: `r${rand(5)}`, payload: step, idem: tag(`k${rand(12)}`, nowMs, { ttlMs: 200 + rand(4000), keysMax: 5 + rand(40) }) };
      restarted.queue = null; // rebuilt from the store, as after a restart or a snapshot
      assert.deepEqual(restarted.apply(cmd).result, kept.apply(cmd).result, `seed ${seed} step ${step}`);
      assert.deepEqual([...restarted.store].sort(), [...kept.store].sort(), `seed ${seed} step ${step}: the same keys remembered`);
    }
  }
});

test("a batch of puts applies at one version; items outside the range are refused alone; a frozen shard refuses the batch", () => {
  const reader = NO_STORE;
  const half = 2 ** 31;
  const keys = Array.from({ length: 40 }, (_, i) => `b${i}`);
  const inside = keys.filter((k) => hashOf(k) < half);
  const outside = keys.filter((k) => hashOf(k) >= half);
  const items = keys.map((key) => ({ key, payload: key }));
  const shard = { range: { start: 0, end: half }, splits: [] };
  const e = entry({ op: "put-many", items }, 4);
  const r = applyShardEntries(1, [e], shard, reader, () => conf, () => conf);
  const result = r.results[0]![1];
  assert.ok(result.ok);
  assert.equal(result.version, e.index, "the entry's version (base 0 + its index)");
  assert.ok(r.changes[0]!.puts!.every(([, rec]) => (rec as StoredRecord).version === e.index), "every item at that version");
  assert.deepEqual(result.refused, outside.map((k) => keys.indexOf(k)));
  assert.deepEqual(new Set(r.changes[0]!.puts!.map(([k]) => k)), new Set(inside));
  const frozen = applyShardEntries(1, [entry({ op: "freeze", into: 2 }, 5), entry({ op: "put-many", items }, 6)], shard, reader, () => conf, () => conf);
  assert.deepEqual(frozen.results[1]![1], { ok: false, code: "wrong_shard" });
  // A delete of a batch at versions: only records still at theirs (one written again since stays).
  const stored = new Map<string, StoredRecord>(inside.slice(0, 3).map((k, i) => [k, { payload: k, version: 10 + i }]));
  const at = { ...reader, get: (k: string) => stored.get(k) };
  const del = applyShardEntries(1, [entry({ op: "delete-many", keys: inside.slice(0, 3), versions: [10, 99, 12] }, 7)], shard, at, () => conf, () => conf);
  assert.deepEqual(del.results[0]![1], { ok: true, version: del.changes[0]!.appliedIndex, removed: 2 });
  assert.deepEqual(del.changes[0]!.deletes, [inside[0], inside[2]]);
});
