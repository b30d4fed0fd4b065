/**
 * The leader's view of one follower's log.
 *
 * Probe: one Append at a time until the follower's position is found.
 * Replicate: appends are pipelined, bounded by the inflight window.
 * Snapshot: a snapshot is being streamed; appends wait until it is installed.
 *
 * Invariant: 0 <= match < next.
 * Invariant: state === Snapshot iff pendingSnapshot > 0.
 */
import { assert } from "../util/assert.js";
import { Inflights } from "./inflights.js";

export enum ProgressState {
  Probe = "probe",
  Replicate = "replicate",
  Snapshot = "snapshot",
}

export class Progress {
  match = 0;
  next: number;
  state: ProgressState = ProgressState.Probe;
  /** Snapshot index being sent while in Snapshot state, else 0. */
  pendingSnapshot = 0;
  /** Heard from the follower since the last check-quorum round. */
  recentActive = false;
  /** In Probe state: an Append was sent since the last heartbeat response; do not send another. */
  probeSent = false;
  isLearner: boolean;
  readonly inflights: Inflights;

  constructor(next: number, isLearner: boolean, maxInflightMsgs: number, maxInflightBytes: number) {
    assert(next >= 1, "next must be >= 1");
    this.next = next;
    this.isLearner = isLearner;
    this.inflights = new Inflights(maxInflightMsgs, maxInflightBytes);
  }

  /** A copy sharing the inflight window (a configuration change keeps the same follower). */
  clone(): Progress {
    const c = Object.create(Progress.prototype) as Progress;
    Object.assign(c, this);
    return c;
  }

  private resetState(state: ProgressState): void {
    this.probeSent = false;
    this.pendingSnapshot = 0;
    this.state = state;
    this.inflights.reset();
  }

  becomeProbe(): void {
    if (this.state === ProgressState.Snapshot) {
      // The snapshot was installed or failed; resume after whichever is further.
      const pending = this.pendingSnapshot;
      this.resetState(ProgressState.Probe);
      this.next = Math.max(this.match + 1, pending + 1);
    } else {
      this.resetState(ProgressState.Probe);
      this.next = this.match + 1;
    }
  }

  becomeReplicate(): void {
    this.resetState(ProgressState.Replicate);
    this.next = this.match + 1;
  }

  becomeSnapshot(snapshotIndex: number): void {
    assert(snapshotIndex > 0, "snapshot index must be positive");
    this.resetState(ProgressState.Snapshot);
    this.pendingSnapshot = snapshotIndex;
  }

  /** An Append of entries up to `last` with `sizeBytes` was sent. */
  sentEntries(last: number, sizeBytes: number): void {
    if (this.state === ProgressState.Replicate) {
      if (last >= this.next) {
        this.inflights.add(last, sizeBytes);
        this.next = last + 1;
      }
    } else if (this.state === ProgressState.Probe) {
      this.probeSent = true;
    } else {
      assert(false, "no appends are sent in snapshot state");
    }
  }

  /** The follower acknowledged up to n. Returns whether match moved. */
  maybeUpdate(n: number): boolean {
    let updated = false;
    if (this.match < n) {
      this.match = n;
      updated = true;
      this.probeSent = false;
    }
    this.next = Math.max(this.next, n + 1);
    return updated;
  }

  /**
   * The follower rejected an Append at index `rejected`; `matchHint` is where it suggests to retry.
   * Returns false when the rejection is stale (out of order) and was ignored.
   */
  maybeDecreaseTo(rejected: number, matchHint: number): boolean {
    if (this.state === ProgressState.Replicate) {
      if (rejected <= this.match) return false; // stale
      this.next = this.match + 1;
      return true;
    }
    // Probe: only the rejection of the index we last probed counts.
    if (this.next - 1 !== rejected) return false;
    this.next = Math.max(Math.min(rejected, matchHint + 1), this.match + 1);
    this.probeSent = false;
    return true;
  }

  /** Whether sending Appends to this follower must wait. */
  isPaused(): boolean {
    switch (this.state) {
      case ProgressState.Probe:
        return this.probeSent;
      case ProgressState.Replicate:
        return this.inflights.full();
      case ProgressState.Snapshot:
        return true;
    }
  }

  /** Corrects a match that the follower says it no longer has (it lost persisted entries). */
  forgetTo(match: number): void {
    if (match < this.match) {
      this.match = match;
      this.becomeProbe();
    }
  }

}
