/**
 * Time as an input. Everything above the Raft core that needs "now" or a timer takes a Clock, so the
 * same code runs on the real clock in production and on the simulator's virtual clock, where a seed
 * fixes every timer's order.
 */
export interface Timer {
  /** Opaque: only the clock that made it can cancel it. */
  readonly clockTimer: unknown;
}

export interface Clock {
  /** Monotonic milliseconds (for timeouts and intervals); not related to the wall clock. */
  nowMs(): number;
  /** Wall-clock milliseconds since the Unix epoch (for timestamps that other nodes read: atMs of a command). */
  wallMs(): number;
  /** Calls `fn` once after `delayMs`. */
  setTimeout(fn: () => void, delayMs: number): Timer;
  /** Calls `fn` every `intervalMs` until cleared. */
  setInterval(fn: () => void, intervalMs: number): Timer;
  /** Cancels a timer of this clock (a timer that fired or was cleared already is ignored). */
  clear(timer: Timer | null | undefined): void;
  /** Calls `fn` after the current work and the promises it settled (Node's setImmediate). */
  defer(fn: () => void): void;
}

interface NodeTimer extends Timer {
  readonly clockTimer: NodeJS.Timeout;
  readonly repeat: boolean;
}

/** The process's own clock: performance.now(), Date.now() and Node's timers. */
export const systemClock: Clock = {
  nowMs: () => performance.now(),
  wallMs: () => Date.now(),
  setTimeout: (fn, delayMs) => ({ clockTimer: setTimeout(fn, delayMs), repeat: false }) satisfies NodeTimer,
  setInterval: (fn, intervalMs) => ({ clockTimer: setInterval(fn, intervalMs), repeat: true }) satisfies NodeTimer,
  clear: (timer) => {
    if (timer === null || timer === undefined) return;
    const t = timer as NodeTimer;
    if (t.repeat) clearInterval(t.clockTimer);
    else clearTimeout(t.clockTimer);
  },
  defer: (fn) => void setImmediate(fn),
};

/** Resolves after `delayMs` on `clock` (virtual time in the simulator). */
export function pause(clock: Clock, delayMs: number): Promise<void> {
  return new Promise<void>((resolve) => clock.setTimeout(resolve, delayMs));
}
