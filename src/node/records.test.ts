import { test } from "node:test";
import assert from "node:assert/strict";
import { type Proposal, applyCommand, decodeProposal, encodeProposal } from "./records.js";

test("proposals round-trip through their log encoding, compare-and-set included", () => {
  const cases: Proposal[] = [
    { origin: [1, 7], cmd: { op: "put", key: "a", payload: { x: [1, "two", null] } } },
    { origin: [3, 1e12], cmd: { op: "put", key: "b", payload: null, ifVersion: 0 } },
    { origin: [2, 5], cmd: { op: "delete", key: "c" } },
    { origin: [2, 6], cmd: { op: "delete", key: "d", ifVersion: 42 } },
  ];
  for (const p of cases) assert.deepEqual(decodeProposal(encodeProposal(p)), p);
});

test("a command applies with versions equal to log indexes; a stale ifVersion changes nothing", () => {
  assert.deepEqual(applyCommand({ op: "put", key: "a", payload: 1 }, 10, undefined), { result: { ok: true, version: 10 }, write: { payload: 1, version: 10 } });
  assert.deepEqual(applyCommand({ op: "put", key: "a", payload: 2, ifVersion: 9 }, 11, { payload: 1, version: 10 }),
    { result: { ok: false, code: "version_mismatch", currentVersion: 10 }, write: undefined });
  assert.deepEqual(applyCommand({ op: "delete", key: "a", ifVersion: 10 }, 12, { payload: 1, version: 10 }), { result: { ok: true, version: 12 }, write: null });
  assert.deepEqual(applyCommand({ op: "delete", key: "a" }, 13, undefined), { result: { ok: true, version: 13 }, write: undefined });
});
