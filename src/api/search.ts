/**
 * The query routes of a collection (issue 14): nearest-neighbour search (one query, or a batch), and
 * counting, both with the filter language (data/filter.ts), fanned out over the shards by data/search.ts.
 * Every input is checked here before any shard is asked: the vector against the schema (400
 * invalid_vector), the filter (400 invalid_filter, naming the fault), the numbers by the schemas.
 */
import type { FastifyInstance } from "fastify";
import type { Gateway } from "../node/gateway.js";
import type { MultiRaftNode } from "../node/multi-raft.js";
import { type CollectionRecord, DEFAULT_COLLECTION } from "../meta/state.js";
import { VectorError, checkVector } from "../meta/collections.js";
import { type Filter, FilterError, parseFilter } from "../data/filter.js";
import { type SearchRequest, type SearchResponse, countCollection, searchCollection } from "../data/search.js";
import { boundView } from "../meta/ranges.js";

/** An answer with its missing ranges as the API shows ranges (a range collection's open end: null). */
/** The answer's body: ranges shown as the API shows them, and its session token left out (it travels in the header). */
function missingShown<A extends { missing: SearchResponse["missing"]; session: SearchResponse["session"] }>(a: A): Omit<A, "missing" | "session"> & { missing: { range: { start: unknown; end: unknown }; shards: number[] }[] } {
  const { session: _session, missing, ...body } = a;
  return { ...body, missing: missing.map((m) => ({ ...m, range: { start: m.range.start, end: boundView(m.range.end) } })) };
}
import { DELETED_PER_REQUEST_MAX, EXAMINED_PER_PAGE_MAX, deleteByFilter, scanFiltered } from "../data/filtered-scan.js";
import { answerSession, decodeCursor, encodeCursor, recordView, sessionOfRequest } from "./records.js";
import type { LevelBound, ReadConsistency } from "../data/index-service.js";
import { ApiError, ERRORS } from "./error-table.js";
import { classify } from "./envelope.js";
import { JSON_BODY, openObject, responses, THROUGH_RAFT } from "./openapi.js";

/** Most neighbours one search returns. */
export const SEARCH_K_MAX = 1000;
/** Most queries in one batch search. */
export const SEARCH_BATCH_MAX = 100;
/** Queries of a batch search asked at once (the rest wait their turn). */
const BATCH_PARALLEL = 8;
const TIMEOUT_MS_MAX = 60_000;

const consistency = {
  type: "string", enum: ["linearizable", "session", "bounded", "eventual"], default: "linearizable",
  description: "linearizable: each shard's leader answers after a ReadIndex round, so every write acknowledged before the search is seen; " +
    "session: any replica of each shard that has applied the versions of the Shoal-Session header (the session's own writes are seen; the answer adds nothing to the token); " +
    "bounded: any replica of each shard that misses no write committed more than maxStalenessMs ago; " +
    "eventual: this node's own replica of each shard when it holds one, else the voter with the fewest of this node's asks in flight, now",
} as const;
const maxStalenessMs = { type: "integer", minimum: 0, maximum: 3_600_000, default: 1000, description: "with consistency=bounded: how stale each shard's answer may be" } as const;

/** What a session or bounded read of several shards carries to each (the session's versions by shard, the bound). */
const withBound = (bound: LevelBound | undefined) => (bound === undefined ? {} : { bound });

function boundOf(consistency: ReadConsistency | undefined, staleMs: number | undefined, session: ReadonlyMap<number, number>): LevelBound | undefined {
  if (consistency === "session") return { session: Object.fromEntries([...session].map(([shard, version]) => [String(shard), version])) };
  if (consistency === "bounded") return { maxStalenessMs: staleMs ?? 1000 };
  return undefined;
}
const filterField = { type: "object", description: "the filter language: {must, should, must_not} over {key, match | range | exists} (README, Filters)" } as const;
const searchFields = {
  vector: { type: "array", items: { type: "number" }, description: "the query: `dim` finite numbers" },
  k: { type: "integer", minimum: 1, maximum: SEARCH_K_MAX, default: 10, description: "neighbours to return" },
  ef: { type: "integer", minimum: 1, maximum: 4096, description: "the graph's search breadth (at least k; default: the collection's efSearch): larger finds more of the true neighbours, slower" },
  exact: { type: "boolean", default: false, description: "brute force over every record: exact neighbours (ground truth), slower" },
  filter: filterField,
  consistency,
  maxStalenessMs,
  timeoutMs: { type: "integer", minimum: 1, maximum: TIMEOUT_MS_MAX, default: 5000, description: "past it: 504, or the shards that answered with allowPartial" },
  allowPartial: { type: "boolean", default: false, description: "answer with the shards that answered in time, naming the missing shards and ranges, instead of failing" },
  withPayload: { type: "boolean", default: true, description: "answer each hit's payload" },
  withVector: { type: "boolean", default: false, description: "answer each hit's vector" },
} as const;
const searchBody = { type: "object", required: ["vector"], additionalProperties: false, properties: searchFields } as const;

interface SearchBody {
  vector: unknown; k: number; ef?: number; exact: boolean; filter?: unknown; consistency: ReadConsistency; maxStalenessMs?: number;
  timeoutMs: number; allowPartial: boolean; withPayload: boolean; withVector: boolean;
}

const searchAnswer = {
  type: "object", required: ["results", "shards", "tookMs"], additionalProperties: true,
  description: "`results`: [{id, score, payload?, vector?}] best first (score: similarity for cosine and dot, distance for l2); `shards`: {asked, answered, failed: [{shard, error, message}]}; `missing`: ranges (of hashes, or of ids in a range collection) no shard answered for (allowPartial); `unindexedKeys`: filter keys without a payload index (checked on payloads); `exhaustive`; `plans`; `tookMs`",
} as const;

function parsedFilter(input: unknown, path: string): Filter | null {
  if (input === undefined) return null;
  try {
    return parseFilter(input, path);
  } catch (e) {
    if (e instanceof FilterError) throw new ApiError("invalid_filter", e.message, { field: e.path });
    throw e;
  }
}

export async function registerSearchRoutes(app: FastifyInstance, node: MultiRaftNode, gateway: Gateway): Promise<void> {
  const params = { type: "object", required: ["collection"], properties: { collection: { type: "string" } } } as const;
  const found = (name: string): CollectionRecord => {
    const c = node.metaState().collections.get(name);
    if (c === undefined) {
      if (name === DEFAULT_COLLECTION) throw new ApiError("collection_not_found", "the default collection is not recorded yet");
      throw new ApiError("collection_not_found", `collection ${JSON.stringify(name)} does not exist`);
    }
    return c;
  };
  const request = (c: CollectionRecord, b: SearchBody, path: string, session: ReadonlyMap<number, number>): SearchRequest => {
    const schema = c.schema?.vectors;
    if (schema === undefined || schema === null) throw new ApiError("invalid_vector", `collection ${c.name} has no vector schema: it cannot be searched by vector`, { field: `${path}vector` });
    let vector: Float32Array;
    try {
      vector = checkVector(schema, b.vector, `${path}vector`);
    } catch (e) {
      if (e instanceof VectorError) throw new ApiError("invalid_vector", e.message, { field: e.path });
      throw e;
    }
    if (b.ef !== undefined && b.ef < b.k) throw new ApiError("bad_request", `${path}ef (${b.ef}) is at least k (${b.k})`, { field: `${path}ef` });
    return {
      vector, k: b.k, ...(b.ef !== undefined ? { ef: b.ef } : {}), exact: b.exact, filter: parsedFilter(b.filter, `${path}filter`),
      consistency: b.consistency, ...withBound(boundOf(b.consistency, b.maxStalenessMs, session)), timeoutMs: b.timeoutMs, allowPartial: b.allowPartial, withPayload: b.withPayload, withVector: b.withVector,
    };
  };
  const errors = ["bad_request", ...JSON_BODY, "collection_not_found", "invalid_vector", "invalid_filter", ...THROUGH_RAFT, "shard_split"] as const;

  app.post<{ Params: { collection: string }; Body: SearchBody }>("/v1/collections/:collection/search", {
    config: { op: "search" },
    schema: {
      operationId: "search", params, body: searchBody,
      summary: "The k records nearest a vector, with an optional filter: every shard asked in parallel, their top k merged",
      response: responses(searchAnswer, ...errors),
    },
  }, async (req, reply) => {
    const c = found(req.params.collection);
    const session = await sessionOfRequest(gateway, req.headers, req.body.consistency === "session");
    const answer = await searchCollection(node, gateway, c, request(c, req.body, "", session));
    answerSession(reply, node, answer.session);
    return missingShown(answer);
  });

  app.post<{ Params: { collection: string }; Body: { searches: SearchBody[] } }>("/v1/collections/:collection/search/batch", {
    config: { op: "search-batch", jsonItemsOf: "searches" },
    schema: {
      operationId: "searchBatch", params,
      summary: `Many searches in one request (up to ${SEARCH_BATCH_MAX}): answers in order, each as /search would answer it or its error`,
      body: {
        type: "object", required: ["searches"], additionalProperties: false,
        properties: { searches: { type: "array", minItems: 1, maxItems: SEARCH_BATCH_MAX, items: searchBody } },
      },
      response: responses({ type: "object", required: ["answers"], properties: { answers: { type: "array", items: openObject } }, description: "`answers`: one per search, in order: a search's answer, or `{error: {code, message}}`" }, ...errors),
    },
  }, async (req, reply) => {
    const c = found(req.params.collection);
    // Every search checked before any is asked: a bad one refuses the batch, naming it.
    const session = await sessionOfRequest(gateway, req.headers, req.body.searches.some((b) => b.consistency === "session"));
    const requests = req.body.searches.map((b, i) => request(c, b, `searches[${i}].`, session));
    const answers: unknown[] = new Array(requests.length);
    const pairs: [number, number][] = [];
    let next = 0;
    const run = async () => {
      while (next < requests.length) {
        const i = next++;
        try {
          const answer = await searchCollection(node, gateway, c, requests[i]!);
          pairs.push(...answer.session);
          answers[i] = missingShown(answer);
        } catch (e) {
          const err = e as Error;
          const known = classify(err);
          if (known === null) throw err; // a bug: the whole request answers 500 with its requestId
          const entry = ERRORS[known.code];
          answers[i] = { error: { code: known.code, message: known.message, retryable: entry.retryable, ...known.extra } };
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(BATCH_PARALLEL, requests.length) }, run));
    answerSession(reply, node, pairs);
    return { answers };
  });

  app.post<{ Params: { collection: string }; Body: { filter?: unknown; consistency: ReadConsistency; maxStalenessMs?: number; timeoutMs: number; allowPartial: boolean } }>("/v1/collections/:collection/count", {
    config: { op: "count" },
    schema: {
      operationId: "count", params,
      summary: "Records satisfying a filter (all records without one): from the payload indexes when every key of the filter is indexed, else by reading the records",
      body: {
        type: ["object", "null"], additionalProperties: false,
        properties: { filter: filterField, consistency, maxStalenessMs, timeoutMs: searchFields.timeoutMs, allowPartial: searchFields.allowPartial },
      },
      response: responses({ type: "object", required: ["count"], additionalProperties: true, description: "`count`, `shards`, `missing`, `unindexedKeys`, `tookMs`" }, ...errors),
    },
  }, async (req, reply) => {
    const c = found(req.params.collection);
    const b = req.body ?? { consistency: "linearizable", timeoutMs: 5000, allowPartial: false };
    const session = await sessionOfRequest(gateway, req.headers, b.consistency === "session");
    const answer = await countCollection(node, gateway, c, parsedFilter(b.filter, "filter"), b.consistency ?? "linearizable", b.timeoutMs ?? 5000, b.allowPartial ?? false,
      boundOf(b.consistency, b.maxStalenessMs, session));
    answerSession(reply, node, answer.session);
    return missingShown(answer);
  });

  app.post<{ Params: { collection: string }; Body: { filter?: unknown; limit: number; cursor?: string; consistency: ReadConsistency; maxStalenessMs?: number; withVector: boolean; timeoutMs: number } }>("/v1/collections/:collection/records/scan", {
    config: { op: "scan-filtered" },
    schema: {
      operationId: "scanRecordsFiltered", params,
      summary: `Records satisfying a filter, in id order, a page at a time: each shard examines at most ${EXAMINED_PER_PAGE_MAX} records per page, so a sparse filter gives short pages with a cursor (null exactly at the end)`,
      body: {
        type: ["object", "null"], additionalProperties: false,
        properties: {
          filter: filterField, limit: { type: "integer", minimum: 1, maximum: 1000, default: 100, description: "records per page, at most" },
          cursor: { type: "string", maxLength: 1024, description: "the `cursor` of the previous page, unchanged" },
          consistency, maxStalenessMs, withVector: { type: "boolean", default: false }, timeoutMs: searchFields.timeoutMs,
        },
      },
      response: responses({ type: "object", required: ["records", "cursor"], additionalProperties: true, description: "`records` [{id, payload, version, vector?}], `cursor` (null: the end), `examined`" },
        ...errors, "bad_cursor"),
    },
  }, async (req, reply) => {
    const c = found(req.params.collection);
    const b = req.body ?? { limit: 100, consistency: "linearizable" as const, withVector: false, timeoutMs: 5000 };
    const after = b.cursor === undefined ? undefined : decodeCursor(b.cursor);
    const session = await sessionOfRequest(gateway, req.headers, b.consistency === "session");
    const page = await scanFiltered(node, gateway, c.name, parsedFilter(b.filter, "filter"), b.limit ?? 100, after, b.consistency ?? "linearizable", b.timeoutMs ?? 5000,
      boundOf(b.consistency, b.maxStalenessMs, session));
    answerSession(reply, node, page.session);
    return {
      records: page.records.map(([id, r]) => recordView(id, r, b.withVector === true)),
      cursor: page.cursor === null ? null : encodeCursor(page.cursor), examined: page.examined,
    };
  });

  app.post<{ Params: { collection: string }; Body: { filter: unknown; max: number; timeoutMs: number } }>("/v1/collections/:collection/records/delete", {
    config: { op: "delete-filtered" },
    schema: {
      operationId: "deleteRecordsByFilter", params,
      summary: `Delete the records satisfying a filter, up to \`max\` per request (at most ${DELETED_PER_REQUEST_MAX}): a page of matches at a time, one proposal per shard per page; \`more: true\` says to ask again`,
      description: "Records written while it runs may or may not be deleted. An error after some pages were deleted says the outcome is unknown (504) or names what refused; asking again deletes what still matches.",
      body: {
        type: "object", required: ["filter"], additionalProperties: false,
        properties: {
          filter: filterField,
          max: { type: "integer", minimum: 1, maximum: DELETED_PER_REQUEST_MAX, default: 10_000, description: "records to delete in this request, at most" },
          timeoutMs: { ...searchFields.timeoutMs, description: "for each page's scan" },
        },
      },
      response: responses({ type: "object", required: ["deleted", "more"], additionalProperties: true, description: "`deleted`: records deleted; `more`: others may match (ask again); `examined`" },
        ...errors, "quorum_lost", "interrupted"),
    },
  }, async (req) => {
    const c = found(req.params.collection);
    const filter = parsedFilter(req.body.filter, "filter");
    if (filter === null) throw new ApiError("invalid_filter", "filter: required (to delete every record, drop the collection or use {} explicitly)", { field: "filter" });
    return deleteByFilter(node, gateway, c.name, filter, req.body.max, req.body.timeoutMs);
  });
}
