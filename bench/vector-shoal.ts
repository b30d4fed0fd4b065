/**
 * Shoal's part of bench/vectors.ts: a 3-node cluster of `shoal start` processes (chaos/cluster.ts's
 * ProcCluster, as bench/shards.ts uses it), one collection with a vector schema and an integer payload
 * index on `tag`, loaded through the batch API, then searched over HTTP with clients spread over the nodes.
 */
import { type Socket, connect } from "node:net";
import { ProcCluster, waitUntil } from "../src/chaos/cluster.js";
import { type ShardView, abandonOnExit, cpuSeconds, indexGauges, rssMiB, sleep } from "./procs.js";
import { type Dataset, type FilterSpec, K, log, queryOf, vectorJson, vectorOf } from "./vector-data.js";

const IDS = [1, 2, 3];
export const COLLECTION = "bench";
/** Records per batch upsert (the API's most). */
const BATCH = 1000;
/** Batches in flight at once, spread over the nodes. */
const BATCHES_IN_FLIGHT = 6;
/** Tries of one batch (or of its refused records) before the load fails. */
const BATCH_TRIES = 20;
const READY_DEADLINE_MS = 120_000;
const REQUEST_TIMEOUT_MS = 60_000;
const PROGRESS_EVERY_MS = 5_000;
/** CPU of the three nodes together, in cores, below which the cluster counts as idle (index saves done). */
const IDLE_CORES = 0.15;
/** Seconds in a row the nodes must stay near idle before searches are measured (longer than SAVE_IDLE_MS). */
const IDLE_FOR_S = 15;

interface Reply { status: number; body: Buffer }

/**
 * One keep-alive HTTP/1.1 connection, one request at a time. Hand-rolled, as bench/load.ts's, because
 * the client shares the two cores with the cluster: node:http or fetch cost several times its CPU per
 * request. It reads what Fastify sends: a status line, headers and a Content-Length body.
 */
class Http1 {
  private socket: Socket | null = null;
  private chunks: Buffer[] = [];
  private have = 0;
  private waiting: { resolve: (r: Reply) => void; reject: (e: Error) => void; timer: NodeJS.Timeout } | null = null;

  constructor(private readonly host: string, private readonly port: number) {}

  private fail(e: Error): void {
    const w = this.waiting;
    this.waiting = null;
    this.socket?.destroy();
    this.socket = null;
    this.chunks = [];
    this.have = 0;
    if (w !== null) {
      clearTimeout(w.timer);
      w.reject(e);
    }
  }

  private open(): Promise<Socket> {
    return new Promise((resolve, reject) => {
      const s = connect({ host: this.host, port: this.port, noDelay: true }, () => resolve(s));
      s.on("error", (e) => {
        this.fail(e);
        reject(e);
      });
      s.on("close", () => this.fail(new Error("connection closed")));
      s.on("data", (chunk: Buffer) => this.onData(chunk));
    });
  }

  private onData(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.have += chunk.byteLength;
    const buf = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks, this.have);
    this.chunks = [buf];
    const headEnd = buf.indexOf("\r\n\r\n");
    if (headEnd < 0) return;
    const head = buf.toString("latin1", 0, headEnd);
    const m = /\r\ncontent-length: *(\d+)/i.exec(head);
    if (m === null) return this.fail(new Error("response without Content-Length"));
    const total = headEnd + 4 + Number(m[1]);
    if (buf.byteLength < total) return;
    const rest = buf.subarray(total);
    this.chunks = rest.byteLength === 0 ? [] : [rest];
    this.have = rest.byteLength;
    const w = this.waiting;
    this.waiting = null;
    if (w !== null) {
      clearTimeout(w.timer);
      w.resolve({ status: Number(head.slice(9, 12)), body: buf.subarray(headEnd + 4, total) });
    }
  }

  close(): void {
    this.socket?.destroy();
    this.socket = null;
  }

  async post(path: string, body: string | Buffer, timeoutMs = REQUEST_TIMEOUT_MS): Promise<Reply> {
    this.socket ??= await this.open();
    const head = `POST ${path} HTTP/1.1\r\nHost: ${this.host}:${this.port}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n`;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => this.fail(new Error(`no answer to POST ${path} within ${timeoutMs} ms`)), timeoutMs);
      this.waiting = { resolve, reject, timer };
      if (typeof body === "string") this.socket!.write(head + body);
      else {
        this.socket!.write(head);
        this.socket!.write(body);
      }
    });
  }
}

interface BatchResult { results: ({ id: string; version: number } | { id: string; error: { code: string; message: string; retryable: boolean } })[]; failed: number }

/** Shoal's answer to one search, as dataset indices best first. */
interface SearchAnswer { results: { id: string; score: number }[] }

export class ShoalCluster {
  /** Client connections by client number: client c talks to node IDS[c % 3]. */
  private readonly conns = new Map<number, Http1>();

  private constructor(readonly c: ProcCluster) {}

  /** Founds the cluster (1 shard for the default collection) and creates the bench collection on it. */
  static async start(ds: Dataset, shards: number, ef: number, storage: "f32" | "f16" | "i8" = "f32"): Promise<ShoalCluster> {
    log(`shoal: starting 3 nodes…`);
    const c = await ProcCluster.start(IDS.length, 1, READY_DEADLINE_MS);
    abandonOnExit(c);
    const s = new ShoalCluster(c);
    try {
      await s.createCollection(ds, shards, ef, storage);
    } catch (e) {
      await c.destroy();
      throw e;
    }
    return s;
  }

  private async createCollection(ds: Dataset, shards: number, ef: number, storage: "f32" | "f16" | "i8"): Promise<void> {
    const spec = {
      name: COLLECTION, shards, replicationFactor: 3,
      vectors: { dim: ds.dim, metric: "cosine", storage, hnsw: { m: 16, efConstruction: 128, efSearch: ef } },
      payloadIndexes: { tag: "integer" },
    };
    // The collection keeps its shard count for the run: each shard is a graph every search walks, and a
    // size split (64 MiB by default) would cut a large collection's shards while it loads.
    const cfg = await this.c.api<{ version: number }>(1, "GET", "/v1/cluster/config");
    const set = await this.c.api(1, "PUT", "/v1/cluster/config", { baseVersion: cfg.body.version, settings: { splitSizeBytes: 0, vectorSplitSizeBytes: 0, splitRequestRate: 0 }, note: "bench:vectors: the collection keeps --shards shards" });
    if (set.status !== 200) throw new Error(`turning splits off: HTTP ${set.status} ${JSON.stringify(set.body)}`);
    // Just after readiness the placement driver may not count every node as healthy yet (409 not_enough_nodes).
    let created: number[] = [];
    await waitUntil("3 nodes the collection's shards can be placed on", async () => {
      const r = await this.c.api<{ shards: number[]; error?: { code: string } }>(1, "POST", "/v1/collections", spec);
      if (r.status === 200) created = r.body.shards;
      else if (r.status !== 409 || r.body.error?.code !== "not_enough_nodes") throw new Error(`creating the collection: HTTP ${r.status} ${JSON.stringify(r.body)}`);
      return r.status === 200;
    }, READY_DEADLINE_MS, 250);
    const ids = new Set(created);
    await waitUntil(`${shards} shards of ${COLLECTION} led, with 3 voters`, async () => {
      const map = await this.shardMap();
      const mine = map.filter((v) => ids.has(v.shard));
      return mine.length === ids.size && mine.every((v) => v.leader !== 0 && v.replicas.filter((x) => x.role === "voter").length === 3);
    }, READY_DEADLINE_MS, 100);
    log(`shoal: collection ${COLLECTION} created (size and load splits off): ${shards} shards x 3 replicas, dim ${ds.dim}, cosine, ${storage} storage, HNSW m 16 / efConstruction 128 / efSearch ${ef}`);
  }

  private async shardMap(): Promise<ShardView[]> {
    try {
      return (await this.c.api<{ shards: ShardView[] }>(1, "GET", "/v1/cluster/shards")).body.shards;
    } catch {
      return [];
    }
  }

  private conn(client: number): Http1 {
    let h = this.conns.get(client);
    if (h === undefined) {
      const id = IDS[client % IDS.length]!;
      h = new Http1(this.c.host(id), this.c.http.get(id)!);
      this.conns.set(client, h);
    }
    return h;
  }

  /** The records of indices [from, to) as a batch upsert body. */
  private static batchBody(ds: Dataset, indices: readonly number[]): string {
    return `{"records":[${indices.map((i) => `{"id":"${i}","payload":{"tag":${ds.tags[i]}},"vector":${vectorJson(ds, vectorOf(ds, i))}}`).join(",")}]}`;
  }

  /** Writes one batch through `client`'s node until every record is acknowledged (retrying what is retryable). */
  private async sendBatch(ds: Dataset, client: number, indices: number[], body: Buffer, acked: { n: number }): Promise<void> {
    let todo = indices;
    for (let attempt = 1; todo.length > 0; attempt++) {
      if (attempt > BATCH_TRIES) throw new Error(`records ${todo[0]}… still refused after ${BATCH_TRIES} tries`);
      let reply: Reply;
      try {
        reply = await this.conn(client).post(`/v1/collections/${COLLECTION}/records`, todo === indices ? body : ShoalCluster.batchBody(ds, todo));
      } catch (e) {
        log(`shoal: batch at ${todo[0]} through node ${IDS[client % 3]}: ${(e as Error).message}; trying again`);
        await sleep(100 * attempt);
        continue;
      }
      if (reply.status === 503 || reply.status === 504 || reply.status === 429) {
        if (attempt === 1 || attempt % 5 === 0) log(`shoal: batch at ${todo[0]}: HTTP ${reply.status} ${reply.body.toString().slice(0, 200)}; trying again`);
        await sleep(100 * attempt);
        continue;
      }
      if (reply.status !== 200) throw new Error(`batch upsert: HTTP ${reply.status} ${reply.body.toString().slice(0, 500)}`);
      const r = JSON.parse(reply.body.toString()) as BatchResult;
      const again: number[] = [];
      for (const x of r.results) {
        if (!("error" in x)) continue;
        if (!x.error.retryable) throw new Error(`record ${x.id} refused: ${x.error.code} ${x.error.message}`);
        again.push(Number(x.id));
      }
      acked.n += todo.length - again.length;
      todo = again;
    }
  }

  /** Loads the dataset, BATCHES_IN_FLIGHT batches at once over the three nodes; answers the seconds taken. */
  async ingest(ds: Dataset): Promise<number> {
    const batches = Math.ceil(ds.n / BATCH);
    const indicesOf = (b: number) => Array.from({ length: Math.min(BATCH, ds.n - b * BATCH) }, (_, j) => b * BATCH + j);
    // The bodies are encoded before the clock starts: the client shares the two cores with the nodes, and
    // its JSON encoding (~90 us a vector) is no part of what the ingest rate measures.
    const bodies = Array.from({ length: batches }, (_, b) => Buffer.from(ShoalCluster.batchBody(ds, indicesOf(b))));
    let next = 0;
    const acked = { n: 0 };
    const pids = IDS.map((id) => this.c.pid(id)!);
    const cpuBefore = pids.map(cpuSeconds);
    const clientBefore = process.cpuUsage();
    const started = performance.now();
    const progress = setInterval(() => {
      const s = (performance.now() - started) / 1000;
      log(`shoal: ingest ${acked.n.toLocaleString("en-US")} / ${ds.n.toLocaleString("en-US")} acknowledged, ${(acked.n / s).toFixed(0)} vectors/s`);
    }, PROGRESS_EVERY_MS);
    try {
      await Promise.all(Array.from({ length: BATCHES_IN_FLIGHT }, async (_, client) => {
        while (next < batches) {
          const b = next++;
          await this.sendBatch(ds, client, indicesOf(b), bodies[b]!, acked);
        }
      }));
    } finally {
      clearInterval(progress);
    }
    const s = (performance.now() - started) / 1000;
    const cpu = pids.map((p, i) => (cpuSeconds(p) - cpuBefore[i]!).toFixed(1));
    const client = process.cpuUsage(clientBefore);
    log(`shoal: ingest done: ${acked.n.toLocaleString("en-US")} acknowledged in ${s.toFixed(1)} s; CPU meanwhile: nodes ${cpu.join(" / ")} s, ` +
      `this client ${((client.user + client.system) / 1e6).toFixed(1)} s (bodies encoded beforehand)`);
    return s;
  }

  /**
   * Seconds until every node's indexes hold all `n` records with nothing pending
   * (`shoal_index_pending_ops` 0 and `shoal_index_records` n: each node holds a replica of every shard).
   */
  async caughtUp(n: number, deadlineMs: number): Promise<number> {
    const started = performance.now();
    let lastLog = started;
    await waitUntil("every node's indexes caught up", async () => {
      const m = await Promise.all(IDS.map((id) => indexGauges(this.c, id).catch(() => ({ pending: NaN, records: NaN }))));
      if (performance.now() - lastLog >= PROGRESS_EVERY_MS) {
        lastLog = performance.now();
        log(`shoal: indexing: pending ops per node ${m.map((x) => x.pending).join(" / ")}, records in the graphs ${m.map((x) => x.records).join(" / ")}`);
      }
      return m.every((x) => x.pending === 0 && x.records === n);
    }, deadlineMs, 250);
    return (performance.now() - started) / 1000;
  }

  /**
   * Waits (at most `maxMs`) until the nodes have been near idle for IDLE_FOR_S seconds in a row, so that
   * index saves do not run under the searches: an index worker saves a caught-up index after
   * SAVE_IDLE_MS (10 s) without changes, and answers no search while it saves.
   */
  async settle(maxMs: number): Promise<void> {
    const pids = IDS.map((id) => this.c.pid(id)!);
    let before = pids.reduce((s, p) => s + cpuSeconds(p), 0);
    let at = performance.now();
    let idleS = 0;
    try {
      await waitUntil("the nodes idle", () => {
        const now = pids.reduce((s, p) => s + cpuSeconds(p), 0);
        const t = performance.now();
        const cores = (now - before) / ((t - at) / 1000);
        before = now;
        at = t;
        idleS = cores < IDLE_CORES ? idleS + 1 : 0;
        return idleS >= IDLE_FOR_S;
      }, maxMs, 1000);
    } catch {
      log(`shoal: the nodes were still busy after ${maxMs / 1000} s; measuring anyway`);
    }
  }

  rss(): number[] {
    return IDS.map((id) => rssMiB(this.c.pid(id)!));
  }

  /** A search function: query q as client `client` sends it. */
  searcher(ds: Dataset, filter: FilterSpec, ef: number, consistency: "eventual" | "linearizable"): (q: number, client: number) => Promise<number[]> {
    const tail = `,"k":${K},"ef":${ef},"withPayload":false,"consistency":"${consistency}"${filter.shoal === null ? "" : `,"filter":${JSON.stringify(filter.shoal)}`}}`;
    const bodies = Array.from({ length: ds.q }, (_, q) => `{"vector":${vectorJson(ds, queryOf(ds, q))}${tail}`);
    return async (q, client) => {
      const r = await this.conn(client).post(`/v1/collections/${COLLECTION}/search`, bodies[q]!, 30_000);
      if (r.status !== 200) throw new Error(`search: HTTP ${r.status} ${r.body.toString().slice(0, 300)}`);
      return (JSON.parse(r.body.toString()) as SearchAnswer).results.map((x) => Number(x.id));
    };
  }

  async destroy(keepLogsAs: string | null): Promise<void> {
    for (const h of this.conns.values()) h.close();
    if (keepLogsAs !== null) log(`kept the nodes' logs: ${this.c.saveLogs(keepLogsAs).join(", ")}`);
    await this.c.destroy();
  }
}
