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
 */
import { mkdirSync, openSync, closeSync, fsyncSync, readFileSync, readdirSync, truncateSync, unlinkSync, writevSync } from "node:fs";
import { type FileHandle, open } from "node:fs/promises";
import { join } from "node:path";
import { assert } from "../util/assert.js";
import type { ConfState, Entry, HardState } from "../raft/index.js";
import { type WalRecord, decodeRecord, encodeRecord } from "./wal-record.js";
import { type Logger, silentLogger } from "../util/logger.js";

export class WalCorruptionError extends Error {
  override name = "WalCorruptionError";
}

export interface WalOptions {
  dir: string;
  /** Start a new segment once the current one exceeds this size. */
  segmentBytes?: number;
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
  /** Per group: the highest entry index this segment holds. */
  maxIndexByGroup: Map<number, number>;
}

/** The live view of a group: what a checkpoint restates (entries stay with the caller). */
interface GroupMeta {
  hardState: HardState;
  snapshot: GroupLog["snapshot"];
  start: { index: number; term: number };
}

const SEGMENT_NAME = /^([0-9a-f]{16})\.wal$/;
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
  const records = all.filter((r, i) => r.kind !== "drop" && i > (lastDrop.get(r.group) ?? -1));
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
      // An installed snapshot replaces the whole log (a restated one finds it empty anyway).
      g.snapshot = { index: r.index, term: r.term, confState: r.confState };
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
  private readonly log: Logger;
  private readonly segments: Segment[];
  private file: FileHandle;
  private position: number;
  /** The live view of every group, kept for checkpoints and compaction accounting. */
  private readonly groups: Map<number, GroupMeta>;
  private appending = false;
  private closed = false;

  private constructor(dir: string, opts: WalOptions, segments: Segment[], groups: Map<number, GroupMeta>,
    file: FileHandle, position: number) {
    this.dir = dir;
    this.segmentBytes = opts.segmentBytes ?? 64 << 20;
    this.log = opts.logger ?? silentLogger;
    this.segments = segments;
    this.groups = groups;
    this.file = file;
    this.position = position;
  }

  /** Opens (recovering) or creates the WAL in opts.dir. */
  static async open(opts: WalOptions): Promise<{ wal: Wal; groups: Map<number, GroupLog>; records: number }> {
    const log = opts.logger ?? silentLogger;
    mkdirSync(opts.dir, { recursive: true });
    const seqs = readdirSync(opts.dir).map((n) => SEGMENT_NAME.exec(n)).filter((m) => m !== null)
      .map((m) => parseInt(m[1]!, 16)).sort((a, b) => a - b);
    const parsed: WalRecord[] = [];
    const segments: Segment[] = [];
    let lastSize = 0;
    for (let i = 0; i < seqs.length; i++) {
      const seq = seqs[i]!;
      const path = join(opts.dir, segmentName(seq));
      const buf = readFileSync(path);
      const seg: Segment = { seq, path, maxIndexByGroup: new Map() };
      let offset = 0;
      for (;;) {
        const d = decodeRecord(buf, offset);
        if (!d.ok) {
          if (d.reason === "end") break;
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
        noteRecord(seg, d.record);
        // A dropped group's entries no longer hold older segments back.
        if (d.record.kind === "drop") for (const s of [...segments, seg]) s.maxIndexByGroup.delete(d.record.group);
        offset = d.nextOffset;
      }
      segments.push(seg);
      lastSize = offset;
    }
    const groups = replay(parsed);
    const records = parsed.length;
    let file: FileHandle;
    if (segments.length === 0) {
      const seg: Segment = { seq: 1, path: join(opts.dir, segmentName(1)), maxIndexByGroup: new Map() };
      file = await open(seg.path, "a");
      fsyncPath(opts.dir);
      segments.push(seg);
      lastSize = 0;
    } else {
      file = await open(segments[segments.length - 1]!.path, "a");
    }
    const meta = new Map<number, GroupMeta>();
    for (const [id, g] of groups) meta.set(id, { hardState: g.hardState, snapshot: g.snapshot, start: { ...g.start } });
    const wal = new Wal(opts.dir, opts, segments, meta, file, lastSize);
    return { wal, groups, records };
  }

  /**
   * Appends records as one write followed by one fdatasync. When the promise resolves they are
   * durable; only then may anything that depends on them (acknowledgements, votes) leave the node.
   * With `sync` false the fdatasync is skipped (for records nothing depends on, such as a new commit
   * index); a later synced append makes them durable too, since the file is written in order.
   */
  async append(records: readonly WalRecord[], sync = true): Promise<void> {
    assert(!this.closed, "append to a closed WAL");
    assert(!this.appending, "WAL appends must not overlap: batch them instead");
    if (records.length === 0) return;
    this.appending = true;
    try {
      const seg = this.segments[this.segments.length - 1]!;
      const bufs = records.map((r) => encodeRecord(r));
      let bytes = 0;
      for (const b of bufs) bytes += b.byteLength;
      // The write itself only reaches the page cache: done synchronously, it costs microseconds, where a
      // trip through libuv's thread pool queued behind other fs work cost up to a millisecond (measured).
      const bytesWritten = writevSync(this.file.fd, bufs);
      assert(bytesWritten === bytes, () => `short WAL write: ${bytesWritten} of ${bytes} bytes`);
      if (sync) await this.file.datasync();
      this.position += bytes;
      for (const r of records) {
        this.applyMeta(r);
        noteRecord(seg, r);
      }
      if (this.position >= this.segmentBytes) await this.rotate();
    } finally {
      this.appending = false;
    }
  }

  /** Starts a new segment with a checkpoint of every group, then deletes segments no longer needed. */
  private async rotate(): Promise<void> {
    const seq = this.segments[this.segments.length - 1]!.seq + 1;
    const seg: Segment = { seq, path: join(this.dir, segmentName(seq)), maxIndexByGroup: new Map() };
    const next = await open(seg.path, "a");
    const checkpoint: WalRecord[] = [];
    for (const [group, g] of [...this.groups].sort((a, b) => a[0] - b[0])) {
      if (g.snapshot !== null) checkpoint.push({ kind: "snapshot", group, ...g.snapshot });
      checkpoint.push({ kind: "compact", group, index: g.start.index, term: g.start.term, checkpoint: true });
      checkpoint.push({ kind: "hard-state", group, hardState: g.hardState });
    }
    const bufs = checkpoint.map((r) => encodeRecord(r));
    let bytes = 0;
    for (const b of bufs) bytes += b.byteLength;
    if (bufs.length > 0) await next.writev(bufs);
    await next.datasync();
    fsyncPath(this.dir);
    await this.file.close();
    this.file = next;
    this.position = bytes;
    this.segments.push(seg);
    this.log.debug(`wal: new segment ${seg.path}`);
    this.collectGarbage();
  }

  private applyMeta(r: WalRecord): void {
    if (r.kind === "drop") {
      // Not restated by checkpoints, and its entries no longer hold segments back.
      this.groups.delete(r.group);
      for (const seg of this.segments) seg.maxIndexByGroup.delete(r.group);
      return;
    }
    let g = this.groups.get(r.group);
    if (g === undefined) {
      g = { hardState: { term: 0, vote: 0, commit: 0 }, snapshot: null, start: { index: 0, term: 0 } };
      this.groups.set(r.group, g);
    }
    if (r.kind === "hard-state") g.hardState = r.hardState;
    else if (r.kind === "snapshot") {
      g.snapshot = { index: r.index, term: r.term, confState: r.confState };
      g.start = { index: r.index, term: r.term };
    } else if (r.kind === "compact" && r.index > g.start.index) g.start = { index: r.index, term: r.term };
  }

  /** Deletes the oldest segments whose entries every group has compacted (never the current one). */
  private collectGarbage(): void {
    while (this.segments.length > 1) {
      const oldest = this.segments[0]!;
      for (const [group, maxIndex] of oldest.maxIndexByGroup) {
        if ((this.groups.get(group)?.start.index ?? 0) < maxIndex) return;
      }
      unlinkSync(oldest.path);
      this.segments.shift();
      this.log.debug(`wal: deleted segment ${oldest.path}`);
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.file.close();
  }
}

function noteRecord(seg: Segment, r: WalRecord): void {
  if (r.kind !== "entries" || r.entries.length === 0) return;
  const last = r.entries[r.entries.length - 1]!.index;
  if (last > (seg.maxIndexByGroup.get(r.group) ?? 0)) seg.maxIndexByGroup.set(r.group, last);
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
