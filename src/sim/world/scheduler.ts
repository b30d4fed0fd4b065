/**
 * The node world's scheduler: virtual time and one queue of events, ordered by (time, insertion), so a
 * seed fixes the order of everything. Each node gets a Clock (util/clock.ts) whose timers are events of
 * the queue; the node's code cannot tell it from the process's clock.
 *
 * Between two events every microtask is drained (one setImmediate turn: Node runs all queued promise
 * jobs before it), so the async code an event started — up to its next timer or network message — runs
 * to completion before the next event. Nothing else in the world may use real time or real I/O.
 *
 * Incarnations: clockFor(owner) hands out a new clock and kills the owner's earlier one, whose pending
 * timers never fire and whose new timers are ignored — a crashed node's code may still hold its clock.
 */
import { assert } from "../../util/assert.js";
import type { Clock, Timer } from "../../util/clock.js";
import { EventQueue } from "../event-queue.js";

interface SimEvent {
  fn: () => void;
  owner: string;
  incarnation: number;
  /** Set by clear(); an interval also reschedules under the same record. */
  cancelled: boolean;
  intervalMs: number | null;
}

interface SimTimer extends Timer {
  readonly clockTimer: SimEvent;
}

/** A run that takes more events than this is livelocked (a timer loop that never yields to time). */
const EVENTS_PER_RUN_MAX = 20_000_000;
/** Events at one instant before time must move on: a deferral loop that never ends. */
const EVENTS_AT_ONE_TIME_MAX = 200_000;

export class SimScheduler {
  /** Virtual milliseconds since the start. Invariant: never decreases. */
  nowMs = 0;
  eventsRun = 0;
  private readonly queue = new EventQueue<SimEvent>();
  private readonly incarnations = new Map<string, number>();
  /** Per owner: how far its clock is ahead of virtual time (clock jumps); kept across incarnations. */
  private readonly offsetsMs = new Map<string, number>();
  private eventsAtThisTime = 0;

  constructor(private readonly startWallMs = 1_700_000_000_000) {}

  private live(owner: string, incarnation: number): boolean {
    return (this.incarnations.get(owner) ?? 0) === incarnation;
  }

  private push(fn: () => void, delayMs: number, owner: string, incarnation: number, intervalMs: number | null): SimEvent {
    assert(Number.isFinite(delayMs), () => `a timer's delay must be finite (${delayMs})`);
    const ev: SimEvent = { fn, owner, incarnation, cancelled: false, intervalMs };
    this.queue.push(this.nowMs + Math.max(0, delayMs), ev);
    return ev;
  }

  /** The world's own events (clients, nemesis, checks): they belong to no node and never die. */
  schedule(fn: () => void, delayMs: number, owner = "world"): void {
    this.push(fn, delayMs, owner, this.incarnations.get(owner) ?? 0, null);
  }

  /** A fresh clock for `owner`; its earlier clock is dead from now on. */
  clockFor(owner: string): Clock {
    const incarnation = (this.incarnations.get(owner) ?? 0) + 1;
    this.incarnations.set(owner, incarnation);
    const now = () => this.nowMs + (this.offsetsMs.get(owner) ?? 0);
    const timer = (fn: () => void, ms: number, repeat: boolean): SimTimer => {
      // A dead clock's timers are recorded cancelled: nothing of a crashed incarnation runs again.
      const ev = this.push(fn, ms, owner, incarnation, repeat ? Math.max(1, ms) : null);
      if (!this.live(owner, incarnation)) ev.cancelled = true;
      return { clockTimer: ev };
    };
    return {
      nowMs: now,
      wallMs: () => this.startWallMs + now(),
      setTimeout: (fn, delayMs) => timer(fn, delayMs, false),
      setInterval: (fn, intervalMs) => timer(fn, intervalMs, true),
      clear: (t) => {
        if (t !== null && t !== undefined) (t as SimTimer).clockTimer.cancelled = true;
      },
      defer: (fn) => void timer(fn, 0, false),
    };
  }

  /** Kills the owner's current clock (a crash); the next clockFor(owner) starts a new incarnation. */
  cancelOwner(owner: string): void {
    this.incarnations.set(owner, (this.incarnations.get(owner) ?? 0) + 1);
  }

  /** The owner's clock jumps ahead by `deltaMs` (monotonic time never goes back; timers keep virtual time). */
  jumpClock(owner: string, deltaMs: number): void {
    assert(deltaMs >= 0, "clocks jump forward only");
    this.offsetsMs.set(owner, (this.offsetsMs.get(owner) ?? 0) + deltaMs);
  }

  /** Runs the next live event and everything it set off; false when nothing is left to run. */
  async step(): Promise<boolean> {
    for (;;) {
      const next = this.queue.pop();
      if (next === undefined) return false;
      const ev = next.event;
      if (ev.cancelled || !this.live(ev.owner, ev.incarnation)) continue;
      assert(next.at >= this.nowMs, "virtual time never goes back");
      if (next.at > this.nowMs) this.eventsAtThisTime = 0;
      this.nowMs = next.at;
      this.eventsRun++;
      this.eventsAtThisTime++;
      assert(this.eventsRun <= EVENTS_PER_RUN_MAX, () => `livelock: more than ${EVENTS_PER_RUN_MAX} events`);
      assert(this.eventsAtThisTime <= EVENTS_AT_ONE_TIME_MAX, () => `livelock: ${EVENTS_AT_ONE_TIME_MAX} events at ${this.nowMs} ms`);
      if (ev.intervalMs !== null) this.queue.push(this.nowMs + ev.intervalMs, ev);
      ev.fn();
      await drainMicrotasks();
      return true;
    }
  }

  /** When the next event is due (Infinity: none). */
  nextDueMs(): number {
    return this.queue.peekTime();
  }
}

/** One macrotask turn: every promise job queued before it (and the jobs those queue) has run. */
export function drainMicrotasks(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
