/**
 * `shoal put | get | del | status | node ls | shard ls | config`, and the requests of every other client
 * command: through `shoal/client` (src/client/), one client per endpoint. Arguments arrive checked (main.ts).
 */
import { randomUUID } from "node:crypto";
import { ERRORS, isErrorCode } from "../api/error-table.js";
import { ShoalClient, ShoalError } from "../client/index.js";

export interface ClientOptions {
  endpoint: string;
  json?: boolean;
}

/** A server's answer: its JSON on success, else the refusal (or an answer that is not the API's). */
export type Answer = { ok: true; body: unknown } | { ok: false; error: ShoalError };

/**
 * How long one attempt may take (a collection's creation waits up to 3 s for leaders; an operator asked
 * with --wait passes its own), and attempts of a request that may be asked again: a node that hangs
 * costs at most about a minute and a half before the command says so.
 */
const REQUEST_TIMEOUT_MS = 30_000;
const ATTEMPTS_MAX = 3;

const clients = new Map<string, ShoalClient>();

/**
 * The client of the node a command was given. It does not route by the shard map: a command makes one
 * request or a few, and reading the map first would cost two requests more than routing saves.
 */
export function clientOf(endpoint: string): ShoalClient {
  let client = clients.get(endpoint);
  if (client === undefined) clients.set(endpoint, (client = new ShoalClient({ endpoints: [endpoint], routing: false, timeoutMs: REQUEST_TIMEOUT_MS, attemptsMax: ATTEMPTS_MAX })));
  return client;
}

/** The words for a node that could not be reached, with a hint when nothing listens there. */
function unreachableWords(e: ShoalError): string {
  return e.details["cause"] === "ECONNREFUSED" ? `${e.message} (is a node running? start one with: npx shoal demo)` : e.message;
}

/**
 * Outcomes a command reports as an answer, not a throw: the server's refusals. A node that cannot be
 * reached, or a fault of the command's own, is thrown (main.ts prints the message, exit 1).
 */
export async function answerOf(request: Promise<unknown>): Promise<Answer> {
  try {
    return { ok: true, body: await request };
  } catch (e) {
    if (!(e instanceof ShoalError) || e.code === "client_closed") throw e;
    if (e.code === "unreachable") throw new Error(unreachableWords(e));
    return { ok: false, error: e };
  }
}

/** One request (reads retried on failure; other methods sent once), its refusal as an answer; `timeoutMs` when it may take longer than REQUEST_TIMEOUT_MS. */
export function call(endpoint: string, method: "GET" | "PUT" | "POST" | "DELETE" | "PATCH", path: string, body?: unknown, timeoutMs?: number): Promise<Answer> {
  return answerOf(clientOf(endpoint).request(method, path, { body, ...(timeoutMs !== undefined ? { timeoutMs } : {}) }));
}

/** Whether a command can read the answer as it expects: a success in JSON. */
export const readable = (res: Answer): res is { ok: true; body: unknown } => res.ok;

/** An error as a line: `error <status> <code>: <message> (applied: …)`, or the start of a body that is not JSON. */
function errorWords(e: ShoalError): string {
  if (e.code === "bad_answer") return `error ${e.status}${e.details["body"] !== undefined ? `: ${String(e.details["body"])}` : ""}`;
  return `error ${e.status} ${e.code}: ${e.message}${isErrorCode(e.code) ? ` (applied: ${ERRORS[e.code].applied})` : ""}`;
}

/** Prints the answer as JSON (exit 0), or its error (exit 1) with whether a write may have been applied. */
export function report(res: Answer): number {
  if (!res.ok) {
    console.error(errorWords(res.error));
    return 1;
  }
  console.log(JSON.stringify(res.body, null, 2));
  return 0;
}

const records = (endpoint: string) => clientOf(endpoint).collection("default");
const recordPath = (id: string) => `/v1/collections/default/records/${encodeURIComponent(id)}`;

/**
 * A write under an idempotency key (the client retries it under that key while the error table says a
 * retry may succeed: a node answers a repeated key with the first outcome, so a write whose answer was
 * lost is applied once). An outcome left unknown prints the key to retry with by hand.
 */
async function keyedWrite(write: (key: string | undefined) => Promise<unknown>, key: string | undefined): Promise<Answer> {
  let res: Answer;
  try {
    res = await answerOf(write(key));
  } catch (e) {
    throw new Error(`${(e as Error).message}; the write may have been applied${key !== undefined ? `: retry with --idempotency-key ${key}` : ""}`);
  }
  if (!res.ok && res.error.applied === "unknown") console.error(`the write may have been applied${key !== undefined ? `: retry with --idempotency-key ${key}` : ""}`);
  return res;
}

/** A write's key: none for an async write not given one (a keyed write is answered once applied, as sync). */
const keyOf = (opts: { idempotencyKey?: string; writeMode?: "sync" | "async" }) =>
  opts.idempotencyKey ?? (opts.writeMode === "async" ? undefined : randomUUID());

export async function putCommand(id: string, payload: unknown, opts: ClientOptions & { ifVersion?: number; idempotencyKey?: string; writeMode?: "sync" | "async" }): Promise<number> {
  return report(await keyedWrite((key) => records(opts.endpoint).put(id, payload, {
    ...(key !== undefined ? { idempotencyKey: key } : {}), ...(opts.ifVersion !== undefined ? { ifVersion: opts.ifVersion } : {}), ...(opts.writeMode !== undefined ? { writeMode: opts.writeMode } : {}),
  }), keyOf(opts)));
}

export async function getCommand(id: string, opts: ClientOptions & { consistency?: string; maxStalenessMs?: number }): Promise<number> {
  // A request of its own rather than get(): an absent record is the server's not_found, in its words.
  const q = new URLSearchParams();
  if (opts.consistency !== undefined) q.set("consistency", opts.consistency);
  if (opts.maxStalenessMs !== undefined) q.set("maxStalenessMs", String(opts.maxStalenessMs));
  return report(await call(opts.endpoint, "GET", `${recordPath(id)}${q.size > 0 ? `?${q}` : ""}`));
}

export async function delCommand(id: string, opts: ClientOptions & { ifVersion?: number; idempotencyKey?: string; writeMode?: "sync" | "async" }): Promise<number> {
  const res = await keyedWrite((key) => records(opts.endpoint).delete(id, {
    ...(key !== undefined ? { idempotencyKey: key } : {}), ...(opts.ifVersion !== undefined ? { ifVersion: opts.ifVersion } : {}), ...(opts.writeMode !== undefined ? { writeMode: opts.writeMode } : {}),
  }), keyOf(opts));
  if (!readable(res) || opts.json) return report(res);
  const { version, deleted, mode } = res.body as { version: number; deleted?: boolean; mode?: "async" };
  if (mode === "async") {
    console.log(`delete of ${id} accepted (write mode async, version ${version}): whether there was a record is known once applied`);
    return 0;
  }
  // A server from before `deleted` was answered says nothing: it deleted, or there was nothing to delete.
  console.log(deleted === false ? `${id} did not exist; nothing deleted` : `deleted ${id} (version ${version})`);
  return 0;
}

export interface ShardStatus { shard: number; role: string; leader: number; term: number; commit: number; applied: number; voters: number[] }

export function statusTable(shards: ShardStatus[]): string {
  return table(["shard", "role", "leader", "term", "commit", "applied", "voters"],
    shards.map((s) => [s.shard, s.role, s.leader, s.term, s.commit, s.applied, s.voters.join(",")]));
}

export async function statusCommand(opts: ClientOptions): Promise<number> {
  const res = await call(opts.endpoint, "GET", "/v1/cluster/status");
  if (!readable(res) || opts.json) return report(res);
  const st = res.body as { node: number; shards: ShardStatus[] };
  console.log(`node ${st.node}`);
  console.log(statusTable(st.shards));
  return 0;
}

/** Columns padded to their widest cell: tables for people (scripts use --json). */
export function table(header: string[], rows: (string | number)[][]): string {
  const cells = [header, ...rows.map((r) => r.map(String))];
  const widths = header.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? "").length)));
  return cells.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join("  ")).join("\n");
}

export async function nodeListCommand(opts: ClientOptions): Promise<number> {
  const res = await call(opts.endpoint, "GET", "/v1/cluster/nodes");
  if (!readable(res) || opts.json) return report(res);
  const body = res.body as { metaLeader: number; nodes: { id: number; peer: string; http: string; labels: Record<string, string>; role: string; lifecycle: string; worker: string; health: string }[] };
  console.log(table(["id", "peer", "http", "role", "membership", "worker", "health", "labels"], body.nodes.map((n) => [
    `${n.id}${n.id === body.metaLeader ? "*" : ""}`, n.peer, n.http, n.role, n.lifecycle, n.worker, n.health,
    Object.entries(n.labels).map(([k, v]) => `${k}=${v}`).join(",") || "-",
  ])));
  console.log("* leads the metadata group");
  return 0;
}

/** A shard's range as the API shows it: [start, end) of hashes, or of ids in a range collection (end null: unbounded). */
export type RangeView = readonly [number, number] | readonly [string, string | null];

/**
 * A half-open range [start, end) as people read it: a hash range with inclusive hex bounds; an id range
 * as ids, `["g", "p")`, its open end `…`.
 */
export function rangeWords(range: RangeView): string {
  if (typeof range[0] === "string") return `[${JSON.stringify(range[0])}, ${range[1] === null ? "…" : JSON.stringify(range[1])})`;
  const hex = (n: number) => `0x${n.toString(16).padStart(8, "0")}`;
  return `${hex(range[0])}-${hex((range[1] as number) - 1)}`;
}

export async function shardListCommand(opts: ClientOptions): Promise<number> {
  const res = await call(opts.endpoint, "GET", "/v1/cluster/shards");
  if (!readable(res) || opts.json) return report(res);
  const body = res.body as { shards: { shard: number; collection: string; range: RangeView; epoch: number; replicas: { node: number; role: string }[] }[] };
  console.log(table(["shard", "collection", "range", "epoch", "replicas"], body.shards.map((s) => [
    s.shard, s.collection, rangeWords(s.range), s.epoch, s.replicas.map((r) => `${r.node}${r.role === "learner" ? "(learner)" : ""}`).join(","),
  ])));
  return 0;
}

export async function nodeActionCommand(action: "drain" | "remove", id: number, opts: ClientOptions): Promise<number> {
  return report(await call(opts.endpoint, "POST", `/v1/cluster/nodes/${id}/${action}`));
}

const CONFIG = "/v1/cluster/config";
type ConfigVersion = { version: number; atMs: number; note: string; placement: Record<string, number> };

export async function configGetCommand(opts: ClientOptions): Promise<number> {
  const res = await call(opts.endpoint, "GET", CONFIG);
  if (!readable(res) || opts.json) return report(res);
  const v = res.body as ConfigVersion;
  console.log(`version ${v.version}${v.note ? ` (${v.note})` : ""}`);
  console.log(table(["setting", "value"], Object.entries(v.placement)));
  return 0;
}

export async function configHistoryCommand(opts: ClientOptions): Promise<number> {
  const res = await call(opts.endpoint, "GET", `${CONFIG}/history`);
  if (!readable(res) || opts.json) return report(res);
  const vs = (res.body as { versions: ConfigVersion[] }).versions;
  console.log(table(["version", "at", "note"], vs.map((v) => [v.version, v.atMs === 0 ? "-" : new Date(v.atMs).toISOString(), v.note || "-"])));
  return 0;
}

/** A change applies only against the version it read (the server refuses it if another came in between). */
export async function configSetCommand(settings: Record<string, number>, opts: ClientOptions & { note?: string }): Promise<number> {
  const current = await call(opts.endpoint, "GET", CONFIG);
  if (!readable(current)) return report(current);
  const baseVersion = (current.body as ConfigVersion).version;
  return report(await call(opts.endpoint, "PUT", CONFIG, { baseVersion, settings, ...(opts.note !== undefined ? { note: opts.note } : {}) }));
}

export async function configRollbackCommand(version: number, opts: ClientOptions): Promise<number> {
  return report(await call(opts.endpoint, "POST", `${CONFIG}/rollback`, { toVersion: version }));
}
