/** `shoal put | get | del | status | node ls | shard ls | config`: a small client of the HTTP API. Arguments arrive checked (main.ts). */
import { randomUUID } from "node:crypto";
import { ERRORS, type ErrorEntry, isErrorCode } from "../api/error-table.js";

export interface ClientOptions {
  endpoint: string;
  json?: boolean;
}

/** A server's answer; `raw` holds a body that is not JSON (a proxy's HTML page, say), `body` is then null. */
export interface Answer {
  status: number;
  body: unknown;
  raw?: string;
}

const REFUSED_HINT = "connection refused (is a node running? start one with: npx shoal demo)";

/** Why fetch failed, from its cause: undici wraps the socket error, and with several addresses an AggregateError without a message. */
function unreachable(e: unknown): string {
  const cause = (e as Error).cause as (Error & { code?: string }) | undefined;
  if (cause?.code === "ECONNREFUSED") return REFUSED_HINT;
  return cause?.message || cause?.code || (e as Error).message;
}

/** One request to the node at `endpoint`; a failure to connect becomes an error that names the endpoint. */
export async function send(endpoint: string, method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<Response> {
  const base = endpoint.replace(/\/+$/, "");
  try {
    return await fetch(base + path, {
      method,
      headers: { ...headers, ...(body !== undefined ? { "content-type": "application/json" } : {}) },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
  } catch (e) {
    throw new Error(`cannot reach ${base}: ${unreachable(e)}`);
  }
}

export async function answer(r: Response): Promise<Answer> {
  const text = await r.text();
  if (text === "") return { status: r.status, body: null };
  try {
    return { status: r.status, body: JSON.parse(text) };
  } catch {
    return { status: r.status, body: null, raw: text };
  }
}

export async function call(endpoint: string, method: string, path: string, body?: unknown): Promise<Answer> {
  return answer(await send(endpoint, method, path, body));
}

/** Whether a command can read the answer as it expects: a success in JSON. */
export const readable = (res: Answer) => res.status < 400 && res.raw === undefined;

/** What follows `error <status>` on an unreadable answer: the API's error code and message, or the start of a body that is not JSON. */
function errorDetail(res: Answer): string {
  if (res.raw !== undefined) return `: ${res.raw.replace(/\s+/g, " ").trim().slice(0, 200)}`;
  const err = (res.body as { error?: { code: string; message: string } } | null)?.error;
  return err ? ` ${err.code}: ${err.message}` : "";
}

/** Prints the answer as JSON (exit 0), or its error (exit 1) with whether a write may have been applied. */
export function report(res: Answer): number {
  if (!readable(res)) {
    const code = (res.body as { error?: { code?: string } } | null)?.error?.code;
    const applied = code !== undefined && isErrorCode(code) ? ` (applied: ${ERRORS[code].applied})` : "";
    console.error(`error ${res.status}${errorDetail(res)}${applied}`);
    return 1;
  }
  console.log(JSON.stringify(res.body, null, 2));
  return 0;
}

const recordPath = (id: string) => `/v1/collections/default/records/${encodeURIComponent(id)}`;

/** Attempts of one write (the first and its retries), and the longest pause between two. */
const WRITE_ATTEMPTS_MAX = 5;
const WRITE_BACKOFF_MS_MAX = 2000;

/**
 * A write with an idempotency key, retried with the same key while the error table says a retry may
 * succeed (or the node could not be reached): the node answers a repeated key with the first outcome, so
 * a write whose answer was lost is applied once. A failure that leaves the outcome unknown prints the key
 * to retry with by hand.
 */
export async function writeRecord(endpoint: string, method: "PUT" | "DELETE", path: string, body: unknown, key: string): Promise<Answer> {
  let last: Answer | Error = new Error("no attempt made");
  for (let attempt = 1; attempt <= WRITE_ATTEMPTS_MAX; attempt++) {
    let waitMs = Math.min(WRITE_BACKOFF_MS_MAX, 100 * 2 ** attempt);
    try {
      last = await answer(await send(endpoint, method, path, body, { "idempotency-key": key }));
      const code = (last.body as { error?: { code?: string } } | null)?.error?.code;
      if (last.status < 400 || code === undefined || !isErrorCode(code) || !ERRORS[code].retryable) break;
      const retryAfterS = (ERRORS[code] as ErrorEntry).retryAfterS;
      if (retryAfterS !== undefined) waitMs = Math.min(WRITE_BACKOFF_MS_MAX, retryAfterS * 1000);
    } catch (e) {
      last = e as Error;
    }
    if (attempt < WRITE_ATTEMPTS_MAX) await new Promise((r) => setTimeout(r, waitMs));
  }
  if (last instanceof Error) {
    throw new Error(`${last.message}; the write may have been applied: retry with --idempotency-key ${key}`);
  }
  const code = (last.body as { error?: { code?: string } } | null)?.error?.code;
  if (code !== undefined && isErrorCode(code) && ERRORS[code].applied === "unknown") {
    console.error(`the write may have been applied: retry with --idempotency-key ${key}`);
  }
  return last;
}

export async function putCommand(id: string, payload: unknown, opts: ClientOptions & { ifVersion?: number; idempotencyKey?: string }): Promise<number> {
  const body = { payload, ...(opts.ifVersion !== undefined ? { ifVersion: opts.ifVersion } : {}) };
  return report(await writeRecord(opts.endpoint, "PUT", recordPath(id), body, opts.idempotencyKey ?? randomUUID()));
}

export async function getCommand(id: string, opts: ClientOptions & { consistency?: string }): Promise<number> {
  const q = opts.consistency !== undefined ? `?consistency=${encodeURIComponent(opts.consistency)}` : "";
  return report(await call(opts.endpoint, "GET", recordPath(id) + q));
}

export async function delCommand(id: string, opts: ClientOptions & { ifVersion?: number; idempotencyKey?: string }): Promise<number> {
  const q = opts.ifVersion !== undefined ? `?ifVersion=${opts.ifVersion}` : "";
  const res = await writeRecord(opts.endpoint, "DELETE", recordPath(id) + q, undefined, opts.idempotencyKey ?? randomUUID());
  if (!readable(res) || opts.json) return report(res);
  const { version, deleted } = res.body as { version: number; deleted?: boolean };
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
