import { test } from "node:test";
import assert from "node:assert/strict";

import { assertRefused } from "../util/testing.js";
import { COLLECTION_DEFAULTS, CollectionSpecError, VectorError, checkVector, collectionNameProblem, parseCollectionSpec } from "./collections.js";

test("a collection declared by its name alone gets the defaults: 4 shards, 3 replicas, hash partitioning, no vectors", () => {
  assert.deepEqual(parseCollectionSpec({ name: "docs" }), {
    name: "docs", shards: 4, replicationFactor: 3, partitioning: "hash", splitPoints: [], vectors: null, payloadIndexes: {}, ttlMs: null, writeMode: "sync",
  });
});

test("a range collection starts with the shards its split points cut: one without any, one more than the points", () => {
  assert.deepEqual(parseCollectionSpec({ name: "log", partitioning: "range" }), {
    name: "log", shards: 1, replicationFactor: 3, partitioning: "range", splitPoints: [], vectors: null, payloadIndexes: {}, ttlMs: null, writeMode: "sync",
  });
  const three = parseCollectionSpec({ name: "log", partitioning: "range", splitPoints: ["g", "p"] });
  assert.equal(three.shards, 3);
  assert.deepEqual(three.splitPoints, ["g", "p"]);
  assert.equal(parseCollectionSpec({ name: "log", partitioning: "range", shards: 2, splitPoints: ["m"] }).shards, 2, "shards may be given, if they agree");
});

test("a full declaration is kept as given; a vector schema gets f32 storage and usearch's HNSW defaults unless it says otherwise", () => {
  const spec = parseCollectionSpec({
    name: "shoes_2026", shards: 16, replicationFactor: 5, partitioning: "hash", ttlMs: 86_400_000,
    vectors: { dim: 128, metric: "cosine" }, payloadIndexes: { color: "keyword", price: "float", "brand.country": "keyword", stock: "integer", active: "bool" },
  });
  assert.equal(spec.shards, 16);
  assert.equal(spec.replicationFactor, 5);
  assert.equal(spec.partitioning, "hash");
  assert.equal(spec.ttlMs, 86_400_000);
  assert.deepEqual(spec.vectors, { dim: 128, metric: "cosine", storage: "f32", hnsw: COLLECTION_DEFAULTS.hnsw });
  assert.equal(spec.payloadIndexes["brand.country"], "keyword");
  const tuned = parseCollectionSpec({ name: "t", vectors: { dim: 3, metric: "cosine", storage: "i8", hnsw: { efSearch: 256 } } });
  assert.deepEqual(tuned.vectors, { dim: 3, metric: "cosine", storage: "i8", hnsw: { m: 16, efConstruction: 128, efSearch: 256 } });
});

test("a declaration out of range is refused with the path of the field and what it takes", () => {
  const refused = (body: unknown, path: string, words: RegExp) =>
    assertRefused(() => parseCollectionSpec(body), CollectionSpecError, "invalid_collection", path, words, body);
  refused(null, "body", /object/);
  refused({}, "name", /1 to 63 characters/);
  refused({ name: "Docs" }, "name", /a-z/);
  refused({ name: "_docs" }, "name", /starting with/);
  refused({ name: "d".repeat(64) }, "name", /1 to 63/);
  refused({ name: "docs/x" }, "name", /a-z/);
  refused({ name: "d", size: 3 }, "size", /unknown field/);
  refused({ name: "d", shards: 0 }, "shards", /integer from 1 to 1024/);
  refused({ name: "d", shards: 2.5 }, "shards", /integer/);
  refused({ name: "d", replicationFactor: 8 }, "replicationFactor", /1 to 7/);
  refused({ name: "d", partitioning: "random" }, "partitioning", /"hash", "range"/);
  refused({ name: "d", ttlMs: 10 }, "ttlMs", /from 1000/);
  refused({ name: "d", partitioning: "range", shards: 4 }, "splitPoints", /4 shards needs 3 split points \(got 0\)/);
  refused({ name: "d", partitioning: "range", shards: 1, splitPoints: ["m"] }, "splitPoints", /1 shards needs 0 split points \(got 1\)/);
  refused({ name: "d", splitPoints: ["m"] }, "splitPoints", /only a range collection/);
  refused({ name: "d", partitioning: "range", splitPoints: "a,b" }, "splitPoints", /a list of ids, sorted/);
  refused({ name: "d", partitioning: "range", splitPoints: ["m", "g"] }, "splitPoints[1]", /"g" does not follow "m": split points are sorted/);
  refused({ name: "d", partitioning: "range", splitPoints: ["g", "m", "m"] }, "splitPoints[2]", /distinct/);
  refused({ name: "d", partitioning: "range", splitPoints: ["g", ""] }, "splitPoints[1]", /1 to 256 characters/);
  refused({ name: "d", partitioning: "range", splitPoints: [7] }, "splitPoints[0]", /a string/);
  refused({ name: "d", partitioning: "range", splitPoints: ["\uffffz"] }, "splitPoints[0]", /U\+FFFF/);
  refused({ name: "d", partitioning: "range", splitPoints: ["x".repeat(257)] }, "splitPoints[0]", /1 to 256/);
  refused({ name: "d", vectors: 128 }, "vectors", /dim/);
  refused({ name: "d", vectors: { metric: "cosine" } }, "vectors.dim", /1 to 4096/);
  refused({ name: "d", vectors: { dim: 4097, metric: "cosine" } }, "vectors.dim", /1 to 4096/);
  refused({ name: "d", vectors: { dim: 8, metric: "hamming" } }, "vectors.metric", /"cosine", "dot", "l2"/);
  refused({ name: "d", vectors: { dim: 8, metric: "dot", storage: "f64" } }, "vectors.storage", /"f32", "f16", "i8"/);
  refused({ name: "d", vectors: { dim: 8, metric: "l2", storage: "i8" } }, "vectors.storage", /cosine/);
  refused({ name: "d", vectors: { dim: 8, metric: "dot", hnsw: { m: 2 } } }, "vectors.hnsw.m", /4 to 64/);
  refused({ name: "d", vectors: { dim: 8, metric: "dot", hnsw: { ef: 2 } } }, "vectors.hnsw.ef", /unknown field/);
  refused({ name: "d", vectors: { dim: 8, metric: "dot", size: 1 } }, "vectors.size", /unknown field/);
  refused({ name: "d", payloadIndexes: ["color"] }, "payloadIndexes", /field \(dotted path\)/);
  refused({ name: "d", payloadIndexes: { color: "text" } }, "payloadIndexes.color", /"keyword", "integer", "float", "bool"/);
  refused({ name: "d", payloadIndexes: { "a..b": "keyword" } }, "payloadIndexes.a..b", /every part/);
  refused({ name: "d", payloadIndexes: Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`f${i}`, "bool"])) }, "payloadIndexes", /at most 64/);
});

test("collection names: what a URL path segment can carry unescaped", () => {
  for (const ok of ["a", "docs", "shoes-2026", "x_y", "0"]) assert.equal(collectionNameProblem(ok), null, ok);
  for (const bad of ["", "A", "-a", "a b", "a.b", "é", 7]) assert.notEqual(collectionNameProblem(bad), null, String(bad));
});

test("a vector is checked against the schema: length, finite numbers within the 32-bit range, a direction under cosine", () => {
  const schema = parseCollectionSpec({ name: "v", vectors: { dim: 3, metric: "cosine" } }).vectors!;
  assert.deepEqual([...checkVector(schema, [0.5, -1, 2])], [0.5, -1, 2]);
  const refused = (v: unknown, path: string, words: RegExp, s = schema) => assertRefused(() => checkVector(s, v), VectorError, "invalid_vector", path, words, v);
  refused("0.5,1,2", "vector", /list of 3 numbers/);
  refused([1, 2], "vector", /3 numbers expected \(the collection's dim\), got 2/);
  refused([1, 2, 3, 4], "vector", /got 4/);
  refused([1, "2", 3], "vector[1]", /finite number/);
  refused([1, null, 3], "vector[1]", /finite number/);
  refused([1, 2, NaN], "vector[2]", /finite number/);
  refused([Infinity, 2, 3], "vector[0]", /finite number/);
  refused([1e39, 2, 3], "vector[0]", /32-bit float/);
  refused([0, 0, 0], "vector", /all zero/);
  refused([1e-50, 0, 0], "vector", /all zero/, schema);
  const l2 = parseCollectionSpec({ name: "v", vectors: { dim: 3, metric: "l2" } }).vectors!;
  assert.deepEqual([...checkVector(l2, [0, 0, 0])], [0, 0, 0], "the origin is a point under l2");
});
