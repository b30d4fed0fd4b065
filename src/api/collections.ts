/**
 * The collection routes of the HTTP API (issue 14, DATA-1): create a collection (its shards are born
 * on their voters, placed by the placement driver on the metadata leader), list and read them, and
 * change the replicas each shard keeps. Reads come from this node's copy of the metadata.
 *
 * Dropping a collection removes its shards from the map; their replicas drop them and their indexes.
 * Not built yet, and refused as such: changing anything but the replication factor. Records are written
 * and read through records.ts, searched and counted through search.ts.
 */
import type { FastifyInstance } from "fastify";
import { ApiError, refusalError } from "./error-table.js";
import { JSON_BODY, openObject, responses, THROUGH_RAFT } from "./openapi.js";
import { type CollectionRecord, type MetaState, collectionPartitioning, currentSettings } from "../meta/state.js";
import { comparePositions, rangeView } from "../meta/ranges.js";
import { CollectionSpecError, COLLECTION_LIMITS, collectionNameProblem, parseCollectionSpec } from "../meta/collections.js";
import type { Gateway } from "../node/gateway.js";
import type { MultiRaftNode } from "../node/multi-raft.js";

/** A collection as the API shows it; `ranges` lists its live shards in range order. */
function collectionView(c: CollectionRecord, meta: MetaState) {
  const shards = c.shards.map((id) => meta.shards.get(id)).filter((sh) => sh !== undefined).sort((a, b) => comparePositions(a.range.start, b.range.start));
  return {
    name: c.name,
    shards: c.shards,
    ranges: shards.map((sh) => ({ shard: sh.id, range: rangeView(sh.range) })),
    replicationFactor: c.targetReplicas ?? currentSettings(meta).placement.replicationFactor,
    partitioning: collectionPartitioning(c),
    vectors: c.schema?.vectors ?? null,
    payloadIndexes: c.schema?.payloadIndexes ?? {},
    ttlMs: c.schema?.ttlMs ?? null,
    writeMode: c.schema?.writeMode ?? "sync",
  };
}

const collectionSchema = {
  type: "object", required: ["name", "shards", "replicationFactor", "partitioning", "vectors", "payloadIndexes", "ttlMs"],
  properties: {
    name: { type: "string" }, shards: { type: "array", items: { type: "integer" }, description: "the collection's live shards" },
    ranges: {
      type: "array", description: "its live shards in range order, each with its range [start, end): of the ids' hash (integers), or of the ids themselves in a range collection (strings; the last shard's end is null: unbounded)",
      items: { type: "object", properties: { shard: { type: "integer" }, range: { type: "array", items: { type: ["integer", "string", "null"] } } } },
    },
    replicationFactor: { type: "integer", description: "replicas each shard keeps (the placement driver adds or removes them)" },
    partitioning: { type: "string", enum: ["hash", "range"] },
    vectors: { description: "`{dim, metric, storage, hnsw: {m, efConstruction, efSearch}}`, or null" },
    payloadIndexes: { type: "object", additionalProperties: { type: "string" } },
    ttlMs: { type: ["integer", "null"] },
    writeMode: { type: "string", enum: ["sync", "async"], description: "how single-record writes are acknowledged unless a request says (README, Write modes)" },
  },
} as const;

export async function registerCollectionRoutes(app: FastifyInstance, node: MultiRaftNode, gateway: Gateway): Promise<void> {
  const found = (name: string): CollectionRecord => {
    const c = node.metaState().collections.get(name);
    if (c === undefined) throw new ApiError("collection_not_found", `collection ${JSON.stringify(name)} does not exist`);
    return c;
  };
  const params = { type: "object", required: ["collection"], properties: { collection: { type: "string" } } } as const;

  app.post<{ Body: unknown }>("/v1/collections", {
    config: { op: "create-collection" },
    schema: {
      operationId: "createCollection",
      summary: "Create a collection: its shards are born replicated on voters the placement driver chooses; answers once each shard's leader reported (up to 3 s)",
      body: {
        type: "object", required: ["name"],
        description: `name (${collectionNameProblem("")}); shards (1-${COLLECTION_LIMITS.shardsMax}, default 4 for hash, splitPoints + 1 for range); replicationFactor (1-${COLLECTION_LIMITS.replicationFactorMax}, default 3); ` +
          "partitioning (hash: shards own ranges of the ids' hash; range: shards own ranges of the ids themselves, in string order, so an ordered scan asks only the shards it reaches); " +
          `splitPoints (range only: the ids at which its initial shards start, sorted and distinct, shards - 1 of them, each 1-${COLLECTION_LIMITS.splitPointLengthMax} characters; none: one shard, split at its records' middle as it grows); ` +
          "vectors {dim, metric: cosine | dot | l2, storage: f32 | f16 | i8, hnsw: {m, efConstruction, efSearch}}; payloadIndexes {field: keyword | integer | float | bool}; ttlMs; writeMode (sync, the default: acknowledged once a quorum holds a write; async: once the leader's log holds it)",
      },
      response: responses({ ...collectionSchema, description: "created; `leaderless` names shards no leader reported from in time", properties: { ...collectionSchema.properties, leaderless: { type: "array", items: { type: "integer" } } } },
        "invalid_collection", "collection_exists", "not_enough_nodes", "bad_request", ...JSON_BODY, ...THROUGH_RAFT),
    },
  }, async (req) => {
    let spec;
    try {
      spec = parseCollectionSpec(req.body);
    } catch (e) {
      if (e instanceof CollectionSpecError) throw new ApiError("invalid_collection", e.message, { field: e.path });
      throw e;
    }
    const r = await gateway.placement({ kind: "create-collection", spec });
    if (!r.ok) throw refusalError(r);
    const meta = node.metaState();
    const c = meta.collections.get(spec.name);
    // The answer comes from the metadata leader; this node may apply the change a moment later.
    const view = c !== undefined ? collectionView(c, meta) : { ...spec, shards: r.shards ?? [], ranges: [] };
    return { ...view, leaderless: r.leaderless ?? [] };
  });

  app.get("/v1/collections", {
    config: { op: "list-collections" },
    schema: {
      operationId: "listCollections", summary: "The collections, from this node's copy of the metadata",
      response: responses({ ...openObject, description: "`{collections: [...]}`, by name" }),
    },
  }, async () => {
    const meta = node.metaState();
    return { collections: [...meta.collections.values()].sort((a, b) => (a.name < b.name ? -1 : 1)).map((c) => collectionView(c, meta)) };
  });

  app.get<{ Params: { collection: string } }>("/v1/collections/:collection", {
    config: { op: "get-collection" },
    schema: { operationId: "getCollection", summary: "One collection", params, response: responses({ ...collectionSchema, description: "the collection" }, "collection_not_found") },
  }, async (req) => collectionView(found(req.params.collection), node.metaState()));

  app.patch<{ Params: { collection: string }; Body: { replicationFactor: number } }>("/v1/collections/:collection", {
    config: { op: "update-collection" },
    schema: {
      operationId: "updateCollection", summary: "Change the replicas each shard of the collection keeps (the placement driver adds or removes them)", params,
      body: {
        type: "object", required: ["replicationFactor"], additionalProperties: false,
        properties: { replicationFactor: { type: "integer", minimum: 1, maximum: COLLECTION_LIMITS.replicationFactorMax } },
        description: "only the replication factor changes today",
      },
      response: responses({ ...collectionSchema, description: "the collection as changed" }, "collection_not_found", "bad_request", ...JSON_BODY, ...THROUGH_RAFT),
    },
  }, async (req) => {
    found(req.params.collection);
    const r = await gateway.proposeMeta({ kind: "set-collection-replicas", name: req.params.collection, replicationFactor: req.body.replicationFactor, atMs: gateway.clock.wallMs() });
    if (!r.ok) throw refusalError(r);
    const meta = node.metaState();
    const c = found(req.params.collection);
    return { ...collectionView(c, meta), replicationFactor: req.body.replicationFactor };
  });

  app.delete<{ Params: { collection: string } }>("/v1/collections/:collection", {
    config: { op: "drop-collection" },
    schema: {
      operationId: "dropCollection", params,
      summary: "Drop a collection: its shards leave the map at once (requests for it answer 404 from then on) and their replicas are dropped, records and indexes with them",
      response: responses({
        type: "object", required: ["dropped", "shards"], description: "dropped",
        properties: { dropped: { type: "string" }, shards: { type: "integer", description: "shards removed" } },
      }, "collection_not_found", "collection_protected", ...THROUGH_RAFT),
    },
  }, async (req) => {
    found(req.params.collection);
    const r = await gateway.proposeMeta({ kind: "drop-collection", name: req.params.collection, atMs: gateway.clock.wallMs() });
    if (!r.ok) throw refusalError(r);
    return { dropped: req.params.collection, shards: r.value as number };
  });
}
