import { test } from "node:test";
import assert from "node:assert/strict";
import { FINGERPRINT_MARK, sameWrite, sha256WriteFingerprint, writeFingerprint } from "./write-fingerprint.js";
import { type RecordCommand, decodeProposal, encodeProposal } from "./records.js";

const vec = (...xs: number[]) => new Uint8Array(new Float32Array(xs).buffer);
const put = (payload: unknown, more: Partial<Extract<RecordCommand, { op: "put" }>> = {}): RecordCommand => ({ op: "put", key: "a", payload, ...more });

test("a fingerprint is the mark and 128 bits, the same for the same write, whatever its record or key", () => {
  const fp = writeFingerprint(put({ title: "hello", n: [1, 2.5, null] }, { vector: vec(0.5, -1, 2), ifVersion: 3 }));
  assert.match(fp, /^~[A-Za-z0-9_-]{22}$/);
  assert.ok(fp.startsWith(FINGERPRINT_MARK));
  assert.equal(writeFingerprint({ op: "put", key: "other", payload: { title: "hello", n: [1, 2.5, null] }, vector: vec(0.5, -1, 2), ifVersion: 3 }), fp);
  // A payload decoded from the log (a copy, not the object parsed from the request) gives the same one.
  assert.equal(writeFingerprint(put(structuredClone({ title: "hello", n: [1, 2.5, null] }), { vector: vec(0.5, -1, 2), ifVersion: 3 })), fp);
});

test("a write decoded from the log has the fingerprint it was proposed with, in both kinds (a replica compares it so)", () => {
  const cmd = put({ title: "hi", n: [1, 2.5, { x: null }], safe: 9007199254740991, neg: -3, f: 0.1 }, { ifVersion: 4, vector: vec(1, 2) });
  const back = decodeProposal(encodeProposal({ origin: [1, 1], cmd })).cmd as RecordCommand;
  assert.equal(writeFingerprint(back), writeFingerprint(cmd));
  assert.equal(sha256WriteFingerprint(back), sha256WriteFingerprint(cmd));
});

test("what a write does changes its fingerprint: op, payload, compare-and-set version, vector", () => {
  const base = writeFingerprint(put({ a: 1 }));
  const others = [
    writeFingerprint({ op: "delete", key: "a" }),
    writeFingerprint({ op: "delete", key: "a", ifVersion: 4 }),
    writeFingerprint(put({ a: 2 })),
    writeFingerprint(put({ a: "1" })),
    writeFingerprint(put({ b: 1 })),
    writeFingerprint(put([{ a: 1 }])),
    writeFingerprint(put({ a: 1 }, { ifVersion: 1 })),
    writeFingerprint(put({ a: 1 }, { vector: vec(1, 2) })),
    writeFingerprint(put({ a: 1 }, { vector: vec(1, 2.0000002) })),
    writeFingerprint(put({ a: 1 }, { vector: new Uint8Array(0) })),
  ];
  assert.equal(new Set([base, ...others]).size, others.length + 1, "all differ");
});

test("no two of 50,000 near-identical writes share a fingerprint", () => {
  const seen = new Set<string>();
  for (let i = 0; i < 25_000; i++) {
    seen.add(writeFingerprint(put({ n: i })));
    seen.add(writeFingerprint(put(null, { vector: vec(i, 0) })));
  }
  assert.equal(seen.size, 50_000);
});

test("SHA-256 fingerprints are those builds before the mark made (stored outcomes and their entries keep them)", () => {
  // Made by the build before this fingerprint (idempotency.ts writeFingerprint at 3d8150e).
  assert.equal(sha256WriteFingerprint(put({ title: "hello", n: [1, 2.5, null] }, { vector: vec(0.5, -1, 2), ifVersion: 3 })), "_JywjteyFanzQYiYKM6M3S");
  assert.equal(sha256WriteFingerprint({ op: "delete", key: "a" }), "ZpZ3rvpK8-e_tduoMvqTGT");
});

test("sameWrite compares a write with an outcome of either kind, in the outcome's kind", () => {
  const w = put({ a: 1 }), other = put({ a: 2 });
  const [now, before] = [writeFingerprint(w), sha256WriteFingerprint(w)];
  assert.equal(sameWrite(now, now, w), true);
  assert.equal(sameWrite(now, writeFingerprint(other), other), false);
  // An outcome stored by an older build, asked again through this one: the same write, and another.
  assert.equal(sameWrite(before, now, w), true);
  assert.equal(sameWrite(before, writeFingerprint(other), other), false);
  // An outcome stored by this build, asked again through an older proposer.
  assert.equal(sameWrite(now, before, w), true);
  assert.equal(sameWrite(now, sha256WriteFingerprint(other), other), false);
  // Two older ones compare as they are.
  assert.equal(sameWrite(before, before, w), true);
  assert.equal(sameWrite(before, sha256WriteFingerprint(other), other), false);
});
