/**
 * The public HTTP API of a node (every node is a gateway). JSON in and out; every error is
 * `{"error": {"code", "message", ...}}` with a 4xx or 5xx status. Routes are described by JSON schemas,
 * which validate input before anything reaches the log and generate the OpenAPI document.
 */
import Fastify, { type FastifyBaseLogger, type FastifyError, type FastifyInstance } from "fastify";
import swagger from "@fastify/swagger";
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import type { Gateway } from "../node/gateway.js";
import {
  type Consistency,
  type MultiRaftNode,
  ConfChangeRefusedError,
  LeaderUnreachableError,
  WrongShardError,
  META_GROUP,
  NotLeaderError,
  OverloadedError,
  RequestTimeoutError,
  ShuttingDownError,
} from "../node/multi-raft.js";
import type { CommandResult, StoredRecord } from "../node/records.js";
import { ApiError } from "./errors.js";
import { registerClusterRoutes } from "./cluster.js";

export interface ApiOptions {
  node: MultiRaftNode;
  gateway: Gateway;
  logger: FastifyBaseLogger;
  /** Largest accepted request body (the payload limit). */
  bodyLimitBytes?: number;
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

const ID_PATTERN = "^[A-Za-z0-9._~:@!$&'()*+,;=-]{1,256}$";
const COLLECTIONS = new Set(["default"]);

const errorSchema = {
  type: "object",
  properties: {
    error: {
      type: "object", required: ["code", "message"],
      properties: { code: { type: "string" }, message: { type: "string" }, currentVersion: { type: "integer" }, leader: { type: "integer" } },
    },
  },
} as const;


/** The reply to a write: its version, or 409 when its compare-and-set failed. */
function writeReply(r: CommandResult): { version: number } {
  if (r.ok) return { version: r.version };
  if (r.code === "version_mismatch") throw new ApiError(409, "version_mismatch", `record is at version ${r.currentVersion}`, { currentVersion: r.currentVersion });
  // The gateway routes again after a split; a record command never asks for a split.
  throw new Error(`unexpected write result ${r.code}`);
}

export async function buildApi(opts: ApiOptions): Promise<FastifyInstance> {
  const { node, gateway } = opts;
  const app = Fastify({
    // Per-request logs are info level: a warn-level child keeps errors and drops the per-request noise.
    loggerInstance: opts.logger.child({}, { level: "warn" }),
    bodyLimit: opts.bodyLimitBytes ?? 1 << 20,
    // Long enough for any valid id (up to 256 characters, percent-encoded), so the schema judges it.
    routerOptions: { maxParamLength: 1024 },
    ajv: { customOptions: { removeAdditional: false, coerceTypes: true, allErrors: false } },
  });
  await app.register(swagger, {
    openapi: { info: { title: "Shoal", version: "0.1.0", description: "Shoal's public HTTP API" } },
  });

  // Metrics: registry per server (injected, not global).
  const registry = new Registry();
  registry.setDefaultLabels({ node: String(node.id) });
  collectDefaultMetrics({ register: registry });
  const latency = new Histogram({
    name: "shoal_request_duration_seconds", help: "HTTP request latency by operation", labelNames: ["op", "status"],
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5], registers: [registry],
  });
  const counters = node.counters;
  const gauge = (name: string, help: string, read: () => number) =>
    new Gauge({ name, help, registers: [registry], collect() { this.set(read()); } });
  gauge("shoal_raft_proposals_total", "proposals made on this node", () => counters.proposals);
  gauge("shoal_raft_applied_entries_total", "log entries applied on this node", () => counters.applied);
  gauge("shoal_wal_batches_total", "WAL batches (one fdatasync each)", () => counters.walBatches);
  gauge("shoal_loop_turns_total", "multi-raft loop turns", () => counters.turns);
  gauge("shoal_raft_leader_shards", "shards this node leads", () => node.status().groups.filter((g) => g.role === "leader").length);
  gauge("shoal_transport_queued_bytes", "bytes queued on outbound connections", () =>
    node.transport.stats().reduce((s, l) => s + l.queuedBytes, 0));
  gauge("shoal_raft_leaderships_won_total", "elections this node won (times it became leader of a shard)", () => counters.leadershipsWon);
  gauge("shoal_raft_elections_started_total", "elections this node started as a candidate (won + lost)", () => counters.electionsStarted);
  gauge("shoal_raft_leader_transfers_started_total", "leadership hand-overs started by this node (placement operators, drains)", () => counters.leaderTransfersStarted);
  gauge("shoal_transport_malformed_messages_total", "messages from peers dropped as malformed", () => counters.malformedMessages);
  gauge("shoal_raft_quiesced_shards", "shards whose Raft group is quiescent (idle: not ticking) on this node", () => node.quiescedShards());
  gauge("shoal_raft_group_ticks_total", "Raft ticks of all groups (quiescent groups do not tick)", () => counters.groupTicks);
  gauge("shoal_state_commits_total", "state store (LMDB) commits", () => node.stateCommits());
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

  app.setErrorHandler((err: FastifyError | ApiError | Error, _req, reply) => {
    let status = 500;
    let body: Record<string, unknown> = { code: "internal", message: "internal error" };
    if (err instanceof ApiError) {
      status = err.status;
      body = { code: err.code, message: err.message, ...err.extra };
    } else if (err instanceof NotLeaderError) {
      status = 503;
      reply.header("Retry-After", "1");
      body = { code: "no_leader", message: err.message, ...(err.leader !== 0 ? { leader: err.leader } : {}) };
    } else if (err instanceof LeaderUnreachableError) {
      status = 503;
      reply.header("Retry-After", "1");
      body = { code: "leader_unreachable", message: err.message, leader: err.leader };
    } else if (err instanceof WrongShardError) {
      status = 503;
      reply.header("Retry-After", "1");
      body = { code: "shard_split", message: err.message };
    } else if (err instanceof ConfChangeRefusedError) {
      status = 409;
      body = { code: "conf_change_refused", message: err.message };
    } else if (err instanceof RequestTimeoutError) {
      status = 504;
      body = { code: "timeout", message: err.message };
    } else if (err instanceof OverloadedError) {
      status = 503;
      reply.header("Retry-After", "1");
      body = { code: "overloaded", message: err.message };
    } else if (err instanceof ShuttingDownError) {
      status = 503;
      body = { code: "shutting_down", message: err.message };
    } else if ("validation" in err && err.validation !== undefined) {
      status = 400;
      body = { code: "bad_request", message: err.message };
    } else if ("statusCode" in err && typeof err.statusCode === "number" && err.statusCode < 500) {
      status = err.statusCode;
      const code = (err as FastifyError).code;
      body = {
        code: code === "FST_ERR_CTP_BODY_TOO_LARGE" ? "payload_too_large" : code === "FST_ERR_CTP_INVALID_MEDIA_TYPE" ? "unsupported_media_type" : "bad_request",
        message: err.message,
      };
    } else {
      app.log.error({ err }, "unexpected error");
    }
    errors.inc({ code: String(body.code) });
    void reply.status(status).send({ error: body });
  });
  app.setNotFoundHandler((req, reply) => {
    void reply.status(404).send({ error: { code: "route_not_found", message: `no route ${req.method} ${req.url}` } });
  });

  const checkCollection = (name: string) => {
    if (!COLLECTIONS.has(name)) throw new ApiError(404, "collection_not_found", `collection ${JSON.stringify(name)} does not exist`);
  };
  const recordParams = {
    type: "object", required: ["collection", "id"],
    properties: { collection: { type: "string" }, id: { type: "string", pattern: ID_PATTERN } },
  } as const;
  const versionReply = { type: "object", properties: { version: { type: "integer" } } } as const;

  app.put<{ Params: { collection: string; id: string }; Body: { payload: unknown; ifVersion?: number } }>(
    "/v1/collections/:collection/records/:id",
    {
      config: { op: "put" },
      schema: {
        summary: "Create or replace a record (compare-and-set with ifVersion; 0 means must not exist)",
        params: recordParams,
        body: {
          type: "object", required: ["payload"], additionalProperties: false,
          properties: { payload: {}, ifVersion: { type: "integer", minimum: 0 } },
        },
        response: { 200: versionReply, 409: errorSchema },
      },
    },
    async (req) => {
      checkCollection(req.params.collection);
      return writeReply(await gateway.put(req.params.id, req.body.payload, req.body.ifVersion));
    },
  );

  app.get<{ Params: { collection: string; id: string }; Querystring: { consistency?: Consistency } }>(
    "/v1/collections/:collection/records/:id",
    {
      config: { op: "get" },
      schema: {
        summary: "Read a record",
        params: recordParams,
        querystring: {
          type: "object", additionalProperties: false,
          properties: { consistency: { type: "string", enum: ["linearizable", "sequential", "eventual"], default: "linearizable" } },
        },
        response: {
          200: { type: "object", properties: { id: { type: "string" }, payload: {}, version: { type: "integer" } } },
          404: errorSchema,
        },
      },
    },
    async (req) => {
      checkCollection(req.params.collection);
      const rec = await gateway.get(req.params.id, req.query.consistency ?? "linearizable");
      if (rec === undefined) throw new ApiError(404, "not_found", `record ${JSON.stringify(req.params.id)} does not exist`);
      return { id: req.params.id, payload: rec.payload, version: rec.version };
    },
  );

  app.delete<{ Params: { collection: string; id: string }; Querystring: { ifVersion?: number } }>(
    "/v1/collections/:collection/records/:id",
    {
      config: { op: "delete" },
      schema: {
        summary: "Delete a record",
        params: recordParams,
        querystring: { type: "object", additionalProperties: false, properties: { ifVersion: { type: "integer", minimum: 0 } } },
        response: { 200: versionReply, 409: errorSchema },
      },
    },
    async (req) => {
      checkCollection(req.params.collection);
      return writeReply(await gateway.delete(req.params.id, req.query.ifVersion));
    },
  );

  app.get<{ Params: { collection: string }; Querystring: { limit: number; cursor?: string } }>(
    "/v1/collections/:collection/records",
    {
      config: { op: "scan" },
      schema: {
        summary: "Scan records in id order (eventual consistency: a replica of each shard)",
        params: { type: "object", properties: { collection: { type: "string" } } },
        querystring: {
          type: "object", additionalProperties: false,
          properties: { limit: { type: "integer", minimum: 1, maximum: 1000, default: 100 }, cursor: { type: "string", pattern: ID_PATTERN } },
        },
      },
    },
    async (req) => {
      checkCollection(req.params.collection);
      const { limit, cursor } = req.query;
      const all: [string, StoredRecord][] = [];
      // Every shard, from this node's replica or from one that holds it.
      const known = [...node.metaState().shards.values()].filter((sh) => sh.retiredInto === undefined).map((sh) => sh.id);
      const shards = known.length > 0 ? known : node.status().groups.map((g) => g.shard); // before the map is recorded
      const pages = await Promise.all(shards.map((g) => gateway.scan(g, limit, cursor)));
      for (const p of pages) all.push(...p);
      all.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
      const page = all.slice(0, limit);
      const next = all.length > limit ? page[page.length - 1]![0] : null;
      return { records: page.map(([id, r]) => ({ id, payload: r.payload, version: r.version })), cursor: next };
    },
  );

  app.get("/v1/cluster/status", { config: { op: "status" }, schema: { summary: "This node's view of every shard" } }, async () => {
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

  app.get("/healthz", { schema: { hide: true } }, async (_req, reply) => {
    if (node.failure !== null) return reply.status(503).send({ error: { code: "failed", message: node.failure.message } });
    return { ok: true };
  });
  app.get("/readyz", { schema: { hide: true } }, async (_req, reply) => {
    const leaderless = node.status().groups.filter((g) => g.lead === 0).length;
    if (leaderless > 0) return reply.status(503).send({ error: { code: "not_ready", message: `${leaderless} shard(s) without a leader` } });
    if (node.leaderOf(META_GROUP) === 0) return reply.status(503).send({ error: { code: "not_ready", message: "the metadata group has no leader" } });
    return { ok: true };
  });
  app.get("/metrics", { schema: { hide: true } }, async (_req, reply) => {
    void reply.header("Content-Type", registry.contentType);
    return registry.metrics();
  });
  app.get("/v1/openapi.json", { schema: { hide: true } }, async () => app.swagger());
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
