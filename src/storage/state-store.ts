/**
 * The state store: applied records of every group on this node, with each group's applied index, in
 * LMDB. The raft log (wal.ts) is what makes writes durable; the state store may lag behind it after a
 * crash, and the node replays the log from the applied index on restart. What must hold is atomicity:
 * a group's records and its applied index always change in the same transaction.
 *
 * Ordering rules for the node (both follow from "the log may only forget what the store has durably"):
 *   - compact the WAL up to index i only after `flushed()` resolved for an apply that reached i;
 *   - write the WAL's snapshot record only after `installSnapshot` returned (it commits synchronously);
 *     a crash or a failed WAL write in between leaves the store ahead of the log: `installed()` tells
 *     the node on its next start, which records the snapshot in the log then.
 *
 * Applied changes are staged in memory and committed to LMDB in batches (`commitIfDue`), on LMDB's
 * writer thread, because one LMDB commit costs about as much CPU as a whole turn of small writes
 * (measured ~0.2 ms CPU, ~0.5 ms wall idle, up to ~10 ms under load). etcd's backend does the same
 * (batch interval + read buffer). Reads see staged and in-flight changes first, so this is invisible
 * to callers; a crash loses only changes not yet committed, which the WAL still holds (it is compacted
 * only after `flushed()`, which commits them first).
 *
 * A record's value is encoded when it is staged, a turn's worth at a time, and a commit hands LMDB the
 * bytes as one batch whose tree work runs on LMDB's writer thread. A commit written from inside a
 * transaction callback ran on the loop thread instead: 20-140 ms once a second at 256 connections
 * (~3 us per change, three changes per keyed write), a stall every request in flight waited out.
 */
import { type Database, type DatabaseOptions, type RootDatabase, open } from "lmdb";
import { encodeSnapshot, readFrames } from "./snapshot-frames.js";
import { type Staged, stageChanges } from "./staging.js";
import { assert } from "../util/assert.js";
import type { ConfState } from "../raft/index.js";

export type RecordKey = string;

export interface GroupChanges {
  group: number;
  /** The group's applied index after these changes. */
  appliedIndex: number;
  puts?: [RecordKey, unknown][];
  /**
   * Puts of values as this store encoded them (read by `packedPart`): a split's fill hands the records
   * and outcomes it moves to the child so, unread (decoding and encoding again every one of a shard's
   * entries cost most of a split's time: measured).
   */
  packedPuts?: [RecordKey, Uint8Array][];
  deletes?: RecordKey[];
  /**
   * The group's Raft configuration as of `appliedIndex`, when a configuration change was applied.
   * Kept with the applied index so that a restart starts Raft from the configuration it had applied
   * (the changes before the applied index are not replayed), and a snapshot carries the configuration
   * as of its own index.
   */
  confState?: ConfState;
  /** The shard's own state (its range, its splits), replaced whole when given. */
  shard?: ShardState;
  /** Marks (true) or clears (false) a group made by a split whose log has not been written yet. */
  unlogged?: boolean;
  /**
   * Marks a group made by a split whose records are still stored under its parent (the number: the
   * parent), or clears the mark once they were moved (null). See node/split-fill.ts.
   */
  fillFrom?: number | null;
}

/**
 * A range bound: a position of the shard's collection, a hash (number) or, in a range-partitioned
 * collection, a record id (string). Both bounds of a range are of one kind (meta/ranges.ts ShardRange).
 */
type Position = number | string;

/** What a shard knows of itself beyond its records: carried by snapshots. */
export interface ShardState {
  range: { start: Position; end: Position };
  /** Its latest splits, oldest first (bounded): its leader records each in the metadata. */
  splits: { child: number; at: Position; end: Position; index: number }[];
  /** Being merged into `into` since its log index `index`: it refuses writes (see records.ts MergeCommand). */
  frozen?: { into: number; index: number };
  /** Its latest absorbed neighbours, oldest first (bounded): its leader records each in the metadata. */
  absorbed?: { from: number; end: Position; index: number }[];
  /**
   * A record written at log index i gets version versionBase + i (0 when absent). A split child starts
   * above its parent's versions, a merge target jumps above its source's (see node/shard-apply.ts).
   */
  versionBase?: number;
}

export interface StateStoreOptions {
  path: string;
  /** Records per frame of a snapshot (bounds the memory of one encode / decode step). */
  snapshotFrameRecords?: number;
  /**
   * Staged changes are committed to LMDB at least this often (default 1 s). Longer than etcd's 100 ms:
   * with random keys each commit rewrites most leaf pages, so fewer commits write far fewer bytes
   * (measured: +18-20% cluster write throughput against 100 ms). The WAL holds what is not committed.
   */
  commitIntervalMs?: number;
  /**
   * ... or once this many record changes are staged (default 5,000), whichever comes first. Handing a
   * commit's changes to LMDB costs the loop ~1 us each (more on a loaded machine): commits of up to
   * 20,000 held every group of a node 50-90 ms at times under load (slow turns in `commit`); with
   * 5,000, fewer slow turns and no loss of throughput (docs/benchmarks.md, 2026-12-06 (sixth)).
   */
  commitMaxChanges?: number;
  /** ... or once this many bytes of commands are staged (default 16 MiB). */
  commitMaxBytes?: number;
}

/**
 * Which of a group's stored keys its snapshot carries, given the shard state read with them (so the
 * two agree): undefined for all. A split parent's keys include its child's until they are moved.
 */
export type SnapshotKeep = (shard: ShardState | undefined) => ((key: RecordKey) => boolean) | undefined;

/** Where a group's last installed snapshot put its log: what the WAL records after the install. */
export interface InstalledPoint {
  index: number;
  term: number;
}

const APPLIED = "applied";
const CONF = "conf";
const SHARD = "shard";
const UNLOGGED = "unlogged";
const INSTALLED = "installed";
const FILLING = "filling";
/** Commits queued to LMDB's writer thread and not yet done; more waits in `staged`. */
const MAX_INFLIGHT_COMMITS = 4;

export class StateStore {
  private readonly root: RootDatabase;
  private readonly records: Database<unknown, [number, RecordKey]>;
  /** The same records, written as the bytes staging encoded with `records`' encoder. */
  private readonly recordBytes: Database<Uint8Array, [number, RecordKey]>;
  private readonly encode: (value: unknown) => Uint8Array;
  private readonly decode: (bytes: Uint8Array) => unknown;
  /** Per group: its applied index (APPLIED) and its configuration as of it (CONF). */
  private readonly meta: Database<unknown, [number, string]>;
  private readonly frameRecords: number;
  private readonly commitIntervalMs: number;
  private readonly commitMaxChanges: number;
  private readonly commitMaxBytes: number;
  /** Changes applied since the last commit. Invariant: a group's appliedIndex here >= in any older layer. */
  private staged = new Map<number, Staged>();
  private stagedChanges = 0;
  private stagedBytes = 0;
  /**
   * Commits handed to LMDB's writer thread, oldest first. Invariant: a commit leaves only once it and
   * every older one settled successfully (LMDB shows them to readers); a failed one never leaves.
   */
  private readonly inflight: { groups: Map<number, Staged>; done: Promise<void>; settled: boolean }[] = [];
  /**
   * Per group: its applied index as LMDB holds it, what `applied` falls through to below the layers. Read
   * from LMDB once, then kept with it: set as each commit leaves `inflight`, dropped as a group is replaced.
   * (Every answer to a write carries the metadata group's applied index: an LMDB read each cost ~10 us.)
   */
  private readonly appliedInLmdb = new Map<number, number>();
  private lastCommitMs = -Infinity;
  /** A failed LMDB write: the store is no longer trustworthy; every later call throws it. */
  private failure: Error | null = null;
  /** LMDB commits started so far (for metrics and tests). */
  commits = 0;

  private constructor(root: RootDatabase, opts: StateStoreOptions) {
    this.root = root;
    // Values as plain msgpack maps. lmdb-js's default (records, with no shared structures configured)
    // wrote each value's key names as a new record definition: encoding ran msgpackr's record setup
    // every time (~1.9 KB allocated per keyed put over three replicas; 1.04 vs 0.64 us an encode,
    // 0.82 vs 0.57 us a decode: measured). Values written so (stores before 2026-12-05) still decode.
    // (lmdb-js hands msgpackr options given here to its encoder; its types do not list them.)
    const plainMaps: DatabaseOptions & { name: string; useRecords: boolean } = { name: "records", useRecords: false };
    this.records = root.openDB<unknown, [number, RecordKey]>(plainMaps);
    this.recordBytes = root.openDB<Uint8Array, [number, RecordKey]>({ name: "records", encoding: "binary" });
    const codec = this.records as unknown as { encoder: { encode(v: unknown): Uint8Array }; decoder: { decode(b: Uint8Array): unknown } };
    assert(typeof codec.encoder?.encode === "function" && typeof codec.decoder?.decode === "function",
      "state store: LMDB's records database has no encoder or decoder");
    const { encoder, decoder } = codec;
    // A copy: the encoder may hand out a view of a buffer it reuses.
    this.encode = (value) => Buffer.from(encoder.encode(value));
    this.decode = (bytes) => decoder.decode(bytes);
    this.meta = root.openDB<unknown, [number, string]>({ name: "meta" });
    this.frameRecords = opts.snapshotFrameRecords ?? 1024;
    this.commitIntervalMs = opts.commitIntervalMs ?? 1000;
    this.commitMaxChanges = opts.commitMaxChanges ?? 5_000;
    this.commitMaxBytes = opts.commitMaxBytes ?? 16 * 1024 * 1024;
    assert(this.commitIntervalMs >= 0 && this.commitMaxChanges >= 1 && this.commitMaxBytes >= 1, "state store: bad commit bounds");
  }

  static open(opts: StateStoreOptions): StateStore {
    // strictAsyncOrder: transaction callbacks (snapshot installs) and commits run in the order queued.
    const root = open({ path: opts.path, compression: false, maxDbs: 8, strictAsyncOrder: true });
    return new StateStore(root, opts);
  }

  /**
   * Stages one loop turn's changes of any number of groups: visible to reads at once, committed to LMDB
   * by a later `commit` (one transaction holding whole turns), durable once `flushed()` resolves.
   * `sizeBytes` is what the changes cost in commands (bounds the memory staging may hold).
   */
  apply(changes: readonly GroupChanges[], sizeBytes = 0): void {
    this.checkHealthy();
    this.stagedChanges += stageChanges(this.staged, changes, (g) => this.applied(g), this.encode);
    this.stagedBytes += sizeBytes;
  }

  /** Commits staged changes when the interval has passed or a size bound is reached. */
  commitIfDue(nowMs: number): void {
    this.checkHealthy();
    if (this.staged.size === 0) return;
    if (nowMs - this.lastCommitMs >= this.commitIntervalMs || this.stagedChanges >= this.commitMaxChanges ||
      this.stagedBytes >= this.commitMaxBytes) {
      if (this.commit()) this.lastCommitMs = nowMs;
    }
  }

  /**
   * Hands everything staged to LMDB's writer thread as one transaction; the loop thread does not wait
   * for it (an LMDB commit blocked it for up to ~10 ms under load: measured). Returns false when too
   * many commits are in flight already (the changes stay staged).
   */
  commit(): boolean {
    if (this.staged.size === 0) return true;
    if (this.inflight.length >= MAX_INFLIGHT_COMMITS) return false;
    const groups = this.staged;
    this.staged = new Map();
    this.stagedChanges = 0;
    this.stagedBytes = 0;
    this.commits++;
    const batch = {
      groups,
      settled: false,
      // One batch is one transaction (atomic: records with their applied index). Inside it, LMDB's
      // writes answer at once; the batch's promise carries the commit's outcome.
      done: this.root.batch(() => {
        for (const [group, st] of groups) {
          // forEach: a for-of over the entries made an array per change here (~600 B a put: measured).
          st.records.forEach((bytes, key) => {
            if (bytes === null) void this.recordBytes.remove([group, key]);
            else void this.recordBytes.put([group, key], bytes);
          });
          void this.meta.put([group, APPLIED], st.appliedIndex);
          if (st.confState !== undefined) void this.meta.put([group, CONF], st.confState);
          if (st.shard !== undefined) void this.meta.put([group, SHARD], st.shard);
          if (st.unlogged === true) void this.meta.put([group, UNLOGGED], true);
          if (st.unlogged === false) void this.meta.remove([group, UNLOGGED]);
          if (typeof st.fillFrom === "number") void this.meta.put([group, FILLING], st.fillFrom);
          if (st.fillFrom === null) void this.meta.remove([group, FILLING]);
        }
      }).then(
        () => {
          // lmdb-js may settle a later batch's promise before an earlier one's (seen under load: a
          // commit of a few changes settled before the large one queued ahead of it). A batch leaves
          // the overlays only behind every older one, so that a reader never falls through to LMDB past
          // a commit not known to be done (or one that failed: the store then stops, and keeps it).
          batch.settled = true;
          while (this.inflight.length > 0 && this.inflight[0]!.settled) {
            for (const [group, st] of this.inflight.shift()!.groups) this.appliedInLmdb.set(group, st.appliedIndex);
          }
        },
        (e: unknown) => {
          this.failure = e instanceof Error ? e : new Error(String(e));
        },
      ),
    };
    this.inflight.push(batch);
    return true;
  }

  /**
   * Resolves once everything applied before the call is committed to LMDB (shown to its readers), not
   * necessarily synced. Unlike `flushed()` it waits neither for the disk nor for what is applied after the
   * call, so it can be awaited beside the loop (a split's fill waits so for the walk it reads from LMDB).
   */
  async committed(): Promise<void> {
    this.checkHealthy();
    // What is staged goes into a commit of its own.
    for (let rounds = 0; this.staged.size > 0 && !this.commit(); rounds++) {
      assert(rounds < 1_000_000, "state store: a commit never finds room");
      // Too many commits in flight: the oldest settling makes room.
      await this.inflight[0]!.done;
    }
    // Every commit in flight now (at most MAX_INFLIGHT_COMMITS), which holds every one in flight at the
    // call that has not left: a commit leaves only once it and every older one settled (lmdb-js may
    // settle them out of order).
    await Promise.all(this.inflight.map((b) => b.done));
    this.checkHealthy();
  }

  /**
   * Resolves once everything applied before the call is on disk. Unlike `flushed()` it does not wait
   * for what is applied after the call, so it ends while the loop goes on applying (a log compaction
   * waits so beside the loop).
   */
  async durable(): Promise<void> {
    await this.committed();
    // lmdb-js's `flushed` is the sync of the latest commit (ours or one after it: syncs are in order).
    await this.root.flushed;
    this.checkHealthy();
  }

  /** Resolves once everything applied before the call is on disk. */
  async flushed(): Promise<void> {
    this.checkHealthy();
    for (let rounds = 0; this.staged.size > 0 || this.inflight.length > 0; rounds++) {
      assert(rounds < 1_000_000, "state store: flush does not converge");
      this.commit();
      // All of them: they may settle in any order.
      await Promise.all(this.inflight.map((b) => b.done));
      this.checkHealthy();
    }
    await this.root.flushed;
    this.checkHealthy();
  }

  get(group: number, key: RecordKey): unknown {
    for (const layer of this.overlays(group)) {
      const bytes = layer.records.get(key);
      if (bytes !== undefined) return bytes === null ? undefined : this.decode(bytes);
    }
    return this.records.get([group, key]);
  }

  /** Records of a group in key order, from `after` (exclusive) to `end` (exclusive), at most `limit`. */
  scan(group: number, limit: number, after?: RecordKey, end?: RecordKey): [RecordKey, unknown][] {
    // Changes not yet in LMDB, newest layer first, merged over what LMDB holds.
    const pending = new Map<RecordKey, Uint8Array | null>();
    for (const layer of this.overlays(group)) {
      for (const [key, bytes] of layer.records) {
        if ((after === undefined || key > after) && (end === undefined || key < end) && !pending.has(key)) pending.set(key, bytes);
      }
    }
    const merged = new Map<RecordKey, unknown>();
    const range = this.records.getRange({
      start: after === undefined ? [group] : [group, after], end: end === undefined ? [group + 1] : [group, end], exclusiveStart: after !== undefined,
      limit: limit + pending.size,
    });
    for (const { key, value } of range) merged.set(recordKeyOf(key), value);
    for (const key of pending.keys()) merged.set(key, undefined);
    const keys = [...merged.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    const out: [RecordKey, unknown][] = [];
    for (const key of keys) {
      // Staged bytes are decoded only for the records returned.
      const bytes = pending.get(key);
      if (bytes === null) continue;
      out.push([key, bytes === undefined ? merged.get(key) : this.decode(bytes)]);
      if (out.length === limit) break;
    }
    return out;
  }

  /**
   * The records and remembered outcomes of a group whose key `pick` selects, each with its value as
   * stored (encoded), staged ones too, in no particular order: what an absorb makes a pending split fill
   * move at once (node/shard-apply.ts finishFills). Keys are walked without their values; only the
   * picked ones are read, and nothing is decoded or sorted.
   */
  packed(group: number, pick: (key: RecordKey) => boolean): [RecordKey, Uint8Array][] {
    const pending = new Map<RecordKey, Uint8Array | null>();
    for (const layer of this.overlays(group)) {
      // forEach: a for-of over the entries would make an array per change.
      layer.records.forEach((bytes, key) => void (pending.has(key) || pending.set(key, bytes)));
    }
    const out: [RecordKey, Uint8Array][] = [];
    for (const lmdbKey of this.recordBytes.getKeys({ start: [group], end: [group + 1] })) {
      const key = recordKeyOf(lmdbKey);
      if (pending.has(key) || !pick(key)) continue;
      const bytes = this.recordBytes.getBinary([group, key]);
      assert(bytes !== undefined, () => `group ${group}: ${JSON.stringify(key)} went from LMDB while it was read`);
      out.push([key, bytes]);
    }
    pending.forEach((bytes, key) => void (bytes !== null && pick(key) && out.push([key, bytes])));
    return out;
  }

  /**
   * Part of a walk over a group's records and remembered outcomes as LMDB holds them (not what is
   * staged or in flight), in key order: of the next `keysMax` keys after `cursor` (an opaque value from
   * the previous part; undefined: from the first key), those `pick` selects, each with its value as
   * stored (encoded, not decoded). `cursor` is undefined in the answer once the walk reached the end.
   * What a split's fill moves (node/split-fill.ts): its caller made sure that nothing staged is picked.
   */
  packedPart(group: number, pick: (key: RecordKey) => boolean, cursor: unknown, keysMax: number): { entries: [RecordKey, Uint8Array][]; cursor: unknown } {
    this.checkHealthy();
    assert(keysMax >= 1, "a walk's part holds at least one key");
    const entries: [RecordKey, Uint8Array][] = [];
    let last: unknown;
    let walked = 0;
    const keys = this.recordBytes.getKeys({ start: cursor === undefined ? [group] : (cursor as [number, RecordKey]), end: [group + 1], exclusiveStart: cursor !== undefined, limit: keysMax });
    for (const lmdbKey of keys) {
      walked++;
      last = lmdbKey;
      const key = recordKeyOf(lmdbKey);
      if (!pick(key)) continue;
      const bytes = this.recordBytes.getBinary(lmdbKey);
      assert(bytes !== undefined, () => `group ${group}: ${JSON.stringify(key)} went from LMDB while it was read`);
      entries.push([key, bytes]);
    }
    return { entries, cursor: walked < keysMax ? undefined : last };
  }

  applied(group: number): number {
    for (const layer of this.overlays(group)) return layer.appliedIndex;
    let applied = this.appliedInLmdb.get(group);
    if (applied === undefined) {
      applied = (this.meta.get([group, APPLIED]) as number | undefined) ?? 0;
      this.appliedInLmdb.set(group, applied);
    }
    return applied;
  }

  /** The group's configuration as of its applied index, if one was ever recorded. */
  confState(group: number): ConfState | undefined {
    for (const layer of this.overlays(group)) if (layer.confState !== undefined) return layer.confState;
    return this.meta.get([group, CONF]) as ConfState | undefined;
  }

  /** The shard's own state as of its applied index, if one was ever recorded. */
  shardState(group: number): ShardState | undefined {
    for (const layer of this.overlays(group)) if (layer.shard !== undefined) return layer.shard;
    return this.meta.get([group, SHARD]) as ShardState | undefined;
  }

  /** Whether the group was made by a split whose log was not written yet (see MultiRaftNode's split landing). */
  unlogged(group: number): boolean {
    for (const layer of this.overlays(group)) if (layer.unlogged !== undefined) return layer.unlogged;
    return this.meta.get([group, UNLOGGED]) === true;
  }

  /** The parent of a group made by a split whose records are still stored under the parent (see GroupChanges.fillFrom). */
  fillingFrom(group: number): number | undefined {
    for (const layer of this.overlays(group)) if (layer.fillFrom !== undefined) return layer.fillFrom ?? undefined;
    return this.meta.get([group, FILLING]) as number | undefined;
  }

  /** The point of the group's last installed snapshot, if it ever installed one. */
  installed(group: number): InstalledPoint | undefined {
    return this.meta.get([group, INSTALLED]) as InstalledPoint | undefined;
  }

  /** Groups that have state here (an applied index), for finding leftovers of dropped groups. */
  groups(): number[] {
    const ids = new Set<number>();
    for (const { key } of this.meta.getRange({ snapshot: false })) if (key[1] === APPLIED) ids.add(key[0]);
    for (const id of this.staged.keys()) ids.add(id);
    for (const c of this.inflight) for (const id of c.groups.keys()) ids.add(id);
    return [...ids].sort((a, b) => a - b);
  }

  /** A group's layers of changes not yet visible in LMDB, newest first. */
  private *overlays(group: number): Generator<Staged> {
    const st = this.staged.get(group);
    if (st !== undefined) yield st;
    for (let i = this.inflight.length - 1; i >= 0; i--) {
      const layer = this.inflight[i]!.groups.get(group);
      if (layer !== undefined) yield layer;
    }
  }

  /**
   * A snapshot of one group from a single read transaction (so the records, the applied index and the
   * shard state `keepOf` is given agree):
   * frames of [u32 LE length][msgpack: [appliedIndex, pairs]] — the first frame's index counts. It shows
   * the group as of its last LMDB commit, which may trail `applied()`; the log keeps what follows
   * (it is compacted only up to what `flushed()` made durable).
   */
  snapshot(group: number, keepOf?: SnapshotKeep): { appliedIndex: number; data: Uint8Array; confState: ConfState | undefined } {
    this.checkHealthy();
    const txn = this.root.useReadTransaction();
    try {
      const appliedIndex = (this.meta.get([group, APPLIED], { transaction: txn }) as number | undefined) ?? 0;
      const confState = this.meta.get([group, CONF], { transaction: txn }) as ConfState | undefined;
      const shard = this.meta.get([group, SHARD], { transaction: txn }) as ShardState | undefined;
      let pairs = this.records.getRange({ start: [group], end: [group + 1], transaction: txn })
        .map(({ key, value }) => [recordKeyOf(key), value] as [RecordKey, unknown]);
      const keep = keepOf?.(shard);
      if (keep !== undefined) pairs = pairs.filter(([key]) => keep(key));
      return { appliedIndex, data: encodeSnapshot(appliedIndex, pairs, this.frameRecords, shard), confState };
    } finally {
      txn.done();
    }
  }

  /**
   * Replaces a group's records with a snapshot's, atomically, and makes it durable before resolving:
   * after a crash the group holds either its old state or the whole snapshot, never a mix.
   */
  /** Replaces the group's state by a snapshot taken at (`index`, `term`) of its log, durably before resolving. */
  async installSnapshot(group: number, index: number, term: number, data: Uint8Array, confState?: ConfState): Promise<void> {
    this.checkHealthy();
    const frames = readFrames(data);
    assert(index >= this.applied(group), () => `group ${group}: snapshot at ${index} is behind applied ${this.applied(group)}`);
    const shard = frames[0]?.[2];
    await this.replaceGroup(group, () => {
      for (const [, pairs] of frames) for (const [key, value] of pairs) this.records.putSync([group, key], value);
      this.meta.putSync([group, APPLIED], index);
      this.meta.putSync([group, INSTALLED], { index, term } satisfies InstalledPoint);
      if (confState !== undefined) this.meta.putSync([group, CONF], confState);
      if (shard !== undefined) this.meta.putSync([group, SHARD], shard);
    });
  }

  /**
   * Forgets a group entirely (a replica that moved away), durably before resolving. The caller makes
   * the group's removal from the log durable first, so that a crash in between leaves only records
   * that no log points at (found by `groups()` and dropped again on open).
   */
  async dropGroup(group: number): Promise<void> {
    this.checkHealthy();
    await this.replaceGroup(group, () => undefined);
  }

  /** Deletes everything of one group, then runs `fill`, in one durable transaction. */
  private async replaceGroup(group: number, fill: () => void): Promise<void> {
    // Older layers of this group are superseded; other groups' staged changes are committed first.
    const st = this.staged.get(group);
    if (st !== undefined) {
      this.staged.delete(group);
      this.stagedChanges -= st.records.size + 1;
    }
    await this.flushed();
    await this.root.transaction(() => {
      for (const { key } of this.records.getRange({ start: [group], end: [group + 1], snapshot: false })) {
        this.records.removeSync(key);
      }
      for (const k of [APPLIED, CONF, SHARD, UNLOGGED, INSTALLED, FILLING]) this.meta.removeSync([group, k]);
      fill();
    });
    // Read again from LMDB: the transaction set (or removed) the group's applied index.
    this.appliedInLmdb.delete(group);
    await this.root.flushed;
  }

  async close(): Promise<void> {
    await this.flushed();
    await this.root.close();
  }

  private checkHealthy(): void {
    if (this.failure !== null) throw this.failure;
  }
}

/**
 * The record key of an LMDB key [group, key]. LMDB's key encoding (ordered-binary) ends a string of 64
 * characters or more at a NUL, so such a key comes back split in parts where it held NULs: joined again
 * here. Stores written before remembered outcomes were keyed by version hold such keys (record id, NUL,
 * idempotency key: a key's first character is printable, so its part decodes as a string); read whole,
 * one was cut to its record id, and snapshots and splits carried it cut.
 */
function recordKeyOf(lmdbKey: unknown): RecordKey {
  const parts = lmdbKey as unknown[];
  // Every record of a scan or a snapshot passes here: the common shape allocates nothing.
  if (parts.length === 2 && typeof parts[1] === "string") return parts[1];
  assert(Array.isArray(parts) && parts.length > 2 && parts.slice(1).every((p) => typeof p === "string"),
    () => `not a record key of the state store: ${JSON.stringify(lmdbKey)}`);
  return parts.slice(1).join("\u0000");
}
