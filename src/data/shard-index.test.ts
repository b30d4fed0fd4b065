import { test } from "node:test";
import assert from "node:assert/strict";
import { type IndexOp, ShardIndex, exactScanCheaper } from "./shard-index.js";
import { Rng } from "../util/rng.js";
import type { VectorSchema } from "../meta/collections.js";

const schema = (metric: VectorSchema["metric"], storage: VectorSchema["storage"] = "f32", dim = 16): VectorSchema =>
  ({ dim, metric, storage, hnsw: { m: 16, efConstruction: 64, efSearch: 64 } });

function vec(rng: Rng, dim: number): Float32Array {
  const v = new Float32Array(dim);
  for (let i = 0; i < dim; i++) v[i] = rng.float() * 2 - 1;
  return v;
}

function upserts(rng: Rng, n: number, dim: number, from = 0): IndexOp[] {
  return Array.from({ length: n }, (_, i) => ({
    id: `r${from + i}`, version: 1, vector: vec(rng, dim), fields: { color: [(from + i) % 10 === 0 ? "red" : "blue"], n: [from + i] },
  }));
}

test("graph search finds what an exact scan finds, with exact scores, for every metric and storage", () => {
  for (const [metric, storage] of [["cosine", "f32"], ["dot", "f16"], ["l2", "f32"], ["cosine", "i8"]] as const) {
    const rng = new Rng(7);
    const x = new ShardIndex(schema(metric, storage), ["color", "n"]);
    x.enqueue(upserts(rng, 3000, 16), 10);
    while (x.step(500) > 0);
    assert.equal(x.pendingCount, 0);
    assert.equal(x.indexedThrough, 10);
    let hits = 0;
    for (let q = 0; q < 20; q++) {
      const query = vec(rng, 16);
      const exact = x.search(query, { k: 10, exact: true });
      const approx = x.search(query, { k: 10, ef: 128 });
      assert.equal(approx.plan, "graph");
      const truth = new Set(exact.hits.map((h) => h.id));
      hits += approx.hits.filter((h) => truth.has(h.id)).length;
      // Scores of the same record agree: both come from the arena, not the graph's storage.
      for (const h of approx.hits) {
        const e = exact.hits.find((t) => t.id === h.id);
        if (e !== undefined) assert.equal(h.distance, e.distance);
      }
      for (let i = 1; i < approx.hits.length; i++) assert.ok(approx.hits[i - 1]!.distance <= approx.hits[i]!.distance, "nearest first");
    }
    assert.ok(hits / 200 >= 0.9, `${metric}/${storage}: recall@10 ${hits / 200}`);
  }
});

test("a search sees pending ops: new records, updates superseding the graph's version, deletes hiding it", () => {
  const rng = new Rng(3);
  const x = new ShardIndex(schema("l2", "f32", 4), ["color"]);
  x.enqueue(upserts(rng, 200, 4), 5);
  while (x.step(64) > 0);
  const target = new Float32Array([9, 9, 9, 9]);
  // Nothing taken in yet: all of it is pending.
  x.enqueue([{ id: "new", version: 6, vector: target, fields: { color: ["green"] } }], 6);
  assert.equal(x.indexedThrough, 5, "the graph covers 5 until it takes the op in");
  assert.deepEqual(x.search(target, { k: 1 }).hits[0], { id: "new", distance: 0 });
  // r0 moves next to the target; the graph still holds its old vector.
  x.enqueue([{ id: "r0", version: 7, vector: new Float32Array([9, 9, 9, 8]), fields: { color: ["red"] } }], 7);
  const two = x.search(target, { k: 2 });
  assert.deepEqual(two.hits.map((h) => h.id), ["new", "r0"]);
  assert.equal(two.hits[1]!.distance, 1);
  assert.equal(x.search(target, { k: 200, exact: true }).hits.filter((h) => h.id === "r0").length, 1, "r0 once, at its pending version");
  x.enqueue([{ id: "new", version: 8, deleted: true }], 8);
  assert.deepEqual(x.search(target, { k: 1 }).hits.map((h) => h.id), ["r0"]);
  assert.equal(x.count(null), 200, "200 indexed + new - new");
  while (x.step(1) > 0);
  assert.equal(x.indexedThrough, 8);
  assert.deepEqual(x.search(target, { k: 1 }).hits.map((h) => h.id), ["r0"]);
  assert.equal(x.count(null), 200);
  assert.equal(x.count({ must: [{ key: "color", match: "green" }] }), 0);
});

test("a filtered search scans few matches exactly and searches the graph for many; every hit matches", () => {
  const rng = new Rng(11);
  const x = new ShardIndex(schema("cosine"), ["color", "n"]);
  const n = 5000;
  // The cost model (ef = the schema's efSearch) sends 300 matches to the scan, 4,500 to the graph.
  assert.ok(exactScanCheaper(300, 10, 64, n) && !exactScanCheaper(4500, 10, 64, n));
  for (let i = 0; i < n; i += 5000) x.enqueue(upserts(rng, 5000, 16, i), i + 1);
  while (x.step(5000) > 0);
  const query = vec(rng, 16);
  const few = x.search(query, { k: 10, filter: { must: [{ key: "n", range: { lt: 3000 } }, { key: "color", match: "red" }] } });
  assert.equal(few.plan, "filtered-exact");
  assert.equal(few.matched, 300);
  const truthFew = x.search(query, { k: 10, exact: true, filter: { must: [{ key: "n", range: { lt: 3000 } }, { key: "color", match: "red" }] } });
  assert.deepEqual(few.hits, truthFew.hits);
  const many = x.search(query, { k: 10, filter: { must_not: [{ key: "color", match: "red" }] } });
  assert.equal(many.plan, "filtered-graph");
  assert.equal(many.hits.length, 10);
  for (const h of many.hits) assert.notEqual(Number(h.id.slice(1)) % 10, 0, `${h.id} is blue`);
  assert.equal(x.count({ must: [{ key: "color", match: "red" }] }), n / 10);
});

test("a catch-up walk re-indexes changed records, keeps unchanged ones, and deletes what the walk did not find", () => {
  const rng = new Rng(5);
  const x = new ShardIndex(schema("dot", "f32", 4), []);
  x.enqueue(upserts(rng, 10, 4), 3);
  while (x.step(100) > 0);
  x.beginSync();
  const page = upserts(new Rng(5), 10, 4).slice(0, 8) as Extract<IndexOp, { fields: unknown }>[];
  page[0] = { ...page[0]!, version: 2, vector: new Float32Array([1, 0, 0, 0]) };
  assert.equal(x.syncPage(page), 1, "only the record at another version");
  // A write during the walk counts as found, whatever page it falls on.
  x.enqueue([{ id: "r9", version: 4, vector: new Float32Array([0, 1, 0, 0]), fields: {} }], 4);
  assert.equal(x.endSync(), 1, "r8 is gone; r9 was written meanwhile");
  while (x.step(100) > 0);
  assert.equal(x.count(null), 9);
  assert.deepEqual(x.search(new Float32Array([1, 0, 0, 0]), { k: 1 }).hits[0]!.id, "r0");
});
