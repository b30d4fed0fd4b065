/**
 * Many shards on three nodes (issue 13): for each shard count, a fresh cluster of three `shoal start`
 * processes founded together, then
 *   ready s      from spawning the processes until every node answers /readyz;
 *   replicated s from readiness until every shard has three voters (node 1's shard map);
 *   settled s    from then until no placement operator runs (leader balancing, for one);
 *   leaders      shards led by each node (node 1's view);
 *   idle CPU %   of one core, the three processes together, over `--idle-seconds` once replicated and
 *                settled (`--settle-seconds`), with no client;
 *   RSS MiB      of each process after the idle period, and KiB per shard: the largest RSS above the
 *                1-shard cluster's largest, divided by the shards (what an idle shard costs a node);
 *   write p50/p99 ms  of `--writes` writes, one at a time, through the nodes in turn (light load).
 * The first row, 1 shard, is the reference measured in the same run: the ratios say what the extra
 * shards cost.
 *
 *   node dist/bench/shards.js [--shards 1000,10000] [--idle-seconds 30] [--settle-seconds 10] [--writes 300] [--keep]
 *
 * --keep copies the nodes' logs to ./bench-shards-<shards>.n<id>.log before the cluster is removed.
 */
import { ProcCluster, waitUntil } from "../src/chaos/cluster.js";
import { type ShardView, abandonOnExit, cpuSeconds, intArg, percentile, rssMiB, sleep } from "./procs.js";

const args = process.argv.slice(2);
const at = args.indexOf("--shards");
const COUNTS = [1, ...(at >= 0 ? args[at + 1]! : "1000,10000").split(",").map(Number)];
for (const n of COUNTS) if (!Number.isInteger(n) || n < 1 || n > 16_384) throw new Error(`--shards takes counts in 1..16384, got ${n}`);
const IDLE_SECONDS = intArg(args, "idle-seconds", 30, 1, 600);
const SETTLE_SECONDS = intArg(args, "settle-seconds", 10, 0, 600);
const WRITES = intArg(args, "writes", 300, 10, 100_000);
const KEEP = args.includes("--keep");
const IDS = [1, 2, 3];
/** Readiness and replication must come within this, or the row is recorded as failed. */
const DEADLINE_MS = 600_000;

interface Row {
  shards: number;
  readyS: number;
  replicatedS: number;
  settledS: number;
  leaders: number[];
  idleCpuPct: number;
  rssMiB: number[];
  writeP50Ms: number;
  writeP99Ms: number;
}

async function shardMap(c: ProcCluster): Promise<ShardView[]> {
  try {
    return (await c.api<{ shards: ShardView[] }>(1, "GET", "/v1/cluster/shards")).body.shards;
  } catch {
    return [];
  }
}

async function writeLatencies(c: ProcCluster, n: number): Promise<number[]> {
  const ms: number[] = [];
  for (let i = 0; i < n; i++) {
    const id = IDS[i % IDS.length]!;
    const started = performance.now();
    const r = await fetch(c.url(id, `/v1/collections/default/records/bench-${i}`), {
      method: "PUT", body: JSON.stringify({ payload: { i } }), headers: { "content-type": "application/json", "idempotency-key": `b${i}` },
      signal: AbortSignal.timeout(10_000),
    });
    await r.arrayBuffer();
    if (r.status !== 200) throw new Error(`write ${i} through node ${id}: HTTP ${r.status}`);
    ms.push(performance.now() - started);
  }
  return ms.sort((a, b) => a - b);
}

async function measure(shards: number): Promise<Row> {
  const spawnedMs = performance.now();
  const c = await ProcCluster.start(IDS.length, shards, DEADLINE_MS);
  abandonOnExit(c);
  const pids = IDS.map((id) => c.pid(id)!);
  try {
    const readyMs = performance.now();
    let map: ShardView[] = [];
    await waitUntil(`${shards} shards with three voters`, async () => {
      map = await shardMap(c);
      return map.length >= shards && map.every((s) => s.replicas.filter((r) => r.role === "voter").length === 3);
    }, DEADLINE_MS, 250);
    const replicatedMs = performance.now();
    await waitUntil("no operator running", async () => {
      try {
        return (await c.api<{ operators: unknown[] }>(1, "GET", "/v1/cluster/operators?status=running")).body.operators.length === 0;
      } catch {
        return false;
      }
    }, DEADLINE_MS, 500);
    const settledMs = performance.now();
    process.stderr.write(`  ${shards} shards: ready in ${((readyMs - spawnedMs) / 1000).toFixed(1)} s, replicated ${((replicatedMs - readyMs) / 1000).toFixed(1)} s later, settled ${((settledMs - replicatedMs) / 1000).toFixed(1)} s later; settling ${SETTLE_SECONDS} s, idle for ${IDLE_SECONDS} s…\n`);
    await sleep(SETTLE_SECONDS * 1000);
    const cpuBefore = pids.map(cpuSeconds);
    const idleFrom = performance.now();
    await sleep(IDLE_SECONDS * 1000);
    const cpuUsed = pids.reduce((s, pid, i) => s + cpuSeconds(pid) - cpuBefore[i]!, 0);
    const idleCpuPct = (100 * cpuUsed) / ((performance.now() - idleFrom) / 1000);
    const rss = pids.map(rssMiB);
    map = await shardMap(c);
    const leaders = IDS.map((id) => map.filter((s) => s.leader === id).length);
    const lat = await writeLatencies(c, WRITES);
    return {
      shards, readyS: (readyMs - spawnedMs) / 1000, replicatedS: (replicatedMs - readyMs) / 1000, settledS: (settledMs - replicatedMs) / 1000, leaders, idleCpuPct, rssMiB: rss,
      writeP50Ms: percentile(lat, 0.5), writeP99Ms: percentile(lat, 0.99),
    };
  } finally {
    if (KEEP) console.error(`kept the nodes' logs: ${c.saveLogs(`bench-shards-${shards}`).join(", ")}`);
    await c.destroy();
  }
}

async function main(): Promise<void> {
  const rows: Row[] = [];
  for (const n of COUNTS) rows.push(await measure(n));
  const ref = rows[0]!;
  console.log(`\nshards on 3 nodes (idle CPU over ${IDLE_SECONDS} s, all three processes, % of one core; ratios against the 1-shard cluster of this run)`);
  const head = ["shards", "ready s", "replicated s", "settled s", "leaders per node", "max lead %", "idle CPU %", "x ref", "RSS MiB per node", "x ref", "KiB per shard", "write p50 ms", "p99 ms"];
  console.log(`| ${head.join(" | ")} |`);
  console.log(`|${head.map(() => "---").join("|")}|`);
  for (const r of rows) {
    const maxLeadPct = (100 * Math.max(...r.leaders)) / r.shards;
    const rssMax = Math.max(...r.rssMiB);
    console.log(`| ${[
      r.shards, r.readyS.toFixed(1), r.replicatedS.toFixed(1), r.settledS.toFixed(1), r.leaders.join(" / "), maxLeadPct.toFixed(0), r.idleCpuPct.toFixed(1),
      (r.idleCpuPct / Math.max(ref.idleCpuPct, 0.1)).toFixed(1), r.rssMiB.map((m) => m.toFixed(0)).join(" / "), (rssMax / Math.max(...ref.rssMiB)).toFixed(1),
      r.shards === ref.shards ? "-" : (((rssMax - Math.max(...ref.rssMiB)) * 1024) / r.shards).toFixed(1),
      r.writeP50Ms.toFixed(1), r.writeP99Ms.toFixed(1),
    ].join(" | ")} |`);
  }
  console.log("goals (issue 13): 1,000 shards: replicated <= 30 s, max lead <= 40 %, idle CPU <= 10 %, RSS < 400 MiB; 10,000 shards: idle CPU < 25 %");
}

main().catch((e: unknown) => {
  console.error(e);
  process.exitCode = 2;
});
