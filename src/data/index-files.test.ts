/**
 * Saving a replica's index (index-files.ts): the files come back as the index that was saved, and the
 * save gives the worker's loop turns while it writes, so that searches are answered meanwhile (a 1M-record
 * index once held the worker for longer than a search's timeout).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { VectorSchema } from "../meta/collections.js";
import { loadIndex, saveIndex } from "./index-files.js";
import { ShardIndex } from "./shard-index.js";

const schema: VectorSchema = { dim: 64, metric: "cosine", storage: "i8", hnsw: { m: 8, efConstruction: 32, efSearch: 32 } };

/** Deterministic vectors (mulberry32), so that a failure reproduces. */
function vectors(n: number, dim: number, seed: number): Float32Array {
  const out = new Float32Array(n * dim);
  let a = seed >>> 0;
  for (let i = 0; i < out.length; i++) {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    out[i] = ((t ^ (t >>> 14)) >>> 0) / 2 ** 31 - 1;
  }
  return out;
}

test("a saved index loads back whole, and searches are answered while it is being written", async () => {
  const dir = mkdtempSync(join(tmpdir(), "shoal-index-files-"));
  try {
    const n = 20_000;
    const vs = vectors(n, schema.dim, 7);
    const index = new ShardIndex(schema, ["tag"]);
    index.enqueue(Array.from({ length: n }, (_, i) => ({ id: `r${i}`, version: 1, vector: vs.subarray(i * schema.dim, (i + 1) * schema.dim), fields: { tag: [i % 10] } })), 5);
    while (index.pendingCount > 0) index.step(10_000);
    const query = vs.subarray(123 * schema.dim, 124 * schema.dim);
    const before = index.search(query, { k: 5 });
    assert.equal(before.hits[0]!.id, "r123");

    // Searches keep being answered on the same loop until the save settles.
    let answered = 0;
    let saving = true;
    const searchWhileSaving = (): void => {
      if (!saving) return;
      assert.equal(index.search(query, { k: 5 }).hits[0]!.id, "r123");
      answered++;
      setImmediate(searchWhileSaving);
    };
    const save = saveIndex(join(dir, "7"), index);
    setImmediate(searchWhileSaving);
    const sizeBytes = await save;
    saving = false;
    // Every file is opened, written, fsynced and closed by the thread pool: the loop turns meanwhile.
    assert.ok(sizeBytes >= n * schema.dim * 4, `${sizeBytes} bytes written`);
    assert.ok(answered >= 2, `only ${answered} searches were answered during the save`);
    assert.ok(!existsSync(join(dir, "7.saving")), "the temporary folder was renamed into place");

    const loaded = loadIndex(join(dir, "7"), schema, ["tag"]);
    assert.ok(loaded.index !== null, "reason" in loaded ? loaded.reason : "");
    assert.equal(loaded.index.size, n);
    assert.equal(loaded.index.indexedThrough, 5);
    assert.deepEqual(loaded.index.search(query, { k: 5 }).hits, before.hits);
    assert.equal(loaded.index.count({ must: [{ key: "tag", match: 3 }] }), n / 10);

    // A save whose replica went away meanwhile leaves the saved folder as it was.
    const gone = await saveIndex(join(dir, "8"), index, () => false);
    assert.equal(gone, 0);
    assert.ok(!existsSync(join(dir, "8")) && !existsSync(join(dir, "8.saving")));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
