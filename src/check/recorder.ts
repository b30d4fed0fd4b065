/**
 * A recorder of the clients' history, as check/ reads it. Every client lives in one process, so events are
 * appended in the order they happened; an invocation is stamped before its request leaves and a
 * completion after its answer arrived, which can only widen an operation (never a false violation).
 */
import type { EventType, Fn, HistoryEvent } from "./history.js";
import type { VersionObservation } from "./versions.js";

export type Outcome = "ok" | "fail" | "info";

export class HistoryRecorder {
  private readonly events: HistoryEvent[] = [];
  /** Invocations whose operation is left out of the history (a compare-and-set that was certainly not applied). */
  private readonly dropped = new Set<HistoryEvent>();
  readonly counts = { ok: 0, fail: 0, info: 0 };
  /** Why operations failed or ended unknown: error code, or the client-side cause, with counts. */
  readonly reasons = new Map<string, number>();
  /** Versions seen by successful operations, for the "versions only grow" check. */
  readonly versions: VersionObservation[] = [];

  /** `nowMs`: the clients' clock (the process's in a chaos run, the virtual one in the simulator). */
  constructor(private readonly nowMs: () => number) {}

  private now(): number {
    return Math.round(this.nowMs() * 1000) / 1000;
  }

  invoke(process: number, f: Fn, key: string, value: unknown): HistoryEvent {
    const ev: HistoryEvent = { process, type: "invoke", f, key, value, time: this.now() };
    this.events.push(ev);
    return ev;
  }

  /** Also notes the version an ok operation saw or answered. */
  completeWithVersion(inv: HistoryEvent, value: unknown, version: number): void {
    this.complete(inv, "ok", value);
    this.versions.push({ key: inv.key!, version, write: inv.f !== "read", call: inv.time, ret: this.events.at(-1)!.time });
  }

  complete(inv: HistoryEvent, type: EventType, value: unknown, reason?: string): void {
    this.counts[type as Outcome]++;
    if (reason !== undefined && type !== "ok") this.reasons.set(`${type} ${reason}`, (this.reasons.get(`${type} ${reason}`) ?? 0) + 1);
    this.events.push({ process: inv.process, type, f: inv.f, key: inv.key!, value, time: this.now() });
  }

  /**
   * A compare-and-set refused before it could apply (e.g. 503 no_leader): the checker's `fail` would
   * mean "compared and found another value", which is not what happened, so the operation is left out.
   */
  drop(inv: HistoryEvent, reason: string): void {
    this.counts.fail++;
    this.reasons.set(`fail ${reason}`, (this.reasons.get(`fail ${reason}`) ?? 0) + 1);
    this.dropped.add(inv);
  }

  history(): HistoryEvent[] {
    // A dropped invocation has no completion: leaving the invocation out removes the whole operation.
    return this.events.filter((ev) => !this.dropped.has(ev));
  }

  get size(): number {
    return this.events.length;
  }

  /** JSON lines in docs/history-format.md's format: `shoal check-history FILE --model kv` reads it back. */
  jsonLines(): string {
    return this.history().map((ev) => JSON.stringify(ev)).join("\n") + "\n";
  }
}
