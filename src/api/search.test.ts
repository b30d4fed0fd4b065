/**
 * Vectors, batch upserts, search and count through the HTTP API (issue 14) on a 3-node in-process
 * cluster: a search right after an acknowledged write finds it (from any node), exact search is the
 * brute force truth, filters on indexed and unindexed keys, updates and deletes seen at once, the index
 * catching up in the background, and every refusal with its code; searches while a shard splits; and on
 * 4 nodes, searches that stay whole (or say what they miss) while shards lose their leader and move.
 */
import { after, test } from "node:test";
import assert from "node:assert/strict";
import type { FastifyInstance } from "fastify";
import { stopLeftovers, waitFor } from "../node/testing.js";
import { startApiCluster } from "./testing.js";
import { META_GROUP } from "../node/group.js";
import { Rng } from "../util/rng.js";
import { existsSync } from "node:fs";
import { join } from "node:path";

after(stopLeftovers);

const DIM = 8;

function vectorOf(rng: Rng): number[] {
  return Array.from({ length: DIM }, () => Math.round((rng.float() * 2 - 1) * 1000) / 1000);
}

function cosine(a: number[], b: number[]): number {
  let dot = 0;
  let na = 0;
  let nb = 0;
  for (let i = 0; i < a.length; i++) {
    dot += a[i]! * b[i]!;
    na += a[i]! * a[i]!;
    nb += b[i]! * b[i]!;
  }
  return dot / Math.sqrt(na * nb);
}

type Hit = { id: string; score: number; payload?: { color: string; n: number }; vector?: number[] };
type Answer = { results: Hit[]; shards: { asked: number; answered: number; failed: unknown[] }; unindexedKeys: string[]; exhaustive: boolean; missing: unknown[] };

async function post(app: FastifyInstance, url: string, payload: unknown): Promise<{ status: number; body: unknown }> {
  const r = await app.inject({ method: "POST", url, payload: payload as object });
  return { status: r.statusCode, body: r.json() };
}

test("a collection with vectors takes batches, answers searches and counts with filters, and sees every acknowledged write at once", async () => {
  const api = await startApiCluster(3, 1);
  try {
    const [one, two, three] = [1, 2, 3].map((id) => api.apps.get(id)!);
    await api.registered();
    const created = await post(two!, "/v1/collections", { name: "docs", shards: 3, vectors: { dim: DIM, metric: "cosine" }, payloadIndexes: { color: "keyword" } });
    assert.equal(created.status, 200, JSON.stringify(created.body));

    const rng = new Rng(42);
    const vectors = new Map<string, number[]>();
    const records = Array.from({ length: 300 }, (_, i) => {
      const vector = vectorOf(rng);
      vectors.set(`r${i}`, vector);
      return { id: `r${i}`, payload: { color: i % 10 === 0 ? "red" : "blue", n: i }, vector };
    });
    const batch = await post(one!, "/v1/collections/docs/records", { records });
    assert.equal(batch.status, 200, JSON.stringify(batch.body));
    const b = batch.body as { results: { id: string; version?: number }[]; failed: number };
    assert.equal(b.failed, 0, JSON.stringify(b.results.find((r) => r.version === undefined)));
    assert.equal(b.results.length, 300);
    assert.ok(b.results.every((r, i) => r.id === `r${i}` && typeof r.version === "number"), "one version per record, in order");

    // At once, from another node: the index may be behind; the search is not.
    const own = await post(three!, "/v1/collections/docs/search", { vector: vectors.get("r5"), k: 3 });
    assert.equal(own.status, 200, JSON.stringify(own.body));
    const a = own.body as Answer;
    assert.equal(a.results[0]!.id, "r5");
    assert.ok(Math.abs(a.results[0]!.score - 1) < 1e-6, `cosine similarity with itself: ${a.results[0]!.score}`);
    assert.deepEqual(a.results[0]!.payload, { color: "blue", n: 5 });
    assert.deepEqual([a.shards.asked, a.shards.answered, a.shards.failed.length], [3, 3, 0]);

    // Exact search is the brute-force truth.
    const query = vectorOf(rng);
    const truth = [...vectors].map(([id, v]) => ({ id, score: cosine(query, v) })).sort((x, y) => y.score - x.score).slice(0, 10);
    const exact = (await post(one!, "/v1/collections/docs/search", { vector: query, k: 10, exact: true, withPayload: false })).body as Answer;
    assert.deepEqual(exact.results.map((h) => h.id), truth.map((t) => t.id));
    for (const [i, h] of exact.results.entries()) assert.ok(Math.abs(h.score - truth[i]!.score) < 1e-5);
    assert.equal(exact.results[0]!.payload, undefined, "withPayload: false");

    // Filters: indexed (answered from the payload index) and unindexed (checked on payloads).
    const red = (await post(two!, "/v1/collections/docs/search", { vector: query, k: 5, filter: { must: [{ key: "color", match: "red" }] } })).body as Answer;
    assert.equal(red.results.length, 5);
    assert.ok(red.results.every((h) => h.payload!.color === "red"));
    assert.deepEqual(red.unindexedKeys, []);
    const redTruth = [...vectors].filter(([id]) => Number(id.slice(1)) % 10 === 0).map(([id, v]) => ({ id, score: cosine(query, v) })).sort((x, y) => y.score - x.score);
    assert.deepEqual(red.results.map((h) => h.id), redTruth.slice(0, 5).map((t) => t.id));
    const low = (await post(two!, "/v1/collections/docs/search", { vector: query, k: 5, filter: { must: [{ key: "n", range: { lt: 20 } }] } })).body as Answer;
    assert.deepEqual(low.unindexedKeys, ["n"]);
    assert.equal(low.results.length, 5);
    assert.ok(low.results.every((h) => h.payload!.n < 20));
    assert.equal(low.exhaustive, true);
    const count = async (filter: unknown) => (await post(three!, "/v1/collections/docs/count", filter === undefined ? {} : { filter })).body as { count: number; unindexedKeys: string[] };
    assert.equal((await count(undefined)).count, 300);
    assert.equal((await count({ must: [{ key: "color", match: "red" }] })).count, 30);
    assert.deepEqual(await count({ must: [{ key: "n", range: { gte: 250 } }] }).then((c) => [c.count, c.unindexedKeys]), [50, ["n"]]);

    // An update moves a record at once; a delete hides it at once.
    const moved = vectorOf(rng);
    assert.equal((await one!.inject({ method: "PUT", url: "/v1/collections/docs/records/r7", payload: { payload: { color: "green", n: 7 }, vector: moved } })).statusCode, 200);
    const m = (await post(two!, "/v1/collections/docs/search", { vector: moved, k: 1, withVector: true })).body as Answer;
    assert.equal(m.results[0]!.id, "r7");
    assert.equal(m.results[0]!.payload!.color, "green");
    assert.deepEqual(m.results[0]!.vector!.map((x) => Math.round(x * 1000) / 1000), moved);
    assert.equal((await one!.inject({ method: "DELETE", url: "/v1/collections/docs/records/r7" })).statusCode, 200);
    const gone = (await post(three!, "/v1/collections/docs/search", { vector: moved, k: 1 })).body as Answer;
    assert.notEqual(gone.results[0]!.id, "r7");
    assert.equal((await count(undefined)).count, 299);
    // Searches, counts and scans carry a session token: every shard that answered, at a version no older
    // than the delete just acknowledged (a later session read is held to what they showed), and the metadata's pair.
    const deleted = (await one!.inject({ method: "DELETE", url: "/v1/collections/docs/records/r8" })).headers["shoal-session"] as string;
    const [delShard, delVersion] = deleted.split(",")[0]!.split(":").map(Number) as [number, number];
    const docShards = (api.c.nodes.get(1)!.metaState().collections.get("docs")!.shards as number[]).slice().sort((x, y) => x - y);
    const tokenOf = (header: unknown) => new Map(String(header).split(",").map((p) => p.split(":").map(Number) as [number, number]));
    for (const [url, payload] of [["/v1/collections/docs/search", { vector: query, k: 3 }], ["/v1/collections/docs/count", {}], ["/v1/collections/docs/records/scan", { limit: 5 }]] as const) {
      const r = await three!.inject({ method: "POST", url, payload });
      assert.equal(r.statusCode, 200, r.body);
      const token = tokenOf(r.headers["shoal-session"]);
      assert.deepEqual(docShards.filter((x) => !token.has(x)), [], `${url}: a pair for every shard`);
      assert.ok(token.get(delShard)! >= delVersion, `${url}: shard ${delShard} at ${token.get(delShard)}, the delete at ${delVersion}`);
      assert.ok(token.has(META_GROUP), `${url}: the metadata's pair`);
      assert.equal((r.json() as { session?: unknown }).session, undefined, "the token is not in the body");
    }
    const scanned = await two!.inject({ url: "/v1/collections/docs/records?limit=5" });
    assert.deepEqual(docShards.filter((x) => !tokenOf(scanned.headers["shoal-session"]).has(x)), [], "a scan page: a pair for every shard read");
    const got = await one!.inject({ url: "/v1/collections/docs/records/r9?withVector=true" });
    assert.deepEqual((got.json() as { vector: number[] }).vector.map((x) => Math.round(x * 1000) / 1000), vectors.get("r9"));

    // Eventual searches are answered by the gateway's own replicas (every node holds one of each shard here): no hop.
    const served = () => [1, 2, 3].map((id) => api.indexes.get(id)!.searchesServed);
    const before = served();
    for (let i = 0; i < 5; i++) assert.equal((await post(one!, "/v1/collections/docs/search", { vector: query, k: 3, consistency: "eventual" })).status, 200);
    assert.deepEqual(served().map((n, i) => n - before[i]!), [15, 0, 0], "three shards, five searches, all on node 1");

    // A batch of searches answers in order.
    const many = (await post(one!, "/v1/collections/docs/search/batch", { searches: [{ vector: vectors.get("r1"), k: 1 }, { vector: vectors.get("r2"), k: 1 }] })).body as { answers: Answer[] };
    assert.deepEqual(many.answers.map((x) => x.results[0]!.id), ["r1", "r2"]);

    // The indexes catch up in the background, on every node.
    await waitFor("every replica's index caught up", () => [...api.indexes.values()].every((x) => x.stats().pendingOps === 0 && x.stats().records > 0), 20_000);
    assert.equal([...api.indexes.values()].reduce((s, x) => s + x.stats().records, 0), 298 * 3, "every record on each of its three replicas");
    const metrics = (await one!.inject({ url: "/metrics" })).body;
    assert.match(metrics, /^shoal_index_pending_ops\{node="1"\} 0$/m);

    const refused = async (url: string, payload: unknown, status: number, code: string, field?: string) => {
      const r = await post(two!, url, payload);
      assert.equal(r.status, status, `${url}: ${JSON.stringify(r.body)}`);
      const e = (r.body as { error: { code: string; field?: string } }).error;
      assert.equal(e.code, code);
      if (field !== undefined) assert.equal(e.field, field);
    };
    await refused("/v1/collections/docs/search", { vector: [1, 2, 3] }, 400, "invalid_vector", "vector");
    await refused("/v1/collections/docs/search", { vector: query, filter: { must: [{ key: "color", match: null }] } }, 400, "invalid_filter", "filter.must[0].match");
    await refused("/v1/collections/docs/search", { vector: query, k: 1001 }, 400, "bad_request");
    await refused("/v1/collections/nope/search", { vector: query }, 404, "collection_not_found");
    await refused("/v1/collections/docs/records", { records: [{ id: "x", payload: 1, vector: [0, 0, 0, 0, 0, 0, 0, 0] }] }, 400, "invalid_vector", "records[0].vector");
    await refused("/v1/collections/docs/records", { records: [{ id: "x", payload: 1 }] }, 400, "invalid_vector", "records[0].vector");
    await refused("/v1/collections/docs/records", { records: Array.from({ length: 1001 }, (_, i) => ({ id: `x${i}`, payload: 1, vector: query })) }, 413, "batch_too_large");
    await refused("/v1/collections/default/records", { records: [{ id: "x", payload: 1, vector: query }] }, 400, "invalid_vector", "records[0].vector");
    await refused("/v1/collections/default/search", { vector: query }, 400, "invalid_vector");
    assert.equal((await count(undefined)).count, 298, "nothing refused was written");
  } finally {
    await api.stop();
  }
});

test("dropping a collection while it is searched: searches answer whole or 404, its replicas and their indexes go, and the name is free again", async () => {
  const api = await startApiCluster(3, 1);
  try {
    const [one, two] = [1, 2].map((id) => api.apps.get(id)!);
    const node1 = api.c.nodes.get(1)!;
    await api.registered();
    assert.equal((await post(one!, "/v1/collections", { name: "temp", shards: 2, vectors: { dim: DIM, metric: "l2" } })).status, 200);
    const rng = new Rng(9);
    const records = Array.from({ length: 100 }, (_, i) => ({ id: `t${i}`, payload: i, vector: vectorOf(rng) }));
    assert.equal(((await post(one!, "/v1/collections/temp/records", { records })).body as { failed: number }).failed, 0);
    const shards = node1.metaState().collections.get("temp")!.shards;
    await waitFor("the indexes opened", () => [...api.indexes.values()].every((x) => x.stats().indexes === 2));

    // Searches run while the collection is dropped: each answers all 10 neighbours, or 404 once it is gone.
    let stop = false;
    const seen = new Map<number, number>();
    const searching = (async () => {
      while (!stop) {
        // Linearizable: an eventual search of a replica that has not applied the batch yet may rightly find less.
        const r = await post(two!, "/v1/collections/temp/search", { vector: vectorOf(rng), k: 10 });
        seen.set(r.status, (seen.get(r.status) ?? 0) + 1);
        if (r.status === 200) assert.equal((r.body as Answer).results.length, 10, `never silently fewer: ${JSON.stringify(r.body)}`);
        else assert.equal((r.body as { error: { code: string } }).error.code, "collection_not_found", JSON.stringify(r.body));
      }
    })();
    await waitFor("a few searches answered", () => (seen.get(200) ?? 0) >= 3);
    const dropped = await one!.inject({ method: "DELETE", url: "/v1/collections/temp" });
    assert.equal(dropped.statusCode, 200, dropped.body);
    assert.deepEqual(dropped.json(), { dropped: "temp", shards: 2 });
    await waitFor("searches see it gone", () => (seen.get(404) ?? 0) >= 3);
    stop = true;
    await searching;
    assert.deepEqual([...seen.keys()].sort(), [200, 404]);

    await waitFor("every replica and index of it is gone", () =>
      [...api.c.nodes.values()].every((n) => shards.every((id) => !n.hosts(id))) && [...api.indexes.values()].every((x) => x.stats().indexes === 0));
    for (const dir of api.c.dirs.values()) for (const id of shards) assert.equal(existsSync(join(dir, "indexes", String(id))), false, `shard ${id}'s saved index removed`);
    assert.equal((await one!.inject({ method: "DELETE", url: "/v1/collections/temp" })).statusCode, 404);
    assert.equal((await one!.inject({ method: "DELETE", url: "/v1/collections/default" })).statusCode, 409);
    assert.equal((await post(two!, "/v1/collections", { name: "temp", shards: 1, vectors: { dim: DIM, metric: "l2" } })).status, 200, "the name is free again");
    const fresh = (await post(two!, "/v1/collections/temp/count", {})).body as { count: number };
    assert.equal(fresh.count, 0, "a new collection, not the old one's records");
  } finally {
    await api.stop();
  }
});

test("a search while its shard splits returns every neighbour, from both shards once the split is known; the split's child gets an index", async () => {
  const api = await startApiCluster(3, 1);
  try {
    const [one, two] = [1, 2].map((id) => api.apps.get(id)!);
    const node1 = api.c.nodes.get(1)!;
    await api.registered();
    assert.equal((await post(one!, "/v1/collections", { name: "grow", shards: 1, vectors: { dim: DIM, metric: "dot" } })).status, 200);
    const rng = new Rng(17);
    const records = Array.from({ length: 60 }, (_, i) => ({ id: `g${i}`, payload: i, vector: vectorOf(rng) }));
    assert.equal(((await post(one!, "/v1/collections/grow/records", { records })).body as { failed: number }).failed, 0);
    const shard = node1.metaState().collections.get("grow")!.shards[0]!;

    // k = every record: a search that misses a part of the hash space shows it at once.
    let stop = false;
    let answered = 0;
    let asked2 = 0;
    const searching = (async () => {
      while (!stop) {
        const r = await post(two!, "/v1/collections/grow/search", { vector: vectorOf(rng), k: 100, exact: answered % 2 === 0, withPayload: false });
        assert.equal(r.status, 200, JSON.stringify(r.body));
        const a = r.body as Answer;
        assert.equal(a.results.length, 60, "never silently fewer");
        assert.equal(new Set(a.results.map((h) => h.id)).size, 60, "never twice");
        answered++;
        if (a.shards.asked === 2) asked2++;
      }
    })();
    await waitFor("searches answered", () => answered >= 3);
    const split = await one!.inject({ method: "POST", url: `/v1/cluster/shards/${shard}/split` });
    assert.equal(split.statusCode, 200, split.body);
    const child = (split.json() as { child: number }).child;
    await waitFor("searches ask both shards", () => asked2 >= 3, 20_000);
    stop = true;
    await searching;
    await waitFor("the child's replicas are indexed", () => [...api.indexes.values()].every((x) => x.stats().indexes === 2 && x.stats().pendingOps === 0 && x.stats().records === 60));
    assert.ok(node1.metaState().collections.get("grow")!.shards.includes(child));
  } finally {
    await api.stop();
  }
});

test("a shard that cannot be reached: the search fails, or with allowPartial answers the rest and names the shard and range missing", async () => {
  const api = await startApiCluster(3, 1);
  try {
    const one = api.apps.get(1)!;
    const node1 = api.c.nodes.get(1)!;
    await api.registered();
    assert.equal((await post(one, "/v1/collections", { name: "solo", shards: 3, replicationFactor: 1, vectors: { dim: DIM, metric: "cosine" } })).status, 200);
    const rng = new Rng(23);
    const records = Array.from({ length: 90 }, (_, i) => ({ id: `s${i}`, payload: i, vector: vectorOf(rng) }));
    assert.equal(((await post(one, "/v1/collections/solo/records", { records })).body as { failed: number }).failed, 0);
    const meta = node1.metaState();
    const far = meta.collections.get("solo")!.shards.find((id) => meta.shards.get(id)!.replicas[0]!.node === 3);
    assert.ok(far !== undefined, "one shard's only replica is on node 3");
    const query = vectorOf(rng);
    const wholeAnswer = await post(one, "/v1/collections/solo/search", { vector: query, k: 90, exact: true });
    assert.equal(wholeAnswer.status, 200, JSON.stringify(wholeAnswer.body));
    const whole = wholeAnswer.body as Answer;
    assert.equal(whole.results.length, 90);

    // Node 1 loses node 3.
    assert.equal((await one.inject({ method: "POST", url: "/v1/test/faults", payload: { cut: [3] } })).statusCode, 200);
    const failed = await post(one, "/v1/collections/solo/search", { vector: query, k: 90, exact: true, timeoutMs: 1500 });
    assert.ok(failed.status === 503 || failed.status === 504, JSON.stringify(failed.body));
    const partial = await post(one, "/v1/collections/solo/search", { vector: query, k: 90, exact: true, timeoutMs: 1500, allowPartial: true });
    assert.equal(partial.status, 200, JSON.stringify(partial.body));
    const p = partial.body as Answer & { missing: { range: { start: number; end: number }; shards: number[] }[] };
    assert.deepEqual([p.shards.asked, p.shards.answered], [3, 2]);
    assert.deepEqual((p.shards.failed as { shard: number }[]).map((f) => f.shard), [far]);
    assert.deepEqual(p.missing, [{ range: meta.shards.get(far)!.range, shards: [far] }]);
    const onFar = new Set(whole.results.filter((h) => !p.results.some((x) => x.id === h.id)).map((h) => h.id));
    assert.equal(p.results.length + onFar.size, 90, "what is missing is exactly the far shard's part");
    await one.inject({ method: "POST", url: "/v1/test/faults", payload: { cut: [] } });
  } finally {
    await api.stop();
  }
});

test("scans and deletes by filter, across shards and pages, in a collection without vectors (its payload index answers counts)", async () => {
  const api = await startApiCluster(3, 1);
  try {
    const [one, two] = [1, 2].map((id) => api.apps.get(id)!);
    await api.registered();
    assert.equal((await post(one!, "/v1/collections", { name: "plain", shards: 3, payloadIndexes: { kind: "keyword" } })).status, 200);
    for (let from = 0; from < 2500; from += 1000) {
      const records = Array.from({ length: Math.min(1000, 2500 - from) }, (_, j) => ({ id: `k${String(from + j).padStart(4, "0")}`, payload: { kind: (from + j) % 3 === 0 ? "a" : "b", n: from + j } }));
      assert.equal(((await post(one!, "/v1/collections/plain/records", { records })).body as { failed: number }).failed, 0);
    }
    type Page = { records: { id: string; payload: { kind: string; n: number } }[]; cursor: string | null };
    const scanAll = async (filter: unknown, limit: number) => {
      const ids: string[] = [];
      let cursor: string | null | undefined;
      for (let pages = 0; cursor !== null; pages++) {
        assert.ok(pages < 1000, "a bounded number of pages");
        const r = await post(two!, "/v1/collections/plain/records/scan", { filter, limit, ...(cursor !== undefined ? { cursor } : {}) });
        assert.equal(r.status, 200, JSON.stringify(r.body));
        const page = r.body as Page;
        assert.ok(page.records.length <= limit);
        ids.push(...page.records.map((x) => x.id));
        cursor = page.cursor;
      }
      return ids;
    };
    const a = await scanAll({ must: [{ key: "kind", match: "a" }] }, 100);
    const expected = Array.from({ length: 2500 }, (_, i) => i).filter((i) => i % 3 === 0).map((i) => `k${String(i).padStart(4, "0")}`);
    assert.deepEqual(a, expected, "every match once, in id order");
    assert.deepEqual(await scanAll({ must: [{ key: "n", range: { gte: 2498 } }] }, 1), ["k2498", "k2499"]);
    const count = async (filter?: unknown) => ((await post(one!, "/v1/collections/plain/count", filter === undefined ? {} : { filter })).body as { count: number; unindexedKeys: string[] });
    const indexed = await count({ must: [{ key: "kind", match: "a" }] });
    assert.deepEqual([indexed.count, indexed.unindexedKeys], [834, []], "from the payload index");

    const bad = await post(one!, "/v1/collections/plain/records/delete", {});
    assert.equal(bad.status, 400);
    const first = await post(one!, "/v1/collections/plain/records/delete", { filter: { must: [{ key: "kind", match: "a" }] }, max: 500 });
    assert.equal(first.status, 200, JSON.stringify(first.body));
    assert.deepEqual([(first.body as { deleted: number }).deleted, (first.body as { more: boolean }).more], [500, true]);
    const rest = (await post(two!, "/v1/collections/plain/records/delete", { filter: { must: [{ key: "kind", match: "a" }] } })).body as { deleted: number; more: boolean };
    assert.deepEqual([rest.deleted, rest.more], [334, false]);
    assert.equal((await count({ must: [{ key: "kind", match: "a" }] })).count, 0);
    assert.equal((await count()).count, 1666);
    assert.equal((await count({ must: [{ key: "n", range: { lt: 3 } }] })).count, 2, "k0001 and k0002 are left");
  } finally {
    await api.stop();
  }
});

test("a collection with a TTL: records expire after their last write (hidden at once from reads, scans, searches and counts), and the leaders delete them", async () => {
  const api = await startApiCluster(3, 1);
  try {
    const [one, two] = [1, 2].map((id) => api.apps.get(id)!);
    const node1 = api.c.nodes.get(1)!;
    await api.registered();
    assert.equal((await post(one!, "/v1/collections", { name: "brief", shards: 2, ttlMs: 3000, vectors: { dim: DIM, metric: "l2" } })).status, 200);
    const rng = new Rng(31);
    const records = Array.from({ length: 40 }, (_, i) => ({ id: `b${i}`, payload: i, vector: vectorOf(rng) }));
    const startedMs = Date.now();
    assert.equal(((await post(one!, "/v1/collections/brief/records", { records })).body as { failed: number }).failed, 0);
    const got = await two!.inject({ url: "/v1/collections/brief/records/b1" });
    if (Date.now() - startedMs < 2900) {
      assert.equal(got.statusCode, 200);
      const expires = (got.json() as { expiresAtMs: number }).expiresAtMs;
      assert.ok(expires >= startedMs + 3000 && expires <= Date.now() + 3000, `expires ${expires - startedMs} ms after the write`);
    }
    await waitFor("b1 expired", async () => (await two!.inject({ url: "/v1/collections/brief/records/b1" })).statusCode === 404, 10_000);
    // Written again after it expired: a new life (3 s: the rest of the test runs within it).
    assert.equal((await one!.inject({ method: "PUT", url: "/v1/collections/brief/records/b1", payload: { payload: "again", vector: records[1]!.vector } })).statusCode, 200);
    await waitFor("the others expired", async () => ((await post(two!, "/v1/collections/brief/count", {})).body as { count: number }).count === 1, 10_000);
    const found = (await post(two!, "/v1/collections/brief/search", { vector: records[2]!.vector, k: 10 })).body as Answer;
    assert.deepEqual(found.results.map((h) => h.id), ["b1"], "only the record written again");
    const scanned = (await two!.inject({ url: "/v1/collections/brief/records?limit=100" })).json() as { records: { id: string }[] };
    assert.deepEqual(scanned.records.map((r) => r.id), ["b1"]);
    // The leaders delete what expired (a pass now rather than waiting for the timer), never the new b1.
    let deleted = 0;
    for (const s of api.sweepers.values()) deleted += await s.pass();
    assert.equal(deleted, 39);
    await waitFor("every replica's store and index hold b1 alone", () =>
      [...api.c.nodes.values()].every((n) => node1.metaState().collections.get("brief")!.shards.every((g) => !n.hosts(g) || n.scan(g, 100).every(([id]) => id === "b1"))) &&
      [...api.indexes.values()].every((x) => x.stats().records === 1 && x.stats().pendingOps === 0));
    assert.equal((await two!.inject({ url: "/v1/collections/brief/records/b1" })).statusCode, 200);
  } finally {
    await api.stop();
  }
});

test("searches while a shard's leader changes, is cut off, and its replicas move: each answer is whole, or refused, or names what it misses", { timeout: 120_000 }, async (t) => {
  const api = await startApiCluster(4, 1, { placement: true });
  try {
    await api.registered();
    const one = api.apps.get(1)!;
    const node1 = api.c.nodes.get(1)!;
    // The placement driver runs the operators asked below; its own balancing, merges and splits are off.
    const baseVersion = ((await one.inject({ url: "/v1/cluster/config" })).json() as { version: number }).version;
    const settings = { replicaTolerance: 0.99, leaderTolerance: 0.99, mergeBelowRecords: 0, splitRequestRate: 1e9 };
    const set = await one.inject({ method: "PUT", url: "/v1/cluster/config", payload: { baseVersion, settings } });
    assert.equal(set.statusCode, 200, set.body);
    assert.equal((await post(one, "/v1/collections", { name: "churn", shards: 2, replicationFactor: 3, vectors: { dim: DIM, metric: "cosine" } })).status, 200);
    const rng = new Rng(41);
    const n = 120;
    const records = Array.from({ length: n }, (_, i) => ({ id: `c${i}`, payload: i, vector: vectorOf(rng) }));
    assert.equal(((await post(one, "/v1/collections/churn/records", { records })).body as { failed: number }).failed, 0);
    const query = vectorOf(rng);
    const meta = () => node1.metaState();
    const shards = meta().collections.get("churn")!.shards;
    // An eventual search answers from node 2's own replicas, which may still be applying the batch a quorum
    // acknowledged: the churn starts once they hold it all (nothing is written after).
    await waitFor("node 2's replicas hold every record", async () => {
      const r = await post(api.apps.get(2)!, "/v1/collections/churn/search", { vector: query, k: n, exact: true, consistency: "eventual" });
      return r.status === 200 && (r.body as Answer).results.length === n;
    }, 15_000);

    // Searches from node 1 (linearizable: each shard's leader) and node 2 (eventual: its own replicas) all along.
    let churning = true;
    const seen = { whole: 0, partial: 0, refused: 0 };
    // A searcher's failed assertion ends the churn at once (it is thrown again after the churn's finally).
    const searcher = async (app: FastifyInstance, consistency: string) => {
      try {
        await searchWhileChurning(app, consistency);
      } catch (e) {
        churning = false;
        throw e;
      }
    };
    const searchWhileChurning = async (app: FastifyInstance, consistency: string) => {
      while (churning) {
        const r = await post(app, "/v1/collections/churn/search", { vector: query, k: n, exact: true, consistency, timeoutMs: 2000, allowPartial: true });
        if (r.status !== 200) {
          assert.ok(r.status === 503 || r.status === 504, JSON.stringify(r.body));
          seen.refused++;
          await new Promise((resolve) => setTimeout(resolve, 20)); // as a client would back off, not spin beside the elections
          continue;
        }
        const a = r.body as Omit<Answer, "missing"> & { missing: { shards: number[] }[] };
        if (a.missing.length === 0) {
          assert.equal(new Set(a.results.map((h) => h.id)).size, n, `a whole answer has every record once (${consistency})`);
          seen.whole++;
        } else {
          assert.ok(a.results.length < n && a.missing.every((m) => m.shards.length > 0), JSON.stringify(a.missing));
          seen.partial++;
        }
      }
    };
    const searches = [searcher(one, "linearizable"), searcher(api.apps.get(2)!, "eventual")];
    // The node that leads the shard by its own account (a node cut off may still think so, until it steps down).
    const leaders = (shard: number) => [...api.c.nodes.values()].filter((nd) => nd.hosts(shard) && nd.leaderOf(shard) === nd.id).map((nd) => nd.id);
    const leaderOf = (shard: number) => leaders(shard)[0] ?? 0;
    const cut = async (id: number, peers: number[]) => {
      assert.equal((await api.apps.get(id)!.inject({ method: "POST", url: "/v1/test/faults", payload: { cut: peers } })).statusCode, 200);
    };
    try {
      for (const shard of shards) {
        // Leadership to a voter other than the searching gateways, then that node cut off from the rest.
        const voters = () => meta().shards.get(shard)!.replicas.filter((r) => r.role === "voter").map((r) => r.node);
        const target = voters().find((v) => v > 2)!;
        if (leaderOf(shard) !== target) {
          const t = await post(one, `/v1/cluster/shards/${shard}/transfer-leader?waitMs=5000`, { to: target });
          assert.equal(t.status, 200, JSON.stringify(t.body));
          await waitFor(`shard ${shard} led by node ${target}`, () => leaderOf(shard) === target, 15_000).catch(async (e: Error) => {
            throw new Error(`${e.message}: leaders ${leaders(shard)}, voters ${voters()}, operators ${JSON.stringify((await one.inject({ url: "/v1/cluster/operators" })).json())}`);
          });
        }
        const others = [1, 2, 3, 4].filter((id) => id !== target);
        await cut(target, others);
        for (const id of others) await cut(id, [target]);
        await waitFor(`shard ${shard} led again without node ${target}`, () => leaders(shard).some((id) => id !== target), 15_000);
        for (const id of [1, 2, 3, 4]) await cut(id, []);
        await waitFor(`shard ${shard} led by one node`, () => leaders(shard).length === 1, 15_000);
        // A replica moves to the node without one, from a voter that does not lead.
        const from = voters().find((v) => v !== leaderOf(shard))!;
        const to = [1, 2, 3, 4].find((id) => !meta().shards.get(shard)!.replicas.some((r) => r.node === id))!;
        const m = await post(one, `/v1/cluster/shards/${shard}/move?waitMs=10000`, { from, to });
        assert.equal(m.status, 200, JSON.stringify(m.body));
        await waitFor(`shard ${shard} moved from node ${from} to node ${to}`, () => {
          const voting = voters();
          return voting.includes(to) && !voting.includes(from) && meta().shards.get(shard)!.replicas.length === 3;
        }, 30_000);
      }
    } finally {
      churning = false;
      await Promise.all(searches);
    }
    t.diagnostic(`answers during the churn: ${JSON.stringify(seen)}`);
    assert.ok(seen.whole > 0, `whole answers during the churn: ${JSON.stringify(seen)}`);
    await waitFor("a whole linearizable answer after the churn", async () => {
      const r = await post(one, "/v1/collections/churn/search", { vector: query, k: n, exact: true, consistency: "linearizable" });
      return r.status === 200 && (r.body as Answer).results.length === n;
    }, 15_000);
  } finally {
    await api.stop();
  }
});
