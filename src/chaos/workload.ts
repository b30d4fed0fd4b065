/**
 * The chaos runner's clients. Each talks to one node's gateway over HTTP.
 *
 * - Register clients read, blindly write and compare-and-set a few keys; every operation goes into the
 *   history. A compare-and-set reads the record first and sends `ifVersion` with the version it read;
 *   every write writes a value never written before, so "the record is at version n" holds exactly when
 *   "the record holds the value read at version n", and the checker's value compare-and-set (kv model)
 *   is the API's version compare-and-set. Keys are renewed every `keyLifeMs` (Jepsen's independent
 *   keys): each key's part of the history stays short enough for the checker, even with operations
 *   whose outcome is unknown (they stay open to the end of the history).
 * - Durability clients write unique ids once each (blind puts) and keep the acknowledged ones, to be
 *   read back after the faults are healed.
 *
 * Outcomes come from the error table: `applied: "no"` is a definite failure, `"unknown"`, a client
 * timeout or a dropped connection an indeterminate one (the process then continues under a new
 * number, as Jepsen's rule for `info` asks).
 */
import { ERRORS, isErrorCode } from "../api/error-table.js";
import { Rng } from "../util/rng.js";
import type { ProcCluster } from "./cluster.js";
import type { HistoryRecorder, Outcome, SessionOp } from "../check/index.js";
import { SESSION_HEADER, SessionTokens } from "../client/session.js";

/**
 * Deliberate bugs of the clients, to show the checker flags them: `eventual-reads` reads a node's own
 * replica (`consistency=eventual`) but records a linearizable read; `blind-cas` sends a compare-and-set
 * without its `ifVersion` (a plain write) but records it as one; `sessionless-reads` asks session reads
 * without the session's token.
 */
export const CLIENT_BUGS = ["none", "eventual-reads", "blind-cas", "sessionless-reads"] as const;
export type ClientBug = (typeof CLIENT_BUGS)[number];

export interface WorkloadOptions {
  clientTimeoutMs: number;
  /** Pause between one client's operations: bounds the load the 2-core CI box must carry. */
  opIntervalMs: number;
  keysPerGeneration: number;
  keyLifeMs: number;
  bug: ClientBug;
}

interface Answer {
  outcome: Outcome;
  /** The error code, or what went wrong on the client's side (for the run's tally of reasons). */
  reason: string;
  status: number;
  body: { payload?: unknown; version?: number; error?: { code?: string } };
  /** The answer's session token (api/session.ts). */
  session?: string;
}

/** The outcome of a request by the error table; no answer at all is indeterminate unless it was never sent. */
async function request(url: string, init: RequestInit, timeoutMs: number): Promise<Answer> {
  let r: Response;
  try {
    r = await fetch(url, { ...init, signal: AbortSignal.timeout(timeoutMs) });
  } catch (e) {
    // A refused connection carried nothing: the node is down and nothing can have been applied.
    const err = e as { name?: string; cause?: { code?: string } };
    const code = err.cause?.code;
    return { outcome: code === "ECONNREFUSED" ? "fail" : "info", reason: code ?? (err.name === "TimeoutError" ? "client timeout" : String(err.name)), status: 0, body: {} };
  }
  let body: Answer["body"];
  try {
    body = await r.json() as Answer["body"];
  } catch {
    // An answer cut off (the node died mid-reply) says nothing about the write.
    return { outcome: "info", reason: `${r.status} unreadable body`, status: r.status, body: {} };
  }
  const session = r.headers.get(SESSION_HEADER) ?? undefined;
  if (r.status === 200) return { outcome: "ok", reason: "", status: 200, body, session };
  const code = body.error?.code ?? "";
  const applied = isErrorCode(code) ? ERRORS[code].applied : "unknown";
  return { outcome: applied === "no" ? "fail" : "info", reason: `${r.status} ${code}`, status: r.status, body, session };
}

const JSON_HEADERS = { "content-type": "application/json" };

/** A client whose node is down (connection refused) asks again after this, not in a tight loop. */
const REFUSED_PAUSE_MS = 100;
const SEEN_KEYS_MAX = 16;
const SEEN_PER_KEY_MAX = 64;

/** A client's operations one after another until `stop`, pausing between them (longer after a refused connection). */
async function runSteps(step: () => Promise<boolean>, stop: () => boolean, intervalMs: number): Promise<void> {
  while (!stop()) {
    const refused = await step();
    await new Promise((r) => setTimeout(r, refused ? REFUSED_PAUSE_MS : intervalMs));
  }
}

export class RegisterClient {
  /** The history's process number: a new one after each indeterminate outcome. */
  private process: number;
  private n = 0;
  private readonly rng: Rng;

  constructor(readonly id: number, readonly node: number, private readonly processStride: number, seed: number,
    private readonly c: ProcCluster, private readonly rec: HistoryRecorder, private readonly opts: WorkloadOptions,
    private readonly elapsedMs: () => number) {
    this.process = id;
    this.rng = new Rng(seed * 7919 + id);
  }

  private key(): string {
    const gen = Math.floor(this.elapsedMs() / this.opts.keyLifeMs);
    return `reg${this.rng.int(this.opts.keysPerGeneration)}.g${gen}`;
  }

  private recordUrl(key: string): string {
    return this.c.url(this.node, `/v1/collections/default/records/${key}`);
  }

  private refused = false;
  /** What this client saw of each key (value and version), a bounded number per key, for stale compare-and-sets. */
  private readonly seen = new Map<string, { value: unknown; version: number }[]>();

  private remember(key: string, v: { value: unknown; version: number }): void {
    let list = this.seen.get(key);
    if (list === undefined) {
      // Only the current keys matter: older generations are never asked again.
      if (this.seen.size >= SEEN_KEYS_MAX) this.seen.delete(this.seen.keys().next().value!);
      this.seen.set(key, (list = []));
    }
    list.push(v);
    if (list.length > SEEN_PER_KEY_MAX) list.shift();
  }

  private next(a: Answer): void {
    if (a.outcome === "info") this.process += this.processStride;
    if (a.reason === "ECONNREFUSED") this.refused = true;
  }

  /** A read recorded as linearizable; with the eventual-reads bug it is not asked as one. */
  private async read(key: string): Promise<{ value: unknown; version: number } | null> {
    const consistency = this.opts.bug === "eventual-reads" ? "eventual" : "linearizable";
    const inv = this.rec.invoke(this.process, "read", key, null);
    const a = await request(`${this.recordUrl(key)}?consistency=${consistency}`, {}, this.opts.clientTimeoutMs);
    if (a.outcome === "ok" || (a.status === 404 && a.body.error?.code === "not_found")) {
      const seen = { value: a.status === 200 ? a.body.payload : null, version: a.status === 200 ? a.body.version! : 0 };
      this.rec.completeWithVersion(inv, seen.value, seen.version);
      this.remember(key, seen);
      return seen;
    }
    this.rec.complete(inv, a.outcome, null, a.reason);
    this.next(a);
    return null;
  }

  private async write(key: string, value: string): Promise<void> {
    const inv = this.rec.invoke(this.process, "write", key, value);
    const a = await request(this.recordUrl(key), { method: "PUT", headers: JSON_HEADERS, body: JSON.stringify({ payload: value }) }, this.opts.clientTimeoutMs);
    if (a.outcome === "ok") {
      this.rec.completeWithVersion(inv, value, a.body.version!);
      this.remember(key, { value, version: a.body.version! });
    } else this.rec.complete(inv, a.outcome, value, a.reason);
    this.next(a);
  }

  private async cas(key: string, expected: { value: unknown; version: number }, value: string): Promise<void> {
    const inv = this.rec.invoke(this.process, "cas", key, [expected.value, value]);
    const body = this.opts.bug === "blind-cas" ? { payload: value } : { payload: value, ifVersion: expected.version };
    const a = await request(this.recordUrl(key), { method: "PUT", headers: JSON_HEADERS, body: JSON.stringify(body) }, this.opts.clientTimeoutMs);
    if (a.status === 409 && a.body.error?.code === "version_mismatch") {
      // Compared and found another version: the checker's failed compare-and-set.
      this.rec.complete(inv, "fail", [expected.value, value], a.reason);
    } else if (a.outcome === "fail") {
      this.rec.drop(inv, a.reason);
    } else if (a.outcome === "ok") {
      this.rec.completeWithVersion(inv, [expected.value, value], a.body.version!);
      this.remember(key, { value, version: a.body.version! });
    } else {
      this.rec.complete(inv, a.outcome, [expected.value, value], a.reason);
    }
    this.next(a);
  }

  /** One operation (a compare-and-set: a read, then the write); true when the node refused the connection. */
  async step(): Promise<boolean> {
    this.n++;
    this.refused = false;
    const key = this.key();
    const value = `${this.id}.${this.n}`;
    const dice = this.rng.float();
    if (dice < 0.4) {
      await this.read(key);
    } else if (dice < 0.7) {
      await this.write(key, value);
    } else if (dice < 0.9) {
      const seen = await this.read(key);
      if (seen !== null) await this.cas(key, seen, value);
    } else {
      // A compare-and-set against a value seen a while ago: refused unless the record still holds it,
      // and accepted wrongly if a version number was handed out twice.
      const old = this.seen.get(key);
      if (old !== undefined && old.length > 0) await this.cas(key, old[this.rng.int(old.length)]!, value);
    }
    return this.refused;
  }

  run(stop: () => boolean): Promise<void> {
    return runSteps(() => this.step(), stop, this.opts.opIntervalMs);
  }
}

/**
 * A session (DATA-4) across the nodes: each operation goes to a node picked at random, writes blind
 * puts and reads at `consistency=session` with the session's token (the client's SessionTokens, as
 * `shoal/client` keeps it), over keys the sessions share. Its completed operations, in order, are what
 * the session checker (check/sessions.ts) holds to read-your-writes and monotonic reads.
 */
export class SessionClient {
  readonly ops: SessionOp[] = [];
  private readonly tokens = new SessionTokens();
  private readonly rng: Rng;
  private n = 0;

  constructor(readonly id: number, private readonly nodes: readonly number[], seed: number, private readonly c: ProcCluster,
    private readonly opts: WorkloadOptions, private readonly elapsedMs: () => number) {
    this.rng = new Rng(seed * 104_729 + id);
  }

  /** One operation; true when its node refused the connection. */
  async step(): Promise<boolean> {
    this.n++;
    const key = `ses${this.rng.int(this.opts.keysPerGeneration)}.g${Math.floor(this.elapsedMs() / this.opts.keyLifeMs)}`;
    const node = this.nodes[this.rng.int(this.nodes.length)]!;
    const url = this.c.url(node, `/v1/collections/default/records/${key}`);
    if (this.rng.float() < 0.4) {
      const a = await request(url, { method: "PUT", headers: JSON_HEADERS, body: JSON.stringify({ payload: `s${this.id}.${this.n}` }) }, this.opts.clientTimeoutMs);
      this.tokens.merge(a.session);
      if (a.outcome === "ok") this.ops.push({ session: this.id, kind: "write", key, version: a.body.version!, node, atMs: this.elapsedMs() });
      return a.reason === "ECONNREFUSED";
    }
    const token = this.opts.bug === "sessionless-reads" ? "" : this.tokens.token();
    const a = await request(`${url}?consistency=session`, { headers: { [SESSION_HEADER]: token } }, this.opts.clientTimeoutMs);
    this.tokens.merge(a.session);
    if (a.outcome === "ok" || (a.status === 404 && a.body.error?.code === "not_found")) {
      this.ops.push({ session: this.id, kind: "read", key, version: a.status === 200 ? a.body.version! : 0, node, atMs: this.elapsedMs() });
    }
    return a.reason === "ECONNREFUSED";
  }

  run(stop: () => boolean): Promise<void> {
    return runSteps(() => this.step(), stop, this.opts.opIntervalMs);
  }
}

export class DurabilityClient {
  /** Acknowledged ids and the payload each was written with. */
  readonly acked = new Map<string, string>();
  attempts = 0;
  indeterminate = 0;
  private n = 0;

  constructor(readonly id: number, readonly node: number, private readonly c: ProcCluster, private readonly opts: WorkloadOptions) {}

  async run(stop: () => boolean): Promise<void> {
    while (!stop()) {
      this.n++;
      const key = `u-${this.id}-${this.n}`;
      const payload = `d${this.id}.${this.n}`;
      this.attempts++;
      const a = await request(this.c.url(this.node, `/v1/collections/default/records/${key}`), {
        method: "PUT", headers: JSON_HEADERS, body: JSON.stringify({ payload }),
      }, this.opts.clientTimeoutMs);
      if (a.outcome === "ok") this.acked.set(key, payload);
      else if (a.outcome === "info") this.indeterminate++;
      await new Promise((r) => setTimeout(r, a.reason === "ECONNREFUSED" ? REFUSED_PAUSE_MS : this.opts.opIntervalMs));
    }
  }
}

export interface DurabilityVerdict {
  acked: number;
  lost: string[];
  /** Ids the scan did not return but a read by id did (a scan that misses records is a finding of its own). */
  missedByScan: number;
  /** Ids no read answered before the deadline (neither found nor lost). */
  unverified: number;
}

/**
 * Every acknowledged id read back after healing: first by scanning the collection (each shard read at
 * a ReadIndex), then each id the scan did not return with the right payload by a linearizable read, so
 * a record counts as lost only when a read of it by id says so.
 */
export async function verifyDurability(c: ProcCluster, node: number, clients: DurabilityClient[], timeoutMs: number): Promise<DurabilityVerdict> {
  const deadline = Date.now() + timeoutMs;
  const expected = new Map<string, string>();
  for (const cl of clients) for (const [k, v] of cl.acked) expected.set(k, v);
  const seen = new Map<string, unknown>();
  let cursor: string | null = null;
  // Bounded: each page moves the cursor forward; a refusal is asked again until the deadline.
  for (let pages = 0; pages < 100_000 && Date.now() < deadline; pages++) {
    const q: string = cursor === null ? "" : `&cursor=${encodeURIComponent(cursor)}`;
    const a = await request(c.url(node, `/v1/collections/default/records?limit=1000${q}`), {}, 10_000);
    if (a.outcome !== "ok") {
      await new Promise((r) => setTimeout(r, 50)); // a refusal (election, split under way): ask again shortly
      continue;
    }
    const page = a.body as unknown as { records: { id: string; payload: unknown }[]; cursor: string | null };
    for (const r of page.records) seen.set(r.id, r.payload);
    cursor = page.cursor;
    if (cursor === null) break;
  }
  const doubtful = [...expected].filter(([k, v]) => seen.get(k) !== v);
  const lost: string[] = [];
  let missedByScan = 0;
  let unverified = 0;
  for (const [key, payload] of doubtful) {
    let verdict: "ok" | "lost" | null = null;
    while (verdict === null && Date.now() < deadline) {
      const a = await request(c.url(node, `/v1/collections/default/records/${key}?consistency=linearizable`), {}, 10_000);
      if (a.status === 200) verdict = a.body.payload === payload ? "ok" : "lost";
      else if (a.status === 404) verdict = "lost";
      else await new Promise((r) => setTimeout(r, 50)); // a refusal (election): ask again shortly
    }
    if (verdict === "ok") missedByScan++;
    else if (verdict === "lost") lost.push(key);
    else unverified++;
  }
  return { acked: expected.size, lost, missedByScan, unverified };
}
