/**
 * Collections through the HTTP API (issue 14, DATA-1) on a 3-node in-process cluster: created with
 * their shards born replicated, listed, read, their replication factor changed; records of a collection
 * apart from the default one's; every refusal with its code.
 */
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { stopLeftovers, waitFor } from "../node/testing.js";
import { startApiCluster } from "./testing.js";

after(stopLeftovers);

test("a collection is created with its shards born on three voters and led, takes records apart from the default collection, and changes its replicas", async () => {
  const api = await startApiCluster(3, 1);
  try {
    const [one, two, three] = [1, 2, 3].map((id) => api.apps.get(id)!);
    const node1 = api.c.nodes.get(1)!;
    await api.registered();
    const body = { name: "shoes", shards: 3, vectors: { dim: 4, metric: "cosine" }, payloadIndexes: { color: "keyword" } };
    const created = await two!.inject({ method: "POST", url: "/v1/collections", payload: body });
    assert.equal(created.statusCode, 200, created.body);
    const c = created.json() as { shards: number[]; replicationFactor: number; vectors: { dim: number; storage: string }; leaderless: number[] };
    assert.equal(c.shards.length, 3);
    assert.equal(c.replicationFactor, 3);
    assert.deepEqual([c.vectors.dim, c.vectors.storage], [4, "f32"]);
    assert.deepEqual(c.leaderless, [], "every shard's leader reported before the answer");
    for (const id of c.shards) {
      const voters = node1.metaState().shards.get(id)!.replicas.map((r) => r.node).sort();
      assert.deepEqual(voters, [1, 2, 3], `shard ${id} born on three voters`);
    }

    const put = await one!.inject({ method: "PUT", url: "/v1/collections/shoes/records/runner", payload: { payload: { color: "red" }, vector: [1, 0, 0, 0] } });
    assert.equal(put.statusCode, 200, put.body);
    const got = await three!.inject({ url: "/v1/collections/shoes/records/runner" });
    assert.equal(got.statusCode, 200, got.body);
    assert.deepEqual((got.json() as { payload: unknown }).payload, { color: "red" });
    assert.equal((await three!.inject({ url: "/v1/collections/default/records/runner" })).statusCode, 404, "not a record of the default collection");

    type List = { collections: { name: string }[] };
    await waitFor("node 1 lists both", async () => ((await one!.inject({ url: "/v1/collections" })).json() as List).collections.length === 2);
    const names = ((await one!.inject({ url: "/v1/collections" })).json() as List).collections.map((x) => x.name);
    assert.deepEqual(names, ["default", "shoes"]);

    const patched = await three!.inject({ method: "PATCH", url: "/v1/collections/shoes", payload: { replicationFactor: 2 } });
    assert.equal(patched.statusCode, 200, patched.body);
    assert.equal((patched.json() as { replicationFactor: number }).replicationFactor, 2);
    await waitFor("node 1 sees the change", async () => ((await one!.inject({ url: "/v1/collections/shoes" })).json() as { replicationFactor: number }).replicationFactor === 2);

    const refused = async (method: "POST" | "PATCH" | "GET" | "PUT", url: string, payload: unknown, status: number, code: string) => {
      const r = await two!.inject({ method, url, ...(payload !== undefined ? { payload: payload as object } : {}) });
      assert.equal(r.statusCode, status, `${method} ${url}: ${r.body}`);
      assert.equal((r.json() as { error: { code: string } }).error.code, code);
      return r.json() as { error: { code: string; message: string; field?: string } };
    };
    await refused("POST", "/v1/collections", { name: "shoes" }, 409, "collection_exists");
    const bad = await refused("POST", "/v1/collections", { name: "boots", vectors: { dim: 0, metric: "cosine" } }, 400, "invalid_collection");
    assert.equal(bad.error.field, "vectors.dim");
    await refused("POST", "/v1/collections", { name: "Boots" }, 400, "invalid_collection");
    await refused("POST", "/v1/collections", { name: "boots", replicationFactor: 5 }, 409, "not_enough_nodes");
    await refused("GET", "/v1/collections/boots", undefined, 404, "collection_not_found");
    await refused("PATCH", "/v1/collections/boots", { replicationFactor: 2 }, 404, "collection_not_found");
    await refused("PATCH", "/v1/collections/shoes", { replicationFactor: 9 }, 400, "bad_request");
    await refused("PATCH", "/v1/collections/shoes", { shards: 9 }, 400, "bad_request");
    await refused("PUT", "/v1/collections/boots/records/a", { payload: 1 }, 404, "collection_not_found");
    assert.equal(node1.metaState().collections.has("boots"), false, "nothing refused was created");
  } finally {
    await api.stop();
  }
});
