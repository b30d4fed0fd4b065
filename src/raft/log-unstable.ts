/**
 * Entries and a snapshot that the host has not yet persisted. They are handed out in a Ready and
 * become stable in advance(), but only if the persisted (index, term) still matches what is held: an
 * append from a newer leader can replace entries while the host was writing the old ones (the async
 * write ABA race), and those newer entries must stay unstable until they are written themselves.
 */
import { assert } from "../util/assert.js";
import type { Entry, Snapshot } from "./types.js";

export class UnstableLog {
  snapshot: Snapshot | null = null;
  entries: Entry[] = [];
  /** Invariant: entries[i].index === offset + i. */
  offset: number;

  constructor(offset: number) {
    this.offset = offset;
  }

  maybeFirstIndex(): number | null {
    return this.snapshot ? this.snapshot.meta.index + 1 : null;
  }

  maybeLastIndex(): number | null {
    if (this.entries.length > 0) return this.offset + this.entries.length - 1;
    return this.snapshot ? this.snapshot.meta.index : null;
  }

  maybeTerm(i: number): number | null {
    if (i < this.offset) {
      if (this.snapshot && this.snapshot.meta.index === i) return this.snapshot.meta.term;
      return null;
    }
    const last = this.maybeLastIndex();
    if (last === null || i > last) return null;
    return this.entries[i - this.offset]!.term;
  }

  /** The entries up to (index, term) have been persisted. */
  stableTo(index: number, term: number): void {
    const t = this.maybeTerm(index);
    if (t === null || t !== term) return; // replaced meanwhile: keep them unstable
    if (index < this.offset) return; // matched the snapshot, not an entry
    const n = index + 1 - this.offset;
    this.entries = this.entries.slice(n);
    this.offset = index + 1;
  }

  stableSnapshotTo(index: number): void {
    if (this.snapshot && this.snapshot.meta.index === index) this.snapshot = null;
  }

  restore(snap: Snapshot): void {
    this.offset = snap.meta.index + 1;
    this.entries = [];
    this.snapshot = snap;
  }

  truncateAndAppend(ents: readonly Entry[]): void {
    const first = ents[0]!.index;
    if (first === this.offset + this.entries.length) {
      for (const e of ents) this.entries.push(e);
    } else if (first <= this.offset) {
      // Replace everything unstable; the log is rewritten from `first` on.
      this.offset = first;
      this.entries = ents.slice();
    } else {
      // Keep the prefix before `first`, then the new entries.
      this.entries = this.entries.slice(0, first - this.offset);
      for (const e of ents) this.entries.push(e);
    }
    assert(
      this.entries.length === 0 || this.entries[0]!.index === this.offset,
      "unstable entries must start at offset",
    );
  }

  slice(lo: number, hi: number): Entry[] {
    assert(lo >= this.offset && hi <= this.offset + this.entries.length && lo <= hi, () =>
      `unstable slice [${lo}, ${hi}) out of [${this.offset}, ${this.offset + this.entries.length})`);
    return this.entries.slice(lo - this.offset, hi - this.offset);
  }
}
