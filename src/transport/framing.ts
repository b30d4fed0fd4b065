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
  /** Chunks received and not yet decoded; `held` is their total length. */
  private chunks: Buffer[] = [];
  private held = 0;
  /** Bytes the first frame held needs in all (header and body), once its header is in; 0 before. */
  private needed = 0;

  /**
   * Adds bytes from the socket; returns the payloads of every frame completed by them. A large frame
   * arrives in many chunks: they are joined once it is whole, not at each chunk (that copied a 1 MB
   * frame ~15 times over).
   */
  push(chunk: Buffer): unknown[] {
    if (chunk.byteLength === 0) return [];
    this.chunks.push(chunk);
    this.held += chunk.byteLength;
    if (this.needed > 0 && this.held < this.needed) return [];
    const buf = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks, this.held);
    const out: unknown[] = [];
    let at = 0;
    this.needed = 0;
    while (buf.byteLength - at >= FRAME_HEADER_BYTES) {
      const len = buf.readUInt32LE(at);
      if (len > MAX_FRAME_BYTES) throw new FrameError(`incoming frame of ${len} bytes exceeds ${MAX_FRAME_BYTES}`);
      if (buf.byteLength - at - FRAME_HEADER_BYTES < len) {
        this.needed = FRAME_HEADER_BYTES + len;
        break;
      }
      out.push(packr.unpack(buf.subarray(at + FRAME_HEADER_BYTES, at + FRAME_HEADER_BYTES + len)));
      at += FRAME_HEADER_BYTES + len;
    }
    this.chunks = at === buf.byteLength ? [] : [buf.subarray(at)];
    this.held = buf.byteLength - at;
    return out;
  }

  /** Bytes held waiting for the rest of a frame. */
  pendingBytes(): number {
    return this.held;
  }
}
