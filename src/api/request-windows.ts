/**
 * A node's recent request rate and latency, in fixed windows of time, for the dashboard's chart (the
 * Prometheus histogram serves a scraper; a page wants the last minutes at a glance without one).
 * Latencies are counted in log-spaced buckets, four per doubling, so a window's percentile is known
 * within 19 % whatever the count, in bounded memory. Time is an argument.
 */
import { assert } from "../util/assert.js";

/** Bucket i holds latencies up to LATENCY_MS_MIN * 2^(i/4); the last holds everything above. */
const LATENCY_MS_MIN = 0.05;
const BUCKETS_PER_DOUBLING = 4;
const BUCKETS = 80; // up to ~50 s, then the overflow bucket

export interface RequestWindow {
  /** Start of the window, ms since the epoch. */
  atMs: number;
  requests: number;
  /** Requests answered with a 5xx. */
  failed: number;
  latencyMsP50: number;
  latencyMsP99: number;
  latencyMsMax: number;
}

interface Open {
  atMs: number;
  requests: number;
  failed: number;
  latencyMsMax: number;
  /** Invariant: sum of counts === requests. */
  counts: Uint32Array;
}

export class RequestWindows {
  /** Closed windows, oldest first. Invariant: at most keptMax, each windowMs after the one before or later. */
  private readonly closed: RequestWindow[] = [];
  private open: Open | null = null;

  constructor(readonly windowMs = 2000, private readonly keptMax = 90) {
    assert(windowMs > 0 && keptMax > 0, "windows have a length and some are kept");
  }

  observe(nowMs: number, latencyMs: number, failed: boolean): void {
    assert(latencyMs >= 0, "a latency is not negative");
    const w = this.windowAt(nowMs);
    w.requests++;
    if (failed) w.failed++;
    w.latencyMsMax = Math.max(w.latencyMsMax, latencyMs);
    w.counts[bucketOf(latencyMs)]!++;
  }

  /** The closed windows of the last keptMax, then the one open now (partial), oldest first; empty windows are shown as such. */
  windows(nowMs: number): RequestWindow[] {
    this.windowAt(nowMs);
    const out: RequestWindow[] = [];
    const startMs = this.startOf(nowMs) - (this.keptMax - 1) * this.windowMs;
    let next = 0;
    for (let at = startMs; at <= this.startOf(nowMs); at += this.windowMs) {
      while (next < this.closed.length && this.closed[next]!.atMs < at) next++;
      const c = this.closed[next];
      if (c !== undefined && c.atMs === at) out.push(c);
      else if (this.open !== null && this.open.atMs === at) out.push(summary(this.open));
      else out.push({ atMs: at, requests: 0, failed: 0, latencyMsP50: 0, latencyMsP99: 0, latencyMsMax: 0 });
    }
    assert(out.length === this.keptMax, "one window per slot");
    return out;
  }

  private startOf(nowMs: number): number {
    return Math.floor(nowMs / this.windowMs) * this.windowMs;
  }

  /** The window holding nowMs, closing the one before (a clock that steps back keeps counting in the open one). */
  private windowAt(nowMs: number): Open {
    const atMs = this.startOf(nowMs);
    if (this.open !== null && atMs <= this.open.atMs) return this.open;
    if (this.open !== null) {
      this.closed.push(summary(this.open));
      if (this.closed.length > this.keptMax) this.closed.shift();
    }
    this.open = { atMs, requests: 0, failed: 0, latencyMsMax: 0, counts: new Uint32Array(BUCKETS + 1) };
    return this.open;
  }
}

function bucketOf(latencyMs: number): number {
  if (latencyMs <= LATENCY_MS_MIN) return 0;
  return Math.min(BUCKETS, Math.ceil(Math.log2(latencyMs / LATENCY_MS_MIN) * BUCKETS_PER_DOUBLING));
}

function upperOf(bucket: number): number {
  return LATENCY_MS_MIN * 2 ** (bucket / BUCKETS_PER_DOUBLING);
}

function summary(w: Open): RequestWindow {
  const quantile = (q: number): number => {
    if (w.requests === 0) return 0;
    const rank = Math.ceil(q * w.requests);
    let seen = 0;
    for (let i = 0; i <= BUCKETS; i++) {
      seen += w.counts[i]!;
      // The bucket's upper bound, but never above the largest latency seen (the overflow bucket has no bound).
      if (seen >= rank) return i === BUCKETS ? w.latencyMsMax : Math.min(upperOf(i), w.latencyMsMax);
    }
    throw new Error("unreachable: the buckets hold every request");
  };
  return { atMs: w.atMs, requests: w.requests, failed: w.failed, latencyMsP50: quantile(0.5), latencyMsP99: quantile(0.99), latencyMsMax: w.latencyMsMax };
}
