/**
 * A background loop whose pace comes from the cluster settings (read before each wait, so a change
 * applies from the next round): run, wait `intervalMs()`, run again. A round never overlaps the next;
 * the timer does not keep the process alive (the node's own loop does).
 */
export class PacedLoop {
  private timer: NodeJS.Timeout | null = null;

  constructor(private readonly intervalMs: () => number, private readonly round: () => Promise<void>) {}

  start(): void {
    if (this.timer === null) this.schedule();
  }

  stop(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }

  private schedule(): void {
    this.timer = setTimeout(() => {
      void this.round().finally(() => {
        if (this.timer !== null) this.schedule();
      });
    }, this.intervalMs());
    this.timer.unref();
  }
}
