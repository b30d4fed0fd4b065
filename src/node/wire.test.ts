import { test } from "node:test";
import assert from "node:assert/strict";
import { pack, unpack } from "msgpackr";
import { EntryType, MessageType, message } from "../raft/index.js";
import { Rng } from "../util/rng.js";
import { WireError, packBeat, packMessage, unpackBeat, unpackMessage } from "./wire.js";

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
