/**
 * The node's most recent log lines, kept in memory for `GET /v1/node/logs` (the diagnostics bundle and
 * the dashboard read them). A pino destination: it is handed each serialized line. Bounded by lines
 * and by bytes, so a burst of long lines cannot grow it.
 */
import { assert } from "./assert.js";

export class LogRing {
  private lines: string[] = [];
  private head = 0;
  private bytes = 0;

  constructor(readonly linesMax = 2000, readonly bytesMax = 2 << 20) {
    assert(linesMax >= 1 && bytesMax >= 1, "a ring holds something");
  }

  /** pino's destination interface: one serialized line (with its newline) per call. */
  write(line: string): void {
    const kept = line.endsWith("\n") ? line.slice(0, -1) : line;
    this.lines.push(kept);
    this.bytes += kept.length;
    while (this.lines.length - this.head > this.linesMax || (this.bytes > this.bytesMax && this.lines.length - this.head > 1)) {
      this.bytes -= this.lines[this.head]!.length;
      this.head++;
    }
    if (this.head > this.linesMax) {
      this.lines = this.lines.slice(this.head);
      this.head = 0;
    }
    assert(this.lines.length - this.head <= this.linesMax, "the ring holds at most linesMax lines");
  }

  /** The newest `limit` lines (JSON, as logged), oldest first. */
  recent(limit = this.linesMax): string[] {
    return this.lines.slice(Math.max(this.head, this.lines.length - limit));
  }
}
