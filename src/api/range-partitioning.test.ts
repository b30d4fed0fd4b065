/**
 * Range-partitioned collections through the HTTP API (issue 14, item 1) on a 3-node in-process
 * cluster: records placed by their ids' order over the shards the split points cut, scanned in order
 * asking only the shards a page reaches, split at an id and at a shard's middle id, merged back, and
 * every record read and scanned exactly once throughout; bad declarations and split points refused.
 */
import { after, test } from "node:test";
import assert from "node:assert/strict";
import type { FastifyInstance } from "fastify";
import type { Gateway } from "../node/gateway.js";
import { stopLeftovers, waitFor } from "../node/testing.js";
import { encodeCursor } from "./records.js";
import { startApiCluster } from "./testing.js";

after(stopLeftovers);

interface Reply { statusCode: number; body: string; json(): unknown }
interface ErrorBody { error: { code: string; message: string; field?: string } }
interface CollectionView { name: string; partitioning: string; shards: number[]; ranges: { shard: number; range: [string, string | null] }[] }
interface Page { records: { id: string; payload: unknown }[]; cursor: string | null }

/** Every id of a collection through its paged scan by `app`, in the order the pages gave them. */
async function scanAll(app: FastifyInstance, collection: string, limit: number, between?: (page: number) => Promise<void>): Promise<string[]> {
  const ids: string[] = [];
  let cursor: string | null = null;
  for (let n = 0; n < 1000; n++) {
    const r: Reply = await app.inject({ url: `/v1/collections/${collection}/records?limit=${limit}${cursor === null ? "" : `&cursor=${cursor}`}` });
    assert.equal(r.statusCode, 200, r.body);
    const page = r.json() as Page;
    ids.push(...page.records.map((x) => x.id));
    cursor = page.cursor;
    if (cursor === null) return ids;
    await between?.(n);
  }
  throw new Error("more than 1000 pages");
}

/** The shards a gateway reads scan pages from, in the order asked (from `spy()` on). */
function scanSpy(gw: Gateway): { asked: number[]; reset(): void } {
  const asked: number[] = [];
  const scan = gw.scan.bind(gw);
  gw.scan = (group, limit, after) => {
    asked.push(group);
    return scan(group, limit, after);
  };
  return { asked, reset: () => void asked.splice(0) };
}

test("a range collection places records by id order, scans asking only the shards a page reaches, splits at an id and at its middle, merges, and returns every record once", async () => {
  const api = await startApiCluster(3, 1);
  try {
    const [one, two] = [api.apps.get(1)!, api.apps.get(2)!];
    const node1 = api.c.nodes.get(1)!;
    await api.registered();
    const post = (app: FastifyInstance, url: string, payload: unknown): Promise<Reply> => app.inject({ method: "POST", url, payload: payload as object });
    const refused = async (r: Reply, status: number, code: string): Promise<ErrorBody["error"]> => {
      assert.equal(r.statusCode, status, r.body);
      assert.equal((r.json() as ErrorBody).error.code, code, r.body);
      return (r.json() as ErrorBody).error;
    };

    // Bad declarations: 400 invalid_collection naming the field.
    const unsorted = await refused(await post(two, "/v1/collections", { name: "log", partitioning: "range", splitPoints: ["p", "g"] }), 400, "invalid_collection");
    assert.equal(unsorted.field, "splitPoints[1]");
    assert.match(unsorted.message, /sorted/);
    assert.equal((await refused(await post(two, "/v1/collections", { name: "log", partitioning: "range", splitPoints: ["g", "g"] }), 400, "invalid_collection")).field, "splitPoints[1]");
    assert.equal((await refused(await post(two, "/v1/collections", { name: "log", partitioning: "range", shards: 3 }), 400, "invalid_collection")).field, "splitPoints");
    assert.equal((await refused(await post(two, "/v1/collections", { name: "log", splitPoints: ["g"] }), 400, "invalid_collection")).field, "splitPoints");
    assert.equal(node1.metaState().collections.has("log"), false, "nothing refused was created");

    const created = await post(two, "/v1/collections", { name: "log", partitioning: "range", splitPoints: ["g", "p"] });
    assert.equal(created.statusCode, 200, created.body);
    const c = created.json() as CollectionView;
    assert.equal(c.partitioning, "range");
    assert.deepEqual(c.ranges.map((r) => r.range), [["", "g"], ["g", "p"], ["p", null]], "the split points cut the id space; the last shard is open above");
    const [first, second, third] = c.ranges.map((r) => r.shard) as [number, number, number];
    await waitFor("node 1 knows the collection", () => node1.metaState().collections.has("log"));
    type ShardsView = { shards: { shard: number; range: [unknown, unknown] }[] };
    const listed = ((await one.inject({ url: "/v1/cluster/shards" })).json() as ShardsView).shards.find((s) => s.shard === third)!;
    assert.deepEqual(listed.range, ["p", null], "the shard map shows the id range as strings");

    // An empty shard has no middle id; a hash is no split point of an id range, nor an id of a hash range.
    await refused(await post(one, `/v1/cluster/shards/${third}/split`, {}), 400, "bad_split");
    assert.match((await refused(await post(one, `/v1/cluster/shards/${third}/split`, { at: 12345 }), 400, "bad_request")).message, /range of ids/);
    assert.match((await refused(await post(one, "/v1/cluster/shards/1/split", { at: "k" }), 400, "bad_request")).message, /range of hashes/);

    const ids = [..."abcdefghijklmnopqrstuvwxyz"].flatMap((l) => [0, 1, 2, 3].map((i) => `${l}${i}`));
    const batch = await post(one, "/v1/collections/log/records", { records: ids.map((id) => ({ id, payload: { id } })) });
    assert.equal(batch.statusCode, 200, batch.body);
    assert.equal((batch.json() as { failed: number }).failed, 0);
    const gw = api.gateways.get(1)!;
    const held = async (shard: number) => (await gw.scan(shard, 1000)).records.map(([id]) => id);
    assert.deepEqual(await held(first), ids.filter((id) => id < "g"), "each shard holds exactly the ids of its range");
    assert.deepEqual(await held(second), ids.filter((id) => id >= "g" && id < "p"));
    assert.deepEqual(await held(third), ids.filter((id) => id >= "p"));

    // A page asks only the shards it reaches, in range order.
    const spy = scanSpy(gw);
    const page1 = (await one.inject({ url: "/v1/collections/log/records?limit=5" })).json() as Page;
    assert.deepEqual(page1.records.map((r) => r.id), ["a0", "a1", "a2", "a3", "b0"]);
    assert.deepEqual(spy.asked, [first], "the first shard alone fills the first page");
    spy.reset();
    const across = (await one.inject({ url: `/v1/collections/log/records?limit=6&cursor=${encodeCursor("f1")}` })).json() as Page;
    assert.deepEqual(across.records.map((r) => r.id), ["f2", "f3", "g0", "g1", "g2", "g3"]);
    assert.deepEqual(spy.asked, [first, second], "a page crossing a boundary asks the next shard, and no further");
    spy.reset();
    assert.deepEqual(await scanAll(one, "log", 7), ids, "the whole scan: every id once, in order");

    // Split the middle shard at "k" while a scan pages through: its upper ids go to the new shard.
    const scanned = await scanAll(one, "log", 9, async (page) => {
      if (page !== 2) return;
      const split = await post(two, `/v1/cluster/shards/${second}/split`, { at: "k" });
      assert.equal(split.statusCode, 200, split.body);
      const s = split.json() as { range: [string, string]; child: number; childRange: [string, string] };
      assert.deepEqual([s.range, s.childRange], [["g", "k"], ["k", "p"]]);
      await waitFor("node 1's map shows the split", () => node1.metaState().shards.has(s.child));
    });
    assert.deepEqual(scanned, ids, "a scan across a split: every id once, in order");
    const byKey = node1.metaState().collections.get("log")!.shards.find((id) => ![first, second, third].includes(id))!;
    assert.deepEqual(node1.metaState().shards.get(byKey)!.range, { start: "k", end: "p" });
    assert.deepEqual(await held(byKey), ids.filter((id) => id >= "k" && id < "p"));
    assert.equal(node1.shardOf("k0", "log"), byKey, "routing follows the split");

    // Split the first shard at its middle: the middle of its 24 ids.
    const middle = await post(one, `/v1/cluster/shards/${first}/split`, {});
    assert.equal(middle.statusCode, 200, middle.body);
    const m = middle.json() as { range: [string, string]; child: number; childRange: [string, string] };
    const lower = ids.filter((id) => id < "g");
    assert.deepEqual([m.range, m.childRange], [["", lower[12]], [lower[12], "g"]], "cut at the middle id");
    await waitFor("node 1's map shows the middle split", () => node1.metaState().shards.has(m.child));
    assert.equal((await held(first)).length, 12);
    assert.equal((await held(m.child)).length, 12);

    // Merge the key split's child back into its lower neighbour.
    const merge = await post(two, `/v1/cluster/shards/${byKey}/merge`, {});
    assert.equal(merge.statusCode, 200, merge.body);
    assert.equal((merge.json() as { into: number }).into, second);
    await waitFor("the merge recorded on node 1", () => node1.metaState().shards.get(byKey)?.retiredInto === second, 20_000);
    assert.deepEqual(node1.metaState().shards.get(second)!.range, { start: "g", end: "p" });
    const view = (await one.inject({ url: "/v1/collections/log" })).json() as CollectionView;
    assert.deepEqual(view.ranges.map((r) => r.range), [["", lower[12]], [lower[12], "g"], ["g", "p"], ["p", null]]);

    assert.deepEqual(await scanAll(two, "log", 10), ids, "after splits and a merge: every id once, in order");
    const count = await post(two, "/v1/collections/log/count", {});
    assert.equal(count.statusCode, 200, count.body);
    assert.deepEqual((count.json() as { count: number; missing: unknown[] }).count, ids.length, "a count's answers tile the id space");
    for (const id of ids) {
      const got = await two.inject({ url: `/v1/collections/log/records/${id}` });
      assert.equal(got.statusCode, 200, `${id}: ${got.body}`);
      assert.deepEqual((got.json() as { payload: unknown }).payload, { id });
    }
  } finally {
    await api.stop();
  }
});
