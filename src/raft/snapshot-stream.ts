/**
 * Snapshot streaming, both ends. A leader streams a snapshot to a follower in chunks within a byte
 * window; the follower acknowledges cumulatively (the next offset it expects, like TCP). Lost chunks are
 * resent from the last acknowledged offset once a heartbeat interval passes without progress, so a
 * broken transfer resumes instead of restarting. A rewind starts a new attempt: acknowledgements of an
 * older attempt can no longer rewind the stream (which otherwise snowballs into a resend storm).
 */
import { assert } from "../util/assert.js";
import type { Snapshot, SnapshotChunk, SnapshotMeta } from "./types.js";

/** Leader side: the stream to one follower. Invariant: acked <= sent <= total. */
export class SnapshotSender {
  readonly snapshot: Snapshot;
  private readonly chunkBytes: number;
  private readonly windowBytes: number;
  acked = 0;
  sent = 0;
  attempt = 0;
  /** `acked` at the previous heartbeat response; unchanged means the transfer stalled. */
  private ackedAtLastHeartbeat = -1;
  /** An empty snapshot still needs one (empty) chunk. */
  private sentEmpty = false;

  constructor(snapshot: Snapshot, chunkBytes: number, windowBytes: number) {
    assert(chunkBytes > 0 && windowBytes > 0, "snapshot chunk and window sizes must be positive");
    this.snapshot = snapshot;
    this.chunkBytes = chunkBytes;
    this.windowBytes = windowBytes;
  }

  get totalBytes(): number {
    return this.snapshot.data.byteLength;
  }

  /** The chunks the window allows to send now. */
  nextChunks(): SnapshotChunk[] {
    const total = this.totalBytes;
    const out: SnapshotChunk[] = [];
    if (total === 0) {
      if (!this.sentEmpty) {
        this.sentEmpty = true;
        out.push(this.chunk(0, 0));
      }
      return out;
    }
    while (this.sent < total && this.sent - this.acked < this.windowBytes) {
      const end = Math.min(total, this.sent + this.chunkBytes);
      out.push(this.chunk(this.sent, end));
      this.sent = end;
    }
    return out;
  }

  private chunk(from: number, to: number): SnapshotChunk {
    return {
      meta: this.snapshot.meta, offset: from, data: this.snapshot.data.subarray(from, to),
      totalBytes: this.totalBytes, attempt: this.attempt,
    };
  }

  /** A cumulative acknowledgement: the follower expects `offset` next. */
  onAck(offset: number, attempt: number): void {
    if (offset > this.acked) {
      this.acked = Math.min(offset, this.totalBytes);
      if (this.sent < this.acked) this.sent = this.acked;
    } else if (offset < this.acked && attempt === this.attempt) {
      // The follower lost its partial copy (it restarted): start over from where it is.
      this.rewind(offset);
    }
  }

  /** A heartbeat round trip completed; resend from the acknowledged offset if nothing moved since the last. */
  onHeartbeat(): void {
    const stalled = this.acked === this.ackedAtLastHeartbeat;
    if (stalled && (this.sent > this.acked || this.totalBytes === 0)) this.rewind(this.acked);
    this.ackedAtLastHeartbeat = this.acked;
  }

  private rewind(offset: number): void {
    this.attempt++;
    this.acked = offset;
    this.sent = offset;
    this.sentEmpty = false;
  }
}

export type ReceiveResult =
  | { kind: "ack"; nextOffset: number }
  | { kind: "complete"; snapshot: Snapshot };

/** Follower side: the snapshot being received. Invariant: nextOffset <= totalBytes. */
export class SnapshotReceiver {
  readonly meta: SnapshotMeta;
  readonly totalBytes: number;
  nextOffset = 0;
  private readonly chunks: Uint8Array[] = [];

  constructor(first: SnapshotChunk) {
    assert(first.offset === 0, "a snapshot is received from its first byte");
    this.meta = first.meta;
    this.totalBytes = first.totalBytes;
  }

  /** Whether a chunk belongs to the snapshot being received. */
  matches(c: SnapshotChunk): boolean {
    return c.meta.index === this.meta.index && c.meta.term === this.meta.term;
  }

  /** Takes a chunk in order; anything else (duplicate, after a gap) just repeats our position. */
  receive(c: SnapshotChunk): ReceiveResult {
    assert(this.matches(c), "chunk of another snapshot");
    if (c.offset !== this.nextOffset) return { kind: "ack", nextOffset: this.nextOffset };
    if (c.data.byteLength > 0) this.chunks.push(c.data);
    this.nextOffset += c.data.byteLength;
    assert(this.nextOffset <= this.totalBytes, "snapshot chunk beyond the declared size");
    if (this.nextOffset < this.totalBytes) return { kind: "ack", nextOffset: this.nextOffset };
    const data = new Uint8Array(this.totalBytes);
    let at = 0;
    for (const chunk of this.chunks) {
      data.set(chunk, at);
      at += chunk.byteLength;
    }
    return { kind: "complete", snapshot: { meta: this.meta, data } };
  }
}
