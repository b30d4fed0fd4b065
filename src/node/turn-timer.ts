/**
 * Where a loop turn's time went. A turn holds every group of the node: while it runs, no heartbeat,
 * vote or answer leaves. A turn slower than the bound is reported with the phase that took longest, so
 * that a node its peers found silent says why (a run on 2026-12-06 lost a node's turns for 71 s
 * during a split, and its log said nothing).
 *
 * It allocates nothing per turn: laps add into a fixed array, read only for a slow turn.
 */
import { assert } from "../util/assert.js";

/**
 * `commit`: the state store's commit, when due (its changes handed to LMDB: ~1-2 us of loop time each);
 * `answers`: the pause that lets the answers of the applied writes go out before the commit notices
 * (other callbacks of the event loop run in it too, such as requests and frames received).
 */
export const TURN_PHASES = ["commit", "fill", "land", "hosting", "ready", "snapshots", "apply", "answers", "wal", "after", "compact"] as const;
export type TurnPhase = (typeof TURN_PHASES)[number];

export interface SlowTurn {
  totalMs: number;
  /** The phase that took longest, and its time. */
  phase: TurnPhase;
  phaseMs: number;
  /** Every phase's time (ms, rounded), those that took any. */
  phasesMs: Partial<Record<TurnPhase, number>>;
  /** The turn's work: groups with a Ready, entries they appended, committed entries they applied. */
  groups: number;
  entriesAppended: number;
  entriesApplied: number;
}

export class TurnTimer {
  private readonly phasesMs = new Float64Array(TURN_PHASES.length);
  private startedMs = 0;
  private lapMs = 0;
  private groups = 0;
  private entriesAppended = 0;
  private entriesApplied = 0;

  /** Turns slower than `slowMs` are reported by `end`. */
  constructor(private readonly slowMs: number) {
    assert(slowMs > 0, "a slow turn's bound is positive");
  }

  start(nowMs: number): void {
    this.startedMs = nowMs;
    this.lapMs = nowMs;
    this.phasesMs.fill(0);
    this.groups = 0;
    this.entriesAppended = 0;
    this.entriesApplied = 0;
  }

  /** What a group's Ready asked of this turn (a slow turn says how much work it had). */
  ready(entriesAppended: number, entriesApplied: number): void {
    this.groups++;
    this.entriesAppended += entriesAppended;
    this.entriesApplied += entriesApplied;
  }

  /** The time since the last lap (or the start) went to `phase`. */
  lap(phase: TurnPhase, nowMs: number): void {
    this.phasesMs[TURN_PHASES.indexOf(phase)]! += nowMs - this.lapMs;
    this.lapMs = nowMs;
  }

  /** The turn ended: what it spent, when it was slow; null otherwise. */
  end(nowMs: number): SlowTurn | null {
    const totalMs = nowMs - this.startedMs;
    if (totalMs < this.slowMs) return null;
    let longest = 0;
    const phasesMs: Partial<Record<TurnPhase, number>> = {};
    for (const [i, phase] of TURN_PHASES.entries()) {
      const ms = this.phasesMs[i]!;
      if (ms > this.phasesMs[longest]!) longest = i;
      if (ms >= 1) phasesMs[phase] = Math.round(ms);
    }
    return { totalMs: Math.round(totalMs), phase: TURN_PHASES[longest]!, phaseMs: Math.round(this.phasesMs[longest]!), phasesMs,
      groups: this.groups, entriesAppended: this.entriesAppended, entriesApplied: this.entriesApplied };
  }
}
