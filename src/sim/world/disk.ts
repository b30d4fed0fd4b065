/**
 * The node world's disk: one per node, outliving the node's crashes. It holds the node's WAL as the
 * real record bytes (storage/wal-record.ts encoding, recovered by the real replay) and its state store
 * as two layers, the committed one and the one staged since the last commit (storage/state-store.ts's
 * semantics, in memory).
 *
 * The WAL rotates like the real one, by record count instead of bytes (`segmentRecords`): a new segment
 * opens with the same checkpoint, and the oldest segments go once every group has compacted past them
 * (storage/wal-ledger.ts decides both for the real WAL and this one).
 *
 * A crash loses what a real crash may lose: WAL records appended without a sync since the last synced
 * append (a seeded prefix of them may have reached the disk anyway; with `corruptTailOnCrashProbability`
 * the next one is torn, and recovery must cut it), and the state store's staged changes. Handles opened
 * before a crash refuse every later use. A WAL append can fail (`walAppendFailProbability`) like an EIO:
 * the node's turn fails and the node stops, as in production.
 *
 * Everything completes through promise jobs only (no timers, no I/O), so the scheduler orders it all.
 */
import type { NodeStateStore, NodeWal } from "../../node/host.js";
import type { ConfState } from "../../raft/index.js";
import type { GroupChanges, InstalledPoint, RecordKey, ShardState, SnapshotKeep } from "../../storage/state-store.js";
import { type Staged, stageChanges } from "../../storage/staging.js";
import { encodeSnapshot, readFrames } from "../../storage/snapshot-frames.js";
import { type WalRecord, decodeRecord, encodeRecord } from "../../storage/wal-record.js";
import { type GroupLog, replay } from "../../storage/wal.js";
import { WalLedger } from "../../storage/wal-ledger.js";
import { assert } from "../../util/assert.js";
import type { Logger } from "../../util/logger.js";
import type { Random } from "../../util/rng.js";
import { pack, unpack } from "msgpackr";

export interface DiskFaults {
  walAppendFailProbability: number;
  corruptTailOnCrashProbability: number;
}

/** An injected disk failure: the world tells it from a bug by its class. */
export class InjectedDiskFault extends Error {
  override name = "InjectedDiskFault";
}

/**
 * One group's state in a layer (the real store's staged shape; `records` values of null are deletes),
 * with, once committed, the point of its last installed snapshot.
 */
type GroupLayer = Staged & { installed?: InstalledPoint };

/** Records per WAL segment by default: small, so that the node world rotates and deletes segments often. */
export const SIM_SEGMENT_RECORDS = 100;
/** Retained segments beyond which groups holding back the oldest compact (storage/wal.ts's `segmentsMax`). */
export const SIM_SEGMENTS_MAX = 2;

export class SimDisk {
  /** The WAL's bytes, record by record. Invariant: syncedRecords <= walRecords.length. */
  private walRecords: Uint8Array[] = [];
  private syncedRecords = 0;
  /**
   * Where each retained segment starts in walRecords, oldest first. Invariant: segmentStarts[0] === 0,
   * and syncedRecords >= the last start (rotation syncs everything before the new segment).
   */
  private segmentStarts: number[] = [0];
  readonly segmentRecords: number;
  readonly segmentsMax: number;
  /** The state store's committed layer (durable): per group. Values are packed (as LMDB stores them). */
  readonly committed = new Map<number, GroupLayer>();
  private generation = 0;
  private faults: DiskFaults = { walAppendFailProbability: 0, corruptTailOnCrashProbability: 0 };
  readonly counts = { crashes: 0, lostRecords: 0, tornTails: 0, failedAppends: 0, segmentsOpened: 0, segmentsDeleted: 0 };

  constructor(private readonly random: Random, opts: { segmentRecords?: number; segmentsMax?: number } = {}) {
    this.segmentRecords = opts.segmentRecords ?? SIM_SEGMENT_RECORDS;
    this.segmentsMax = opts.segmentsMax ?? SIM_SEGMENTS_MAX;
    assert(this.segmentRecords >= 1, "a segment holds at least one record");
  }

  setFaults(f: DiskFaults): void {
    this.faults = f;
  }

  /** The process died: unsynced WAL records are lost (some may have landed), staged state is lost. */
  crash(): void {
    this.generation++;
    this.counts.crashes++;
    const unsynced = this.walRecords.length - this.syncedRecords;
    const landed = unsynced === 0 ? 0 : this.random.int(unsynced + 1);
    this.walRecords.length = this.syncedRecords + landed;
    this.counts.lostRecords += unsynced - landed;
    if (landed < unsynced && this.random.float() < this.faults.corruptTailOnCrashProbability) {
      // The next record was being written: part of it reached the disk.
      const whole = encodeRecord({ kind: "drop", group: 0 });
      this.walRecords.push(whole.subarray(0, 1 + this.random.int(whole.byteLength - 1)));
      this.counts.tornTails++;
    }
    this.syncedRecords = this.walRecords.length;
  }

  private check(generation: number): void {
    if (generation !== this.generation) throw new Error("disk handle closed by crash");
  }

  async openWal(_dir: string, logger: Logger): Promise<{ wal: NodeWal; groups: Map<number, GroupLog> }> {
    await Promise.resolve();
    const generation = this.generation;
    // Recovery as the real WAL does it: decode in order; a torn or corrupt tail is cut.
    const parsed: WalRecord[] = [];
    const ledger = new WalLedger();
    let segment = 0;
    for (let i = 0; i < this.walRecords.length; i++) {
      while (segment < this.segmentStarts.length && this.segmentStarts[segment] === i) {
        ledger.openSegment();
        segment++;
      }
      // A Buffer, as the real WAL reads its files: entries come back with Buffer data, as in production.
      const d = decodeRecord(Buffer.from(this.walRecords[i]!), 0);
      if (!d.ok) {
        // Only the last segment can hold what a crash tore: rotation synced everything before it.
        assert(i >= this.segmentStarts[this.segmentStarts.length - 1]!, () => `sim disk: damage at record ${i}, before the last segment`);
        logger.warn(`sim disk: cutting the WAL at record ${i} (${d.reason} tail)`);
        this.walRecords.length = i;
        this.syncedRecords = Math.min(this.syncedRecords, i);
        break;
      }
      parsed.push(d.record);
      ledger.noteRecovered(d.record);
    }
    while (segment < this.segmentStarts.length) {
      ledger.openSegment();
      segment++;
    }
    const groups = replay(parsed);
    ledger.adopt(groups);
    let appending = false;
    const wal: NodeWal = {
      append: async (records: readonly WalRecord[], sync = true) => {
        this.check(generation);
        assert(!appending, "WAL appends must not overlap: batch them instead");
        if (records.length === 0) return;
        appending = true;
        try {
          if (this.random.float() < this.faults.walAppendFailProbability) {
            this.counts.failedAppends++;
            throw new InjectedDiskFault("injected disk fault: WAL write failed (EIO)");
          }
          for (const r of records) this.walRecords.push(encodeRecord(r));
          await Promise.resolve();
          this.check(generation);
          if (sync) this.syncedRecords = this.walRecords.length;
          for (const r of records) ledger.noteAppended(r);
          if (this.walRecords.length - this.segmentStarts[this.segmentStarts.length - 1]! >= this.segmentRecords) this.rotate(ledger);
        } finally {
          appending = false;
        }
      },
      holdingBack: () => ledger.holdingBack(this.segmentsMax),
      close: async () => {
        await Promise.resolve();
      },
    };
    return { wal, groups };
  }

  openStateStore(_path: string): NodeStateStore {
    return new SimStateStore(this, this.generation);
  }

  /** As the real WAL: sync, open a segment with a checkpoint, delete the segments no group needs. */
  private rotate(ledger: WalLedger): void {
    this.segmentStarts.push(this.walRecords.length);
    ledger.openSegment();
    for (const r of ledger.checkpoint()) this.walRecords.push(encodeRecord(r));
    this.syncedRecords = this.walRecords.length;
    this.counts.segmentsOpened++;
    const n = ledger.collectable();
    if (n === 0) return;
    const removed = this.segmentStarts[n]!;
    this.walRecords.splice(0, removed);
    this.syncedRecords -= removed;
    this.segmentStarts = this.segmentStarts.slice(n).map((start) => start - removed);
    ledger.forgetOldest(n);
    this.counts.segmentsDeleted += n;
  }

  /** Whether `generation` is the disk's current one (handles of an earlier one are dead). */
  alive(generation: number): boolean {
    return generation === this.generation;
  }
}

/** The state store of storage/state-store.ts, in memory: a staged layer over the committed one. */
class SimStateStore implements NodeStateStore {
  private staged = new Map<number, GroupLayer>();
  private lastCommitMs = -Infinity;
  commits = 0;

  constructor(private readonly disk: SimDisk, private readonly generation: number) {}

  private check(): void {
    if (!this.disk.alive(this.generation)) throw new Error("disk handle closed by crash");
  }

  apply(changes: readonly GroupChanges[]): void {
    this.check();
    stageChanges(this.staged, changes, (g) => this.applied(g), pack);
  }

  /** Commits staged changes once a second of the node's clock (the real store's default interval). */
  commitIfDue(nowMs: number): void {
    this.check();
    if (this.staged.size > 0 && nowMs - this.lastCommitMs >= 1000) {
      this.commit();
      this.lastCommitMs = nowMs;
    }
  }

  /** Staged changes become durable at once (values packed, as LMDB would store them). */
  commit(): boolean {
    this.check();
    if (this.staged.size === 0) return true;
    this.commits++;
    for (const [group, st] of this.staged) {
      let c = this.disk.committed.get(group);
      if (c === undefined) this.disk.committed.set(group, (c = { appliedIndex: 0, records: new Map() }));
      c.appliedIndex = st.appliedIndex;
      for (const [key, bytes] of st.records) {
        if (bytes === null) c.records.delete(key);
        else c.records.set(key, bytes);
      }
      if (st.confState !== undefined) c.confState = structuredClone(st.confState);
      if (st.shard !== undefined) c.shard = structuredClone(st.shard);
      if (st.unlogged !== undefined) c.unlogged = st.unlogged;
      if (st.fillFrom === null) delete c.fillFrom;
      else if (st.fillFrom !== undefined) c.fillFrom = st.fillFrom;
    }
    this.staged = new Map();
    return true;
  }

  async committed(): Promise<void> {
    await this.flushed();
  }

  async durable(): Promise<void> {
    await this.flushed();
  }

  async flushed(): Promise<void> {
    this.commit();
    await Promise.resolve();
    this.check();
  }

  get(group: number, key: RecordKey): unknown {
    const st = this.staged.get(group);
    const staged = st?.records.get(key);
    const packed = staged !== undefined ? staged : this.disk.committed.get(group)?.records.get(key);
    return packed === undefined || packed === null ? undefined : unpack(packed);
  }

  scan(group: number, limit: number, after?: RecordKey, end?: RecordKey): [RecordKey, unknown][] {
    const inRange = (key: RecordKey) => (after === undefined || key > after) && (end === undefined || key < end);
    const merged = new Map<RecordKey, Uint8Array | null>();
    for (const [key, packed] of this.disk.committed.get(group)?.records ?? []) if (inRange(key)) merged.set(key, packed);
    for (const [key, packed] of this.staged.get(group)?.records ?? []) if (inRange(key)) merged.set(key, packed);
    const keys = [...merged.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    const out: [RecordKey, unknown][] = [];
    for (const key of keys) {
      const packed = merged.get(key)!;
      if (packed === null) continue;
      out.push([key, unpack(packed)]);
      if (out.length === limit) break;
    }
    return out;
  }

  packed(group: number, pick: (key: RecordKey) => boolean): [RecordKey, Uint8Array][] {
    const merged = new Map<RecordKey, Uint8Array | null>(this.disk.committed.get(group)?.records ?? []);
    for (const [key, packed] of this.staged.get(group)?.records ?? []) merged.set(key, packed);
    const out: [RecordKey, Uint8Array][] = [];
    for (const [key, packed] of merged) if (packed !== null && pick(key)) out.push([key, packed]);
    return out;
  }

  /** As the real store: a part of a walk in key order over what is committed, picked. The cursor is the last key walked. */
  packedPart(group: number, pick: (key: RecordKey) => boolean, cursor: unknown, keysMax: number): { entries: [RecordKey, Uint8Array][]; cursor: unknown } {
    this.check();
    assert(keysMax >= 1, "a walk's part holds at least one key");
    const keys = [...(this.disk.committed.get(group)?.records.keys() ?? [])].filter((k) => cursor === undefined || k > (cursor as string)).sort();
    const walked = keys.slice(0, keysMax);
    const entries: [RecordKey, Uint8Array][] = [];
    for (const key of walked) if (pick(key)) entries.push([key, this.disk.committed.get(group)!.records.get(key)!]);
    return { entries, cursor: walked.length < keysMax ? undefined : walked[walked.length - 1] };
  }

  applied(group: number): number {
    return this.staged.get(group)?.appliedIndex ?? this.disk.committed.get(group)?.appliedIndex ?? 0;
  }

  confState(group: number): ConfState | undefined {
    return this.staged.get(group)?.confState ?? this.disk.committed.get(group)?.confState;
  }

  shardState(group: number): ShardState | undefined {
    return this.staged.get(group)?.shard ?? this.disk.committed.get(group)?.shard;
  }

  unlogged(group: number): boolean {
    const st = this.staged.get(group);
    if (st?.unlogged !== undefined) return st.unlogged;
    return this.disk.committed.get(group)?.unlogged === true;
  }

  fillingFrom(group: number): number | undefined {
    const st = this.staged.get(group);
    if (st?.fillFrom !== undefined) return st.fillFrom ?? undefined;
    return this.disk.committed.get(group)?.fillFrom ?? undefined;
  }

  installed(group: number): InstalledPoint | undefined {
    const point = this.disk.committed.get(group)?.installed;
    return point === undefined ? undefined : { ...point };
  }

  groups(): number[] {
    const ids = new Set<number>([...this.disk.committed.keys(), ...this.staged.keys()]);
    return [...ids].sort((a, b) => a - b);
  }

  /** As the real store: the group as of its last commit (the log keeps what follows). */
  snapshot(group: number, keepOf?: SnapshotKeep): { appliedIndex: number; data: Uint8Array; confState: ConfState | undefined } {
    this.check();
    const c = this.disk.committed.get(group);
    const keep = keepOf?.(c?.shard);
    const pairs = [...(c?.records ?? [])].filter(([key]) => keep === undefined || keep(key)).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([key, packed]) => [key, unpack(packed as Uint8Array)] as [RecordKey, unknown]);
    return { appliedIndex: c?.appliedIndex ?? 0, data: encodeSnapshot(c?.appliedIndex ?? 0, pairs, 1024, c?.shard), confState: c?.confState };
  }

  async installSnapshot(group: number, index: number, term: number, data: Uint8Array, confState?: ConfState): Promise<void> {
    this.check();
    const frames = readFrames(data);
    assert(index >= this.applied(group), () => `group ${group}: snapshot at ${index} is behind applied ${this.applied(group)}`);
    const shard = frames[0]?.[2];
    this.staged.delete(group);
    this.commit();
    const layer: GroupLayer = { appliedIndex: index, records: new Map(), installed: { index, term } };
    for (const [, pairs] of frames) for (const [key, value] of pairs) layer.records.set(key, pack(value));
    if (confState !== undefined) layer.confState = structuredClone(confState);
    if (shard !== undefined) layer.shard = shard;
    this.disk.committed.set(group, layer);
    await Promise.resolve();
  }

  async dropGroup(group: number): Promise<void> {
    this.check();
    this.staged.delete(group);
    this.commit();
    this.disk.committed.delete(group);
    await Promise.resolve();
  }

  async close(): Promise<void> {
    await this.flushed();
  }
}
