/**
 * Phi-accrual failure detector (Hayashibara et al.; the form Akka and Cassandra use), one per node on
 * the placement driver (MEM-6). It learns the distribution of a node's heartbeat intervals and answers
 * with phi: how unlikely the current silence is (phi 1 ~ 10 %, 2 ~ 1 %, 8 ~ 1e-8). Pure: heartbeat
 * arrival times come in as arguments.
 */
import { assert } from "../util/assert.js";
import type { Health } from "./types.js";

export interface DetectorConfig {
  /** Phi above this marks the node unhealthy. */
  phiThreshold: number;
  /** Silent this long: dead (its replicas are rebuilt elsewhere). */
  deadAfterMs: number;
  /** Intervals remembered (bounded window). */
  windowSize: number;
  /** Floor on the deviation, so that very regular heartbeats do not make one late beat look fatal. */
  minStdDevMs: number;
  /** Pause tolerated on top of the learnt distribution (GC, a busy loop turn). */
  acceptablePauseMs: number;
}

export const DEFAULT_DETECTOR: DetectorConfig = { phiThreshold: 8, deadAfterMs: 60_000, windowSize: 100, minStdDevMs: 100, acceptablePauseMs: 1000 };

export class PhiAccrualDetector {
  /** Invariant: intervals.length <= cfg.windowSize; sum and sumSquares are over intervals. */
  private readonly intervals: number[] = [];
  private sum = 0;
  private sumSquares = 0;
  private lastMs: number | null = null;

  constructor(private readonly cfg: DetectorConfig = DEFAULT_DETECTOR) {
    assert(cfg.windowSize >= 1 && cfg.minStdDevMs > 0 && cfg.phiThreshold > 0, "invalid failure detector configuration");
  }

  heartbeat(nowMs: number): void {
    if (this.lastMs !== null) {
      assert(nowMs >= this.lastMs, "heartbeats arrive in time order");
      const interval = nowMs - this.lastMs;
      this.intervals.push(interval);
      this.sum += interval;
      this.sumSquares += interval * interval;
      if (this.intervals.length > this.cfg.windowSize) {
        const old = this.intervals.shift()!;
        this.sum -= old;
        this.sumSquares -= old * old;
      }
    }
    this.lastMs = nowMs;
  }

  /** How unlikely the silence since the last heartbeat is; 0 before two heartbeats were seen. */
  phi(nowMs: number): number {
    if (this.lastMs === null || this.intervals.length === 0) return 0;
    const n = this.intervals.length;
    const mean = this.sum / n + this.cfg.acceptablePauseMs;
    const variance = Math.max(0, this.sumSquares / n - (this.sum / n) ** 2);
    const stdDev = Math.max(this.cfg.minStdDevMs, Math.sqrt(variance));
    const y = (nowMs - this.lastMs - mean) / stdDev;
    // Logistic approximation of the normal distribution's tail (error below 1e-4).
    const e = Math.exp(-y * (1.5976 + 0.070566 * y * y));
    const pLater = y > 0 ? e / (1 + e) : 1 - 1 / (1 + e);
    return -Math.log10(Math.max(pLater, Number.MIN_VALUE));
  }

  health(nowMs: number): Health {
    if (this.lastMs === null) return "unhealthy";
    if (nowMs - this.lastMs >= this.cfg.deadAfterMs) return "dead";
    return this.phi(nowMs) > this.cfg.phiThreshold ? "unhealthy" : "healthy";
  }
}
