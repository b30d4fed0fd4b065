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

test("a large frame in many chunks is held until whole, then decoded once", () => {
  const data = new Uint8Array(1 << 20).map((_, i) => i % 251);
  const frame = encodeFrame({ data });
  const d = new FrameDecoder();
  const chunk = 64 << 10;
  for (let i = 0; i + chunk < frame.byteLength; i += chunk) {
    assert.deepEqual(d.push(frame.subarray(i, i + chunk)), []);
    assert.equal(d.pendingBytes(), i + chunk);
  }
  const last = Math.floor((frame.byteLength - 1) / chunk) * chunk;
  const [out] = d.push(Buffer.concat([frame.subarray(last), encodeFrame("next").subarray(0, 2)])) as [{ data: Uint8Array }];
  assert.deepEqual(Buffer.from(out.data), Buffer.from(data));
  assert.equal(d.pendingBytes(), 2, "the next frame's first bytes are kept");
});
