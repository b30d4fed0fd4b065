/**
 * A shard replica's index on disk: the graph (usearch's own file), the vectors and their norms (raw
 * float32), and `state.msgpack` (labels, versions, payload values, the applied index the files cover,
 * what the index was built for, and a SHA-256 of every other file). Written into a fresh folder that
 * replaces the old one by rename; read back only when every digest and size matches, since usearch
 * aborts the process on a malformed file instead of throwing. Anything wrong means "no saved index":
 * the caller rebuilds from the replica's records.
 */
import { createHash } from "node:crypto";
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeSync } from "node:fs";
import { join } from "node:path";
import { pack, unpack } from "msgpackr";
import { ShardIndex, type ShardIndexState } from "./shard-index.js";
import type { VectorSchema } from "../meta/collections.js";

const FORMAT = 1;
const GRAPH = "graph.usearch";
const VECTORS = "vectors.f32";
const NORMS = "norms.f32";
const STATE = "state.msgpack";

interface SavedState extends Omit<ShardIndexState, "vectors" | "norms"> {
  format: number;
  /** What the index was built for (schema and indexed keys): another collection's files never load. */
  builtFor: string;
  digests: Record<string, string>;
}

/** What an index is built for, as compared on load. */
export function builtFor(schema: VectorSchema | null, keys: readonly string[]): string {
  return JSON.stringify({ schema, keys: [...keys].sort() });
}

function sha256(path: string): string {
  return createHash("sha256").update(readFileSync(path)).digest("hex");
}

function writeDurably(path: string, bytes: Uint8Array): void {
  const fd = openSync(path, "w");
  try {
    let at = 0;
    while (at < bytes.byteLength) at += writeSync(fd, bytes, at);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

function bytesOf(v: Float32Array): Uint8Array {
  return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
}

/** Saves `index` (nothing pending) into `dir`, replacing what was there. Returns the bytes written. */
export function saveIndex(dir: string, index: ShardIndex): number {
  const st = index.state();
  const tmp = `${dir}.saving`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  const digests: Record<string, string> = {};
  let sizeBytes = 0;
  const graph = index.graphHandle;
  if (graph !== null) {
    graph.save(join(tmp, GRAPH));
    digests[GRAPH] = sha256(join(tmp, GRAPH));
    const fd = openSync(join(tmp, GRAPH), "r+");
    fsyncSync(fd);
    closeSync(fd);
  }
  for (const [name, v] of [[VECTORS, st.vectors], [NORMS, st.norms]] as const) {
    const bytes = bytesOf(v);
    writeDurably(join(tmp, name), bytes);
    digests[name] = createHash("sha256").update(bytes).digest("hex");
    sizeBytes += bytes.byteLength;
  }
  const saved: SavedState = {
    format: FORMAT, builtFor: builtFor(index.schema, index.keys), digests,
    indexedThrough: st.indexedThrough, labelsEnd: st.labelsEnd, entries: st.entries, fields: st.fields,
  };
  const state = pack(saved) as Uint8Array;
  writeDurably(join(tmp, STATE), state);
  rmSync(dir, { recursive: true, force: true });
  renameSync(tmp, dir);
  return sizeBytes + state.byteLength;
}

/**
 * The index saved in `dir` if it is whole and was built for this schema and these keys, else null
 * (with the reason, for the log).
 */
export function loadIndex(dir: string, schema: VectorSchema | null, keys: readonly string[]): { index: ShardIndex } | { index: null; reason: string } {
  if (!existsSync(join(dir, STATE))) return { index: null, reason: "no saved index" };
  let saved: SavedState;
  try {
    saved = unpack(readFileSync(join(dir, STATE))) as SavedState;
  } catch (e) {
    return { index: null, reason: `unreadable state: ${(e as Error).message}` };
  }
  if (saved.format !== FORMAT) return { index: null, reason: `format ${String(saved.format)}` };
  if (saved.builtFor !== builtFor(schema, keys)) return { index: null, reason: "built for another schema" };
  for (const [name, digest] of Object.entries(saved.digests ?? {})) {
    if (!existsSync(join(dir, name)) || sha256(join(dir, name)) !== digest) return { index: null, reason: `${name} does not match its digest` };
  }
  if (schema !== null && saved.digests[GRAPH] === undefined) return { index: null, reason: "no graph" };
  const dim = schema?.dim ?? 0;
  const vectors = readFloats(join(dir, VECTORS));
  const norms = readFloats(join(dir, NORMS));
  if (vectors.length !== saved.labelsEnd * dim || norms.length !== saved.labelsEnd) return { index: null, reason: "vector files of the wrong size" };
  let graph = null;
  if (schema !== null) {
    graph = ShardIndex.newGraph(schema);
    graph.load(join(dir, GRAPH));
    if (graph.size() !== saved.entries.length) return { index: null, reason: `the graph holds ${graph.size()} vectors, the state ${saved.entries.length}` };
  }
  const st: ShardIndexState = { indexedThrough: saved.indexedThrough, labelsEnd: saved.labelsEnd, entries: saved.entries, fields: saved.fields, vectors, norms };
  return { index: ShardIndex.restore(schema, keys, st, graph) };
}

function readFloats(path: string): Float32Array {
  const b = readFileSync(path);
  return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
}

/** Removes a replica's saved index (the replica left, or its state was replaced). */
export function removeIndex(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
  rmSync(`${dir}.saving`, { recursive: true, force: true });
}
