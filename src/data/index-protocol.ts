/**
 * The messages between a node's index service (index-service.ts, on the node's thread) and its index
 * worker (index-worker.ts). Vectors travel packed in one Float32Array per message (transferred, not
 * copied); an op names its vector by position in it.
 */
import type { VectorSchema } from "../meta/collections.js";
import type { Filter } from "./filter.js";
import type { SearchOptions, SearchResult } from "./shard-index.js";

/**
 * [record id, version, position of its vector in the message's `vectors` (-1: none), values of the
 * indexed payload keys (null: the record was deleted)].
 */
export type WireOp = [string, number, number, Record<string, unknown[]> | null];

export type ToWorker =
  /** `niceness`: the worker lowers its own thread's priority to it (thread-priority.ts). */
  | { t: "init"; dir: string; niceness: number }
  /** Opens shard `group`'s index: the saved one if whole and built alike (unless `fresh`), else an empty one. */
  | { t: "open"; group: number; schema: VectorSchema | null; keys: string[]; fresh: boolean }
  | { t: "ops"; group: number; ops: WireOp[]; vectors: Float32Array | null; appliedIndex: number }
  | { t: "sync-begin"; group: number }
  | { t: "sync-page"; group: number; ops: WireOp[]; vectors: Float32Array | null }
  | { t: "sync-end"; group: number }
  | { t: "close"; group: number; removeFiles: boolean }
  | { t: "search"; req: number; group: number; query: Float32Array; opts: SearchOptions }
  | { t: "count"; req: number; group: number; filter: Filter | null }
  | { t: "save-all"; req: number };

/** `receivedThrough`: the applied index of the last ops the index had received when it answered. */
export type SearchAnswer = SearchResult & { indexedThrough: number; receivedThrough: number };
export interface CountAnswer { count: number; indexedThrough: number; receivedThrough: number }

export type FromWorker =
  | { t: "opened"; group: number; loadedThrough: number | null; size: number; reason?: string }
  /** Per index: [group, applied index the graph covers, ops pending, records indexed, ops and catch-up records received ever]. */
  | { t: "progress"; groups: [number, number, number, number, number][] }
  | { t: "saved"; group: number; indexedThrough: number; sizeBytes: number }
  | { t: "answer"; req: number; value: unknown }
  | { t: "failed"; req: number; message: string }
  | { t: "log"; level: "warn" | "error"; group: number | null; message: string };
