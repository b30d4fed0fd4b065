import { test } from "node:test";
import assert from "node:assert/strict";
import { pack, unpack } from "msgpackr";
import { MessageType, message } from "../raft/index.js";
import { type BeatTuple, packBeat, unpackBeat } from "./heartbeats.js";

test("heartbeats and their responses survive the compact form (through msgpack) with every field Raft reads", () => {
  const hb = message({ type: MessageType.Heartbeat, from: 1, to: 2, term: 7, commit: 40, leaseTick: 123, context: new Uint8Array([9, 9]) });
  const resp = message({ type: MessageType.HeartbeatResponse, from: 2, to: 1, term: 7, leaseTick: 123, reject: true, rejectHint: 33 });
  const wire = unpack(pack([packBeat(5, hb), packBeat(6, resp)])) as BeatTuple[];
  const a = unpackBeat(1, 2, wire[0]!);
  const b = unpackBeat(2, 1, wire[1]!);
  assert.equal(a.group, 5);
  assert.deepEqual({ ...a.msg, context: [...a.msg.context!] }, { ...hb, context: [9, 9] });
  assert.equal(b.group, 6);
  assert.deepEqual(b.msg, resp);
});
