/**
 * A group's snapshot as bytes: frames of [u32 LE length][msgpack: [appliedIndex, pairs]], the first
 * also carrying the shard's state, so that an encode or decode step holds one frame's records at a time.
 */
import { pack, unpack } from "msgpackr";
import type { RecordKey, ShardState } from "./state-store.js";

/** Encodes records as snapshot frames of at most `frameRecords` records each; the first also carries the shard's state. */
export function encodeSnapshot(appliedIndex: number, pairs: Iterable<[RecordKey, unknown]>, frameRecords = 1024, shard?: ShardState): Uint8Array {
  const frames: Uint8Array[] = [];
  let batch: [RecordKey, unknown][] = [];
  const flush = () => {
    frames.push(frame(pack(frames.length === 0 && shard !== undefined ? [appliedIndex, batch, shard] : [appliedIndex, batch]) as Uint8Array));
    batch = [];
  };
  for (const p of pairs) {
    batch.push(p);
    if (batch.length >= frameRecords) flush();
  }
  if (batch.length > 0 || frames.length === 0) flush();
  return concat(frames);
}

function frame(payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(4 + payload.byteLength);
  new DataView(out.buffer).setUint32(0, payload.byteLength, true);
  out.set(payload, 4);
  return out;
}

function concat(parts: Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.byteLength;
  const out = new Uint8Array(n);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.byteLength;
  }
  return out;
}

export class SnapshotFormatError extends Error {
  override name = "SnapshotFormatError";
}

export function readFrames(data: Uint8Array): [number, [RecordKey, unknown][], ShardState?][] {
  const frames: [number, [RecordKey, unknown][], ShardState?][] = [];
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  let at = 0;
  while (at < data.byteLength) {
    if (at + 4 > data.byteLength) throw new SnapshotFormatError(`truncated frame header at byte ${at}`);
    const len = view.getUint32(at, true);
    if (at + 4 + len > data.byteLength) throw new SnapshotFormatError(`truncated frame at byte ${at}`);
    const decoded = unpack(data.subarray(at + 4, at + 4 + len)) as [number, [RecordKey, unknown][], ShardState?];
    if (!Array.isArray(decoded) || !Array.isArray(decoded[1])) throw new SnapshotFormatError(`malformed frame at byte ${at}`);
    frames.push(decoded);
    at += 4 + len;
  }
  return frames;
}
