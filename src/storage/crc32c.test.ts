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
