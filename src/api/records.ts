/**
 * The record routes of the HTTP API: put, get and delete one record, a batch upsert (DATA-5), and scans
 * in id order. A record of a collection with a vector schema carries its vector, checked against the
 * schema here (length, finite numbers within float32, not all zero under cosine) before anything
 * reaches the log.
 */
import type { FastifyInstance, FastifyReply } from "fastify";
import type { Gateway, WriteOptions, WriteOutcome } from "../node/gateway.js";
import { IDEMPOTENCY_KEY_PATTERN } from "../node/idempotency.js";
import { type Consistency, META_GROUP, type MultiRaftNode } from "../node/multi-raft.js";
import { type PutItem, type StoredRecord, isExpired, vectorBytes, vectorOf } from "../node/records.js";
import { ApiError, ERRORS } from "./error-table.js";
import { classify } from "./envelope.js";
import { LEADER_HEADER, SESSION_HEADER, sendSession, sessionOf } from "./session.js";
import type { IndexService } from "../data/index-service.js";
import { JSON_BODY, THROUGH_RAFT, WRITE, responses } from "./openapi.js";
import { scanCollection } from "../node/scan.js";
import { type CollectionRecord, DEFAULT_COLLECTION } from "../meta/state.js";
import { VectorError, type WriteMode, checkVector } from "../meta/collections.js";

const WITH_VECTOR = { type: "boolean", default: false, description: "answer each record's vector too" } as const;

/** Records one batch upsert may carry; more is refused with 413 `batch_too_large`. */
export const BATCH_RECORDS_MAX = 1000;
/** The body limit of a batch upsert (a batch of 1,000 records of 1,536-d vectors is ~20 MB of JSON). */
export const BATCH_BODY_BYTES_MAX = 32 << 20;
export const ID_PATTERN = "^[A-Za-z0-9._~:@!$&'()*+,;=-]{1,256}$";
const ID_REGEX = new RegExp(ID_PATTERN);
/** Scan cursors are opaque: a version tag, then the last id of the page (base64url). */
const CURSOR_TAG = "c1.";

export function encodeCursor(id: string): string {
  return CURSOR_TAG + Buffer.from(id, "utf8").toString("base64url");
}

/** The id a cursor continues after; a cursor this API did not hand out is refused. */
export function decodeCursor(cursor: string): string {
  const body = cursor.startsWith(CURSOR_TAG) ? cursor.slice(CURSOR_TAG.length) : null;
  const id = body === null || !/^[A-Za-z0-9_-]+$/.test(body) ? null : Buffer.from(body, "base64url").toString("utf8");
  if (id === null || !ID_REGEX.test(id) || encodeCursor(id) !== cursor) throw new ApiError("bad_cursor", "the cursor is not one this API handed out: pass back the `cursor` of the previous page unchanged");
  return id;
}

/**
 * The reply to a write: its version, or 409 when its compare-and-set failed. An outcome answered again
 * for a repeated idempotency key says so in the `Idempotent-Replayed` header (the body is the first one).
 */
/**
 * The answer's session token: the shards' versions, and this node's metadata index as the metadata
 * group's pair (a later session read waits for its node's shard map to be that new: sessionOfRequest).
 */
export function answerSession(reply: FastifyReply, node: MultiRaftNode, pairs: Iterable<readonly [number, number]>): void {
  sendSession(reply, [...pairs, [META_GROUP, node.metaAppliedIndex()]]);
}

/**
 * A request's session (its Shoal-Session header); for a session read, once this node's shard map is as
 * new as the session's, so that a split or merge the session saw is never routed around.
 */
export async function sessionOfRequest(gateway: Gateway, headers: Record<string, string | string[] | undefined>, sessionRead: boolean): Promise<Map<number, number>> {
  const session = sessionOf(headers[SESSION_HEADER]);
  if (sessionRead) await gateway.metaAtLeast(session.get(META_GROUP) ?? 0);
  return session;
}

function writeReply(r: WriteOutcome, reply: FastifyReply, node: MultiRaftNode): { version: number; deleted?: boolean; mode?: "async" } {
  if (r.ok) answerSession(reply, node, [[r.shard, r.version]]);
  // Forwarded: the client that sent it here may route the shard's next writes to its leader itself.
  if (r.leader !== 0 && r.leader !== node.id) void reply.header(LEADER_HEADER, `${r.shard}:${r.leader}`);
  // Held by the leader's log, not yet by a quorum: accepted, not done (README, Write modes).
  if ("async" in r) {
    void reply.code(202);
    return { version: r.version, mode: "async" };
  }
  if ((r.ok || r.code === "version_mismatch") && r.replayed === true) void reply.header("Idempotent-Replayed", "true");
  if (r.ok) return r.deleted === undefined ? { version: r.version } : { version: r.version, deleted: r.deleted };
  if (r.code === "version_mismatch") throw new ApiError("version_mismatch", `record is at version ${r.currentVersion}`, { currentVersion: r.currentVersion });
  if (r.code === "idempotency_key_reused") {
    throw new ApiError("idempotency_key_reused", "this Idempotency-Key was used for a different write of this record: use a new key for a new write");
  }
  // The gateway routes again after a split; a record command never asks for a split.
  throw new Error(`unexpected write result ${r.code}`);
}

/**
 * A write's options. Its mode: the request's `writeMode`, else its collection's. A compare-and-set is
 * sync whatever the collection says (its outcome is known only once applied), and refused when the
 * request itself asks for async.
 */
function writeOptions(ifVersion: number | undefined, idempotencyKey: string | string[] | undefined, asked: WriteMode | undefined, c: CollectionRecord | undefined): WriteOptions {
  const opts: WriteOptions = {};
  if (ifVersion !== undefined) opts.ifVersion = ifVersion;
  if (typeof idempotencyKey === "string") opts.idempotencyKey = idempotencyKey;
  if (asked === "async" && ifVersion !== undefined) {
    throw new ApiError("bad_request", "writeMode=async with ifVersion: a compare-and-set's outcome is known only once applied; send it sync", { field: "writeMode" });
  }
  if ((asked ?? c?.schema?.writeMode) === "async" && ifVersion === undefined) opts.mode = "async";
  return opts;
}

/** The query parameter choosing a write's mode, and the answer of an async write (202). */
const writeModeQuery = {
  type: "string", enum: ["sync", "async"],
  description: "sync: answered once a quorum holds the write and the leader applied it (200); async: once the leader's log holds it durably (202, `mode: \"async\"`; a failover before a quorum holds it can lose it: README, Write modes). Default: the collection's writeMode",
} as const;
const asyncAnswer = {
  description: "accepted in write mode async: durable in the leader's log, not yet on a quorum; `version` is the version it gets when applied",
  type: "object", required: ["version", "mode"], properties: { version: { type: "integer" }, mode: { type: "string", enum: ["async"] } },
} as const;


/** When a record written now expires, in a collection with a TTL (the proposer's clock plus the TTL). */
function expiryOf(c: CollectionRecord | undefined, gateway: Gateway): number | undefined {
  const ttlMs = c?.schema?.ttlMs ?? null;
  return ttlMs === null ? undefined : gateway.clock.wallMs() + ttlMs;
}

/** A stored record as the API shows it. */
export function recordView(id: string, r: StoredRecord, withVector: boolean): { id: string; payload: unknown; version: number; vector?: number[]; expiresAtMs?: number } {
  const view: { id: string; payload: unknown; version: number; vector?: number[]; expiresAtMs?: number } = { id, payload: r.payload, version: r.version };
  if (withVector && r.vector !== undefined) view.vector = [...vectorOf(r.vector)];
  if (r.expiresAtMs !== undefined) view.expiresAtMs = r.expiresAtMs;
  return view;
}

/**
 * A record's vector as the log carries it: checked against the collection's schema, or refused when the
 * collection has none (or has one and the record carries no vector).
 */
export function recordVector(c: CollectionRecord | undefined, input: unknown, path: string): Uint8Array | undefined {
  const schema = c?.schema?.vectors;
  if (schema === undefined || schema === null) {
    if (input === undefined) return undefined;
    throw new ApiError("invalid_vector", `${path}: the collection has no vector schema, so its records carry no vector`, { field: path });
  }
  if (input === undefined) throw new ApiError("invalid_vector", `${path}: the collection's records need a vector of ${schema.dim} numbers`, { field: path });
  try {
    return vectorBytes(checkVector(schema, input, path));
  } catch (e) {
    if (e instanceof VectorError) throw new ApiError("invalid_vector", e.message, { field: e.path });
    throw e;
  }
}

export async function registerRecordRoutes(app: FastifyInstance, node: MultiRaftNode, gateway: Gateway, batchBodyLimitBytes: number, indexes: IndexService | null): Promise<void> {
  const checkCollection = (name: string): CollectionRecord | undefined => {
    // Looked up in the metadata; before the founders created it, the cluster's first collection is known by name.
    const c = node.metaState().collections.get(name);
    if (c === undefined && !(name === DEFAULT_COLLECTION && node.metaState().collections.size === 0)) throw new ApiError("collection_not_found", `collection ${JSON.stringify(name)} does not exist`);
    return c;
  };
  const recordParams = {
    type: "object", required: ["collection", "id"],
    properties: {
      collection: { type: "string", description: "the collection (`default`, or one created with its shards in the metadata)" },
      id: { type: "string", pattern: ID_PATTERN, description: "the record's id: 1-256 characters of A-Z a-z 0-9 . _ ~ : @ ! $ & ' ( ) * + , ; = -" },
    },
  } as const;
  const version = { type: "integer", description: "the record's version: grows with every write of the record, across splits, merges and restarts (compare-and-set with ifVersion)" } as const;
  const writeHeaders = {
    type: "object",
    properties: {
      "idempotency-key": {
        type: "string", pattern: IDEMPOTENCY_KEY_PATTERN,
        description: "1-255 printable ASCII characters. Asking again with the same key (and the same write) returns the first outcome instead of applying twice; the answer then carries `Idempotent-Replayed: true`. Keys are scoped to the record and remembered for the `idempotencyKeyTtlMs` setting (default 1 h).",
      },
    },
  } as const;
  const record = {
    type: "object", required: ["id", "payload", "version"],
    properties: { id: { type: "string" }, payload: { description: "any JSON value" }, version, vector: { type: "array", items: { type: "number" }, description: "with `withVector=true`, in a collection with a vector schema" },
      expiresAtMs: { type: "integer", description: "in a collection with a TTL: when the record expires (wall-clock ms since the epoch)" } },
  } as const;
  const vectorField = { type: "array", items: { type: "number" }, description: "the record's vector: required in a collection with a vector schema (`dim` finite numbers), refused in one without" } as const;

  app.put<{ Params: { collection: string; id: string }; Querystring: { writeMode?: WriteMode }; Body: { payload: unknown; vector?: unknown; ifVersion?: number } }>(
    "/v1/collections/:collection/records/:id",
    {
      config: { op: "put" },
      schema: {
        operationId: "putRecord",
        summary: "Create or replace a record (compare-and-set with ifVersion; 0 means must not exist)",
        params: recordParams,
        headers: writeHeaders,
        querystring: { type: "object", properties: { writeMode: writeModeQuery } },
        body: {
          type: "object", required: ["payload"], additionalProperties: false,
          properties: {
            payload: { description: "any JSON value (numbers finite, integers within ±(2^53-1))" },
            vector: vectorField,
            ifVersion: { type: "integer", minimum: 0, description: "apply only if the record is at this version (0: only if it does not exist)" },
          },
        },
        response: {
          ...responses({ description: "written", type: "object", required: ["version"], properties: { version } },
            "bad_request", ...JSON_BODY, "collection_not_found", "invalid_vector", "version_mismatch", "idempotency_key_reused", ...WRITE),
          202: asyncAnswer,
        },
      },
    },
    async (req, reply) => {
      const c = checkCollection(req.params.collection);
      const vector = recordVector(c, req.body.vector, "vector");
      indexes?.admit(req.params.collection);
      const opts = writeOptions(req.body.ifVersion, req.headers["idempotency-key"], req.query.writeMode, c);
      const expiresAtMs = expiryOf(c, gateway);
      if (expiresAtMs !== undefined) opts.expiresAtMs = expiresAtMs;
      return writeReply(await gateway.put(req.params.id, req.body.payload, opts, req.params.collection, vector), reply, node);
    },
  );

  app.get<{ Params: { collection: string; id: string }; Querystring: { consistency?: Consistency; maxStalenessMs?: number; withVector?: boolean } }>(
    "/v1/collections/:collection/records/:id",
    {
      config: { op: "get" },
      schema: {
        operationId: "getRecord",
        summary: "Read a record",
        params: recordParams,
        querystring: {
          type: "object",
          properties: {
            consistency: {
              type: "string", enum: ["linearizable", "session", "bounded", "eventual", "sequential"], default: "linearizable",
              description: "linearizable: every write acknowledged before the read is seen (a ReadIndex round, on this node's replica or the leader's); " +
                `session: a replica that has applied the versions in the ${SESSION_HEADER} header (your writes and what you read before: answers carry the header); ` +
                "bounded: a replica known to hold every write acknowledged more than maxStalenessMs ago; eventual: this node's replica, now; sequential: refused (400) until it is a mode of its own",
            },
            maxStalenessMs: { type: "integer", minimum: 0, maximum: 3_600_000, default: 1000, description: "with consistency=bounded: how stale the answer may be" },
            withVector: WITH_VECTOR,
          },
        },
        headers: { type: "object", properties: { [SESSION_HEADER]: { type: "string", description: "with consistency=session: the token of earlier answers (`shard:version` pairs separated by commas)" } } },
        response: responses({ ...record, description: `the record (the ${SESSION_HEADER} header: the token of this read)` }, "bad_request", "collection_not_found", "not_found", ...THROUGH_RAFT, "shard_split"),
      },
    },
    async (req, reply) => {
      checkCollection(req.params.collection);
      // Refused rather than served as linearizable: a level a client picks must mean what it says.
      if (req.query.consistency === "sequential") {
        throw new ApiError("bad_request", "consistency=sequential is not a mode of its own yet (it would read exactly like linearizable): ask for linearizable, session, bounded or eventual", { field: "consistency" });
      }
      const session = await sessionOfRequest(gateway, req.headers, req.query.consistency === "session");
      const at = await gateway.getAt(req.params.id, req.query.consistency ?? "linearizable", req.params.collection, session, req.query.maxStalenessMs ?? 1000);
      // Also on not_found: having seen the record absent is part of what later reads must not go back on.
      answerSession(reply, node, [[at.shard, at.appliedVersion]]);
      const found = at.record;
      const rec = found !== undefined && isExpired(found, gateway.clock.wallMs()) ? undefined : found;
      if (rec === undefined) throw new ApiError("not_found", `record ${JSON.stringify(req.params.id)} does not exist`);
      return recordView(req.params.id, rec, req.query.withVector === true);
    },
  );

  app.delete<{ Params: { collection: string; id: string }; Querystring: { ifVersion?: number; writeMode?: WriteMode } }>(
    "/v1/collections/:collection/records/:id",
    {
      config: { op: "delete" },
      schema: {
        operationId: "deleteRecord",
        summary: "Delete a record (`deleted: false` when there was none)",
        params: recordParams,
        headers: writeHeaders,
        querystring: { type: "object", properties: { ifVersion: { type: "integer", minimum: 0, description: "delete only if the record is at this version" }, writeMode: writeModeQuery } },
        response: {
          ...responses({
            description: "done", type: "object", required: ["version", "deleted"],
            properties: { version, deleted: { type: "boolean", description: "false: the record did not exist (nothing was deleted)" } },
          }, "bad_request", "collection_not_found", "version_mismatch", "idempotency_key_reused", ...WRITE),
          202: asyncAnswer,
        },
      },
    },
    async (req, reply) => {
      const c = checkCollection(req.params.collection);
      return writeReply(await gateway.delete(req.params.id, writeOptions(req.query.ifVersion, req.headers["idempotency-key"], req.query.writeMode, c), req.params.collection), reply, node);
    },
  );

  app.get<{ Params: { collection: string }; Querystring: { limit: number; cursor?: string; withVector?: boolean } }>(
    "/v1/collections/:collection/records",
    {
      config: { op: "scan" },
      schema: {
        operationId: "scanRecords",
        summary: "Scan records in id order: every record that exists throughout a scan is returned once, also while shards split and merge (each shard read at a ReadIndex)",
        params: { type: "object", required: ["collection"], properties: { collection: recordParams.properties.collection } },
        querystring: {
          type: "object",
          properties: {
            limit: { type: "integer", minimum: 1, maximum: 1000, default: 100, description: "records per page" },
            cursor: { type: "string", maxLength: 1024, description: "the `cursor` of the previous page, unchanged" },
            withVector: WITH_VECTOR,
          },
        },
        response: responses({
          description: "a page of records and the cursor of the next (null: the last page)", type: "object", required: ["records", "cursor"],
          properties: { records: { type: "array", items: record }, cursor: { type: ["string", "null"] } },
        }, "bad_request", "bad_cursor", "collection_not_found", ...THROUGH_RAFT, "shard_split"),
      },
    },
    async (req, reply) => {
      checkCollection(req.params.collection);
      const after = req.query.cursor === undefined ? undefined : decodeCursor(req.query.cursor);
      // Exact across splits and merges: every shard's part read at a ReadIndex, the parts tiling the position space, or in a range collection following one another from the cursor on (node/scan.ts).
      const { records, more, session } = await scanCollection(node, gateway, req.params.collection, req.query.limit, after);
      answerSession(reply, node, session);
      const nowMs = gateway.clock.wallMs();
      // Expired records not deleted yet are left out (the cursor still moves past them).
      return { records: records.filter(([, r]) => !isExpired(r, nowMs)).map(([id, r]) => recordView(id, r, req.query.withVector === true)), cursor: more ? encodeCursor(records[records.length - 1]![0]) : null };
    },
  );


  app.post<{ Params: { collection: string }; Body: { records: { id: string; payload: unknown; vector?: unknown }[] } }>(
    "/v1/collections/:collection/records",
    {
      bodyLimit: batchBodyLimitBytes,
      config: { op: "put-many", jsonItemsOf: "records" },
      schema: {
        operationId: "upsertRecords",
        summary: `Batch upsert (up to ${BATCH_RECORDS_MAX} records): grouped by shard, one proposal per shard, shards written in parallel; one result per record, in order`,
        description: "Each record is acknowledged once committed and applied (durable on a quorum). A batch carries no idempotency key: a plain put asked twice leaves the same record (at a higher version), so a batch whose outcome is unknown may be sent again. Each item's JSON is held to the node's field limits on its own.",
        params: { type: "object", required: ["collection"], properties: { collection: recordParams.properties.collection } },
        body: {
          type: "object", required: ["records"], additionalProperties: false,
          properties: {
            records: {
              type: "array", minItems: 1,
              items: {
                type: "object", required: ["id", "payload"], additionalProperties: false,
                properties: { id: recordParams.properties.id, payload: { description: "any JSON value" }, vector: vectorField },
              },
            },
          },
        },
        response: responses({
          description: "one result per record, in order: `{id, version}` or `{id, error: {code, message, retryable, applied}}`; `failed` counts the errors",
          type: "object", required: ["results", "failed"],
          properties: { results: { type: "array", items: { type: "object", additionalProperties: true } }, failed: { type: "integer" } },
        }, "bad_request", ...JSON_BODY, "batch_too_large", "collection_not_found", "invalid_vector", "not_ready"),
      },
    },
    async (req, reply) => {
      const c = checkCollection(req.params.collection);
      const input = req.body.records;
      if (input.length > BATCH_RECORDS_MAX) {
        throw new ApiError("batch_too_large", `${input.length} records in one batch: at most ${BATCH_RECORDS_MAX}`, { max: BATCH_RECORDS_MAX });
      }
      // Every vector checked before anything is proposed: a bad item refuses the batch, naming it.
      const expiresAtMs = expiryOf(c, gateway);
      const items = input.map((r, i): PutItem => {
        const vector = recordVector(c, r.vector, `records[${i}].vector`);
        const item: PutItem = { key: r.id, payload: r.payload };
        if (vector !== undefined) item.vector = vector;
        if (expiresAtMs !== undefined) item.expiresAtMs = expiresAtMs;
        return item;
      });
      indexes?.admit(req.params.collection);
      const outcomes = await gateway.putMany(items, req.params.collection);
      let failed = 0;
      answerSession(reply, node, outcomes.flatMap((o) => (o.ok ? [[o.shard, o.version] as const] : [])));
      const results = outcomes.map((o, i) => {
        const id = input[i]!.id;
        if (o.ok) return { id, version: o.version };
        failed++;
        const known = classify(o.error);
        if (known === null) throw o.error; // a bug: the request answers 500 with its requestId
        const e = ERRORS[known.code];
        return { id, error: { code: known.code, message: known.message, retryable: e.retryable, applied: e.applied } };
      });
      return { results, failed };
    },
  );
}
