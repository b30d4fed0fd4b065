import { test } from "node:test";
import assert from "node:assert/strict";
import { crc32c } from "./crc32c.js";

test("crc32c matches the standard check value and detects a flipped bit", () => {
  const data = new TextEncoder().encode("123456789");
  assert.equal(crc32c(data), 0xe3069283);
  data[3]! ^= 0x10;
  assert.notEqual(crc32c(data), 0xe3069283);
  assert.equal(crc32c(new Uint8Array(0)), 0);
});

/** The definition, one bit at a time: the reference the table-driven version must agree with. */
function crc32cBitwise(data: Uint8Array, start: number, end: number): number {
  let crc = 0xffffffff;
  for (let i = start; i < end; i++) {
    crc ^= data[i]!;
    for (let k = 0; k < 8; k++) crc = crc & 1 ? 0x82f63b78 ^ (crc >>> 1) : crc >>> 1;
  }
  return (crc ^ 0xffffffff) >>> 0;
}

test("crc32c agrees with the bitwise definition for every length and alignment up to 64 bytes", () => {
  const data = new Uint8Array(200);
  let x = 12345;
  for (let i = 0; i < data.length; i++) data[i] = (x = (x * 1103515245 + 12345) >>> 0) >>> 24;
  for (let start = 0; start < 9; start++) {
    for (let len = 0; len <= 64; len++) assert.equal(crc32c(data, start, start + len), crc32cBitwise(data, start, start + len), `start ${start} len ${len}`);
  }
  assert.equal(crc32c(data), crc32cBitwise(data, 0, data.length));
  // RFC 3720 B.4 test vector: 32 bytes of zeros.
  assert.equal(crc32c(new Uint8Array(32)), 0x8a9136aa);
});
