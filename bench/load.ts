/**
 * Closed-loop load generator over HTTP/1.1 (keep-alive, one socket per connection): N connections, each sending its next request as soon as the
 * previous one answered. Reports throughput and latency percentiles. Speaks Shoal's API and etcd's
 * HTTP gateway (/v3/kv/put, /v3/kv/range), so that the same client drives both. `--target shoal-sdk`
 * drives Shoal through `shoal/client` instead (its shard map routing each put to the shard's
 * leader, an idempotency key on each put, as a program using the client sends them).
 *
 *   node dist/bench/load.js --target shoal --endpoints http://127.0.0.1:7400,http://127.0.0.1:7401 \
 *        --connections 64 --seconds 10 --key-bytes 8 --value-bytes 256 --read-ratio 0 [--consistency eventual] [--idempotency-keys]
 *        [--direct-in-flight-max N]
 */
import { type ReadConsistency, ShoalClient } from "../src/client/index.js";
import { Http1Pool } from "../src/client/http1.js";

const args = process.argv.slice(2);
const arg = (name: string, dflt: string): string => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && args[i + 1] !== undefined ? args[i + 1]! : dflt;
};
const target = arg("target", "shoal");
const endpoints = arg("endpoints", "http://127.0.0.1:7400").split(",");
const connections = Number(arg("connections", "16"));
const seconds = Number(arg("seconds", "5"));
const keyBytes = Number(arg("key-bytes", "8"));
const valueBytes = Number(arg("value-bytes", "256"));
const readRatio = Number(arg("read-ratio", "0"));
const keySpace = Number(arg("keys", "10000"));
// Shoal reads only: linearizable (the default, as etcd's), sequential or eventual (served locally).
const consistency = arg("consistency", "linearizable");
// Shoal writes only: each write carries a new Idempotency-Key (what a careful client sends), to measure its cost.
const idempotencyKeys = args.includes("--idempotency-keys");
if (target !== "shoal" && target !== "etcd" && target !== "shoal-sdk") throw new Error(`--target must be shoal, shoal-sdk or etcd, got ${target}`);
// --direct-in-flight-max: the SDK's bound on requests routed to one node at once (its default when not given).
const directArg = args.includes("--direct-in-flight-max") ? Number(arg("direct-in-flight-max", "16")) : undefined;
const sdk = target === "shoal-sdk" ? new ShoalClient({ endpoints, socketsPerEndpointMax: connections, ...(directArg !== undefined ? { directInFlightMax: directArg } : {}) }) : null;
if (sdk !== null && !(await sdk.refreshShardMap())) throw new Error("shoal-sdk: the client could not read the shard map");
const sdkRecords = sdk?.collection("default") ?? null;

/**
 * One keep-alive HTTP/1.1 connection, one request at a time (closed loop): the client's own lean HTTP
 * pool (src/client/http1.ts), bounded to one socket. Not node:http: the client shares the machine's
 * cores with the cluster under test, and the same client drives both systems.
 */
class Connection {
  private readonly pool = new Http1Pool(1);
  private readonly base: URL;

  constructor(endpoint: string) {
    this.base = new URL(endpoint);
  }

  close(): void {
    this.pool.close();
  }

  /** The answer's status, and for a failure (4xx, 5xx) the error code its body names, if any. */
  async request(method: string, path: string, body: string | undefined, extraHeaders: Record<string, string> = {}): Promise<{ status: number; code?: string }> {
    const headers = body === undefined ? extraHeaders : { ...extraHeaders, "content-type": "application/json" };
    const a = await this.pool.request(this.base, method, path, headers, body === undefined ? undefined : Buffer.from(body), 30_000);
    if (a.status < 400) return { status: a.status };
    try {
      const answer = JSON.parse(a.body.toString("utf8")) as { error?: { code?: unknown; message?: unknown } };
      const code = answer.error?.code;
      if (typeof code !== "string") return { status: a.status };
      if (typeof answer.error?.message === "string" && !failureExamples.has(code)) failureExamples.set(code, answer.error.message);
      return { status: a.status, code };
    } catch {
      return { status: a.status };
    }
  }
}

const value = "v".repeat(valueBytes);
const keyOf = (i: number) => String(i % keySpace).padStart(keyBytes, "0").slice(-keyBytes);
const b64 = (s: string) => Buffer.from(s).toString("base64");

/** Sends one request: true when answered as wanted, else what refused it (status and error code). */
async function request(conn: Connection, write: boolean, key: string): Promise<true | string> {
  if (sdkRecords !== null) {
    if (write) await sdkRecords.put(key, value);
    else await sdkRecords.get(key, { consistency: consistency as ReadConsistency });
    return true;
  }
  if (target === "shoal") {
    const path = `/v1/collections/default/records/${key}`;
    const a = write
      ? await conn.request("PUT", path, `{"payload":"${value}"}`, idempotencyKeys ? { "idempotency-key": `w-${process.pid}-${seq}` } : {})
      : await conn.request("GET", consistency === "linearizable" ? path : `${path}?consistency=${consistency}`, undefined);
    return a.status === 200 || (!write && a.status === 404) ? true : refusal(a);
  }
  const body = write ? { key: b64(key), value: b64(value) } : { key: b64(key) };
  const a = await conn.request("POST", `/v3/kv/${write ? "put" : "range"}`, JSON.stringify(body));
  return a.status === 200 ? true : refusal(a);
}

function refusal(a: { status: number; code?: string }): string {
  return a.code === undefined ? `HTTP ${a.status}` : `HTTP ${a.status} ${a.code}`;
}

const latenciesMs: number[] = [];
const opened: Connection[] = [];
let errors = 0;
/** The first message seen per error code (printed with the failures). */
const failureExamples = new Map<string, string>();
/** Failed requests by what failed them: an HTTP status, or the error a request threw (the SDK's code). */
const failures: Record<string, number> = {};
const countFailure = (what: string) => void (failures[what] = (failures[what] ?? 0) + 1);
let seq = 0;
const deadline = performance.now() + seconds * 1000;
const started = performance.now();
await Promise.all(Array.from({ length: connections }, async (_, c) => {
  const endpoint = endpoints[c % endpoints.length]!;
  let conn = new Connection(endpoint);
  opened.push(conn);
  while (performance.now() < deadline) {
    const i = seq++;
    const write = (i * 7919) % 1000 >= readRatio * 1000;
    const t0 = performance.now();
    let ok = false;
    try {
      const answer = await request(conn, write, keyOf(i * 2654435761));
      ok = answer === true;
      if (answer !== true) countFailure(answer);
    } catch (e) {
      const what = (e as { code?: unknown }).code ?? (e as Error).name;
      countFailure(String(what));
      conn.close();
      conn = new Connection(endpoint); // a broken connection is replaced
      opened.push(conn);
    }
    // Only answered requests count: a refused connection "answers" fast and would inflate ops/s.
    if (ok) latenciesMs.push(performance.now() - t0);
    else errors++;
  }
}));
const elapsed = (performance.now() - started) / 1000;
for (const c of opened) c.close();
sdk?.close();
latenciesMs.sort((a, b) => a - b);
const pct = (p: number) => latenciesMs[Math.min(latenciesMs.length - 1, Math.floor(latenciesMs.length * p))] ?? NaN;
const result = {
  target, connections, ops: latenciesMs.length, errors, opsPerSec: Math.round(latenciesMs.length / elapsed),
  p50Ms: +pct(0.5).toFixed(2), p95Ms: +pct(0.95).toFixed(2), p99Ms: +pct(0.99).toFixed(2), failures,
};
console.log(`| target | connections | ops/s | p50 ms | p95 ms | p99 ms | errors |`);
console.log(`|---|---:|---:|---:|---:|---:|---:|`);
console.log(`| ${target} | ${connections} | ${result.opsPerSec.toLocaleString("en-US")} | ${result.p50Ms} | ${result.p95Ms} | ${result.p99Ms} | ${errors} |`);
if (errors > 0) {
  console.error(`load: failed requests by cause: ${JSON.stringify(failures)}`);
  for (const [code, message] of failureExamples) console.error(`load: e.g. ${code}: ${message}`);
}
if (args.includes("--json")) console.log(JSON.stringify(result));
if (errors > latenciesMs.length / 100) {
  console.error(`load: ${errors} of ${errors + latenciesMs.length} requests failed (more than 1 %); the figures above are not a measurement`);
  process.exitCode = 1;
}
