/**
 * WAL record framing: [length u32 LE][crc32c u32 LE][payload], crc over the payload, payload = msgpack
 * of a WalRecord. A record is valid only if it is whole and its checksum matches; the first invalid
 * record ends what recovery reads.
 */
import { pack, unpack } from "msgpackr";
import { type ConfState, type Entry, type HardState, entriesFromFlat, flattenEntries } from "../raft/index.js";
import { crc32c } from "./crc32c.js";

export const HEADER_BYTES = 8;
/** Bound on one record, so that a corrupt length cannot make recovery allocate gigabytes. */
export const MAX_RECORD_BYTES = 256 << 20;

export type WalRecord =
  /** Entries of one group; an entry at an index already in the log replaces it and everything after. */
  | { kind: "entries"; group: number; entries: Entry[] }
  | { kind: "hard-state"; group: number; hardState: HardState }
  /**
   * The group installed a snapshot: its log restarts after `index`. With `checkpoint`, a checkpoint
   * restates the snapshot the group holds: the log stays as it is.
   */
  | { kind: "snapshot"; group: number; index: number; term: number; confState: ConfState; checkpoint?: boolean }
  /**
   * The group's log starts after `index` (term `term` there): entries up to it are no longer needed.
   * A checkpoint compaction (at the start of a segment) may point past the entries recovery has seen,
   * because the segments that held them were deleted.
   */
  | { kind: "compact"; group: number; index: number; term: number; checkpoint?: boolean }
  /**
   * The node no longer hosts the group (its replica moved away): everything before this record about
   * the group is void. A later record of the group starts a new replica from nothing.
   */
  | { kind: "drop"; group: number };

/**
 * Entries records, by far the most frequent, are written as a tuple without key strings:
 * [ENTRIES_TAG, group, ...(term, index, type, data) per entry]. Other records are msgpack maps.
 */
const ENTRIES_TAG = 0;

function toPayload(r: WalRecord): unknown {
  if (r.kind !== "entries") return r;
  const t: unknown[] = [ENTRIES_TAG, r.group];
  flattenEntries(r.entries, t);
  return t;
}

function fromPayload(v: unknown): WalRecord | null {
  if (!Array.isArray(v)) return typeof v === "object" && v !== null && typeof (v as WalRecord).group === "number" ? v as WalRecord : null;
  if (v.length < 2 || v[0] !== ENTRIES_TAG || typeof v[1] !== "number") return null;
  const entries = entriesFromFlat(v, 2);
  return entries === null ? null : { kind: "entries", group: v[1] as number, entries };
}

export function encodeRecord(r: WalRecord): Uint8Array {
  const payload = pack(toPayload(r)) as Uint8Array;
  if (payload.byteLength > MAX_RECORD_BYTES) throw new Error(`WAL record of ${payload.byteLength} bytes exceeds the limit`);
  const out = new Uint8Array(HEADER_BYTES + payload.byteLength);
  const view = new DataView(out.buffer, out.byteOffset, out.byteLength);
  view.setUint32(0, payload.byteLength, true);
  view.setUint32(4, crc32c(payload), true);
  out.set(payload, HEADER_BYTES);
  return out;
}

export type DecodeResult =
  | { ok: true; record: WalRecord; nextOffset: number }
  | { ok: false; reason: "end" | "torn" | "checksum" | "malformed"; offset: number };

/** Decodes the record at `offset` of `buf`. */
export function decodeRecord(buf: Uint8Array, offset: number): DecodeResult {
  if (offset === buf.byteLength) return { ok: false, reason: "end", offset };
  if (offset + HEADER_BYTES > buf.byteLength) return { ok: false, reason: "torn", offset };
  const view = new DataView(buf.buffer, buf.byteOffset + offset, HEADER_BYTES);
  const length = view.getUint32(0, true);
  const crc = view.getUint32(4, true);
  if (length === 0 || length > MAX_RECORD_BYTES) return { ok: false, reason: "malformed", offset };
  const end = offset + HEADER_BYTES + length;
  if (end > buf.byteLength) return { ok: false, reason: "torn", offset };
  if (crc32c(buf, offset + HEADER_BYTES, end) !== crc) return { ok: false, reason: "checksum", offset };
  let record: WalRecord | null;
  try {
    record = fromPayload(unpack(buf.subarray(offset + HEADER_BYTES, end)));
  } catch {
    return { ok: false, reason: "malformed", offset };
  }
  if (record === null) return { ok: false, reason: "malformed", offset };
  return { ok: true, record, nextOffset: end };
}
