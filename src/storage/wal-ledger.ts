/**
 * The WAL's bookkeeping, apart from its files: the live view of every group (what a checkpoint restates)
 * and, per segment, the highest entry index each group holds there (what keeps a segment from being
 * deleted). Pure, so that the real WAL (storage/wal.ts) and the simulated disk (sim/world/disk.ts)
 * rotate and collect segments by the same rules.
 */
import { assert } from "../util/assert.js";
import type { WalRecord } from "./wal-record.js";
import type { GroupLog } from "./wal.js";

/** The live view of a group: what a checkpoint restates (entries stay with the caller). */
export interface GroupMeta {
  hardState: GroupLog["hardState"];
  snapshot: GroupLog["snapshot"];
  start: { index: number; term: number };
}

export class WalLedger {
  /** Per group, its live view. A dropped group is absent (checkpoints do not restate it). */
  private readonly groups = new Map<number, GroupMeta>();
  /**
   * Per retained segment, oldest first: the highest entry index each group holds there.
   * Invariant: never empty once a segment is open; the last one is the segment being written.
   */
  private readonly segments: Map<number, number>[] = [];

  /** Takes the groups recovery rebuilt (their meta only). */
  adopt(groups: ReadonlyMap<number, GroupLog>): void {
    this.groups.clear();
    for (const [id, g] of groups) this.groups.set(id, { hardState: g.hardState, snapshot: g.snapshot, start: { ...g.start } });
  }

  /** A new segment follows the current one: records noted from now on land in it. */
  openSegment(): void {
    this.segments.push(new Map());
  }

  get segmentCount(): number {
    return this.segments.length;
  }

  /** Notes a record read back from the current segment at recovery (groups come from `adopt`). */
  noteRecovered(r: WalRecord): void {
    this.noteSegment(r);
  }

  /** Notes a record appended to the current segment: its place in the segment and its group's view. */
  noteAppended(r: WalRecord): void {
    this.noteSegment(r);
    if (r.kind === "drop") {
      this.groups.delete(r.group);
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
      // A restated snapshot (only checkpoints write them) leaves the log where it was.
      if (r.checkpoint !== true) g.start = { index: r.index, term: r.term };
    } else if (r.kind === "compact" && r.index > g.start.index) g.start = { index: r.index, term: r.term };
  }

  /**
   * The records that open a new segment: every group's snapshot (restated: a replay must not take it
   * for a new install and empty the log), compaction point and hard state, in group order.
   */
  checkpoint(): WalRecord[] {
    const records: WalRecord[] = [];
    for (const [group, g] of [...this.groups].sort((a, b) => a[0] - b[0])) {
      if (g.snapshot !== null) records.push({ kind: "snapshot", group, ...g.snapshot, checkpoint: true });
      records.push({ kind: "compact", group, index: g.start.index, term: g.start.term, checkpoint: true });
      records.push({ kind: "hard-state", group, hardState: g.hardState });
    }
    return records;
  }

  /** How many of the oldest segments hold only entries every group has compacted (never the current one). */
  collectable(): number {
    let n = 0;
    while (n < this.segments.length - 1) {
      for (const [group, maxIndex] of this.segments[n]!) {
        if ((this.groups.get(group)?.start.index ?? 0) < maxIndex) return n;
      }
      n++;
    }
    return n;
  }

  /**
   * The groups whose entries keep the oldest segment, once more than `segmentsMax` are retained (else
   * none). A group that went idle before its log grew enough to compact would hold every later segment
   * back forever: the node compacts these whatever their size.
   */
  holdingBack(segmentsMax: number): number[] {
    if (this.segments.length <= segmentsMax) return [];
    const held: number[] = [];
    for (const [group, maxIndex] of this.segments[0]!) {
      if ((this.groups.get(group)?.start.index ?? 0) < maxIndex) held.push(group);
    }
    return held;
  }

  /** The oldest `n` segments were deleted. */
  forgetOldest(n: number): void {
    assert(n >= 0 && n < this.segments.length, () => `forgetting ${n} of ${this.segments.length} segments`);
    this.segments.splice(0, n);
  }

  private noteSegment(r: WalRecord): void {
    assert(this.segments.length > 0, "a record noted before any segment");
    if (r.kind === "drop") {
      // A dropped group's entries no longer hold any segment back.
      for (const seg of this.segments) seg.delete(r.group);
      return;
    }
    if (r.kind !== "entries" || r.entries.length === 0) return;
    const seg = this.segments[this.segments.length - 1]!;
    const last = r.entries[r.entries.length - 1]!.index;
    if (last > (seg.get(r.group) ?? 0)) seg.set(r.group, last);
  }
}
