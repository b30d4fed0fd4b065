/** `shoal collection create | ls | get | update | drop`: collections through the HTTP API (api/collections.ts). */
import { type ClientOptions, call, readable, report, table } from "./client.js";

export interface CreateOptions extends ClientOptions {
  shards?: number;
  replicationFactor?: number;
  partitioning?: "hash" | "range";
  splitPoints?: string[];
  dim?: number;
  metric?: "cosine" | "dot" | "l2";
  storage?: "f32" | "f16" | "i8";
  index?: Record<string, string>;
  ttlMs?: number;
  writeMode?: "sync" | "async";
}

interface CollectionView {
  name: string;
  shards: number[];
  replicationFactor: number;
  partitioning: string;
  vectors: { dim: number; metric: string; storage: string } | null;
  payloadIndexes: Record<string, string>;
  ttlMs: number | null;
  leaderless?: number[];
}

/** The declaration the options make; the server checks it (400 invalid_collection names the field). */
export function declaration(name: string, o: CreateOptions): Record<string, unknown> {
  const body: Record<string, unknown> = { name };
  if (o.shards !== undefined) body.shards = o.shards;
  if (o.replicationFactor !== undefined) body.replicationFactor = o.replicationFactor;
  if (o.partitioning !== undefined) body.partitioning = o.partitioning;
  if (o.splitPoints !== undefined) body.splitPoints = o.splitPoints;
  if (o.dim !== undefined || o.metric !== undefined) body.vectors = { dim: o.dim, metric: o.metric, ...(o.storage !== undefined ? { storage: o.storage } : {}) };
  if (o.index !== undefined) body.payloadIndexes = o.index;
  if (o.ttlMs !== undefined) body.ttlMs = o.ttlMs;
  if (o.writeMode !== undefined) body.writeMode = o.writeMode;
  return body;
}

const vectorsWords = (v: CollectionView["vectors"]) => (v === null ? "-" : `${v.dim}-d ${v.metric} ${v.storage}`);

export async function collectionCreateCommand(name: string, opts: CreateOptions): Promise<number> {
  const res = await call(opts.endpoint, "POST", "/v1/collections", declaration(name, opts));
  if (!readable(res) || opts.json) return report(res);
  const c = res.body as CollectionView;
  console.log(`created collection ${c.name}: ${c.shards.length} shards (${c.shards.join(", ")}), ${c.replicationFactor} replicas each, vectors ${vectorsWords(c.vectors)}`);
  if ((c.leaderless ?? []).length > 0) console.error(`no leader reported yet from shards ${c.leaderless!.join(", ")}: they elect one shortly (see shoal shard ls)`);
  return 0;
}

export async function collectionListCommand(opts: ClientOptions): Promise<number> {
  const res = await call(opts.endpoint, "GET", "/v1/collections");
  if (!readable(res) || opts.json) return report(res);
  const list = (res.body as { collections: CollectionView[] }).collections;
  console.log(table(["name", "shards", "replicas", "partitioning", "vectors", "payload indexes"],
    list.map((c) => [c.name, c.shards.length, c.replicationFactor, c.partitioning, vectorsWords(c.vectors), Object.entries(c.payloadIndexes).map(([k, t]) => `${k}:${t}`).join(" ") || "-"])));
  return 0;
}

export async function collectionGetCommand(name: string, opts: ClientOptions): Promise<number> {
  return report(await call(opts.endpoint, "GET", `/v1/collections/${encodeURIComponent(name)}`));
}

export async function collectionUpdateCommand(name: string, opts: ClientOptions & { replicationFactor: number }): Promise<number> {
  return report(await call(opts.endpoint, "PATCH", `/v1/collections/${encodeURIComponent(name)}`, { replicationFactor: opts.replicationFactor }));
}

export async function collectionDropCommand(name: string, opts: ClientOptions): Promise<number> {
  const res = await call(opts.endpoint, "DELETE", `/v1/collections/${encodeURIComponent(name)}`);
  if (!readable(res)) return report(res);
  console.log(`dropped collection ${name} (${(res.body as { shards: number }).shards} shards)`);
  return 0;
}
