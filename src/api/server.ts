/**
 * The public HTTP API of a node (every node is a gateway). JSON in and out; every error is
 * `{"error": {"code", "message", ...}}` with the status of its code in the error table. Routes are
 * described by JSON schemas, which validate input before anything reaches the log and generate the
 * OpenAPI document (browsable at /docs).
 */
import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyReply } from "fastify";
import swagger from "@fastify/swagger";
import swaggerUi from "@fastify/swagger-ui";
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import type { Gateway, WriteOptions } from "../node/gateway.js";
import { IDEMPOTENCY_KEY_PATTERN } from "../node/idempotency.js";
import { type Consistency, type MultiRaftNode, META_GROUP } from "../node/multi-raft.js";
import type { CommandResult } from "../node/records.js";
import { ApiError } from "./error-table.js";
import { envelopeOptions, installEnvelope } from "./envelope.js";
import { validatorCompiler } from "./validation.js";
import { DEFAULT_JSON_LIMITS, type JsonLimits, parseJsonBody } from "./json-input.js";
import { JSON_BODY, THROUGH_RAFT, WRITE, openObject, responses } from "./openapi.js";
import { registerClusterRoutes } from "./cluster.js";
import { registerCollectionRoutes } from "./collections.js";
import { scanCollection } from "../node/scan.js";
import { DEFAULT_COLLECTION } from "../meta/state.js";

export interface ApiOptions {
  node: MultiRaftNode;
  gateway: Gateway;
  logger: FastifyBaseLogger;
  /** Largest accepted request body (the payload limit). */
  bodyLimitBytes?: number;
  /** Bounds on a body's JSON (depth, fields, key length); defaults in DEFAULT_JSON_LIMITS. */
  jsonLimits?: Partial<JsonLimits>;
  /** Test mode: exposes POST /v1/test/faults (transport fault injection). Never on in production. */
  testMode?: boolean;
  /** Test mode: makes the next n joins handled here fail after registering (see Membership). */
  failJoins?: (n: number) => void;
}

declare module "fastify" {
  interface FastifyContextConfig {
    /** The operation name for the latency histogram. */
    op?: string;
  }
}

export const ID_PATTERN = "^[A-Za-z0-9._~:@!$&'()*+,;=-]{1,256}$";
const ID_REGEX = new RegExp(ID_PATTERN);
/** Scan cursors are opaque: a version tag, then the last id of the page (base64url). */
const CURSOR_TAG = "c1.";
/** How often the event-loop delay metric samples (see collectDefaultMetrics below). */
const EVENT_LOOP_SAMPLE_MS = 100;

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
function writeReply(r: CommandResult, reply: FastifyReply): { version: number; deleted?: boolean } {
  if ((r.ok || r.code === "version_mismatch") && r.replayed === true) void reply.header("Idempotent-Replayed", "true");
  if (r.ok) return r.deleted === undefined ? { version: r.version } : { version: r.version, deleted: r.deleted };
  if (r.code === "version_mismatch") throw new ApiError("version_mismatch", `record is at version ${r.currentVersion}`, { currentVersion: r.currentVersion });
  if (r.code === "idempotency_key_reused") {
    throw new ApiError("idempotency_key_reused", "this Idempotency-Key was used for a different write of this record: use a new key for a new write");
  }
  // The gateway routes again after a split; a record command never asks for a split.
  throw new Error(`unexpected write result ${r.code}`);
}

function writeOptions(ifVersion: number | undefined, idempotencyKey: string | string[] | undefined): WriteOptions {
  const opts: WriteOptions = {};
  if (ifVersion !== undefined) opts.ifVersion = ifVersion;
  if (typeof idempotencyKey === "string") opts.idempotencyKey = idempotencyKey;
  return opts;
}

export async function buildApi(opts: ApiOptions): Promise<FastifyInstance> {
  const { node, gateway } = opts;
  const limits = { ...DEFAULT_JSON_LIMITS, ...opts.jsonLimits };
  let closing = false;
  const app = Fastify({
    // Per-request logs are info level: a warn-level child keeps errors and drops the per-request noise.
    loggerInstance: opts.logger.child({}, { level: "warn" }),
    bodyLimit: opts.bodyLimitBytes ?? 1 << 20,
    // Long enough for any valid id (up to 256 characters, percent-encoded), so the schema judges it.
    routerOptions: { maxParamLength: 1024 },
    ...envelopeOptions(),
  });
  // Bodies keep their JSON types; paths and queries give exact integers or are refused (validation.ts).
  app.setValidatorCompiler(validatorCompiler);
  app.addHook("preClose", async () => {
    closing = true;
  });
  installEnvelope(app, { onError: (code) => errors.inc({ code }), closing: () => closing });
  // Bodies are parsed and checked (size, depth, fields, keys, exact numbers) before any route sees them.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser("application/json", { parseAs: "buffer" }, (_req, body, done) => {
    try {
      done(null, parseJsonBody(body as Buffer, limits));
    } catch (e) {
      done(e as Error, undefined);
    }
  });
  await app.register(swagger, {
    openapi: {
      info: { title: "Shoal", version: "0.1.0", description: "Shoal's public HTTP API. Every error is `{\"error\": {\"code\", \"message\", …}}`; the codes, their status, whether a retry may succeed and whether the request may have been applied are listed in the README's error table." },
    },
  });
  await app.register(swaggerUi, { routePrefix: "/docs" });

  // Metrics: registry per server (injected, not global).
  const registry = new Registry();
  registry.setDefaultLabels({ node: String(node.id) });
  // The event-loop delay is sampled by a timer: prom-client's default of every 10 ms was most of an idle
  // node's wakeups (issue 13); a stall of 100 ms or more is still seen every time.
  collectDefaultMetrics({ register: registry, eventLoopMonitoringPrecision: EVENT_LOOP_SAMPLE_MS });
  const latency = new Histogram({
    name: "shoal_request_duration_seconds", help: "HTTP request latency by operation", labelNames: ["op", "status"],
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5], registers: [registry],
  });
  const counters = node.counters;
  const gauge = (name: string, help: string, read: () => number) =>
    new Gauge({ name, help, registers: [registry], collect() { this.set(read()); } });
  // A Counter that follows one of the node's own monotonic counters: each scrape adds what it grew by.
  const counter = (name: string, help: string, read: () => number) => {
    let seen = 0;
    return new Counter({
      name, help, registers: [registry], collect() {
        const now = read();
        if (now > seen) this.inc(now - seen);
        seen = Math.max(seen, now);
      },
    });
  };
  counter("shoal_raft_proposals_total", "proposals made on this node", () => counters.proposals);
  counter("shoal_raft_applied_entries_total", "log entries applied on this node", () => counters.applied);
  counter("shoal_wal_batches_total", "WAL batches (one fdatasync each)", () => counters.walBatches);
  counter("shoal_loop_turns_total", "multi-raft loop turns", () => counters.turns);
  gauge("shoal_raft_leader_shards", "shards this node leads", () => node.status().groups.filter((g) => g.role === "leader").length);
  gauge("shoal_transport_queued_bytes", "bytes queued on outbound connections", () =>
    node.transport.stats().reduce((s, l) => s + l.queuedBytes, 0));
  counter("shoal_raft_leaderships_won_total", "elections this node won (times it became leader of a shard)", () => counters.leadershipsWon);
  counter("shoal_raft_elections_started_total", "elections this node started as a candidate (won + lost)", () => counters.electionsStarted);
  counter("shoal_raft_successor_campaigns_total", "elections started at once because the shard's leader's node was lost and this node is its chosen successor", () => counters.successorCampaigns);
  counter("shoal_raft_leader_transfers_started_total", "leadership hand-overs started by this node (placement operators, drains)", () => counters.leaderTransfersStarted);
  counter("shoal_transport_malformed_messages_total", "messages from peers dropped as malformed", () => counters.malformedMessages);
  gauge("shoal_raft_quiesced_shards", "shards whose Raft group is quiescent (idle: not ticking) on this node", () => node.quiescedShards());
  counter("shoal_raft_group_ticks_total", "Raft ticks of all groups (quiescent groups do not tick)", () => counters.groupTicks);
  counter("shoal_state_commits_total", "state store (LMDB) commits", () => node.stateCommits());
  const walSync = new Histogram({
    name: "shoal_wal_sync_seconds", help: "WAL batch write + fdatasync latency", registers: [registry],
    buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25],
  });
  node.onWalSync = (s) => walSync.observe(s);
  const errors = new Counter({ name: "shoal_request_errors_total", help: "error responses by code", labelNames: ["code"], registers: [registry] });

  app.addHook("onResponse", async (req, reply) => {
    const op = req.routeOptions.config.op;
    if (op !== undefined) latency.observe({ op, status: String(reply.statusCode) }, reply.elapsedTime / 1000);
  });

  const checkCollection = (name: string) => {
    // Looked up in the metadata; before the founders created it, the cluster's first collection is known by name.
    if (!node.metaState().collections.has(name) && !(name === DEFAULT_COLLECTION && node.metaState().collections.size === 0)) throw new ApiError("collection_not_found", `collection ${JSON.stringify(name)} does not exist`);
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
    properties: { id: { type: "string" }, payload: { description: "any JSON value" }, version },
  } as const;

  app.put<{ Params: { collection: string; id: string }; Body: { payload: unknown; ifVersion?: number } }>(
    "/v1/collections/:collection/records/:id",
    {
      config: { op: "put" },
      schema: {
        operationId: "putRecord",
        summary: "Create or replace a record (compare-and-set with ifVersion; 0 means must not exist)",
        params: recordParams,
        headers: writeHeaders,
        body: {
          type: "object", required: ["payload"], additionalProperties: false,
          properties: {
            payload: { description: "any JSON value (numbers finite, integers within ±(2^53-1))" },
            ifVersion: { type: "integer", minimum: 0, description: "apply only if the record is at this version (0: only if it does not exist)" },
          },
        },
        response: responses({ description: "written", type: "object", required: ["version"], properties: { version } },
          "bad_request", ...JSON_BODY, "collection_not_found", "version_mismatch", "idempotency_key_reused", ...WRITE),
      },
    },
    async (req, reply) => {
      checkCollection(req.params.collection);
      return writeReply(await gateway.put(req.params.id, req.body.payload, writeOptions(req.body.ifVersion, req.headers["idempotency-key"]), req.params.collection), reply);
    },
  );

  app.get<{ Params: { collection: string; id: string }; Querystring: { consistency?: Consistency } }>(
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
              type: "string", enum: ["linearizable", "sequential", "eventual"], default: "linearizable",
              description: "linearizable: confirmed by the leader (ReadIndex); eventual: this node's replica, now; sequential: refused (400) until it is a mode of its own",
            },
          },
        },
        response: responses({ ...record, description: "the record" }, "bad_request", "collection_not_found", "not_found", ...THROUGH_RAFT, "shard_split"),
      },
    },
    async (req) => {
      checkCollection(req.params.collection);
      // Refused rather than served as linearizable: a level a client picks must mean what it says.
      if (req.query.consistency === "sequential") {
        throw new ApiError("bad_request", "consistency=sequential is not a mode of its own yet (it would read exactly like linearizable): ask for linearizable or eventual", { field: "consistency" });
      }
      const rec = await gateway.get(req.params.id, req.query.consistency ?? "linearizable", req.params.collection);
      if (rec === undefined) throw new ApiError("not_found", `record ${JSON.stringify(req.params.id)} does not exist`);
      return { id: req.params.id, payload: rec.payload, version: rec.version };
    },
  );

  app.delete<{ Params: { collection: string; id: string }; Querystring: { ifVersion?: number } }>(
    "/v1/collections/:collection/records/:id",
    {
      config: { op: "delete" },
      schema: {
        operationId: "deleteRecord",
        summary: "Delete a record (`deleted: false` when there was none)",
        params: recordParams,
        headers: writeHeaders,
        querystring: { type: "object", properties: { ifVersion: { type: "integer", minimum: 0, description: "delete only if the record is at this version" } } },
        response: responses({
          description: "done", type: "object", required: ["version", "deleted"],
          properties: { version, deleted: { type: "boolean", description: "false: the record did not exist (nothing was deleted)" } },
        }, "bad_request", "collection_not_found", "version_mismatch", "idempotency_key_reused", ...WRITE),
      },
    },
    async (req, reply) => {
      checkCollection(req.params.collection);
      return writeReply(await gateway.delete(req.params.id, writeOptions(req.query.ifVersion, req.headers["idempotency-key"]), req.params.collection), reply);
    },
  );

  app.get<{ Params: { collection: string }; Querystring: { limit: number; cursor?: string } }>(
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
          },
        },
        response: responses({
          description: "a page of records and the cursor of the next (null: the last page)", type: "object", required: ["records", "cursor"],
          properties: { records: { type: "array", items: record }, cursor: { type: ["string", "null"] } },
        }, "bad_request", "bad_cursor", "collection_not_found", ...THROUGH_RAFT, "shard_split"),
      },
    },
    async (req) => {
      checkCollection(req.params.collection);
      const after = req.query.cursor === undefined ? undefined : decodeCursor(req.query.cursor);
      // Exact across splits and merges: every shard's part read at a ReadIndex, the parts tiling the hash space (node/scan.ts).
      const { records, more } = await scanCollection(node, gateway, req.params.collection, req.query.limit, after);
      return { records: records.map(([id, r]) => ({ id, payload: r.payload, version: r.version })), cursor: more ? encodeCursor(records[records.length - 1]![0]) : null };
    },
  );

  app.get("/v1/cluster/status", {
    config: { op: "status" },
    schema: { operationId: "clusterStatus", summary: "This node's view of every shard it holds and of the metadata group", response: responses({ ...openObject, description: "node, meta and shards" }) },
  }, async () => {
    const st = node.status();
    const meta = node.metaStatus();
    return {
      node: st.id,
      meta: { role: meta.role, leader: meta.lead, term: meta.term, commit: meta.commit, applied: meta.applied, voters: meta.config.voters, learners: meta.config.learners },
      shards: st.groups.map((g) => ({
        shard: g.shard, role: g.role, leader: g.lead, term: g.term, commit: g.commit, applied: g.applied,
        firstIndex: g.firstIndex, lastIndex: g.lastIndex,
        voters: g.config.voters,
        replicas: g.progress === null ? undefined : Object.fromEntries([...g.progress].map(([id, p]) => [id, { match: p.match, state: p.state }])),
      })),
    };
  });

  await registerClusterRoutes(app, node, gateway);
  await registerCollectionRoutes(app, node, gateway);

  const ok = { description: "yes", type: "object", required: ["ok"], properties: { ok: { type: "boolean" } } } as const;
  app.get("/healthz", {
    schema: { operationId: "health", summary: "Liveness: the node's loop runs (503 `failed` once it stopped on a fatal error)", response: responses(ok, "failed") },
  }, async () => {
    if (node.failure !== null) throw new ApiError("failed", node.failure.message);
    return { ok: true };
  });
  app.get("/readyz", {
    schema: {
      operationId: "ready",
      summary: "Readiness: the metadata group has a leader, this node knows the shard map, and every live shard in it has a leader (seen from this node's replica; a shard not held here needs a voter to forward to)",
      response: responses(ok, "not_ready"),
    },
  }, async () => {
    if (node.leaderOf(META_GROUP) === 0) throw new ApiError("not_ready", "the metadata group has no leader");
    const live = [...node.metaState().shards.values()].filter((sh) => sh.retiredInto === undefined);
    // Until the metadata records the collection, this node cannot route a record to its shard by the map.
    if (live.length === 0) throw new ApiError("not_ready", "this node does not know the shard map yet");
    // A node knows the leader only of the shards it holds (leaders are not in the metadata; shard reports
    // go to the placement driver alone). A shard held elsewhere is served by forwarding to one of its
    // voters, which waits out an election itself; asking each of them on every probe would cost a round
    // trip per shard and tie this node's readiness to theirs, so it needs a voter to forward to.
    const leaderless = live.filter((sh) => (node.hosts(sh.id) ? node.leaderOf(sh.id) === 0 : !sh.replicas.some((r) => r.role === "voter")));
    if (leaderless.length > 0) {
      throw new ApiError("not_ready", `${leaderless.length} shard(s) without a leader: ${leaderless.slice(0, 10).map((sh) => sh.id).join(", ")}`);
    }
    return { ok: true };
  });
  app.get("/metrics", {
    schema: {
      operationId: "metrics", summary: "Prometheus metrics (text exposition format)",
      response: responses({ description: "the metrics", content: { "text/plain": { schema: { type: "string" } } } }),
    },
  }, async (_req, reply) => {
    void reply.header("Content-Type", registry.contentType);
    return registry.metrics();
  });
  app.get("/v1/openapi.json", {
    schema: { operationId: "openapi", summary: "This document (OpenAPI 3); browsable at /docs", response: responses({ ...openObject, description: "the OpenAPI document" }) },
  }, async () => app.swagger());
  if (opts.testMode === true) {
    // Chaos hooks for tests: cut links to peers, drop or delay frames. Not registered outside test mode.
    app.post<{ Body: { cut?: number[]; dropRate?: number; delayMs?: number; failJoins?: number } | null }>("/v1/test/faults", {
      schema: {
        hide: true,
        body: {
          type: ["object", "null"], additionalProperties: false,
          properties: {
            cut: { type: "array", items: { type: "integer" } }, dropRate: { type: "number", minimum: 0, maximum: 1 }, delayMs: { type: "integer", minimum: 0 },
            failJoins: { type: "integer", minimum: 0 },
          },
        },
      },
    }, async (req) => {
      const b = req.body;
      if (b?.failJoins !== undefined) {
        opts.failJoins?.(b.failJoins);
        return { ok: true };
      }
      node.transport.setFaults(b === null ? null : { cut: new Set(b.cut ?? []), dropRate: b.dropRate ?? 0, delayMs: b.delayMs ?? 0 });
      return { ok: true };
    });
  }
  await app.ready();
  return app;
}
