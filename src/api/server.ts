/**
 * The public HTTP API of a node (every node is a gateway). JSON in and out; every error is
 * `{"error": {"code", "message", ...}}` with a 4xx or 5xx status. Routes are described by JSON schemas,
 * which validate input before anything reaches the log and generate the OpenAPI document.
 */
import Fastify, { type FastifyBaseLogger, type FastifyError, type FastifyInstance, type FastifyReply } from "fastify";
import { type ApplyResult, type MetaState, type SettingsVersion, currentSettings } from "../meta/state.js";
import { DEFAULT_PLACEMENT, type PlacementConfig } from "../placement/types.js";
import swagger from "@fastify/swagger";
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import type { Gateway } from "../node/gateway.js";
import { drainNode, removeNode } from "../node/membership.js";
import {
  type Consistency,
  type MultiRaftNode,
  LeaderUnreachableError,
  META_GROUP,
  NotLeaderError,
  OverloadedError,
  RequestTimeoutError,
  ShuttingDownError,
} from "../node/multi-raft.js";
import type { CommandResult, StoredRecord } from "../node/records.js";

export interface ApiOptions {
  node: MultiRaftNode;
  gateway: Gateway;
  logger: FastifyBaseLogger;
  /** Largest accepted request body (the payload limit). */
  bodyLimitBytes?: number;
  /** Test mode: exposes POST /v1/test/faults (transport fault injection). Never on in production. */
  testMode?: boolean;
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

class ApiError extends Error {
  constructor(readonly status: number, readonly code: string, message: string, readonly extra: Record<string, unknown> = {}) {
    super(message);
  }
}

/** The reply to a write: its version, or 409 when its compare-and-set failed. */
function writeReply(r: CommandResult): { version: number } {
  if (!r.ok) throw new ApiError(409, "version_mismatch", `record is at version ${r.currentVersion}`, { currentVersion: r.currentVersion });
  return { version: r.version };
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
  gauge("shoal_raft_leader_transfers_started_total", "leadership hand-overs started by this node's leader balance", () => counters.leaderTransfersStarted);
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
        summary: "Scan records in id order (eventual consistency: this node's replicas)",
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
      for (let g = 1; g <= node.shards; g++) all.push(...node.scan(g, limit, cursor));
      all.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
      const page = all.slice(0, limit);
      const next = all.length > limit ? page[page.length - 1]![0] : null;
      return { records: page.map(([id, r]) => ({ id, payload: r.payload, version: r.version })), cursor: next };
    },
  );

  app.get("/v1/cluster/status", { config: { op: "status" }, schema: { summary: "This node's view of every shard" } }, async () => {
    const st = node.status();
    return {
      node: st.id,
      shards: st.groups.map((g, i) => ({
        shard: i + 1, role: g.role, leader: g.lead, term: g.term, commit: g.commit, applied: g.applied,
        firstIndex: g.firstIndex, lastIndex: g.lastIndex,
        voters: g.config.voters,
        replicas: g.progress === null ? undefined : Object.fromEntries([...g.progress].map(([id, p]) => [id, { match: p.match, state: p.state }])),
      })),
    };
  });

  /** A refused cluster command: its code decides the status (409 unless listed), its message goes to the client. */
  const refusalStatus: Record<string, number> = { invalid_settings: 400, node_not_found: 404, settings_version_not_found: 404, join_failed: 503 };
  const refuse = (reply: FastifyReply, r: { code: string; message: string }) =>
    reply.status(refusalStatus[r.code] ?? 409).send({ error: { code: r.code, message: r.message } });

  // MEM-1: a node asks any member to join; the metadata leader handles joins one at a time.
  const addressSchema = { type: "string", pattern: "^(\\[[^\\]]+\\]|[^:\\s]+):[0-9]{1,5}$" } as const;
  app.post<{ Body: { peer: string; http: string; labels?: { zone?: string; rack?: string; host?: string }; role?: "standard" | "analytics" | "standby" } }>("/v1/cluster/join", {
    config: { op: "join" },
    schema: {
      summary: "Join the cluster: registers the node and adds it to the metadata group as a learner",
      body: {
        type: "object", required: ["peer", "http"], additionalProperties: false,
        properties: {
          peer: addressSchema, http: addressSchema,
          labels: { type: "object", additionalProperties: false, properties: { zone: { type: "string" }, rack: { type: "string" }, host: { type: "string" } } },
          role: { type: "string", enum: ["standard", "analytics", "standby"] },
        },
      },
    },
  }, async (req, reply) => {
    const addr = (s: string) => {
      const i = s.lastIndexOf(":");
      return { host: s.slice(0, i).replace(/^\[|\]$/g, ""), port: Number(s.slice(i + 1)) };
    };
    const r = await gateway.join({ peer: addr(req.body.peer), http: addr(req.body.http), labels: req.body.labels ?? {}, role: req.body.role ?? "standard" });
    if (!r.ok) return refuse(reply, r);
    return { id: r.id, shards: r.shards, members: r.members.map((m) => ({ id: m.id, peer: `${m.peer.host}:${m.peer.port}` })) };
  });

  // MEM-5: drain and remove. A refusal (a node still holding replicas, a wrong transition) is a 409 with its reason.
  for (const action of ["drain", "remove"] as const) {
    app.post<{ Params: { id: number } }>(`/v1/cluster/nodes/:id/${action}`, {
      config: { op: action },
      schema: {
        summary: action === "drain" ? "Drain a node: no new replicas; its replicas move away, leaders first" : "Remove a node that holds no replica",
        params: { type: "object", required: ["id"], properties: { id: { type: "integer", minimum: 1 } } },
      },
    }, async (req, reply) => {
      const r = action === "drain" ? await drainNode(gateway, req.params.id) : await removeNode(gateway, node, req.params.id);
      if (!r.ok) return refuse(reply, r);
      return { node: req.params.id, worker: action === "drain" ? "draining" : "removed" };
    });
  }

  // PD-8: cluster-wide settings, versioned in the metadata group; validated before they apply.
  const settingsView = (v: SettingsVersion) => ({ version: v.version, atMs: v.atMs, note: v.note, placement: v.placement });
  app.get("/v1/cluster/config", { config: { op: "config" }, schema: { summary: "The settings in force (placement driver)" } }, async () =>
    settingsView(currentSettings(node.metaState() as MetaState)));
  app.get("/v1/cluster/config/history", { config: { op: "config" }, schema: { summary: "Kept settings versions, oldest first" } }, async () =>
    ({ versions: node.metaState().settings.map(settingsView) }));
  const settingsReply = (r: ApplyResult, reply: FastifyReply) => (r.ok ? { version: r.value } : refuse(reply, r));
  app.put<{ Body: { baseVersion: number; settings: Partial<PlacementConfig>; note?: string } }>("/v1/cluster/config", {
    config: { op: "config" },
    schema: {
      summary: "Change settings: only against the version read (409 stale_settings otherwise); invalid values are refused (400)",
      body: {
        type: "object", required: ["baseVersion", "settings"], additionalProperties: false,
        properties: {
          baseVersion: { type: "integer", minimum: 1 }, note: { type: "string", maxLength: 200 },
          settings: { type: "object", additionalProperties: false, properties: Object.fromEntries(Object.keys(DEFAULT_PLACEMENT).map((k) => [k, { type: "number" }])) },
        },
      },
    },
  }, async (req, reply) => {
    const current = currentSettings(node.metaState() as MetaState);
    const placement = { ...current.placement, ...req.body.settings };
    return settingsReply(await gateway.proposeMeta({ kind: "set-settings", baseVersion: req.body.baseVersion, placement, note: req.body.note ?? "", atMs: Date.now() }), reply);
  });
  app.post<{ Body: { toVersion: number } }>("/v1/cluster/config/rollback", {
    config: { op: "config" },
    schema: {
      summary: "Roll the settings back to a kept version (recorded as a new version)",
      body: { type: "object", required: ["toVersion"], additionalProperties: false, properties: { toVersion: { type: "integer", minimum: 1 } } },
    },
  }, async (req, reply) => settingsReply(await gateway.proposeMeta({ kind: "rollback-settings", toVersion: req.body.toVersion, atMs: Date.now() }), reply));

  // The cluster map, read from this node's copy of the metadata group (eventually consistent).
  app.get("/v1/cluster/nodes", { config: { op: "nodes" }, schema: { summary: "The cluster's nodes, from the metadata group" } }, async () => {
    const meta = node.metaState();
    return {
      metaLeader: node.leaderOf(META_GROUP),
      nodes: [...meta.nodes.values()].sort((a, b) => a.id - b.id).map((n) => ({
        id: n.id, peer: `${n.peer.host}:${n.peer.port}`, http: `${n.http.host}:${n.http.port}`, labels: n.labels, role: n.role,
        lifecycle: n.lifecycle, worker: n.worker, joinedAtMs: n.joinedAtMs, readyAtMs: n.readyAtMs,
        // As this node's failure detector sees it (phi-accrual over the frames it receives).
        health: n.worker === "removed" ? "removed" : node.peerHealth(n.id),
      })),
    };
  });
  app.get("/v1/cluster/shards", { config: { op: "shards" }, schema: { summary: "The shard map (ranges, replicas, epochs), from the metadata group" } }, async () => {
    const meta = node.metaState();
    return {
      shards: [...meta.shards.values()].sort((a, b) => a.id - b.id).map((sh) => ({
        shard: sh.id, collection: sh.collection, range: [sh.range.start, sh.range.end], epoch: sh.epoch, replicas: sh.replicas,
      })),
    };
  });

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
    app.post<{ Body: { cut?: number[]; dropRate?: number; delayMs?: number } | null }>("/v1/test/faults", {
      schema: {
        hide: true,
        body: {
          type: ["object", "null"], additionalProperties: false,
          properties: { cut: { type: "array", items: { type: "integer" } }, dropRate: { type: "number", minimum: 0, maximum: 1 }, delayMs: { type: "integer", minimum: 0 } },
        },
      },
    }, async (req) => {
      const b = req.body;
      node.transport.setFaults(b === null ? null : { cut: new Set(b.cut ?? []), dropRate: b.dropRate ?? 0, delayMs: b.delayMs ?? 0 });
      return { ok: true };
    });
  }
  await app.ready();
  return app;
}
