/**
 * The raft Storage of one group on a node: its log entries in memory (recovered from the WAL, appended
 * as the host persists them), its hard state, and its snapshot, which is produced on demand from the
 * state store (a consistent read transaction) when a follower needs one.
 */
import {
  type ConfState,
  type Entry,
  type HardState,
  type Snapshot,
  type Storage,
  CompactedError,
  MemoryStorage,
  TERM_COMPACTED,
} from "../raft/index.js";
import type { NodeStateStore as StateStore } from "./host.js";
import type { SnapshotKeep } from "../storage/state-store.js";
import type { GroupLog } from "../storage/wal.js";
import type { InstalledPoint } from "../storage/state-store.js";
import { assert } from "../util/assert.js";

/**
 * The log of a group whose state store installed a snapshot the log never recorded (a crash or a failed
 * WAL write came between the two: see StateStore's ordering rules), or null if the log has it. Raft
 * replaced the whole log by that snapshot, so the log restarts there, empty; its commit index is at
 * least the snapshot's. The caller writes the snapshot record before Raft starts. Found by the node world.
 */
export function restatedInstall(log: GroupLog, installed: InstalledPoint | undefined, confStateOf: () => ConfState | undefined): GroupLog | null {
  // Recording an install moves the log's start to its index, and the start never goes back.
  if (installed === undefined || installed.index <= log.start.index) return null;
  const confState = confStateOf();
  assert(confState !== undefined, () => `an installed snapshot at ${installed.index} without a configuration`);
  const hs = log.hardState;
  const hardState = installed.term > hs.term
    ? { term: installed.term, vote: 0, commit: installed.index }
    : { ...hs, commit: Math.max(hs.commit, installed.index) };
  return { hardState, snapshot: { ...installed, confState }, start: { ...installed }, entries: [] };
}

export class GroupStorage implements Storage {
  readonly group: number;
  /** Entries after the log's start; its `snap` field holds only the start's (index, term). */
  private readonly mem = new MemoryStorage();
  /** Bytes of the entries' data held in `mem` (compaction keeps it bounded: maybeCompact). */
  sizeBytes = 0;
  private readonly store: StateStore;
  private readonly snapshotKeep: SnapshotKeep | undefined;
  /**
   * The configuration as of the applied index (for initialState): the state store keeps it with the
   * applied index, so changes before it, which are not replayed, are in it; later ones replay from the log.
   */
  confState: ConfState;

  /**
   * `snapshotKeep`: which of the group's stored keys a snapshot carries, by the shard state stored with
   * them (a split parent's keys include its child's until they are moved: split-fill.ts).
   */
  constructor(group: number, recovered: GroupLog, confState: ConfState, store: StateStore, snapshotKeep?: SnapshotKeep) {
    this.group = group;
    this.store = store;
    this.snapshotKeep = snapshotKeep;
    this.confState = store.confState(group) ?? recovered.snapshot?.confState ?? confState;
    this.mem.applySnapshot({
      meta: { index: recovered.start.index, term: recovered.start.term, confState: this.confState }, data: new Uint8Array(0),
    });
    this.mem.append(recovered.entries);
    for (const e of recovered.entries) this.sizeBytes += e.data.byteLength;
    // A commit index that only moved is written without a sync (turn() in multi-raft-turn.ts), so a power
    // loss can take it back below what the state store had applied and committed durably. Applying
    // follows commit, so the entries up to the applied index were committed: the commit index is at
    // least that (the entries themselves were synced before they could commit). Found by the node world.
    const applied = store.applied(group);
    const last = recovered.start.index + recovered.entries.length;
    const commit = Math.max(recovered.hardState.commit, Math.min(applied, last));
    this.mem.setHardState({ ...recovered.hardState, commit });
  }

  initialState(): { hardState: HardState; confState: ConfState } {
    return { hardState: this.mem.hardState, confState: this.confState };
  }

  entries(lo: number, hi: number, maxBytes: number): Entry[] {
    return this.mem.entries(lo, hi, maxBytes);
  }

  term(i: number): number {
    return this.mem.term(i);
  }

  firstIndex(): number {
    return this.mem.firstIndex();
  }

  lastIndex(): number {
    return this.mem.lastIndex();
  }

  /**
   * The group's state as of what the state store has committed, with the log's term at that index and
   * the configuration as of that index (not the log start's: a learner added since must find itself).
   */
  snapshot(): Snapshot {
    const { appliedIndex, data, confState } = this.store.snapshot(this.group, this.snapshotKeep);
    const term = this.mem.term(appliedIndex);
    if (term === TERM_COMPACTED || term < 0) throw new CompactedError(`group ${this.group}: no term for applied index ${appliedIndex}`);
    return { meta: { index: appliedIndex, term, confState: confState ?? this.confState }, data };
  }

  // Host-side updates, after the corresponding WAL records are durable.

  append(entries: readonly Entry[]): void {
    if (entries.length === 0) return;
    const last = this.mem.lastIndex();
    this.mem.append(entries);
    if (entries[0]!.index === last + 1) for (const e of entries) this.sizeBytes += e.data.byteLength;
    else this.recount(); // a conflicting tail was replaced
  }

  /** Sums what the log holds now (appends may replace a conflicting tail; compaction drops a head). */
  private recount(): void {
    const first = this.mem.firstIndex();
    const last = this.mem.lastIndex();
    let n = 0;
    if (last >= first) for (const e of this.mem.entries(first, last + 1, Number.MAX_SAFE_INTEGER)) n += e.data.byteLength;
    this.sizeBytes = n;
  }

  setHardState(hs: HardState): void {
    this.mem.setHardState(hs);
  }

  installSnapshot(meta: Snapshot["meta"]): void {
    this.confState = meta.confState;
    this.mem.applySnapshot({ meta, data: new Uint8Array(0) });
    this.recount();
  }

  /** Drops entries up to `index`; returns the term there (for the WAL's compaction record). */
  compact(index: number): number {
    const term = this.mem.term(index);
    this.mem.compact(index);
    this.recount();
    return term;
  }

  hardState(): HardState {
    return this.mem.hardState;
  }
}
