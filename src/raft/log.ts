/**
 * The Raft log as the core sees it: stable entries (in Storage) followed by unstable ones (not yet
 * persisted), plus the commit and applied cursors.
 *
 * Invariant: storage.firstIndex() - 1 <= applied <= committed <= lastIndex().
 */
import { assert } from "../util/assert.js";
import { UnstableLog } from "./log-unstable.js";
import { type Storage, TERM_COMPACTED, TERM_UNAVAILABLE, CompactedError } from "./storage.js";
import { type Entry, type Snapshot, limitSize } from "./types.js";

export const NO_LIMIT = Number.MAX_SAFE_INTEGER;

export class RaftLog {
  readonly storage: Storage;
  readonly unstable: UnstableLog;
  /** Highest index known to be committed by a quorum. */
  committed: number;
  /** Highest index the host has applied (reported through advance()). */
  applied: number;
  /** Bound on the bytes of committed entries handed out in one Ready. */
  readonly maxCommittedSizePerReadyBytes: number;

  constructor(storage: Storage, maxCommittedSizePerReadyBytes: number) {
    this.storage = storage;
    this.maxCommittedSizePerReadyBytes = maxCommittedSizePerReadyBytes;
    const first = storage.firstIndex();
    const last = storage.lastIndex();
    this.unstable = new UnstableLog(last + 1);
    this.committed = first - 1;
    this.applied = first - 1;
  }

  firstIndex(): number {
    return this.unstable.maybeFirstIndex() ?? this.storage.firstIndex();
  }

  lastIndex(): number {
    return this.unstable.maybeLastIndex() ?? this.storage.lastIndex();
  }

  lastTerm(): number {
    const t = this.term(this.lastIndex());
    assert(t >= 0, () => `last entry ${this.lastIndex()} has no term (${t})`);
    return t;
  }

  /** Term of entry i, TERM_COMPACTED or TERM_UNAVAILABLE. The entry before firstIndex() has a term. */
  term(i: number): number {
    const dummy = this.firstIndex() - 1;
    if (i < dummy) return TERM_COMPACTED;
    if (i > this.lastIndex()) return TERM_UNAVAILABLE;
    const t = this.unstable.maybeTerm(i);
    if (t !== null) return t;
    return this.storage.term(i);
  }

  matchTerm(i: number, term: number): boolean {
    const t = this.term(i);
    return t >= 0 && t === term;
  }

  /** A candidate's log (lastIndex, lastTerm) is at least as up to date as ours. */
  isUpToDate(lastIndex: number, lastTerm: number): boolean {
    const ourTerm = this.lastTerm();
    return lastTerm > ourTerm || (lastTerm === ourTerm && lastIndex >= this.lastIndex());
  }

  /**
   * Appends entries received from a leader after (index, logTerm) when they match, advancing the commit
   * to min(committed, last new index). Returns the last new index, or -1 on mismatch.
   */
  maybeAppend(index: number, logTerm: number, committed: number, ents: readonly Entry[]): number {
    if (!this.matchTerm(index, logTerm)) return -1;
    const lastNew = index + ents.length;
    const conflict = this.findConflict(ents);
    if (conflict !== 0) {
      assert(conflict > this.committed, () => `entry ${conflict} conflicts with committed entry (committed ${this.committed})`);
      this.append(ents.slice(conflict - (index + 1)));
    }
    this.commitTo(Math.min(committed, lastNew));
    return lastNew;
  }

  append(ents: readonly Entry[]): number {
    if (ents.length === 0) return this.lastIndex();
    const after = ents[0]!.index - 1;
    assert(after >= this.committed, () => `append after ${after} is below committed ${this.committed}`);
    this.unstable.truncateAndAppend(ents);
    return this.lastIndex();
  }

  /**
   * Index of the first entry of ents that is not already in the log with the same term, or 0 if all
   * are present. An entry past the end of the log counts as a conflict (it is new).
   */
  findConflict(ents: readonly Entry[]): number {
    for (const e of ents) {
      if (!this.matchTerm(e.index, e.term)) return e.index;
    }
    return 0;
  }

  /**
   * The largest index <= index whose term is <= term, with that term. Used for fast backtracking:
   * no entry above it can match a log whose entry at `index` has `term`.
   */
  findConflictByTerm(index: number, term: number): { index: number; term: number } {
    for (; index > 0; index--) {
      const t = this.term(index);
      if (t < 0) return { index, term: 0 }; // compacted or unavailable: stop here
      if (t <= term) return { index, term: t };
    }
    return { index: 0, term: 0 };
  }

  commitTo(toCommit: number): void {
    if (toCommit <= this.committed) return; // never regress
    assert(toCommit <= this.lastIndex(), () => `commit ${toCommit} beyond last index ${this.lastIndex()}`);
    this.committed = toCommit;
  }

  appliedTo(i: number): void {
    if (i === 0) return;
    assert(i <= this.committed && i >= this.applied, () =>
      `applied ${i} out of range [applied ${this.applied}, committed ${this.committed}]`);
    this.applied = i;
  }

  /** Commits maxIndex if its entry is of `term` (only current-term entries are committed by counting). */
  maybeCommit(maxIndex: number, term: number): boolean {
    if (maxIndex > this.committed && this.term(maxIndex) === term) {
      this.commitTo(maxIndex);
      return true;
    }
    return false;
  }

  stableTo(index: number, term: number): void {
    this.unstable.stableTo(index, term);
  }

  stableSnapshotTo(index: number): void {
    this.unstable.stableSnapshotTo(index);
  }

  unstableEntries(): Entry[] {
    return this.unstable.entries;
  }

  /** Committed entries not yet applied, bounded in bytes. */
  nextCommittedEntries(): Entry[] {
    const lo = Math.max(this.applied + 1, this.firstIndex());
    const hi = this.committed + 1;
    if (lo >= hi) return [];
    return this.slice(lo, hi, this.maxCommittedSizePerReadyBytes);
  }

  hasNextCommittedEntries(): boolean {
    return this.committed > Math.max(this.applied, this.firstIndex() - 1);
  }

  /** The snapshot to hand out: a pending unstable one, else the storage's. */
  snapshot(): Snapshot {
    return this.unstable.snapshot ?? this.storage.snapshot();
  }

  restore(snap: Snapshot): void {
    this.committed = snap.meta.index;
    this.unstable.restore(snap);
  }

  /** Entries from i on, at most maxBytes (always at least one if any). */
  entries(i: number, maxBytes: number): Entry[] {
    if (i > this.lastIndex()) return [];
    return this.slice(i, this.lastIndex() + 1, maxBytes);
  }

  /** Entries in [lo, hi), limited to maxBytes. Throws CompactedError if lo is compacted. */
  slice(lo: number, hi: number, maxBytes: number): Entry[] {
    assert(lo <= hi, () => `invalid slice ${lo} > ${hi}`);
    if (lo === hi) return [];
    const first = this.firstIndex();
    if (lo < first) throw new CompactedError(`slice from ${lo} compacted (first ${first})`);
    assert(hi <= this.lastIndex() + 1, () => `slice [${lo}, ${hi}) out of bound last ${this.lastIndex()}`);
    const offset = this.unstable.offset;
    let ents: Entry[] = [];
    if (lo < offset) {
      ents = this.storage.entries(lo, Math.min(hi, offset), maxBytes);
      // Storage returned fewer than asked for (size limit): the caller gets what fits.
      if (ents.length < Math.min(hi, offset) - lo) return ents;
    }
    if (hi > offset) {
      const un = this.unstable.slice(Math.max(lo, offset), hi);
      ents = ents.length > 0 ? ents.concat(un) : un;
    }
    return limitSize(ents, maxBytes);
  }

}
