/**
 * The anchors bench/vectors.ts measures Shoal against, in the same run on the same data:
 *   usearch in-process (the ceiling): one HNSW index with Shoal's M and efConstruction; filtered searches
 *     are brute force over the matching subset (usearch's exactSearch), not a graph search;
 *   LanceDB embedded (@lancedb/lancedb 0.31.0, installed into .bench-cache on first use): an IVF-PQ index
 *     (refine factor 10) and a btree index on `tag` for its `where` filter (a pre-filter).
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import usearch from "usearch";
import { CORES, type Dataset, K, type Subset, benchRequire, exactTopK, log, queryOf } from "./vector-data.js";

/** What one engine answers for one configuration (an ef, an nprobes). */
export interface Searcher {
  /** Query q as client `client` would send it: dataset indices, best first. */
  search(q: number, client: number): Promise<number[]> | number[];
  /** Every query once with `clients` at once, run by the engine itself (usearch's threads): seconds taken. */
  all?(clients: number): number;
}

const ADD_CHUNK = 50_000;

/** The usearch HNSW index over the whole dataset: build seconds and the index. */
/**
 * One HNSW index over the dataset, built with every core. Its search expansion is `efMin`, the smallest
 * ef of the sweep: the binding cannot search narrower than the expansion it was built with.
 */
export function buildUsearch(ds: Dataset, efMin: number): { seconds: number; index: InstanceType<typeof usearch.Index> } {
  const index = new usearch.Index({ dimensions: ds.dim, metric: "cos" as never, quantization: "f32" as never, connectivity: 16, expansion_add: 128, expansion_search: Math.max(K, efMin), multi: false });
  const started = performance.now();
  for (let from = 0; from < ds.n; from += ADD_CHUNK) {
    const to = Math.min(ds.n, from + ADD_CHUNK);
    const keys = new BigUint64Array(to - from);
    for (let i = 0; i < keys.length; i++) keys[i] = BigInt(from + i);
    index.add(keys, ds.vectors.subarray(from * ds.dim, to * ds.dim), CORES);
    if (to < ds.n && (to / ADD_CHUNK) % 4 === 0) log(`usearch: ${to.toLocaleString("en-US")} / ${ds.n.toLocaleString("en-US")} added`);
  }
  return { seconds: (performance.now() - started) / 1000, index };
}

/**
 * The graph searched at breadth `ef`. The binding fixes the search expansion when the index is built;
 * asking for more results widens it, so it is asked for max(K, ef) and the first K are kept.
 */
export function usearchGraph(ds: Dataset, index: InstanceType<typeof usearch.Index>, ef: number): Searcher {
  const count = Math.max(K, ef);
  const firstK = (keys: BigUint64Array, from: number) => Array.from(keys.subarray(from, from + K), Number);
  return {
    search: (q) => firstK(index.search(queryOf(ds, q), count, 1).keys, 0),
    all: (clients) => {
      const started = performance.now();
      index.search(ds.queries, count, Math.min(clients, CORES));
      return (performance.now() - started) / 1000;
    },
  };
}

/** Brute force over a filter's matching records (exact: the ground truth is computed the same way). */
export function usearchExact(ds: Dataset, sub: Subset): Searcher {
  return {
    search: (q) => exactTopK(ds, sub, queryOf(ds, q), Math.min(K, sub.size), 1)[0]!,
    all: (clients) => {
      const started = performance.now();
      exactTopK(ds, sub, ds.queries, Math.min(K, sub.size), Math.min(clients, CORES));
      return (performance.now() - started) / 1000;
    },
  };
}

// The parts of LanceDB's and Arrow's APIs used here (they are loaded from .bench-cache, untyped).
interface LanceQuery {
  distanceType(d: "cosine"): LanceQuery;
  nprobes(n: number): LanceQuery;
  refineFactor(n: number): LanceQuery;
  where(predicate: string): LanceQuery;
  limit(n: number): LanceQuery;
  select(columns: string[]): LanceQuery;
  toArray(): Promise<{ id: number }[]>;
}
interface LanceTable {
  createIndex(column: string, options: { config: unknown }): Promise<void>;
  vectorSearch(v: Float32Array): LanceQuery;
  countRows(): Promise<number>;
  close(): void;
}
interface LanceConnection {
  createTable(name: string, data: unknown): Promise<LanceTable>;
  close(): void;
}
interface LanceModule {
  connect(uri: string): Promise<LanceConnection>;
  Index: { ivfPq(o: { numPartitions: number; numSubVectors: number; distanceType: "cosine" }): unknown; btree(): unknown };
}
interface ArrowData { readonly length: number }
interface ArrowModule {
  Field: new (name: string, type: unknown, nullable: boolean) => unknown;
  Schema: new (fields: unknown[]) => unknown;
  Int32: new () => unknown;
  Float32: new () => unknown;
  FixedSizeList: new (size: number, child: unknown) => unknown;
  Struct: new (fields: unknown[]) => unknown;
  makeData(props: Record<string, unknown>): ArrowData;
  RecordBatch: new (schema: unknown, data: ArrowData) => unknown;
  Table: new (batches: unknown[]) => unknown;
}

/** Rows per Arrow record batch handed to LanceDB. */
const ARROW_BATCH = 100_000;

/** The dataset as an Arrow table (id, tag, vector), built on the dataset's memory. */
function arrowTable(arrow: ArrowModule, ds: Dataset): unknown {
  const vectorType = new arrow.FixedSizeList(ds.dim, new arrow.Field("item", new arrow.Float32(), true));
  const fields = [new arrow.Field("id", new arrow.Int32(), false), new arrow.Field("tag", new arrow.Int32(), false), new arrow.Field("vector", vectorType, false)];
  const schema = new arrow.Schema(fields);
  const batches: unknown[] = [];
  for (let from = 0; from < ds.n; from += ARROW_BATCH) {
    const n = Math.min(ARROW_BATCH, ds.n - from);
    const ids = Int32Array.from({ length: n }, (_, i) => from + i);
    const tags = Int32Array.from(ds.tags.subarray(from, from + n));
    const child = arrow.makeData({ type: new arrow.Float32(), length: n * ds.dim, data: ds.vectors.subarray(from * ds.dim, (from + n) * ds.dim) });
    const vectors = arrow.makeData({ type: vectorType, length: n, nullCount: 0, child });
    const struct = arrow.makeData({
      type: new arrow.Struct(fields), length: n, nullCount: 0,
      children: [arrow.makeData({ type: new arrow.Int32(), length: n, data: ids }), arrow.makeData({ type: new arrow.Int32(), length: n, data: tags }), vectors],
    });
    batches.push(new arrow.RecordBatch(schema, struct));
  }
  return new arrow.Table(batches);
}

export interface LanceBuilt {
  table: LanceTable;
  ingestSeconds: number;
  indexSeconds: number;
  partitions: number;
  close(): void;
}

/** A LanceDB table of the dataset in a temporary directory, with its IVF-PQ and tag indexes. */
export async function buildLance(ds: Dataset): Promise<LanceBuilt> {
  const req = benchRequire(["lancedb", "arrow"]);
  const lancedb = req("@lancedb/lancedb") as LanceModule;
  const arrow = req("apache-arrow") as ArrowModule;
  const dir = mkdtempSync(join(tmpdir(), "shoal-bench-lance-"));
  const remove = () => rmSync(dir, { recursive: true, force: true });
  process.once("exit", remove);
  const db = await lancedb.connect(dir);
  let started = performance.now();
  const table = await db.createTable("bench", arrowTable(arrow, ds));
  const ingestSeconds = (performance.now() - started) / 1000;
  const rows = await table.countRows();
  if (rows !== ds.n) throw new Error(`LanceDB holds ${rows} rows, not ${ds.n}`);
  // sqrt(n) partitions (LanceDB's default); 4 dimensions per PQ sub-vector: with 8 (128-d: 16 sub-vectors)
  // recall on 200,000 clustered points stayed at 0.907 for every nprobes (the true neighbours fell outside
  // the refined candidates), and its default of 16 dimensions would leave 100-d vectors one sub-vector.
  const partitions = Math.max(1, Math.round(Math.sqrt(ds.n)));
  const subVectors = ds.dim / 4;
  log(`lancedb: ${rows.toLocaleString("en-US")} rows written in ${ingestSeconds.toFixed(1)} s; building IVF-PQ (${partitions} partitions, ${subVectors} sub-vectors) and a btree on tag…`);
  started = performance.now();
  const ticker = setInterval(() => log(`lancedb: still building its indexes (${((performance.now() - started) / 1000).toFixed(0)} s)…`), 15_000);
  try {
    await table.createIndex("vector", { config: lancedb.Index.ivfPq({ numPartitions: partitions, numSubVectors: subVectors, distanceType: "cosine" }) });
    await table.createIndex("tag", { config: lancedb.Index.btree() });
  } finally {
    clearInterval(ticker);
  }
  const indexSeconds = (performance.now() - started) / 1000;
  return {
    table, ingestSeconds, indexSeconds, partitions,
    close: () => {
      table.close();
      db.close();
      remove();
    },
  };
}

export const REFINE_FACTOR = 10;

/** IVF-PQ at `nprobes` partitions, re-ranked over REFINE_FACTOR x K candidates with exact distances. */
export function lanceSearcher(ds: Dataset, table: LanceTable, nprobes: number, where: string | null): Searcher {
  return {
    search: async (q) => {
      let query = table.vectorSearch(queryOf(ds, q)).distanceType("cosine").nprobes(nprobes).refineFactor(REFINE_FACTOR).limit(K).select(["id", "_distance"]);
      if (where !== null) query = query.where(where);
      return (await query.toArray()).map((r) => r.id);
    },
  };
}
