/**
 * A shard replica's index on disk: the graph (usearch's own file), the vectors and their norms (raw
 * float32), and `state.msgpack` (labels, versions, payload values, the applied index the files cover,
 * what the index was built for, and a SHA-256 of every other file). Written into a fresh folder that
 * replaces the old one by rename; read back only when every digest and size matches, since usearch
 * aborts the process on a malformed file instead of throwing. Anything wrong means "no saved index":
 * the caller rebuilds from the replica's records.
 */
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync } from "node:fs";
import { open } from "node:fs/promises";
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

/** Bytes hashed or written between turns of the worker's loop while a save runs (so searches are answered). */
const SAVE_CHUNK_BYTES = 8 << 20;

const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** Writes `bytes` to a new file at `path` and fsyncs it, a chunk at a time; answers its SHA-256. */
async function writeDurably(path: string, bytes: Uint8Array): Promise<string> {
  const hash = createHash("sha256");
  const file = await open(path, "w");
  try {
    for (let at = 0; at < bytes.byteLength;) {
      const chunk = bytes.subarray(at, Math.min(bytes.byteLength, at + SAVE_CHUNK_BYTES));
      hash.update(chunk);
      let written = 0;
      while (written < chunk.byteLength) written += (await file.write(chunk, written)).bytesWritten;
      at += chunk.byteLength;
    }
    await file.sync();
  } finally {
    await file.close();
  }
  return hash.digest("hex");
}

/** SHA-256 of a file, read a chunk at a time; fsyncs it too (usearch wrote it without). */
async function hashAndSync(path: string): Promise<string> {
  const hash = createHash("sha256");
  const file = await open(path, "r+");
  try {
    const buf = Buffer.allocUnsafe(SAVE_CHUNK_BYTES);
    for (;;) {
      const { bytesRead } = await file.read(buf, 0, buf.byteLength);
      if (bytesRead === 0) break;
      hash.update(buf.subarray(0, bytesRead));
    }
    await file.sync();
  } finally {
    await file.close();
  }
  return hash.digest("hex");
}

function bytesOf(v: Float32Array): Uint8Array {
  return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
}

/**
 * Saves `index` (nothing pending) into `dir`, replacing what was there; answers the bytes written. Only
 * the graph's own save and the state's encoding run in one piece: the files are written, hashed and
 * fsynced a chunk at a time, so the worker answers searches meanwhile (a 1M-record index once kept it
 * from answering for longer than a search's 5 s timeout). The caller must not change the index until the
 * promise settles (the vectors are written from its arena); `stillWanted` is asked before the new folder
 * replaces the old one (a replica closed meanwhile must not get its files back).
 */
export async function saveIndex(dir: string, index: ShardIndex, stillWanted: () => boolean = () => true): Promise<number> {
  const st = index.state();
  const tmp = `${dir}.saving`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  const digests: Record<string, string> = {};
  let sizeBytes = 0;
  const graph = index.graphHandle;
  if (graph !== null) graph.save(join(tmp, GRAPH));
  await turn();
  if (graph !== null) digests[GRAPH] = await hashAndSync(join(tmp, GRAPH));
  for (const [name, v] of [[VECTORS, st.vectors], [NORMS, st.norms]] as const) {
    const bytes = bytesOf(v);
    digests[name] = await writeDurably(join(tmp, name), bytes);
    sizeBytes += bytes.byteLength;
  }
  const saved: SavedState = {
    format: FORMAT, builtFor: builtFor(index.schema, index.keys), digests,
    indexedThrough: st.indexedThrough, labelsEnd: st.labelsEnd, entries: st.entries, fields: st.fields,
  };
  const state = pack(saved) as Uint8Array;
  await writeDurably(join(tmp, STATE), state);
  if (!stillWanted()) {
    rmSync(tmp, { recursive: true, force: true });
    return 0;
  }
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
