/**
 * The node world's clients: they call gateways of different nodes directly (the same calls the HTTP API
 * makes) and record what they saw for check/. As in the chaos runner (chaos/workload.ts):
 *
 * - register clients read, write, delete and compare-and-set a few keys; every write writes a value
 *   never written before, so the API's version compare-and-set is the checker's value compare-and-set;
 *   a compare-and-set names the version the client last saw of the key (sometimes stale on purpose);
 * - a durability client writes unique keys once each and keeps the acknowledged ones, read back after
 *   healing ("no acknowledged write lost").
 *
 * Outcomes come from the error table (api/error-table.ts): `applied: "no"` is a definite failure, the
 * rest indeterminate; a client gives up on an answer after `clientTimeoutMs` (indeterminate) because a
 * crashed node's promises never settle.
 */
import { ERRORS, NODE_ERROR_CODES } from "../../api/error-table.js";
import type { HistoryRecorder, Outcome } from "../../check/index.js";
import type { CommandResult, StoredRecord } from "../../node/records.js";
import type { Gateway } from "../../node/gateway.js";
import type { Rng } from "../../util/rng.js";
import type { SimScheduler } from "./scheduler.js";

/** How an error thrown by the node layer counts for a client: never applied, or maybe applied. */
export function outcomeOf(e: unknown): { outcome: Outcome; reason: string } {
  const name = e instanceof Error ? e.name : "unknown";
  const code = NODE_ERROR_CODES[name];
  if (code === undefined) return { outcome: "info", reason: name };
  return { outcome: ERRORS[code].applied === "no" ? "fail" : "info", reason: code };
}

export interface ClientContext {
  scheduler: SimScheduler;
  rec: HistoryRecorder;
  /** A gateway of a running node, chosen by the client's rng; null when none runs. */
  gateway(rng: Rng): Gateway | null;
  clientTimeoutMs: number;
}

/** The answer of a gateway call, or a client-side timeout / refusal. */
export type Answered<T> = { ok: true; value: T } | { ok: false; outcome: Outcome; reason: string };

/** Calls `fn` and waits for its answer at most `timeoutMs` of virtual time (a crashed node never answers). */
export function withTimeout<T>(ctx: ClientContext, fn: () => Promise<T>, owner: string): Promise<Answered<T>> {
  return new Promise((resolve) => {
    let done = false;
    const finish = (a: Answered<T>) => {
      if (done) return;
      done = true;
      resolve(a);
    };
    ctx.scheduler.schedule(() => finish({ ok: false, outcome: "info", reason: "client timeout" }), ctx.clientTimeoutMs, owner);
    let p: Promise<T>;
    try {
      p = fn();
    } catch (e) {
      finish({ ok: false, ...outcomeOf(e) });
      return;
    }
    p.then((value) => finish({ ok: true, value }), (e: unknown) => finish({ ok: false, ...outcomeOf(e) }));
  });
}

export class RegisterClient {
  private process: number;
  private n = 0;
  private readonly seen = new Map<string, StoredRecord>();
  ops = 0;

  constructor(readonly id: number, private readonly processStride: number, private readonly keys: number,
    private readonly rng: Rng, private readonly ctx: ClientContext) {
    this.process = id;
  }

  private owner(): string {
    return `client${this.id}`;
  }

  private after(outcome: Outcome): void {
    // Jepsen's rule: a process with an operation of unknown outcome continues under a new number.
    if (outcome === "info") this.process += this.processStride;
  }

  /** One operation; resolves when it is answered or given up on. */
  async step(): Promise<void> {
    this.ops++;
    const g = this.ctx.gateway(this.rng);
    const key = `r${this.rng.int(this.keys)}`;
    const rec = this.ctx.rec;
    if (g === null) return;
    const dice = this.rng.float();
    if (dice < 0.4) {
      const inv = rec.invoke(this.process, "read", key, null);
      const a = await withTimeout(this.ctx, () => g.get(key, "linearizable"), this.owner());
      if (a.ok) {
        const r = a.value;
        // An absent record has no version to compare (a delete removes it; versions are of records).
        if (r === undefined) rec.complete(inv, "ok", null);
        else rec.completeWithVersion(inv, r.payload, r.version);
        if (r !== undefined) this.seen.set(key, r);
        else this.seen.delete(key);
      } else {
        rec.complete(inv, a.outcome, null, a.reason);
        this.after(a.outcome);
      }
      return;
    }
    const value = `c${this.id}.${++this.n}`;
    if (dice < 0.65) return this.write(g, key, value);
    if (dice < 0.75) return this.remove(g, key);
    return this.cas(g, key, value);
  }

  private async write(g: Gateway, key: string, value: string): Promise<void> {
    const rec = this.ctx.rec;
    const inv = rec.invoke(this.process, "write", key, value);
    const a = await withTimeout(this.ctx, () => g.put(key, value), this.owner());
    const r = a.ok ? a.value : null;
    if (r !== null && r.ok) {
      rec.completeWithVersion(inv, value, r.version);
      this.seen.set(key, { payload: value, version: r.version });
    } else if (r !== null) {
      rec.complete(inv, "fail", value, r.code);
    } else if (!a.ok) {
      rec.complete(inv, a.outcome, value, a.reason);
      this.after(a.outcome);
    }
  }

  private async remove(g: Gateway, key: string): Promise<void> {
    const rec = this.ctx.rec;
    const inv = rec.invoke(this.process, "delete", key, null);
    const a = await withTimeout(this.ctx, () => g.delete(key), this.owner());
    const r = a.ok ? a.value : null;
    if (r !== null && r.ok) {
      rec.complete(inv, "ok", null);
      this.seen.delete(key);
    } else if (r !== null) {
      rec.complete(inv, "fail", null, r.code);
    } else if (!a.ok) {
      rec.complete(inv, a.outcome, null, a.reason);
      this.after(a.outcome);
    }
  }

  private async cas(g: Gateway, key: string, value: string): Promise<void> {
    const rec = this.ctx.rec;
    const expected = this.seen.get(key) ?? { payload: null, version: 0 };
    const inv = rec.invoke(this.process, "cas", key, [expected.payload, value]);
    const a = await withTimeout(this.ctx, () => g.put(key, value, { ifVersion: expected.version }), this.owner());
    const r: CommandResult | null = a.ok ? a.value : null;
    if (r !== null && r.ok) {
      rec.completeWithVersion(inv, [expected.payload, value], r.version);
      this.seen.set(key, { payload: value, version: r.version });
    } else if (r !== null && r.code === "version_mismatch") {
      rec.complete(inv, "fail", [expected.payload, value], r.code);
    } else if (r !== null) {
      rec.drop(inv, r.code);
    } else if (!a.ok && a.outcome === "fail") {
      rec.drop(inv, a.reason);
    } else if (!a.ok) {
      rec.complete(inv, a.outcome, [expected.payload, value], a.reason);
      this.after(a.outcome);
    }
  }
}

/** Writes unique keys once each; the acknowledged ones must all be there after healing. */
export class DurabilityClient {
  private n = 0;
  readonly acknowledged = new Map<string, number>();
  ops = 0;

  constructor(readonly id: number, private readonly rng: Rng, private readonly ctx: ClientContext) {}

  async step(): Promise<void> {
    this.ops++;
    const g = this.ctx.gateway(this.rng);
    if (g === null) return;
    const key = `d${this.id}.${++this.n}`;
    const a = await withTimeout(this.ctx, () => g.put(key, key, { ifVersion: 0 }), `client${this.id}`);
    if (a.ok && a.value.ok) this.acknowledged.set(key, a.value.version);
  }
}
