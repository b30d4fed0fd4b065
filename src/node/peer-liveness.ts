/**
 * What a node knows of its peers' liveness from the frames it receives (MEM-6): when each was last
 * heard, a phi-accrual failure detector per peer (unhealthy), and silence past a bound (dead). A peer
 * never heard from is silent since it became known here (or since this node started), so that a node
 * that died before this one took over as placement driver is still found dead. Bounded: one entry per
 * peer, at most MAX_TRACKED_PEERS.
 *
 * Liveness over a short window (live) also discounts the time this node could not listen: before it
 * started, and while its event loop stalled (see deafUntil). A node that just started, or just caught up,
 * has heard nothing yet, which says nothing about its peers.
 *
 * A broken transport is a faster sign than silence: a process killed (even by SIGKILL) has its
 * connections closed by the kernel at once, and a refused connection means nothing listens there. Such a
 * peer is lost (see lost) until a frame from it is heard again, without waiting out a silence.
 */
import { PhiAccrualDetector } from "../placement/failure-detector.js";
import type { Health, NodeId } from "../placement/types.js";
import { assert } from "../util/assert.js";

const MAX_TRACKED_PEERS = 10_000;

export class PeerLiveness {
  private readonly detectors = new Map<NodeId, PhiAccrualDetector>();
  private readonly heardAtMs = new Map<NodeId, number>();
  private readonly knownAtMs = new Map<NodeId, number>();
  /** When the transport to each peer last broke (a connection closed, or one could not be made). */
  private readonly brokenAtMs = new Map<NodeId, number>();
  /** Peers whose transport broke and that were not heard since, past the grace (see heard). Invariant: a subset of brokenAtMs's keys. */
  private readonly awaitingReturn = new Set<NodeId>();

  /** Frames could reach this node only from then on (see deafUntil). */
  private listeningSinceMs: number;

  constructor(private readonly startedAtMs: number) {
    this.listeningSinceMs = startedAtMs;
  }

  /**
   * This node could take in no frame before `sinceMs` (it was starting, or its loop was stalled): silence
   * until then is not held against any peer by live().
   */
  deafUntil(sinceMs: number): void {
    assert(Number.isFinite(sinceMs), () => `deafUntil: not a time: ${sinceMs}`);
    this.listeningSinceMs = Math.max(this.listeningSinceMs, sinceMs);
  }

  /**
   * Any frame from a peer counts as a heartbeat. Returns whether the peer is back: its transport broke,
   * and this is the first frame heard `graceMs` or more after that (one sooner may have been sent before
   * it died: see brokenSince).
   */
  heard(peer: NodeId, nowMs: number, graceMs = 0): boolean {
    if (!this.heardAtMs.has(peer) && this.heardAtMs.size >= MAX_TRACKED_PEERS) return false;
    this.heardAtMs.set(peer, nowMs);
    let detector = this.detectors.get(peer);
    if (detector === undefined) this.detectors.set(peer, (detector = new PhiAccrualDetector()));
    detector.heartbeat(nowMs);
    if (!this.awaitingReturn.has(peer) || nowMs - this.brokenAtMs.get(peer)! < graceMs) return false;
    this.awaitingReturn.delete(peer);
    return true;
  }

  /** A connection to or from the peer closed, or connecting to it failed. */
  disconnected(peer: NodeId, nowMs: number): void {
    if (!this.brokenAtMs.has(peer) && this.brokenAtMs.size >= MAX_TRACKED_PEERS) return;
    this.brokenAtMs.set(peer, nowMs);
    this.awaitingReturn.add(peer);
  }

  /**
   * No sign of life from the peer: its transport broke after the last frame heard from it (a frame heard
   * since clears this), or it was silent for `withinMs` of listening (see live).
   */
  lost(peer: NodeId, nowMs: number, withinMs: number): boolean {
    const brokenAtMs = this.brokenAtMs.get(peer);
    // At the same millisecond, the close is taken to come after the frame: a socket's last data is read
    // before its close event.
    if (brokenAtMs !== undefined && brokenAtMs >= (this.heardAtMs.get(peer) ?? -Infinity)) return true;
    return !this.live(peer, nowMs, withinMs);
  }

  /**
   * The transport to the peer broke, and no frame was heard from it `graceMs` or more after that. A
   * frame heard sooner may have been sent before the peer died: a peer's connections (one per plane,
   * each way) are read in no set order, so one's close can be seen before another's last frames. The
   * test of whether a leader is gone (multi-raft-liveness.ts leaderGone), not of lost(): a live peer
   * one of whose connections closed is not refused requests until its next frame after the grace.
   */
  brokenSince(peer: NodeId, graceMs: number): boolean {
    const brokenAtMs = this.brokenAtMs.get(peer);
    return brokenAtMs !== undefined && (this.heardAtMs.get(peer) ?? -Infinity) - brokenAtMs < Math.max(1, graceMs);
  }

  /** The peer appeared in the cluster map. */
  known(peer: NodeId, nowMs: number): void {
    if (!this.knownAtMs.has(peer) && this.knownAtMs.size < MAX_TRACKED_PEERS) this.knownAtMs.set(peer, nowMs);
  }

  /**
   * Heard from within the last `withinMs` of listening: a peer never heard counts from when it became
   * known, and no peer is silent for longer than this node has been able to listen.
   */
  live(peer: NodeId, nowMs: number, withinMs: number): boolean {
    const sinceMs = Math.max(this.heardAtMs.get(peer) ?? this.knownAtMs.get(peer) ?? -Infinity, this.listeningSinceMs);
    return nowMs - sinceMs <= withinMs;
  }

  /** The detector's suspicion of the peer now (phi 1: a 10 % chance that a live peer would be this late; 0 before two frames were heard); null for a peer it has no detector for. */
  phi(peer: NodeId, nowMs: number): number | null {
    return this.detectors.get(peer)?.phi(nowMs) ?? null;
  }

  health(peer: NodeId, nowMs: number, deadAfterMs: number): Health {
    if (nowMs - (this.heardAtMs.get(peer) ?? this.knownAtMs.get(peer) ?? this.startedAtMs) >= deadAfterMs) return "dead";
    // The detector's own "dead" bound is not the cluster's: silence decides death above.
    const h = this.detectors.get(peer)?.health(nowMs) ?? "unhealthy";
    return h === "dead" ? "unhealthy" : h;
  }
}
