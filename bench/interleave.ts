/**
 * Single puts on one connection per system, the systems taking turns put by put (in a random order each
 * turn: with the order rotating, each system nearly always came right after the same other one, and met
 * what that one left behind, such as a disk flush or commit notices still in flight), so that every
 * system meets the same machine at the same moment. Cells of seconds each,
 * one system after another, drift with the shared machine (etcd's own p50 moved 1.40 → 1.85 ms across
 * the rounds of one bench:etcd run): a difference of 0.1 ms between systems is lost in it. Here it is not.
 *
 *   node dist/bench/interleave.js --puts 3000 --etcd http://127.0.0.1:23370 \
 *        --shoal "shoal 1 shard=http://127.0.0.1:23400,http://127.0.0.1:23401,http://127.0.0.1:23402" [--sdk] [--gap-ms 5] [--json]
 *
 * Each system is driven as its one-connection cell in bench:etcd is: etcd and a Shoal gateway through the
 * first endpoint given (HTTP/1.1 keep-alive, the same lean client), the SDK (`--sdk`) routing each put
 * itself with an idempotency key. Prints p50 / p90 / p99 per system and each p50 against etcd's.
 */
import { Http1Pool } from "../src/client/http1.js";
import { ShoalClient } from "../src/client/index.js";
import { intArg, percentile, sleep } from "./procs.js";

const args = process.argv.slice(2);
const arg = (name: string): string | undefined => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : undefined;
};
const puts = intArg(args, "puts", 3000, 1, 10_000_000);
const warmupPuts = Math.min(500, Math.ceil(puts / 5));
const keyBytes = intArg(args, "key-bytes", 8, 1, 64);
const valueBytes = intArg(args, "value-bytes", 256, 0, 1 << 20);
// A pause after each put, before the next system's: the work a system does after answering (followers
// applying, commit notices) lands in the pause, not in the next system's put. Each put meets idle nodes,
// as a lone request does.
const gapMs = intArg(args, "gap-ms", 5, 0, 60_000);
const etcdEndpoint = arg("etcd");
const shoalArg = arg("shoal");
if (etcdEndpoint === undefined || shoalArg === undefined || !shoalArg.includes("=")) {
  throw new Error('usage: interleave.js --etcd URL --shoal "LABEL=URL,URL,URL" [--sdk] [--puts N]');
}
const shoalLabel = shoalArg.slice(0, shoalArg.indexOf("="));
const shoalEndpoints = shoalArg.slice(shoalArg.indexOf("=") + 1).split(",");

const value = "v".repeat(valueBytes);
const keyOf = (i: number) => String(i % 10_000).padStart(keyBytes, "0").slice(-keyBytes);
const b64 = (s: string) => Buffer.from(s).toString("base64");
const pool = new Http1Pool(1);
const sdk = args.includes("--sdk") ? new ShoalClient({ endpoints: shoalEndpoints }) : null;
if (sdk !== null && !(await sdk.refreshShardMap())) throw new Error("interleave: the client could not read the shard map");
const sdkRecords = sdk?.collection("default") ?? null;

interface System { label: string; put: (key: string) => Promise<void>; latenciesMs: number[] }

async function httpPut(base: URL, path: string, body: string): Promise<void> {
  const a = await pool.request(base, path.startsWith("/v3") ? "POST" : "PUT", path, { "content-type": "application/json" }, Buffer.from(body), 30_000);
  if (a.status !== 200) throw new Error(`${base.origin}${path}: HTTP ${a.status} ${a.body.toString("utf8").slice(0, 200)}`);
}

const etcdBase = new URL(etcdEndpoint);
const shoalBase = new URL(shoalEndpoints[0]!);
const systems: System[] = [
  { label: "etcd", latenciesMs: [], put: (key) => httpPut(etcdBase, "/v3/kv/put", JSON.stringify({ key: b64(key), value: b64(value) })) },
  { label: shoalLabel, latenciesMs: [], put: (key) => httpPut(shoalBase, `/v1/collections/default/records/${key}`, `{"payload":"${value}"}`) },
];
if (sdkRecords !== null) systems.push({ label: `${shoalLabel} via SDK`, latenciesMs: [], put: async (key) => void (await sdkRecords.put(key, value)) });

const order = [...systems];
for (let i = 0; i < warmupPuts + puts; i++) {
  for (let j = order.length - 1; j > 0; j--) {
    const k = Math.floor(Math.random() * (j + 1));
    [order[j], order[k]] = [order[k]!, order[j]!];
  }
  for (const s of order) {
    const t0 = performance.now();
    await s.put(keyOf(i * 2654435761));
    if (i >= warmupPuts) s.latenciesMs.push(performance.now() - t0);
    if (gapMs > 0) await sleep(gapMs);
  }
}
pool.close();
sdk?.close();

const rows = systems.map((s) => {
  const sorted = [...s.latenciesMs].sort((a, b) => a - b);
  return { label: s.label, puts: sorted.length, p50Ms: +percentile(sorted, 0.5).toFixed(3), p90Ms: +percentile(sorted, 0.9).toFixed(3), p99Ms: +percentile(sorted, 0.99).toFixed(3) };
});
const etcdP50 = rows[0]!.p50Ms;
console.log(`Single puts, one connection per system, taking turns put by put (${gapMs} ms apart): ${puts} each after ${warmupPuts} of warm-up.`);
console.log("| system | p50 ms | p90 ms | p99 ms | p50 / etcd |");
console.log("|---|---:|---:|---:|---:|");
for (const r of rows) console.log(`| ${r.label} | ${r.p50Ms} | ${r.p90Ms} | ${r.p99Ms} | ${(r.p50Ms / etcdP50).toFixed(2)} |`);
if (args.includes("--json")) console.log(JSON.stringify(rows));
