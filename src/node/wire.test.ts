import { test } from "node:test";
import assert from "node:assert/strict";
import { pack, unpack } from "msgpackr";
import { EntryType, MessageType, message } from "../raft/index.js";
import { Rng } from "../util/rng.js";
import { WireError, onlyTellsCommit, packBeat, packMessage, splitCommitNotices, unpackBeat, unpackMessage } from "./wire.js";

/** Through msgpack, as on the wire; Buffers come back as Uint8Arrays for comparison. */
const overWire = (v: unknown): unknown => unpack(pack(v));
const plain = (v: unknown): unknown => {
  if (v instanceof Uint8Array) return { bytes: [...v] };
  if (Array.isArray(v)) return v.map(plain);
  if (typeof v === "object" && v !== null) return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, plain(x)]));
  return v;
};

test("heartbeats and their responses survive the compact form with every field Raft reads", () => {
  const hb = message({ type: MessageType.Heartbeat, from: 1, to: 2, term: 7, commit: 40, leaseTick: 123, context: new Uint8Array([9, 9]) });
  const resp = message({ type: MessageType.HeartbeatResponse, from: 2, to: 1, term: 7, leaseTick: 123, reject: true, rejectHint: 33 });
  const wire = overWire([packBeat(5, hb), packBeat(6, resp)]) as unknown[];
  const a = unpackBeat(1, 2, wire[0]);
  const b = unpackBeat(2, 1, wire[1]);
  assert.equal(a.group, 5);
  assert.deepEqual(plain(a.msg), plain(hb));
  assert.equal(b.group, 6);
  assert.deepEqual(b.msg, resp);
});

test("every message type, with entries and snapshot chunks, survives the tuple form field for field", () => {
  const rng = new Rng(42);
  const types = Object.values(MessageType).filter((v): v is MessageType => typeof v === "number" && v >= MessageType.Propose);
  for (let i = 0; i < 300; i++) {
    const type = types[rng.int(types.length)]!;
    const n = rng.int(4);
    const m = message({
      type, from: 1 + rng.int(5), to: 1 + rng.int(5), term: rng.int(1e9), logTerm: rng.int(100), index: rng.int(1e12),
      commit: rng.int(1e6), reject: rng.int(2) === 1, rejectHint: rng.int(1000), rejectHintTerm: rng.int(9), leaseTick: rng.int(1e6),
      offset: rng.int(1e9), attempt: rng.int(5), transfer: rng.int(2) === 1,
      context: rng.int(2) === 1 ? new Uint8Array([rng.int(256), rng.int(256)]) : null,
      entries: Array.from({ length: n }, (_, k) => ({
        term: 3, index: 100 + k, type: k === 0 ? EntryType.ConfChange : EntryType.Normal, data: new Uint8Array(rng.int(20)).fill(k),
      })),
      snapshotChunk: rng.int(3) === 0 ? {
        meta: { index: 50, term: 2, confState: { voters: [1, 2, 3], votersOutgoing: [], learners: [4], learnersNext: [], autoLeave: false } },
        offset: 4096, data: new Uint8Array([1, 2, 3]), totalBytes: 9000, attempt: 2,
      } : null,
    });
    const back = unpackMessage(m.from, m.to, overWire(packMessage(m)));
    assert.deepEqual(plain(back), plain(m), `message ${i} (${MessageType[type]})`);
  }
});

test("malformed tuples from a peer are refused with a WireError, never passed on", () => {
  const good = packMessage(message({ type: MessageType.Append, term: 1, entries: [{ term: 1, index: 2, type: EntryType.Normal, data: new Uint8Array(1) }] }));
  const bad: unknown[] = [
    "nope", [], good.slice(0, 5), [...good, 1], // wrong shape; a partial entry
    Object.assign([...good], { 0: 999 }), // unknown type
    Object.assign([...good], { 1: -1 }), // negative term
    Object.assign([...good], { 3: 1.5 }), // fractional index
    Object.assign([...good], { 11: "ctx" }), // context not bytes
    Object.assign([...good], { 15: 7 }), // entry type
    Object.assign([...good], { 16: "data" }), // entry data not bytes
    Object.assign([...good], { 12: [1, 2] }), // snapshot chunk shape
  ];
  for (const [i, t] of bad.entries()) assert.throws(() => unpackMessage(1, 2, t), WireError, `case ${i}`);
  for (const t of [[1, 0, 1, 1, 1, 0, 0], [1, 2, 1, 1, 1, 0, 0, null], [1, 0, "x", 1, 1, 0, 0, null], [1, 0, 1, 1, 1, 0, 0, 5]]) {
    assert.throws(() => unpackBeat(1, 2, t), WireError);
  }
});

test("commit notices wait for the turn's answers; a peer sent anything else gets all of its messages now, in order", () => {
  const entry = { term: 3, index: 11, type: EntryType.Normal, data: new Uint8Array([1]) };
  const notice = (to: number) => message({ type: MessageType.Append, from: 1, to, term: 3, index: 10, logTerm: 3, commit: 10 });
  const beat = (to: number, context: Uint8Array | null) => message({ type: MessageType.Heartbeat, from: 1, to, term: 3, commit: 10, context });
  const append = (to: number) => message({ type: MessageType.Append, from: 1, to, term: 3, index: 10, logTerm: 3, commit: 10, entries: [entry] });
  const vote = (to: number) => message({ type: MessageType.Vote, from: 1, to, term: 4, index: 11, logTerm: 3 });

  assert.equal(onlyTellsCommit(notice(2)), true);
  assert.equal(onlyTellsCommit(beat(2, null)), true);
  assert.equal(onlyTellsCommit(beat(2, new Uint8Array([7]))), false, "a heartbeat of a ReadIndex round is on a read's path");
  assert.equal(onlyTellsCommit(append(2)), false);
  assert.equal(onlyTellsCommit(vote(2)), false);

  // Peer 2 gets entries, so its notice goes now with them, in order; peer 3 only hears of the commit.
  const msgs = [notice(2), notice(3), append(2), beat(3, null)];
  const { now, later } = splitCommitNotices(msgs);
  assert.deepEqual(now, [msgs[0], msgs[2]]);
  assert.deepEqual(later, [msgs[1], msgs[3]]);
  // Nothing to hold back: the same messages, all now.
  const urgent = [append(2), vote(3)];
  assert.deepEqual(splitCommitNotices(urgent), { now: urgent, later: [] });
  assert.deepEqual(splitCommitNotices([]), { now: [], later: [] });
});
