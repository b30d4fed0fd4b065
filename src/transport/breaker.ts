/**
 * Reconnect backoff and a circuit breaker for one peer. Pure: time and randomness come in as arguments.
 *
 * closed: connect freely (with exponential backoff and jitter after failures);
 * open: after `failuresToOpen` consecutive failures, refuse to connect and drop messages for the
 *       cooldown, so a dead peer costs nothing;
 * half-open: after the cooldown, one attempt; success closes the breaker, failure reopens it.
 */
export type BreakerState = "closed" | "open" | "half-open";

export interface BreakerOptions {
  baseDelayMs: number;
  maxDelayMs: number;
  failuresToOpen: number;
  cooldownMs: number;
}

export const DEFAULT_BREAKER: BreakerOptions = { baseDelayMs: 50, maxDelayMs: 2000, failuresToOpen: 8, cooldownMs: 5000 };

export class Breaker {
  private failures = 0;
  private openedAtMs = 0;
  private state: BreakerState = "closed";
  private readonly opts: BreakerOptions;

  constructor(opts: BreakerOptions = DEFAULT_BREAKER) {
    this.opts = opts;
  }

  current(nowMs: number): BreakerState {
    if (this.state === "open" && nowMs - this.openedAtMs >= this.opts.cooldownMs) this.state = "half-open";
    return this.state;
  }

  /** Whether messages may be queued for this peer now. */
  allows(nowMs: number): boolean {
    return this.current(nowMs) !== "open";
  }

  onSuccess(): void {
    this.failures = 0;
    this.state = "closed";
  }

  onFailure(nowMs: number): void {
    this.failures++;
    if (this.state === "half-open" || this.failures >= this.opts.failuresToOpen) {
      this.state = "open";
      this.openedAtMs = nowMs;
    }
  }

  /** Delay before the next connection attempt: exponential in the failures, with full jitter. */
  nextDelayMs(random01: number): number {
    if (this.failures === 0) return 0;
    const cap = Math.min(this.opts.maxDelayMs, this.opts.baseDelayMs * 2 ** Math.min(this.failures - 1, 20));
    return Math.floor(cap / 2 + (random01 * cap) / 2);
  }
}
