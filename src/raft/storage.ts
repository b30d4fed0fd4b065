/**
 * The stable-storage view the Raft core reads from. The host writes to it (after persisting a Ready) and
 * the core only reads. MemoryStorage is the reference implementation, used by the simulator and tests;
 * the node's WAL-backed storage implements the same interface.
 */
import { assert } from "../util/assert.js";
import {
  type ConfState,
  type Entry,
  type HardState,
  type Snapshot,
  type SnapshotMeta,
  EMPTY_HARD_STATE,
  EntryType,
  limitSize,
} from "./types.js";

/** term() results that are not terms. */
export const TERM_COMPACTED = -1;
export const TERM_UNAVAILABLE = -2;

export class CompactedError extends Error {
  override name = "CompactedError";
}
export class UnavailableError extends Error {
  override name = "UnavailableError";
}

export interface Storage {
  initialState(): { hardState: HardState; confState: ConfState };
  /** Entries in [lo, hi), at most maxBytes (at least one). Throws CompactedError / UnavailableError. */
  entries(lo: number, hi: number, maxBytes: number): Entry[];
  /** Term of entry i, or TERM_COMPACTED / TERM_UNAVAILABLE. The snapshot's index has a term. */
  term(i: number): number;
  firstIndex(): number;
  lastIndex(): number;
  /** The most recent snapshot. */
  snapshot(): Snapshot;
}

export function emptyConfState(): ConfState {
  return { voters: [], votersOutgoing: [], learners: [], learnersNext: [], autoLeave: false };
}

export function emptySnapshot(): Snapshot {
  return { meta: { index: 0, term: 0, confState: emptyConfState() }, data: new Uint8Array(0) };
}

export class MemoryStorage implements Storage {
  hardState: HardState = EMPTY_HARD_STATE;
  snap: Snapshot = emptySnapshot();
  /**
   * Invariant: ents[0] is a dummy entry standing for the snapshot (its index and term);
   * ents[i].index === ents[0].index + i.
   */
  ents: Entry[] = [{ term: 0, index: 0, type: EntryType.Normal, data: new Uint8Array(0) }];

  initialState(): { hardState: HardState; confState: ConfState } {
    return { hardState: this.hardState, confState: this.snap.meta.confState };
  }

  setHardState(hs: HardState): void {
    this.hardState = { ...hs };
  }

  private offset(): number {
    return this.ents[0]!.index;
  }

  entries(lo: number, hi: number, maxBytes: number): Entry[] {
    const offset = this.offset();
    if (lo <= offset) throw new CompactedError(`entries from ${lo} compacted (first ${offset + 1})`);
    assert(hi <= this.lastIndex() + 1, () => `entries hi ${hi} beyond last ${this.lastIndex()}`);
    if (this.ents.length === 1) throw new UnavailableError("no entries");
    return limitSize(this.ents.slice(lo - offset, hi - offset), maxBytes);
  }

  term(i: number): number {
    const offset = this.offset();
    if (i < offset) return TERM_COMPACTED;
    if (i - offset >= this.ents.length) return TERM_UNAVAILABLE;
    return this.ents[i - offset]!.term;
  }

  firstIndex(): number {
    return this.offset() + 1;
  }

  lastIndex(): number {
    return this.offset() + this.ents.length - 1;
  }

  snapshot(): Snapshot {
    return this.snap;
  }

  /** Replaces the contents with a snapshot (install on a follower). Older snapshots are ignored. */
  applySnapshot(snap: Snapshot): boolean {
    if (snap.meta.index <= this.snap.meta.index) return false;
    this.snap = snap;
    this.ents = [{ term: snap.meta.term, index: snap.meta.index, type: EntryType.Normal, data: new Uint8Array(0) }];
    return true;
  }

  /** Records a snapshot taken by the host at `index` (<= applied) and keeps entries after it. */
  createSnapshot(index: number, confState: ConfState, data: Uint8Array): Snapshot {
    assert(index > this.snap.meta.index, () => `snapshot ${index} not newer than ${this.snap.meta.index}`);
    assert(index <= this.lastIndex(), () => `snapshot ${index} beyond last ${this.lastIndex()}`);
    const meta: SnapshotMeta = { index, term: this.term(index), confState };
    this.snap = { meta, data };
    return this.snap;
  }

  /** Discards entries up to and including compactIndex. */
  compact(compactIndex: number): void {
    const offset = this.offset();
    if (compactIndex <= offset) return;
    assert(compactIndex <= this.lastIndex(), () => `compact ${compactIndex} beyond last ${this.lastIndex()}`);
    const i = compactIndex - offset;
    const dummy: Entry = { term: this.ents[i]!.term, index: compactIndex, type: EntryType.Normal, data: new Uint8Array(0) };
    this.ents = [dummy, ...this.ents.slice(i + 1)];
  }

  /** Appends entries, truncating any conflicting suffix. Entries must be contiguous. */
  append(entries: readonly Entry[]): void {
    if (entries.length === 0) return;
    const first = this.firstIndex();
    const last = entries[0]!.index + entries.length - 1;
    if (last < first) return; // all compacted
    let ents = entries;
    if (first > ents[0]!.index) ents = ents.slice(first - ents[0]!.index);
    const offset = ents[0]!.index - this.offset();
    assert(offset <= this.ents.length, () => `missing log entry [last: ${this.lastIndex()}, append at: ${ents[0]!.index}]`);
    if (offset < this.ents.length) this.ents.length = offset;
    for (const e of ents) this.ents.push(e);
  }

  /** Test hook: forget entries after `index` as a disk that lost writes would (etcd #10166). */
  truncateAfter(index: number): void {
    const offset = this.offset();
    if (index < offset) return;
    this.ents.length = Math.min(this.ents.length, index - offset + 1);
  }
}

/**
 * Prepares a fresh storage for a founding member: the initial configuration is a snapshot at index 1,
 * term 1. Members added later have empty storage and receive that configuration with a snapshot.
 */
export function bootstrapStorage(storage: MemoryStorage, confState: ConfState, data: Uint8Array = new Uint8Array(0)): void {
  storage.applySnapshot({ meta: { index: 1, term: 1, confState }, data });
  storage.setHardState({ term: 1, vote: 0, commit: 1 });
}
