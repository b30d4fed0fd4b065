/**
 * The Raft write-ahead log of a node: one append-only log shared by all of its groups, so that one
 * fdatasync makes a whole loop turn's entries and hard states durable (group commit).
 *
 * Layout: `dir/<16 hex digits>.wal` segments, numbered in order. A segment starts with a checkpoint (the
 * hard state, snapshot and compaction point of every group), so it depends on older segments only for
 * entries; a prefix of segments is deleted once every group has compacted past the entries they hold.
 *
 * Recovery reads the segments in order. The first record that is torn or fails its checksum ends the
 * log: in the last segment, everything from there on is cut (a crash tore the tail; nothing after it was
 * acknowledged, since acknowledgements follow fdatasync); in an older segment it is corruption of data
 * that was acknowledged, and the WAL refuses to open rather than silently lose it.
 *
 * The segment being written is kept longer than what it holds (PREALLOCATE_STEP_BYTES of zeros past
 * the last record, as a sparse file): a write inside the file's size changes no size to journal, and
 * fdatasync took less (p50 0.097 against 0.141 ms alone, 0.172 against 0.203 ms with three writers on
 * one disk; measured on ext4). So the last segment may end in zeros after its last record, which
 * recovery reads as its end. A segment is cut to what it holds before the next one is made, and on
 * close: an older segment never ends in zeros, and zeros there are damage, as before.
 */
import { mkdirSync, openSync, closeSync, fdatasyncSync, fsyncSync, ftruncateSync, readFileSync, readdirSync, truncateSync, unlinkSync, writevSync } from "node:fs";
import { type FileHandle, open } from "node:fs/promises";
import { join } from "node:path";
import { assert } from "../util/assert.js";
import type { ConfState, Entry, HardState } from "../raft/index.js";
import { type WalRecord, decodeRecord, encodeRecord } from "./wal-record.js";
import { WalLedger } from "./wal-ledger.js";
import { type Logger, silentLogger } from "../util/logger.js";

export class WalCorruptionError extends Error {
  override name = "WalCorruptionError";
}

export interface WalOptions {
  dir: string;
  /** Start a new segment once the current one exceeds this size. */
  segmentBytes?: number;
  /** Retained segments beyond which the groups holding the oldest back are asked to compact (`holdingBack`). */
  segmentsMax?: number;
  logger?: Logger;
}

/** What recovery knows about one group. */
export interface GroupLog {
  hardState: HardState;
  /** The latest snapshot installed from a leader, if any (its data lives in the state store). */
  snapshot: { index: number; term: number; confState: ConfState } | null;
  /** The log holds entries after `start.index`; `start.term` is the term at that index. */
  start: { index: number; term: number };
  /** Invariant: entries[i].index === start.index + 1 + i. */
  entries: Entry[];
}

interface Segment {
  seq: number;
  path: string;
}

/** Default retained segments (64 MiB each) beyond which groups holding back the oldest compact. */
export const WAL_SEGMENTS_MAX = 4;

const SEGMENT_NAME = /^([0-9a-f]{16})\.wal$/;
/**
 * How far the segment being written is extended past its last record at a time (zeros, sparse): one
 * size change per this many bytes written, and at most this many zeros for recovery to read past the end.
 */
const PREALLOCATE_STEP_BYTES = 4 << 20;
const segmentName = (seq: number) => `${seq.toString(16).padStart(16, "0")}.wal`;

function emptyGroup(): GroupLog {
  return { hardState: { term: 0, vote: 0, commit: 0 }, snapshot: null, start: { index: 0, term: 0 }, entries: [] };
}

/**
 * Rebuilds every group from the records of the retained segments (also the simulated disk's recovery). Segments holding only compacted
 * entries may have been deleted, so a first pass finds where each group's log finally starts; the
 * replay then begins there and skips entries at or before it.
 */
export function replay(all: readonly WalRecord[]): Map<number, GroupLog> {
  // A group's records before its last drop belong to a replica that is gone.
  const lastDrop = new Map<number, number>();
  for (const [i, r] of all.entries()) if (r.kind === "drop") lastDrop.set(r.group, i);
  const records = all.filter((r, i) => r.kind !== "drop" && i > (lastDrop.get(r.group) ?? -1)).map((r, i, kept) => {
    // Segments written before restated snapshots were marked: a checkpoint's snapshot is the one directly
    // followed by the checkpoint compaction of its group (an installed one never is).
    const next = kept[i + 1];
    const restated = r.kind === "snapshot" && r.checkpoint !== true && next?.kind === "compact" && next.checkpoint === true &&
      next.group === r.group;
    return restated ? { ...r, checkpoint: true } : r;
  });
  const groups = new Map<number, GroupLog>();
  for (const r of records) {
    if (r.kind !== "compact" && r.kind !== "snapshot") continue;
    let g = groups.get(r.group);
    if (g === undefined) groups.set(r.group, (g = emptyGroup()));
    if (r.index > g.start.index) g.start = { index: r.index, term: r.term };
  }
  for (const r of records) applyRecord(groups, r);
  return groups;
}

/** Applies one record to the view of its group (the log's meaning of a record, also used as a model in tests). */
export function applyRecord(groups: Map<number, GroupLog>, r: WalRecord): void {
  if (r.kind === "drop") {
    groups.delete(r.group);
    return;
  }
  let g = groups.get(r.group);
  if (g === undefined) groups.set(r.group, (g = emptyGroup()));
  switch (r.kind) {
    case "hard-state":
      g.hardState = r.hardState;
      return;
    case "snapshot":
      g.snapshot = { index: r.index, term: r.term, confState: r.confState };
      // A checkpoint restates the snapshot the group holds: its log, the entries after the snapshot that
      // older segments hold, stays (the checkpoint compaction after it says where the log starts).
      if (r.checkpoint === true) return;
      // An installed snapshot replaces the whole log.
      if (r.index >= g.start.index) g.start = { index: r.index, term: r.term };
      g.entries = [];
      return;
    case "compact": {
      if (r.index <= g.start.index) return;
      const last = g.start.index + g.entries.length;
      if (r.index > last) {
        assert(r.checkpoint === true, () => `group ${r.group}: compaction to ${r.index} beyond last index ${last}`);
        g.entries = [];
      } else {
        const term = g.entries[r.index - g.start.index - 1]!.term;
        assert(term === r.term, () => `group ${r.group}: compaction at ${r.index} names term ${r.term}, log has ${term}`);
        g.entries = g.entries.slice(r.index - g.start.index);
      }
      g.start = { index: r.index, term: r.term };
      return;
    }
    case "entries": {
      if (r.entries.length === 0) return;
      // Entries from index a replace the log from a on; those at or before the start are compacted.
      const at = Math.max(0, r.entries[0]!.index - g.start.index - 1);
      assert(at <= g.entries.length, () =>
        `group ${r.group}: entries from ${r.entries[0]!.index} leave a gap after ${g!.start.index + g!.entries.length}`);
      g.entries.length = at;
      for (const e of r.entries) if (e.index > g.start.index) g.entries.push(e);
      return;
    }
  }
}

export class Wal {
  private readonly dir: string;
  private readonly segmentBytes: number;
  private readonly segmentsMax: number;
  private readonly log: Logger;
  private readonly segments: Segment[];
  private file: FileHandle;
  /** Where the next record goes: the end of the last one written. */
  private position: number;
  /**
   * The file's size (records, then allocated zeros).
   * Invariant: position <= allocatedBytes.
   */
  private allocatedBytes: number;
  /** The live view of every group and what each segment holds: for checkpoints and deleting segments. */
  private readonly ledger: WalLedger;
  private appending = false;
  private closed = false;

  private constructor(dir: string, opts: WalOptions, segments: Segment[], ledger: WalLedger,
    file: FileHandle, position: number, allocatedBytes: number) {
    assert(position <= allocatedBytes, () => `the WAL's position ${position} is past its file's size ${allocatedBytes}`);
    this.dir = dir;
    this.segmentBytes = opts.segmentBytes ?? 64 << 20;
    this.segmentsMax = opts.segmentsMax ?? WAL_SEGMENTS_MAX;
    this.log = opts.logger ?? silentLogger;
    this.segments = segments;
    this.ledger = ledger;
    this.file = file;
    this.position = position;
    this.allocatedBytes = allocatedBytes;
  }

  /** Opens (recovering) or creates the WAL in opts.dir. */
  static async open(opts: WalOptions): Promise<{ wal: Wal; groups: Map<number, GroupLog>; records: number }> {
    const log = opts.logger ?? silentLogger;
    mkdirSync(opts.dir, { recursive: true });
    const seqs = readdirSync(opts.dir).map((n) => SEGMENT_NAME.exec(n)).filter((m) => m !== null)
      .map((m) => parseInt(m[1]!, 16)).sort((a, b) => a - b);
    const parsed: WalRecord[] = [];
    const segments: Segment[] = [];
    const ledger = new WalLedger();
    let lastSize = 0;
    for (let i = 0; i < seqs.length; i++) {
      const seq = seqs[i]!;
      const path = join(opts.dir, segmentName(seq));
      const buf = readFileSync(path);
      const seg: Segment = { seq, path };
      ledger.openSegment();
      let offset = 0;
      for (;;) {
        const d = decodeRecord(buf, offset);
        if (!d.ok) {
          if (d.reason === "end") break;
          // The segment being written when the node stopped: zeros past its last record were allocated, not written.
          if (i === seqs.length - 1 && zerosFrom(buf, d.offset)) break;
          if (i < seqs.length - 1) {
            throw new WalCorruptionError(`WAL segment ${path} is ${d.reason} at byte ${d.offset} of ${buf.byteLength}, ` +
              "before newer segments: acknowledged data would be lost; refusing to open");
          }
          log.warn(`wal: cutting ${buf.byteLength - d.offset} bytes of ${path} at byte ${d.offset} (${d.reason} tail)`);
          truncateSync(path, d.offset);
          fsyncPath(path);
          break;
        }
        parsed.push(d.record);
        ledger.noteRecovered(d.record);
        offset = d.nextOffset;
      }
      segments.push(seg);
      lastSize = offset;
    }
    const groups = replay(parsed);
    const records = parsed.length;
    let file: FileHandle;
    // Written at explicit positions (not opened to append: that would write after the allocated zeros).
    if (segments.length === 0) {
      const seg: Segment = { seq: 1, path: join(opts.dir, segmentName(1)) };
      file = await open(seg.path, "w+");
      fsyncPath(opts.dir);
      segments.push(seg);
      ledger.openSegment();
      lastSize = 0;
    } else {
      file = await open(segments[segments.length - 1]!.path, "r+");
    }
    ledger.adopt(groups);
    const wal = new Wal(opts.dir, opts, segments, ledger, file, lastSize, (await file.stat()).size);
    return { wal, groups, records };
  }

  /**
   * Appends records as one write followed by one fdatasync. When the promise resolves they are
   * durable; only then may anything that depends on them (acknowledgements, votes) leave the node.
   * With `sync` false the fdatasync is skipped (for records nothing depends on, such as a new commit
   * index); a later synced append makes them durable too, since the file is written in order.
   * `syncInline`: the fdatasync blocks this thread instead of going through libuv's thread pool (see
   * multi-raft-turn.ts inlineSync for when that is worth it).
   */
  async append(records: readonly WalRecord[], sync = true, syncInline = false): Promise<void> {
    assert(!this.closed, "append to a closed WAL");
    assert(!this.appending, "WAL appends must not overlap: batch them instead");
    if (records.length === 0) return;
    this.appending = true;
    try {
      const bufs = records.map((r) => encodeRecord(r));
      let bytes = 0;
      for (const b of bufs) bytes += b.byteLength;
      // The write itself only reaches the page cache: done synchronously, it costs microseconds, where a
      // trip through libuv's thread pool queued behind other fs work cost up to a millisecond (measured).
      if (this.position + bytes > this.allocatedBytes) {
        this.allocatedBytes = this.position + bytes + Math.min(PREALLOCATE_STEP_BYTES, this.segmentBytes);
        ftruncateSync(this.file.fd, this.allocatedBytes);
      }
      const bytesWritten = writevSync(this.file.fd, bufs, this.position);
      assert(bytesWritten === bytes, () => `short WAL write: ${bytesWritten} of ${bytes} bytes`);
      if (sync && syncInline) fdatasyncSync(this.file.fd);
      else if (sync) await this.file.datasync();
      this.position += bytes;
      for (const r of records) this.ledger.noteAppended(r);
      if (this.position >= this.segmentBytes) await this.rotate();
    } finally {
      this.appending = false;
    }
  }

  /** Starts a new segment with a checkpoint of every group, then deletes segments no longer needed. */
  private async rotate(): Promise<void> {
    // Unsynced records of the segment being closed (commit indexes) must not be torn once a newer segment
    // exists, nor its allocated zeros left: recovery would find damage before newer segments and refuse
    // to open.
    await this.file.truncate(this.position);
    await this.file.datasync();
    const seq = this.segments[this.segments.length - 1]!.seq + 1;
    const seg: Segment = { seq, path: join(this.dir, segmentName(seq)) };
    const next = await open(seg.path, "w+");
    const bufs = this.ledger.checkpoint().map((r) => encodeRecord(r));
    let bytes = 0;
    for (const b of bufs) bytes += b.byteLength;
    if (bufs.length > 0) await next.writev(bufs, 0);
    await next.datasync();
    fsyncPath(this.dir);
    await this.file.close();
    this.file = next;
    this.position = bytes;
    this.allocatedBytes = bytes;
    this.segments.push(seg);
    this.ledger.openSegment();
    this.log.debug(`wal: new segment ${seg.path}`);
    this.collectGarbage();
  }

  /** Deletes the oldest segments whose entries every group has compacted (never the current one). */
  private collectGarbage(): void {
    const n = this.ledger.collectable();
    for (const seg of this.segments.slice(0, n)) {
      unlinkSync(seg.path);
      this.log.debug(`wal: deleted segment ${seg.path}`);
    }
    this.segments.splice(0, n);
    this.ledger.forgetOldest(n);
  }

  /** The groups that keep the oldest segment from being deleted, once more than `segmentsMax` are retained. */
  holdingBack(): number[] {
    return this.ledger.holdingBack(this.segmentsMax);
  }

  /** Closes the segment, cut to what it holds (its allocated zeros go). */
  async close(): Promise<void> {
    if (this.closed) return;
    // Cut to `position`, an append still in flight would lose the records it wrote.
    assert(!this.appending, "the WAL closes after its last append has ended");
    this.closed = true;
    try {
      await this.file.truncate(this.position);
    } finally {
      await this.file.close();
    }
  }
}

/** Whether every byte of `buf` from `offset` on is zero (compared a block at a time, not byte by byte). */
function zerosFrom(buf: Uint8Array, offset: number): boolean {
  const block = 64 << 10;
  const zeros = new Uint8Array(Math.min(block, buf.byteLength - offset));
  for (let at = offset; at < buf.byteLength; at += block) {
    const n = Math.min(block, buf.byteLength - at);
    if (Buffer.compare(buf.subarray(at, at + n), zeros.subarray(0, n)) !== 0) return false;
  }
  return true;
}

/** fsync of a file or directory by path (a new segment's name must be durable too). */
function fsyncPath(path: string): void {
  const fd = openSync(path, "r");
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}
