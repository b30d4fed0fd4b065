/**
 * Closed-loop load generator over HTTP (keep-alive, one socket per connection): N connections, each sending its next request as soon as the
 * previous one answered. Reports throughput and latency percentiles. Speaks Shoal's API and etcd's
 * HTTP gateway (/v3/kv/put, /v3/kv/range), so that the same client drives both.
 *
 *   node dist/bench/load.js --target shoal --endpoints http://127.0.0.1:7400,http://127.0.0.1:7401 \
 *        --connections 64 --seconds 10 --key-bytes 8 --value-bytes 256 --read-ratio 0
 */
import { Agent, request as httpRequest } from "node:http";

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
if (target !== "shoal" && target !== "etcd") throw new Error(`--target must be shoal or etcd, got ${target}`);

// One keep-alive socket per closed-loop connection.
const agent = new Agent({ keepAlive: true, maxSockets: connections });

function send(url: string, method: string, body?: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { method, agent, headers: body === undefined ? {} : { "content-type": "application/json" } }, (res) => {
      res.resume();
      res.on("end", () => resolve(res.statusCode ?? 0));
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end(body);
  });
}

const value = "v".repeat(valueBytes);
const keyOf = (i: number) => String(i % keySpace).padStart(keyBytes, "0").slice(-keyBytes);
const b64 = (s: string) => Buffer.from(s).toString("base64");

async function request(endpoint: string, write: boolean, key: string): Promise<boolean> {
  if (target === "shoal") {
    const url = `${endpoint}/v1/collections/default/records/${key}`;
    const status = write ? await send(url, "PUT", `{"payload":"${value}"}`) : await send(url, "GET");
    return status === 200 || (!write && status === 404);
  }
  const body = write ? { key: b64(key), value: b64(value) } : { key: b64(key) };
  return (await send(`${endpoint}/v3/kv/${write ? "put" : "range"}`, "POST", JSON.stringify(body))) === 200;
}

const latenciesMs: number[] = [];
let errors = 0;
let seq = 0;
const deadline = performance.now() + seconds * 1000;
const started = performance.now();
await Promise.all(Array.from({ length: connections }, async (_, c) => {
  const endpoint = endpoints[c % endpoints.length]!;
  while (performance.now() < deadline) {
    const i = seq++;
    const write = (i * 7919) % 1000 >= readRatio * 1000;
    const t0 = performance.now();
    try {
      if (!(await request(endpoint, write, keyOf(i * 2654435761)))) errors++;
    } catch {
      errors++;
    }
    latenciesMs.push(performance.now() - t0);
  }
}));
const elapsed = (performance.now() - started) / 1000;
latenciesMs.sort((a, b) => a - b);
const pct = (p: number) => latenciesMs[Math.min(latenciesMs.length - 1, Math.floor(latenciesMs.length * p))] ?? NaN;
const result = {
  target, connections, ops: latenciesMs.length, errors, opsPerSec: Math.round(latenciesMs.length / elapsed),
  p50Ms: +pct(0.5).toFixed(2), p95Ms: +pct(0.95).toFixed(2), p99Ms: +pct(0.99).toFixed(2),
};
console.log(`| target | connections | ops/s | p50 ms | p95 ms | p99 ms | errors |`);
console.log(`|---|---:|---:|---:|---:|---:|---:|`);
console.log(`| ${target} | ${connections} | ${result.opsPerSec.toLocaleString("en-US")} | ${result.p50Ms} | ${result.p95Ms} | ${result.p99Ms} | ${errors} |`);
if (args.includes("--json")) console.log(JSON.stringify(result));
