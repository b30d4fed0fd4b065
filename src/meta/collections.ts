/**
 * What a collection is made of, as a client declares it (issue 14; REQUIREMENTS DATA-1): its name,
 * shard count, replication factor, partitioning (and a range collection's split points), optional vector schema (dimension, metric, storage
 * type, HNSW parameters), payload indexes and TTL; and the check of a record's vector against the
 * schema. parseCollectionSpec fills in the defaults and refuses anything out of range with the path of
 * the offending field (HTTP 400 `invalid_collection`); checkVector refuses a vector that does not fit
 * (HTTP 400 `invalid_vector`). Kept in the metadata group with the collection (state.ts). Pure: no I/O.
 */
import { dottedPathProblem } from "../util/dotted-path.js";
import { KEY_SPACE_END } from "./ranges.js";

export const METRICS = ["cosine", "dot", "l2"] as const;
export type Metric = (typeof METRICS)[number];
export const VECTOR_STORAGE = ["f32", "f16", "i8"] as const;
export type VectorStorage = (typeof VECTOR_STORAGE)[number];
export const PAYLOAD_INDEX_TYPES = ["keyword", "integer", "float", "bool"] as const;
export type PayloadIndexType = (typeof PAYLOAD_INDEX_TYPES)[number];
export const PARTITIONINGS = ["hash", "range"] as const;
export type Partitioning = (typeof PARTITIONINGS)[number];

export interface HnswParams {
  /** Links per node of the graph (usearch's connectivity). */
  m: number;
  /** Candidates kept while inserting (usearch's expansion_add). */
  efConstruction: number;
  /** Candidates kept while searching, unless a search asks for more (usearch's expansion_search). */
  efSearch: number;
}

export interface VectorSchema {
  dim: number;
  metric: Metric;
  storage: VectorStorage;
  hnsw: HnswParams;
}

export interface CollectionSpec {
  name: string;
  shards: number;
  replicationFactor: number;
  /**
   * hash: a record's shard is chosen by the hash of its id (ids spread evenly over the shards). range:
   * by the id itself, so that contiguous ids live on one shard and an ordered scan asks only the shards
   * its ids fall in.
   */
  partitioning: Partitioning;
  /**
   * A range collection's initial shard boundaries: shard i (from 0) holds the ids from splitPoints[i-1]
   * (the first: from "") up to splitPoints[i] (the last: every id above). Invariant: sorted, distinct,
   * non-empty, shards - 1 of them; empty for a hash collection, whose shards start as equal hash ranges.
   */
  splitPoints: string[];
  vectors: VectorSchema | null;
  /** Payload field (dotted path) -> the type its index holds. */
  payloadIndexes: Record<string, PayloadIndexType>;
  /** Records expire this long after their last write; null: never. */
  ttlMs: number | null;
  /**
   * How its single-record writes are acknowledged unless a request says otherwise: sync, once a quorum
   * holds and the leader applied them; async, once the leader's log holds them durably (a failover
   * before a quorum does can lose them).
   */
  writeMode: WriteMode;
}

export const WRITE_MODES = ["sync", "async"] as const;
export type WriteMode = (typeof WRITE_MODES)[number];

/** Bounds on a collection's replicas per shard. */
export const REPLICATION_FACTOR_MAX = 7;

/** Bounds on what a collection may declare. */
export const COLLECTION_LIMITS = {
  nameLengthMax: 63,
  shardsMax: 1024,
  replicationFactorMax: REPLICATION_FACTOR_MAX,
  dimMax: 4096,
  hnswM: [4, 64],
  efConstruction: [8, 1024],
  efSearch: [8, 4096],
  payloadIndexesMax: 64,
  /** A TTL shorter than a second would expire records before most clients read them back. */
  ttlMsMin: 1000,
  /** A split point is at most as long as a record id. */
  splitPointLengthMax: 256,
} as const;

export const COLLECTION_DEFAULTS = {
  shards: 4,
  replicationFactor: 3,
  partitioning: "hash",
  storage: "f32",
  // usearch's own defaults for connectivity and expansion on add; 64 candidates per search gives
  // recall@10 near 0.95 on clustered 128-d data, and a search with a larger k widens it.
  hnsw: { m: 16, efConstruction: 128, efSearch: 64 },
} as const;

const NAME = /^[a-z0-9][a-z0-9_-]*$/;

/** A collection declaration that is not one; `path` names the field, e.g. `vectors.dim`. */
export class CollectionSpecError extends Error {
  override name = "CollectionSpecError";
  readonly code = "invalid_collection";

  constructor(readonly path: string, message: string) {
    super(`${path}: ${message}`);
  }
}

/** A vector that does not fit its collection's schema. */
export class VectorError extends Error {
  override name = "VectorError";
  readonly code = "invalid_vector";

  constructor(readonly path: string, message: string) {
    super(`${path}: ${message}`);
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function onlyFields(input: Record<string, unknown>, allowed: readonly string[], path: string): void {
  for (const k of Object.keys(input)) {
    if (!allowed.includes(k)) throw new CollectionSpecError(path === "" ? k : `${path}.${k}`, `unknown field (known: ${allowed.join(", ")})`);
  }
}

function integer(v: unknown, path: string, min: number, max: number): number {
  if (typeof v !== "number" || !Number.isInteger(v) || v < min || v > max) throw new CollectionSpecError(path, `an integer from ${min} to ${max}`);
  return v;
}

function oneOf<T extends string>(v: unknown, path: string, values: readonly T[]): T {
  if (typeof v !== "string" || !(values as readonly string[]).includes(v)) throw new CollectionSpecError(path, `one of ${values.map((x) => `"${x}"`).join(", ")}`);
  return v as T;
}

/** The name rule of collections (a path segment in every URL that names one). */
export function collectionNameProblem(name: unknown): string | null {
  if (typeof name !== "string" || name.length === 0 || name.length > COLLECTION_LIMITS.nameLengthMax || !NAME.test(name)) {
    return `1 to ${COLLECTION_LIMITS.nameLengthMax} characters of a-z, 0-9, '_' and '-', starting with a letter or digit`;
  }
  return null;
}

/** Checks a collection declaration and fills in its defaults. */
export function parseCollectionSpec(input: unknown): CollectionSpec {
  if (!isObject(input)) throw new CollectionSpecError("body", "a collection is declared by an object with at least `name`");
  onlyFields(input, ["name", "shards", "replicationFactor", "partitioning", "splitPoints", "vectors", "payloadIndexes", "ttlMs", "writeMode"], "");
  const nameProblem = collectionNameProblem(input.name);
  if (nameProblem !== null) throw new CollectionSpecError("name", nameProblem);
  const L = COLLECTION_LIMITS;
  const partitioning = input.partitioning === undefined ? COLLECTION_DEFAULTS.partitioning : oneOf(input.partitioning, "partitioning", PARTITIONINGS);
  const splitPoints = input.splitPoints === undefined ? [] : parseSplitPoints(input.splitPoints, partitioning);
  // A range collection cannot know how its ids spread: it starts with the shards its split points cut
  // (one without any), and splits at its records' middle as it grows.
  const shards = input.shards !== undefined ? integer(input.shards, "shards", 1, L.shardsMax)
    : partitioning === "range" ? splitPoints.length + 1 : COLLECTION_DEFAULTS.shards;
  if (partitioning === "range" && shards !== splitPoints.length + 1) {
    throw new CollectionSpecError("splitPoints", `a range collection of ${shards} shards needs ${shards - 1} split points (got ${splitPoints.length}): its shards' id boundaries`);
  }
  const spec: CollectionSpec = {
    name: input.name as string,
    shards,
    replicationFactor: input.replicationFactor === undefined ? COLLECTION_DEFAULTS.replicationFactor
      : integer(input.replicationFactor, "replicationFactor", 1, L.replicationFactorMax),
    partitioning,
    splitPoints,
    vectors: input.vectors === undefined || input.vectors === null ? null : parseVectorSchema(input.vectors),
    payloadIndexes: input.payloadIndexes === undefined ? {} : parsePayloadIndexes(input.payloadIndexes),
    ttlMs: input.ttlMs === undefined || input.ttlMs === null ? null : integer(input.ttlMs, "ttlMs", L.ttlMsMin, Number.MAX_SAFE_INTEGER),
    writeMode: input.writeMode === undefined ? "sync" : oneOf(input.writeMode, "writeMode", WRITE_MODES),
  };
  return spec;
}

/** A range collection's split points: sorted, distinct, non-empty strings (see CollectionSpec.splitPoints). */
function parseSplitPoints(input: unknown, partitioning: Partitioning): string[] {
  const L = COLLECTION_LIMITS;
  if (partitioning !== "range") throw new CollectionSpecError("splitPoints", "only a range collection (partitioning \"range\") has split points: a hash collection's shards start as equal hash ranges");
  if (!Array.isArray(input)) throw new CollectionSpecError("splitPoints", "a list of ids, sorted: the boundaries between the collection's initial shards");
  if (input.length > L.shardsMax - 1) throw new CollectionSpecError("splitPoints", `at most ${L.shardsMax - 1} split points (${L.shardsMax} shards)`);
  for (const [i, p] of input.entries()) {
    if (typeof p !== "string" || p.length === 0 || p.length > L.splitPointLengthMax || !(p < KEY_SPACE_END)) {
      throw new CollectionSpecError(`splitPoints[${i}]`, `a string of 1 to ${L.splitPointLengthMax} characters (not starting with U+FFFF)`);
    }
    if (i > 0 && !((input[i - 1] as string) < p)) throw new CollectionSpecError(`splitPoints[${i}]`, `${JSON.stringify(p)} does not follow ${JSON.stringify(input[i - 1])}: split points are sorted (string order) and distinct`);
  }
  return input as string[];
}

function parseVectorSchema(input: unknown): VectorSchema {
  if (!isObject(input)) throw new CollectionSpecError("vectors", "an object with `dim` and `metric`");
  onlyFields(input, ["dim", "metric", "storage", "hnsw"], "vectors");
  const L = COLLECTION_LIMITS;
  const D = COLLECTION_DEFAULTS.hnsw;
  let hnsw: HnswParams = { ...D };
  if (input.hnsw !== undefined) {
    if (!isObject(input.hnsw)) throw new CollectionSpecError("vectors.hnsw", "an object of `m`, `efConstruction` and/or `efSearch`");
    onlyFields(input.hnsw, ["m", "efConstruction", "efSearch"], "vectors.hnsw");
    const h = input.hnsw;
    hnsw = {
      m: h.m === undefined ? D.m : integer(h.m, "vectors.hnsw.m", ...L.hnswM),
      efConstruction: h.efConstruction === undefined ? D.efConstruction : integer(h.efConstruction, "vectors.hnsw.efConstruction", ...L.efConstruction),
      efSearch: h.efSearch === undefined ? D.efSearch : integer(h.efSearch, "vectors.hnsw.efSearch", ...L.efSearch),
    };
  }
  const out: VectorSchema = {
    dim: integer(input.dim, "vectors.dim", 1, L.dimMax),
    metric: oneOf(input.metric, "vectors.metric", METRICS),
    storage: input.storage === undefined ? COLLECTION_DEFAULTS.storage : oneOf(input.storage, "vectors.storage", VECTOR_STORAGE),
    hnsw,
  };
  // The graph's 8-bit storage scales components into [-1, 1]: it ranks by direction only, so
  // magnitudes (dot, l2) would be ranked wrongly.
  if (out.storage === "i8" && out.metric !== "cosine") throw new CollectionSpecError("vectors.storage", "i8 storage ranks by direction only: it goes with the cosine metric (use f16 or f32)");
  return out;
}

function parsePayloadIndexes(input: unknown): Record<string, PayloadIndexType> {
  if (!isObject(input)) throw new CollectionSpecError("payloadIndexes", "an object: field (dotted path) -> \"keyword\", \"integer\", \"float\" or \"bool\"");
  const entries = Object.entries(input);
  if (entries.length > COLLECTION_LIMITS.payloadIndexesMax) throw new CollectionSpecError("payloadIndexes", `at most ${COLLECTION_LIMITS.payloadIndexesMax} indexed fields`);
  const out: Record<string, PayloadIndexType> = {};
  for (const [field, type] of entries) {
    const problem = dottedPathProblem(field);
    if (problem !== null) throw new CollectionSpecError(`payloadIndexes.${field}`, problem);
    out[field] = oneOf(type, `payloadIndexes.${field}`, PAYLOAD_INDEX_TYPES);
  }
  return out;
}

/** The largest magnitude a 32-bit float holds: beyond it a stored component would read back as infinity. */
const F32_MAX = 3.4028234663852886e38;

/**
 * Checks a record's vector against the schema and returns it as stored (32-bit floats): a list of
 * exactly `dim` finite numbers within the float range; under cosine, not all zero (it has no direction).
 */
export function checkVector(schema: VectorSchema, input: unknown, path = "vector"): Float32Array {
  if (!Array.isArray(input)) throw new VectorError(path, `a list of ${schema.dim} numbers`);
  if (input.length !== schema.dim) throw new VectorError(path, `${schema.dim} numbers expected (the collection's dim), got ${input.length}`);
  const out = new Float32Array(schema.dim);
  let zero = true;
  for (let i = 0; i < input.length; i++) {
    const x: unknown = input[i];
    if (typeof x !== "number" || !Number.isFinite(x)) throw new VectorError(`${path}[${i}]`, "not a finite number");
    if (Math.abs(x) > F32_MAX) throw new VectorError(`${path}[${i}]`, "beyond the range of a 32-bit float");
    out[i] = x;
    if (out[i] !== 0) zero = false; // as stored: 1e-50 is 0 in 32 bits
  }
  if (zero && schema.metric === "cosine") throw new VectorError(path, "all zero: a cosine collection needs a vector with a direction");
  return out;
}
