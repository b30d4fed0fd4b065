/**
 * bench:client (issue 15, DATA-7): the same single-record load sent two ways on one 3-node cluster
 * (RF 3, `--shards` shards of the default collection), alternating in rounds:
 *   - gateway: `shoal/client` with routing off, to a node that leads none of the shards when there is
 *     one, so that it forwards every write to the leader (one hop more; it serves reads from its own
 *     replica, a linearizable one after a ReadIndex round with the leader);
 *   - routed: `shoal/client` with its shard map, each write sent to the record's shard leader (reads go
 *     to the same gateway both ways: the rows show the noise between two identical paths).
 * Operations: put, get (linearizable), get (eventual), each at every `--concurrency` (closed loop). Prints
 * ops/s and p50/p95/p99 (every round's samples pooled) and the ratio routed / gateway of p95; the target
 * (DATA-7) is a p95 at least 15 % lower routed.
 *
 * Then the read levels (DATA-3, DATA-4), at the highest `--concurrency`: gets at each level spread over
 * every node (a client per node, the workers taking them in turn; session reads carry a token of the
 * writes that loaded the keys), against linearizable gets all sent to the shard's leader. Prints ops/s
 * and latencies, and the ratio of throughput to the leader-only row; the target is at least 1.5x for
 * session and bounded reads.
 *
 * The search levels (`--parts search-levels`): the same comparison with k-nearest-neighbour searches
 * (k 10) of a `--vectors`-record collection of random `--dim`-dimension vectors (one shard, RF 3), so
 * that the nodes' work per read (the graph search, on each node's index worker) outweighs the client's
 * and the HTTP exchange, as it does for most searches.
 *
 * `--pipeline-depth N` is the clients' `pipelineDepth` (default 8, as ShoalClient's; 1: one request per
 * connection at a time, as before pipelining).
 *
 * `--peer-delay-ms N` holds every frame between nodes N ms before sending it (the test-mode transport's
 * fault hook; about N+0.5 ms, as timers go), as a link between machines in different zones would: on
 * loopback a hop costs ~0.1 ms, nothing next to a put's fsyncs, so the hop routing saves shows only
 * with one. The client's own requests are not delayed (both paths take that hop once).
 *
 *   npm run bench:client [-- --seconds 5 --rounds 2 --concurrency 1,64 --shards 1 --value-bytes 256 --parts routing,levels[,search-levels]
 *                            --peer-delay-ms 0 --pipeline-depth 8 --vectors 20000 --dim 64]
 */
import { ProcCluster, keepShardCount, waitUntil } from "../src/chaos/cluster.js";
import { type ReadConsistency, ShoalClient } from "../src/client/index.js";
import { availableParallelism } from "node:os";
import { abandonOnExit, cpuSeconds, indexGauges, intArg, ledShards, percentile } from "./procs.js";

const args = process.argv.slice(2);
const seconds = intArg(args, "seconds", 5, 1, 600);
const rounds = intArg(args, "rounds", 2, 1, 20);
const shards = intArg(args, "shards", 1, 1, 64);
const valueBytes = intArg(args, "value-bytes", 256, 1, 1 << 20);
const peerDelayMs = intArg(args, "peer-delay-ms", 0, 0, 1000);
/** The clients' `pipelineDepth` (gets in flight on one connection; 1: one request per connection at a time). */
const pipelineDepth = intArg(args, "pipeline-depth", 8, 1, 256);
const concurrencyArg = args.includes("--concurrency") ? args[args.indexOf("--concurrency") + 1] ?? "" : "1,64";
const concurrencies = concurrencyArg.split(",").map(Number);
const partsArg = args.includes("--parts") ? args[args.indexOf("--parts") + 1] ?? "" : "routing,levels";
const parts = new Set(partsArg.split(","));
const PARTS = ["routing", "levels", "search-levels"];
if ([...parts].some((p) => !PARTS.includes(p))) throw new Error(`--parts takes ${PARTS.join(", ")} (comma-separated)`);
// "Leader only" names one node: the levels part reads one shard.
if (parts.has("levels") && shards !== 1) throw new Error("--parts levels compares against the one shard's leader: run it with --shards 1");
const vectorCount = intArg(args, "vectors", 20_000, 100, 1_000_000);
const dim = intArg(args, "dim", 64, 2, 4096);
/** The searches' collection: one shard, so that "leader only" is one node. */
const VECTORS_COLLECTION = "vectors";
if (concurrencies.some((c) => !Number.isInteger(c) || c < 1 || c > 1024)) throw new Error("--concurrency takes a comma-separated list of integers in [1, 1024]");
/** Keys the load writes and reads (each worker picks them in turn). */
const KEYS = 1000;
const WARMUP_MS = 2000;
/** Load at every read level before the levels part measures any. */
const LEVELS_WARMUP_MS = 4000;

type Op = "put" | "get linearizable" | "get eventual";
const OPS: Op[] = ["put", "get linearizable", "get eventual"];
type Path = "gateway" | "routed";

interface Cell { op: Op; concurrency: number; path: Path; samplesMs: number[]; ops: number; seconds: number; errors: number }

/** A read level as the levels part runs it: the level, and the nodes the gets go to. */
interface Level { name: string; consistency: ReadConsistency; spread: boolean }
const LEVELS: Level[] = [
  { name: "linearizable, leader only", consistency: "linearizable", spread: false },
  { name: "linearizable, every node", consistency: "linearizable", spread: true },
  { name: "session, every node", consistency: "session", spread: true },
  { name: "bounded 1000 ms, every node", consistency: "bounded", spread: true },
  { name: "eventual, every node", consistency: "eventual", spread: true },
];

/** What the levels parts read: a record by id, or the nearest neighbours of a vector. */
type ReadKind = "get" | "search";

/** A random unit-free vector of `dim` components in [-1, 1). */
function randomVector(): Float32Array {
  const v = new Float32Array(dim);
  for (let i = 0; i < dim; i++) v[i] = Math.random() * 2 - 1;
  return v;
}

/** A closed loop of `concurrency` workers; worker i sends through clients[i % clients.length]. */
async function load(clients: ShoalClient | ShoalClient[], op: Op | ReadConsistency, concurrency: number, durationMs: number, samplesMs: number[] | null,
  kind: ReadKind = "get"): Promise<{ ops: number; errors: number }> {
  const collections = (Array.isArray(clients) ? clients : [clients]).map((c) => c.collection(kind === "search" ? VECTORS_COLLECTION : "default"));
  // Queries made beforehand: the client's cost per search is then the request's alone.
  const queries = kind === "search" ? Array.from({ length: 256 }, randomVector) : [];
  const payload = { v: "x".repeat(valueBytes) };
  const endMs = performance.now() + durationMs;
  let ops = 0;
  let errors = 0;
  let next = 0;
  await Promise.all(Array.from({ length: concurrency }, async (_, worker) => {
    const records = collections[worker % collections.length]!;
    while (performance.now() < endMs) {
      const key = `k${next++ % KEYS}`;
      const t0 = performance.now();
      try {
        if (op === "put") await records.put(key, payload);
        else if (op === "get linearizable" || op === "get eventual") await records.get(key, { consistency: op === "get linearizable" ? "linearizable" : "eventual" });
        else if (kind === "search") {
          const answer = await records.search(queries[(next - 1) % queries.length]!, { k: 10, consistency: op, ...(op === "bounded" ? { maxStalenessMs: 1000 } : {}) });
          if (answer.results.length !== 10) throw new Error(`a search answered ${answer.results.length} results, not 10`);
        } else await records.get(key, { consistency: op, ...(op === "bounded" ? { maxStalenessMs: 1000 } : {}) });
        samplesMs?.push(performance.now() - t0);
        ops++;
      } catch {
        errors++;
      }
    }
  }));
  return { ops, errors };
}

async function main(): Promise<void> {
  console.log(`bench:client: 3 nodes, RF 3, ${shards} shard(s), ${valueBytes}-byte values, ${seconds} s a cell, ${rounds} round(s), concurrency ${concurrencies.join(", ")}, pipeline depth ${pipelineDepth}${peerDelayMs > 0 ? `, every frame between nodes held ${peerDelayMs} ms` : ", loopback links"}`);
  const c = await ProcCluster.start(3, shards);
  abandonOnExit(c);
  try {
    const url = (id: number) => `http://${c.host(id)}:${c.http.get(id)}`;
    // The shards stay as they are for the whole run (no automatic split of a hot shard, nor merge of
    // small ones): a split under the load moved leaders onto the gateway's node, which then forwarded
    // fewer writes than the "gateway" rows say (a run on 2026-12-06).
    await keepShardCount(url(1), "bench:client: the shard count kept");
    const leaders = new Set((await ledShards(c, "default")).map((s) => s.leader));
    const gateway = [1, 2, 3].find((id) => !leaders.has(id)) ?? 1;
    console.log(`leaders: nodes ${[...leaders].join(", ")}; the gateway path goes through node ${gateway}${leaders.has(gateway) ? " (it leads some shards: fewer requests forwarded)" : " (it leads none: every write is forwarded)"}`);
    const clients: Record<Path, ShoalClient> = {
      gateway: new ShoalClient({ endpoints: [url(gateway)], routing: false, pipelineDepth }),
      routed: new ShoalClient({ endpoints: [url(gateway)], pipelineDepth }),
    };
    if (!(await clients.routed.refreshShardMap())) throw new Error("the routed client could not read the shard map");
    // Every key exists before the gets.
    for (let i = 0; i < KEYS; i++) await clients.gateway.collection("default").put(`k${i}`, { v: "x".repeat(valueBytes) });

    if (peerDelayMs > 0) {
      for (const id of [1, 2, 3]) {
        const r = await fetch(`${url(id)}/v1/test/faults`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ delayMs: peerDelayMs }) });
        if (!r.ok) throw new Error(`node ${id} refused the peer delay: HTTP ${r.status} ${await r.text()}`);
      }
    }
    if (parts.has("routing")) await routing(clients);
    const pids = [1, 2, 3].map((id) => c.pid(id)!);
    if (parts.has("levels")) await levels(clients.gateway, [...leaders][0]!, url, pids, "get");
    if (parts.has("search-levels")) await levels(clients.gateway, await loadVectors(clients.gateway, c), url, pids, "search");
    for (const client of Object.values(clients)) client.close();
  } finally {
    await c.destroy();
  }
}

/**
 * Creates the searches' collection (one shard, RF 3), loads `vectorCount` random vectors and waits until
 * every node's index holds them all; returns the shard's leader.
 */
async function loadVectors(client: ShoalClient, c: ProcCluster): Promise<number> {
  await client.createCollection({ name: VECTORS_COLLECTION, shards: 1, replicationFactor: 3, vectors: { dim, metric: "cosine" } });
  const [shard] = await ledShards(c, VECTORS_COLLECTION);
  const records = client.collection(VECTORS_COLLECTION);
  const startedMs = performance.now();
  for (let at = 0; at < vectorCount; at += 500) {
    const batch = Array.from({ length: Math.min(500, vectorCount - at) }, (_, i) => ({ id: `v${at + i}`, payload: { n: at + i }, vector: randomVector() }));
    const answers = await records.upsertMany(batch);
    const failed = answers.find((a) => "error" in a);
    if (failed !== undefined) throw new Error(`loading the vectors: ${JSON.stringify(failed)}`);
  }
  process.stderr.write(`loaded ${vectorCount} vectors of ${dim} dimensions in ${((performance.now() - startedMs) / 1000).toFixed(1)} s; waiting for the indexes\n`);
  await waitUntil("every node's indexes caught up", async () => (await Promise.all([1, 2, 3].map((id) => indexGauges(c, id))))
    .every((m) => m.pending === 0 && m.records >= vectorCount), 600_000, 250);
  process.stderr.write(`indexes caught up ${((performance.now() - startedMs) / 1000).toFixed(1)} s after the load began\n`);
  return shard!.leader;
}

function latencies(s: number[]): string {
  return `${percentile(s, 0.5).toFixed(2)} | ${percentile(s, 0.95).toFixed(2)} | ${percentile(s, 0.99).toFixed(2)}`;
}

async function levels(loader: ShoalClient, leader: number, url: (id: number) => string, pids: number[], kind: ReadKind): Promise<void> {
  const concurrency = Math.max(...concurrencies);
  // Session reads carry the token of the writes that loaded the keys (what a session that wrote them holds).
  const token = loader.sessionToken();
  const every = [1, 2, 3].map((id) => new ShoalClient({ endpoints: [url(id)], routing: false, sessionToken: token, pipelineDepth }));
  const atLeader = new ShoalClient({ endpoints: [url(leader)], routing: false, pipelineDepth });
  // CPU seconds used meanwhile by each node and by this client: where the machine's cores went.
  const cells = new Map<string, { ops: number; seconds: number; errors: number; samplesMs: number[]; nodeCpuS: number[]; clientCpuS: number }>();
  // V8 compiles the read paths in tiers over the first seconds of load: without this, the first level
  // measured ran a third slower than in later rounds.
  for (const level of LEVELS) await load(level.spread ? every : atLeader, level.consistency, concurrency, LEVELS_WARMUP_MS, null, kind);
  for (let round = 0; round < rounds; round++) {
    // Rotate the order each round, so that no level always runs first.
    for (let i = 0; i < LEVELS.length; i++) {
      const level = LEVELS[(i + round) % LEVELS.length]!;
      let cell = cells.get(level.name);
      if (cell === undefined) cells.set(level.name, (cell = { ops: 0, seconds: 0, errors: 0, samplesMs: [], nodeCpuS: pids.map(() => 0), clientCpuS: 0 }));
      const clients = level.spread ? every : atLeader;
      await load(clients, level.consistency, concurrency, WARMUP_MS, null, kind);
      const nodeBefore = pids.map(cpuSeconds);
      const clientBefore = process.cpuUsage();
      const r = await load(clients, level.consistency, concurrency, seconds * 1000, cell.samplesMs, kind);
      pids.forEach((pid, i) => (cell!.nodeCpuS[i]! += cpuSeconds(pid) - nodeBefore[i]!));
      const used = process.cpuUsage(clientBefore);
      cell.clientCpuS += (used.user + used.system) / 1e6;
      cell.ops += r.ops;
      cell.errors += r.errors;
      cell.seconds += seconds;
      process.stderr.write(`round ${round + 1}: ${kind} ${level.name}: ${(r.ops / seconds).toFixed(0)} ops/s\n`);
    }
  }
  for (const client of [...every, atLeader]) client.close();
  const base = cells.get(LEVELS[0]!.name)!;
  console.log(kind === "get" ? `\nRead levels: gets at ${concurrency} concurrent, leader of the shard: node ${leader}\n`
    : `\nRead levels: searches (k 10) of ${vectorCount} ${dim}-dimension vectors at ${concurrency} concurrent, leader of the shard: node ${leader}\n`);
  const cores = availableParallelism();
  console.log(`| ${kind} | ops/s | p50 ms | p95 ms | p99 ms | errors | ops/s x leader-only linearizable | CPU % nodes 1 / 2 / 3 | CPU % client | machine busy (${cores} cores) | node CPU us per ${kind} |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|`);
  for (const level of LEVELS) {
    const x = cells.get(level.name)!;
    x.samplesMs.sort((a, b) => a - b);
    const pct = (cpuS: number) => (100 * cpuS) / x.seconds;
    const nodesCpuS = x.nodeCpuS.reduce((a, b) => a + b, 0);
    console.log(`| ${level.name} | ${(x.ops / x.seconds).toFixed(0)} | ${latencies(x.samplesMs)} | ${x.errors} | ${((x.ops / x.seconds) / (base.ops / base.seconds)).toFixed(2)} | ` +
      `${x.nodeCpuS.map((s) => pct(s).toFixed(0)).join(" / ")} | ${pct(x.clientCpuS).toFixed(0)} | ${(pct(nodesCpuS + x.clientCpuS) / cores).toFixed(0)} % | ${((1e6 * nodesCpuS) / Math.max(1, x.ops)).toFixed(0)} |`);
  }
  console.log("\nTarget: session and bounded reads from every node at least 1.5x the throughput of leader-only linearizable reads.");
  console.log("A machine busy near 100 % in the leader-only row leaves spreading nothing to gain here: the nodes share its cores.");
}

async function routing(clients: Record<Path, ShoalClient>): Promise<void> {
  const cells = new Map<string, Cell>();
  for (let round = 0; round < rounds; round++) {
    for (const op of OPS) {
      for (const concurrency of concurrencies) {
        // Alternate which path goes first, so that neither always runs on a warmer machine.
        const order: Path[] = round % 2 === 0 ? ["gateway", "routed"] : ["routed", "gateway"];
        for (const path of order) {
          const key = `${op}|${concurrency}|${path}`;
          let cell = cells.get(key);
          if (cell === undefined) cells.set(key, (cell = { op, concurrency, path, samplesMs: [], ops: 0, seconds: 0, errors: 0 }));
          await load(clients[path], op, concurrency, WARMUP_MS, null);
          const r = await load(clients[path], op, concurrency, seconds * 1000, cell.samplesMs);
          cell.ops += r.ops;
          cell.errors += r.errors;
          cell.seconds += seconds;
          process.stderr.write(`round ${round + 1}: ${op}, ${concurrency} concurrent, ${path}: ${(r.ops / seconds).toFixed(0)} ops/s\n`);
        }
      }
    }
  }
  for (const x of cells.values()) x.samplesMs.sort((a, b) => a - b);

  const row = (x: Cell) => {
    const s = x.samplesMs;
    return `| ${x.op} | ${x.concurrency} | ${x.path} | ${(x.ops / x.seconds).toFixed(0)} | ${percentile(s, 0.5).toFixed(2)} | ${percentile(s, 0.95).toFixed(2)} | ${percentile(s, 0.99).toFixed(2)} | ${x.errors} |`;
  };
  console.log("\n| operation | concurrent | path | ops/s | p50 ms | p95 ms | p99 ms | errors |\n|---|---:|---|---:|---:|---:|---:|---:|");
  for (const x of cells.values()) console.log(row(x));
  console.log("");
  for (const op of OPS) {
    for (const concurrency of concurrencies) {
      const g = cells.get(`${op}|${concurrency}|gateway`)!;
      const r = cells.get(`${op}|${concurrency}|routed`)!;
      const ratio = percentile(r.samplesMs, 0.95) / percentile(g.samplesMs, 0.95);
      console.log(`- ${op}, ${concurrency} concurrent: routed p95 is ${ratio.toFixed(2)}x the gateway's (${(100 * (1 - ratio)).toFixed(0)} % lower; target >= 15 % lower)`);
    }
  }
}

await main();
