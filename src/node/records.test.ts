import { test } from "node:test";
import assert from "node:assert/strict";
import { type Proposal, applyCommand, decodeProposal, encodeProposal, vectorBytes, vectorOf } from "./records.js";

test("proposals round-trip through their log encoding, compare-and-set included", () => {
  const cases: Proposal[] = [
    { origin: [1, 7], cmd: { op: "put", key: "a", payload: { x: [1, "two", null] } } },
    { origin: [3, 1e12], cmd: { op: "put", key: "b", payload: null, ifVersion: 0 } },
    { origin: [2, 5], cmd: { op: "delete", key: "c" } },
    { origin: [2, 6], cmd: { op: "delete", key: "d", ifVersion: 42 } },
    { origin: [2, 8], cmd: { op: "put", key: "v", payload: 1, vector: vectorBytes(new Float32Array([0.5, -2])) } },
    { origin: [2, 9], cmd: { op: "put", key: "w", payload: 1, ifVersion: 3, vector: vectorBytes(new Float32Array([1])) } },
    { origin: [4, 1], cmd: { op: "put-many", items: [{ key: "x", payload: { a: 1 } }, { key: "y", payload: 2, vector: vectorBytes(new Float32Array([3, 4])) }] } },
    { origin: [4, 2], cmd: { op: "put", key: "t", payload: 1, expiresAtMs: 1_700_000_000_000 } },
    { origin: [4, 3], cmd: { op: "put-many", items: [{ key: "x", payload: 1, expiresAtMs: 5 }, { key: "y", payload: 2, vector: vectorBytes(new Float32Array([1])), expiresAtMs: 6 }] } },
    { origin: [4, 4], cmd: { op: "delete-many", keys: ["a", "b"] } },
    { origin: [4, 5], cmd: { op: "delete-many", keys: ["a", "b"], versions: [3, 9] } },
  ];
  const plain = (v: unknown): unknown => {
    if (v instanceof Uint8Array) return { bytes: [...v] };
    if (Array.isArray(v)) return v.map(plain);
    if (typeof v === "object" && v !== null) return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, plain(x)]));
    return v;
  };
  for (const p of cases) assert.deepEqual(plain(decodeProposal(encodeProposal(p))), plain(p));
  // A stored vector reads back as its values, wherever the decoder's buffer put its bytes.
  const decoded = decodeProposal(encodeProposal(cases[4]!)).cmd as { vector: Uint8Array };
  assert.deepEqual([...vectorOf(decoded.vector)], [0.5, -2]);
});

test("a command applies with versions equal to log indexes; a stale ifVersion changes nothing", () => {
  let reads = 0;
  const current = (r: { payload: unknown; version: number } | undefined) => () => {
    reads++;
    return r;
  };
  assert.deepEqual(applyCommand({ op: "put", key: "a", payload: 1 }, 10, current(undefined)), { result: { ok: true, version: 10 }, write: { payload: 1, version: 10 } });
  assert.equal(reads, 0, "a plain put does not read the current record");
  assert.deepEqual(applyCommand({ op: "put", key: "a", payload: 2, ifVersion: 9 }, 11, current({ payload: 1, version: 10 })),
    { result: { ok: false, code: "version_mismatch", currentVersion: 10 }, write: undefined });
  assert.deepEqual(applyCommand({ op: "put", key: "a", payload: 2, ifVersion: 0 }, 11, current({ payload: 1, version: 10 })),
    { result: { ok: false, code: "version_mismatch", currentVersion: 10 }, write: undefined }, "ifVersion 0: must not exist");
  assert.deepEqual(applyCommand({ op: "put", key: "n", payload: 2, ifVersion: 0 }, 11, current(undefined)),
    { result: { ok: true, version: 11 }, write: { payload: 2, version: 11 } });
  assert.deepEqual(applyCommand({ op: "delete", key: "a", ifVersion: 10 }, 12, current({ payload: 1, version: 10 })), { result: { ok: true, version: 12, deleted: true }, write: null });
  assert.deepEqual(applyCommand({ op: "delete", key: "a" }, 13, current(undefined)), { result: { ok: true, version: 13, deleted: false }, write: undefined },
    "a delete of a missing record says so and writes nothing");
});
