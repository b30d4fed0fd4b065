/**
 * `shoal upsert | search | count`: loading records (with vectors) in batches, nearest-neighbour search
 * and counting, through the HTTP API (api/records.ts, api/search.ts).
 */
import { createReadStream } from "node:fs";
import { createInterface } from "node:readline";
import type { ReadConsistency, SearchOptions as SearchAsk, UpsertResult, Vector } from "../client/index.js";
import { type ClientOptions, answerOf, clientOf, readable, report, table } from "./client.js";

/** Records per batch by default (the server takes at most 1,000). */
export const UPSERT_BATCH_DEFAULT = 500;

export interface UpsertOptions extends ClientOptions {
  file: string;
  batch: number;
}

interface InputRecord { id: string; payload: unknown; vector?: unknown }

/** Records from a file of JSON lines (or "-": standard input), one `{"id", "payload", "vector"?}` per line. */
async function* recordsOf(file: string): AsyncGenerator<[number, InputRecord]> {
  const input = file === "-" ? process.stdin : createReadStream(file);
  const lines = createInterface({ input, crlfDelay: Infinity });
  let n = 0;
  for await (const line of lines) {
    n++;
    if (line.trim() === "") continue;
    let v: unknown;
    try {
      v = JSON.parse(line);
    } catch (e) {
      throw new Error(`${file}:${n}: not JSON (${(e as Error).message})`);
    }
    if (typeof v !== "object" || v === null || typeof (v as InputRecord).id !== "string" || !("payload" in v)) {
      throw new Error(`${file}:${n}: a record is {"id": "...", "payload": ..., "vector"?: [...]}`);
    }
    yield [n, v as InputRecord];
  }
}

/**
 * Sends the file's records in batches; records refused retryably (no leader, a shard split under the
 * batch) are sent again, a few rounds (the client's upsertMany). Progress goes to stderr; exit 1 when any record
 * was not written (each named with its error, the first 20).
 */
export async function upsertCommand(collection: string, opts: UpsertOptions): Promise<number> {
  const startedMs = performance.now();
  let written = 0;
  const failed: string[] = [];
  let batch: [number, InputRecord][] = [];
  const records = clientOf(opts.endpoint).collection(collection);
  const flush = async (): Promise<boolean> => {
    const todo = batch;
    batch = [];
    // upsertMany sends again, a few rounds, the records refused retryably.
    const res = await answerOf(records.upsertMany(todo.map(([, r]) => ({ id: r.id, payload: r.payload, ...(r.vector !== undefined ? { vector: r.vector as Vector } : {}) }))));
    if (!readable(res)) {
      console.error(`line ${todo[0]![0]}: the batch was refused`);
      report(res);
      return false;
    }
    for (const [i, r] of (res.body as UpsertResult[]).entries()) {
      if (!("error" in r)) written++;
      else failed.push(`line ${todo[i]![0]} (${r.id}): ${r.error.code}: ${r.error.message} (applied: ${r.error.applied})`);
    }
    const s = (performance.now() - startedMs) / 1000;
    process.stderr.write(`\r${written} records written, ${failed.length} failed, ${Math.round(written / Math.max(s, 0.001))}/s `);
    return true;
  };
  try {
    for await (const r of recordsOf(opts.file)) {
      batch.push(r);
      if (batch.length >= opts.batch && !(await flush())) return 1;
    }
    if (batch.length > 0 && !(await flush())) return 1;
  } catch (e) {
    console.error(`\n${(e as Error).message}`);
    return 1;
  }
  process.stderr.write("\n");
  for (const f of failed.slice(0, 20)) console.error(f);
  if (failed.length > 20) console.error(`… and ${failed.length - 20} more`);
  console.log(`${written} records written to ${collection} in ${((performance.now() - startedMs) / 1000).toFixed(1)} s${failed.length > 0 ? `, ${failed.length} failed` : ""}`);
  return failed.length > 0 ? 1 : 0;
}

/** JSON from a command-line option, or an error naming the option. */
export function jsonOption(flag: string, text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new Error(`${flag}: not JSON (${(e as Error).message})`);
  }
}

export interface SearchOptions extends ClientOptions {
  vector: string;
  k?: number;
  ef?: number;
  filter?: string;
  exact?: boolean;
  consistency?: ReadConsistency;
  allowPartial?: boolean;
  timeoutMs?: number;
}

export async function searchCommand(collection: string, opts: SearchOptions): Promise<number> {
  let vector: unknown;
  let ask: SearchAsk;
  try {
    vector = jsonOption("--vector", opts.vector);
    ask = {
      ...(opts.k !== undefined ? { k: opts.k } : {}), ...(opts.ef !== undefined ? { ef: opts.ef } : {}),
      ...(opts.filter !== undefined ? { filter: jsonOption("--filter", opts.filter) as Record<string, unknown> } : {}),
      ...(opts.exact === true ? { exact: true } : {}), ...(opts.consistency !== undefined ? { consistency: opts.consistency } : {}),
      ...(opts.allowPartial === true ? { allowPartial: true } : {}), ...(opts.timeoutMs !== undefined ? { timeoutMs: opts.timeoutMs } : {}),
    };
  } catch (e) {
    console.error((e as Error).message);
    return 1;
  }
  // The server checks the vector (400 invalid_vector says what is wrong with it).
  const res = await answerOf(clientOf(opts.endpoint).collection(collection).search(vector as Vector, ask));
  if (!readable(res) || opts.json) return report(res);
  const a = res.body as { results: { id: string; score: number; payload: unknown }[]; shards: { asked: number; answered: number; failed: { shard: number; error: string }[] }; unindexedKeys: string[]; exhaustive: boolean; missing: unknown[]; tookMs: number };
  console.log(table(["id", "score", "payload"], a.results.map((r) => [r.id, r.score.toFixed(4), JSON.stringify(r.payload).slice(0, 80)])));
  console.log(`${a.results.length} results from ${a.shards.answered}/${a.shards.asked} shards in ${a.tookMs} ms`);
  if (a.shards.failed.length > 0) console.error(`partial: shards ${a.shards.failed.map((f) => `${f.shard} (${f.error})`).join(", ")} did not answer`);
  if (a.unindexedKeys.length > 0) console.error(`filter keys without a payload index (checked on payloads): ${a.unindexedKeys.join(", ")}${a.exhaustive ? "" : "; some shards stopped before finding k matches"}`);
  return 0;
}

export async function countCommand(collection: string, opts: ClientOptions & { filter?: string }): Promise<number> {
  let filter: Record<string, unknown> | undefined;
  try {
    filter = opts.filter === undefined ? undefined : jsonOption("--filter", opts.filter) as Record<string, unknown>;
  } catch (e) {
    console.error((e as Error).message);
    return 1;
  }
  const res = await answerOf(clientOf(opts.endpoint).collection(collection).count(filter === undefined ? {} : { filter }));
  if (!readable(res) || opts.json) return report(res);
  const a = res.body as { count: number; unindexedKeys: string[] };
  console.log(a.count);
  if (a.unindexedKeys.length > 0) console.error(`filter keys without a payload index (records read): ${a.unindexedKeys.join(", ")}`);
  return 0;
}
