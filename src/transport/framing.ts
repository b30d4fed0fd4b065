/**
 * Frames on a TCP stream: [u32 LE length][msgpack payload]. A FrameDecoder accumulates chunks and yields
 * whole payloads; a length over the limit is a protocol error (the connection is closed), so a corrupt
 * or hostile peer cannot make us allocate without bound.
 */
import { Packr } from "msgpackr";

export const FRAME_HEADER_BYTES = 4;
export const MAX_FRAME_BYTES = 64 << 20;

// Records mode off: plain msgpack that any peer can decode; Uint8Array round-trips as bin.
const packr = new Packr({ useRecords: false });

export class FrameError extends Error {
  override name = "FrameError";
}

export function encodeFrame(payload: unknown): Buffer {
  const body = packr.pack(payload);
  if (body.byteLength > MAX_FRAME_BYTES) throw new FrameError(`frame of ${body.byteLength} bytes exceeds ${MAX_FRAME_BYTES}`);
  const out = Buffer.allocUnsafe(FRAME_HEADER_BYTES + body.byteLength);
  out.writeUInt32LE(body.byteLength, 0);
  body.copy(out, FRAME_HEADER_BYTES);
  return out;
}

export class FrameDecoder {
  private buf: Buffer = Buffer.alloc(0);

  /** Adds bytes from the socket; returns the payloads of every frame completed by them. */
  push(chunk: Buffer): unknown[] {
    this.buf = this.buf.byteLength === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    const out: unknown[] = [];
    let at = 0;
    while (this.buf.byteLength - at >= FRAME_HEADER_BYTES) {
      const len = this.buf.readUInt32LE(at);
      if (len > MAX_FRAME_BYTES) throw new FrameError(`incoming frame of ${len} bytes exceeds ${MAX_FRAME_BYTES}`);
      if (this.buf.byteLength - at - FRAME_HEADER_BYTES < len) break;
      out.push(packr.unpack(this.buf.subarray(at + FRAME_HEADER_BYTES, at + FRAME_HEADER_BYTES + len)));
      at += FRAME_HEADER_BYTES + len;
    }
    this.buf = at === this.buf.byteLength ? Buffer.alloc(0) : this.buf.subarray(at);
    return out;
  }

  /** Bytes held waiting for the rest of a frame. */
  pendingBytes(): number {
    return this.buf.byteLength;
  }
}
