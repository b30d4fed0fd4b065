/**
 * A write's fingerprint: a digest of what a keyed write does (op, payload, ifVersion, vector), stored
 * with its outcome, so that the same idempotency key sent with a different write is refused
 * (idempotency_key_reused) rather than answered with another write's outcome.
 *
 * It guards against a client's mistake, not an adversary (a client can only confuse its own key), so
 * it need not be cryptographic: 128 bits of a multiplicative hash over the write's JSON and its vector
 * bytes. The SHA-256 of the write's msgpack it replaces cost the leader ~34 us a keyed put in place
 * (cold caches: 7 us in a loop), on the path of every keyed write; this costs a few.
 *
 * Fingerprints made so start with FINGERPRINT_MARK, which no SHA-256 fingerprint (base64url) holds.
 * Outcomes stored before (and entries proposed by older builds) carry SHA-256 ones: `sameWrite`
 * compares a write with such an outcome in the outcome's own kind, computed from the write at apply
 * time, so that a retry across an upgrade is still answered with its first outcome.
 */
import * as nodeCrypto from "node:crypto";
import { pack } from "msgpackr";
import type { RecordCommand } from "./records.js";

/** Starts every fingerprint made here ("~" is not a base64url character). */
export const FINGERPRINT_MARK = "~";

/**
 * The write's fingerprint: FINGERPRINT_MARK and 22 base64url characters (128 bits). The same JSON value
 * (key order included, as the client sent it) and vector give the same fingerprint.
 */
export function writeFingerprint(cmd: RecordCommand): string {
  const put = cmd.op === "put";
  const text = JSON.stringify([cmd.op, put ? cmd.payload ?? null : null, cmd.ifVersion ?? null]);
  return FINGERPRINT_MARK + hash128(text, put ? cmd.vector : undefined);
}

/** The fingerprint of builds before 2026-12-06: the first 132 bits of the SHA-256 of the write's msgpack. */
export function sha256WriteFingerprint(cmd: RecordCommand): string {
  const put = cmd.op === "put";
  const bytes = pack([cmd.op, put ? cmd.payload : null, cmd.ifVersion ?? null, put ? cmd.vector ?? null : null]) as Uint8Array;
  return nodeCrypto.createHash("sha256").update(bytes).digest("base64url").slice(0, 22);
}

/**
 * Whether `cmd`, which carries the fingerprint `fingerprint`, is the write an outcome fingerprinted
 * `storedFingerprint` was stored for. Fingerprints of two kinds are compared in the stored one's kind.
 */
export function sameWrite(storedFingerprint: string, fingerprint: string, cmd: RecordCommand): boolean {
  const storedIsHash = storedFingerprint.startsWith(FINGERPRINT_MARK);
  if (storedIsHash === fingerprint.startsWith(FINGERPRINT_MARK)) return storedFingerprint === fingerprint;
  return storedFingerprint === (storedIsHash ? writeFingerprint(cmd) : sha256WriteFingerprint(cmd));
}

// Four 32-bit lanes, each a multiply-xor hash with its own odd multiplier and seed, mixed across lanes
// at the end (each output bit depends on every lane).
const M1 = 0x9e3779b1, M2 = 0x85ebca77, M3 = 0xc2b2ae3d, M4 = 0x27d4eb2f;

function hash128(text: string, bytes: Uint8Array | undefined): string {
  let h1 = 0x6a09e667 ^ text.length, h2 = 0xbb67ae85, h3 = 0x3c6ef372, h4 = 0xa54ff53a;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    h1 = Math.imul(h1 ^ c, M1);
    h2 = Math.imul(h2 ^ c, M2);
    h3 = Math.imul(h3 ^ c, M3);
    h4 = Math.imul(h4 ^ c, M4);
  }
  if (bytes !== undefined) {
    // A vector, even an empty one, changes every lane: the same JSON without one differs.
    h1 = Math.imul(h1 ^ bytes.byteLength, M1);
    for (let i = 0; i < bytes.byteLength; i++) {
      const c = bytes[i]!;
      h1 = Math.imul(h1 ^ c, M1);
      h2 = Math.imul(h2 ^ c, M2);
      h3 = Math.imul(h3 ^ c, M3);
      h4 = Math.imul(h4 ^ c, M4);
    }
  }
  h1 = fmix(h1 ^ (h2 >>> 15) ^ (h4 << 7));
  h2 = fmix(h2 ^ (h3 >>> 13) ^ (h1 << 11));
  h3 = fmix(h3 ^ (h4 >>> 17) ^ (h2 << 5));
  h4 = fmix(h4 ^ (h1 >>> 16) ^ (h3 << 9));
  const out = Buffer.allocUnsafe(16);
  out.writeInt32LE(h1, 0);
  out.writeInt32LE(h2, 4);
  out.writeInt32LE(h3, 8);
  out.writeInt32LE(h4, 12);
  return out.toString("base64url");
}

/** MurmurHash3's finalizer: every input bit flips each output bit with probability ~1/2. */
function fmix(h: number): number {
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return h ^ (h >>> 16);
}
