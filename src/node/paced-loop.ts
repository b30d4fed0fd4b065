/**
 * A background loop whose pace comes from the cluster settings (read before each wait, so a change
 * applies from the next round): run, wait `intervalMs()`, run again. A round never overlaps the next;
 * on the process's clock the timer does not keep the process alive (the node's own loop does).
 */
import { type Clock, type Timer, systemClock } from "../util/clock.js";

export class PacedLoop {
  private timer: Timer | null = null;

  constructor(
    private readonly intervalMs: () => number,
    private readonly round: () => Promise<void>,
    private readonly clock: Clock = systemClock,
  ) {}

  start(): void {
    if (this.timer === null) this.schedule();
  }

  stop(): void {
    this.clock.clear(this.timer);
    this.timer = null;
  }

  private schedule(): void {
    this.timer = this.clock.setTimeout(() => {
      void this.round().finally(() => {
        if (this.timer !== null) this.schedule();
      });
    }, this.intervalMs());
    unrefTimer(this.timer);
  }
}

/** Lets the process exit while `timer` is pending, when it is one of Node's timers (a virtual clock's is not). */
export function unrefTimer(timer: Timer): void {
  const t = timer.clockTimer as { unref?: () => void } | null;
  if (t !== null && typeof t === "object" && typeof t.unref === "function") t.unref();
}
