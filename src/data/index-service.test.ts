/**
 * A node's indexes across restarts of the index service (issue 14): saved on stop, loaded on start and
 * caught up from the records with what changed meanwhile; a corrupt saved index is rebuilt from the
 * records, never loaded (usearch would abort the process on a malformed file).
 */
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { stopLeftovers, waitFor } from "../node/testing.js";
import { startApiCluster } from "../api/testing.js";
import { IndexService } from "./index-service.js";
import { vectorBytes } from "../node/records.js";

after(stopLeftovers);

const v = (...xs: number[]) => vectorBytes(new Float32Array(xs));

test("indexes are saved on stop, loaded and caught up on start, and rebuilt from the records when a saved file is corrupt", async () => {
  const api = await startApiCluster(1, 1);
  const services: IndexService[] = [];
  try {
    const node = api.c.nodes.get(1)!;
    const gateway = api.gateways.get(1)!;
    const app = api.apps.get(1)!;
    await api.registered();
    const created = await app.inject({ method: "POST", url: "/v1/collections", payload: { name: "pts", shards: 2, replicationFactor: 1, vectors: { dim: 3, metric: "l2" }, payloadIndexes: { side: "keyword" } } });
    assert.equal(created.statusCode, 200, created.body);
    const items = Array.from({ length: 200 }, (_, i) => ({ key: `p${i}`, payload: { side: i % 2 === 0 ? "left" : "right" }, vector: v(i, 0, 0) }));
    assert.ok((await gateway.putMany(items, "pts")).every((o) => o.ok));
    let index = api.indexes.get(1)!;
    await waitFor("caught up", () => index.stats().pendingOps === 0 && index.stats().records === 200);
    const shards = node.metaState().collections.get("pts")!.shards;
    const dir = join(api.c.dirs.get(1)!, "indexes");

    type Answer = { results: { id: string; score: number }[] };
    const nearest = async (x: number, filter?: unknown) => ((await app.inject({ method: "POST", url: "/v1/collections/pts/search",
      payload: { vector: [x, 0, 0], k: 1, withPayload: false, ...(filter !== undefined ? { filter } : {}) } })).json() as Answer).results[0]!;
    const count = async (filter?: unknown) => ((await app.inject({ method: "POST", url: "/v1/collections/pts/count", payload: filter === undefined ? {} : { filter } })).json() as { count: number }).count;

    await index.stop();
    for (const id of shards) assert.ok(existsSync(join(dir, String(id), "state.msgpack")), `shard ${id}'s index saved on stop`);
    // Written while no index service runs: found on start by walking the records.
    assert.equal((await gateway.put("p500", { side: "left" }, {}, "pts", v(500, 0, 0))).ok, true);
    assert.equal((await gateway.put("p3", { side: "left" }, {}, "pts", v(-50, 0, 0))).ok, true);
    assert.equal((await gateway.delete("p100", {}, "pts")).ok, true);

    index = new IndexService(node, gateway, { dir });
    services.push(index);
    index.start();
    await waitFor("opened and caught up", () => index.stats().indexes === 2 && index.stats().pendingOps === 0 && index.stats().records === 200);
    assert.deepEqual(index.opened, { loaded: 2, rebuilt: 0 }, "both loaded from their files");
    assert.deepEqual(await nearest(499), { id: "p500", score: 1 });
    assert.deepEqual(await nearest(-60), { id: "p3", score: 10 }, "p3 at its new place");
    assert.equal((await nearest(100)).id === "p100", false, "p100 deleted");
    assert.equal(await count({ must: [{ key: "side", match: "left" }] }), 101, "100 even, p500 and p3 left, p100 gone");

    // A corrupt graph file: rebuilt from the records, not loaded.
    await index.stop();
    services.pop();
    const graph = join(dir, String(shards[0]), "graph.usearch");
    writeFileSync(graph, Buffer.alloc(64, 7));
    index = new IndexService(node, gateway, { dir });
    services.push(index);
    index.start();
    await waitFor("opened and caught up again", () => index.stats().indexes === 2 && index.stats().pendingOps === 0 && index.stats().records === 200);
    assert.deepEqual(index.opened, { loaded: 1, rebuilt: 1 });
    assert.deepEqual(await nearest(499), { id: "p500", score: 1 });
    assert.equal(await count({ must: [{ key: "side", match: "right" }] }), 99);
    assert.ok(readdirSync(dir).every((f) => !f.endsWith(".saving")), "no half-written save left");
  } finally {
    for (const s of services) await s.stop();
    await api.stop();
  }
});

test("a node's indexes are spread over its index threads, and a crashed thread's indexes are reopened from the records", async () => {
  const api = await startApiCluster(1, 1);
  let index: IndexService | null = null;
  try {
    const node = api.c.nodes.get(1)!;
    const gateway = api.gateways.get(1)!;
    const app = api.apps.get(1)!;
    await api.registered();
    await api.indexes.get(1)!.stop();
    index = new IndexService(node, gateway, { dir: join(api.c.dirs.get(1)!, "indexes-2"), threads: 2 });
    index.start();
    const created = await app.inject({ method: "POST", url: "/v1/collections", payload: { name: "pts", shards: 4, replicationFactor: 1, vectors: { dim: 2, metric: "l2" } } });
    assert.equal(created.statusCode, 200, created.body);
    assert.ok((await gateway.putMany(Array.from({ length: 100 }, (_, i) => ({ key: `p${i}`, payload: {}, vector: v(i, 0) })), "pts")).every((o) => o.ok));
    const svc = index;
    await waitFor("four indexes caught up", () => svc.stats().indexes === 4 && svc.stats().pendingOps === 0 && svc.stats().records === 100);
    assert.deepEqual(svc.perThread(), [2, 2], "two shards' indexes in each thread");
    const nearest = async (x: number) => {
      const r = await app.inject({ method: "POST", url: "/v1/collections/pts/search", payload: { vector: [x, 0], k: 1, withPayload: false } });
      return r.statusCode === 200 ? (r.json() as { results: { id: string }[] }).results[0]!.id : `HTTP ${r.statusCode}`;
    };
    // The search is answered by the two threads' indexes together (without them, the one answering is wrong).
    for (const x of [3, 42, 77, 99]) assert.equal(await nearest(x), `p${x}`);
    await svc.crashThreadForTest(0);
    await waitFor("the crashed thread's indexes reopened", () => svc.stats().indexes === 4 && svc.stats().pendingOps === 0 && svc.stats().records === 100 &&
      svc.perThread().every((n) => n !== null));
    for (const x of [3, 42, 77, 99]) assert.equal(await nearest(x), `p${x}`);
  } finally {
    await index?.stop();
    await api.stop();
  }
});
