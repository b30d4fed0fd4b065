import { test } from "node:test";
import assert from "node:assert/strict";
import { FrameDecoder, FrameError, encodeFrame } from "./framing.js";

test("frames survive arbitrary splitting of the byte stream", () => {
  const payloads = [{ a: 1 }, { envs: [{ group: 7, msg: { data: new Uint8Array([1, 2, 3]) } }] }, "x".repeat(5000)];
  const stream = Buffer.concat(payloads.map(encodeFrame));
  for (const step of [1, 3, 7, 100, stream.byteLength]) {
    const d = new FrameDecoder();
    const out: unknown[] = [];
    for (let i = 0; i < stream.byteLength; i += step) out.push(...d.push(stream.subarray(i, i + step)));
    assert.equal(out.length, 3);
    assert.deepEqual([...(out[1] as { envs: { msg: { data: Uint8Array } }[] }).envs[0]!.msg.data], [1, 2, 3]);
    assert.equal(d.pendingBytes(), 0);
  }
});

test("an oversized length is a protocol error, not an allocation", () => {
  const d = new FrameDecoder();
  const evil = Buffer.alloc(8);
  evil.writeUInt32LE(0xffffffff, 0);
  assert.throws(() => d.push(evil), FrameError);
});
