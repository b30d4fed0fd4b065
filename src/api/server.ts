/**
 * The public HTTP API of a node (every node is a gateway). JSON in and out; every error is
 * `{"error": {"code", "message", ...}}` with the status of its code in the error table. Routes are
 * described by JSON schemas, which validate input before anything reaches the log and generate the
 * OpenAPI document (browsable at /docs).
 */
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from "fastify";
import swagger from "@fastify/swagger";
import swaggerUi from "@fastify/swagger-ui";
import type { Gateway } from "../node/gateway.js";
import { type MultiRaftNode, META_GROUP } from "../node/multi-raft.js";
import { ApiError } from "./error-table.js";
import { answeredCode, envelopeOptions, installEnvelope } from "./envelope.js";
import { installTracing } from "./tracing.js";
import { nodeMetrics } from "./metrics.js";
import { registerUiRoutes } from "./ui.js";
import { RequestWindows } from "./request-windows.js";
import { registerStatsRoutes } from "./stats.js";
import type { ShardAgent } from "../node/shard-agent.js";
import type { PlacementDriver } from "../node/placement-driver.js";
import type { LogRing } from "../util/log-ring.js";
import { validatorCompiler } from "./validation.js";
import { DEFAULT_JSON_LIMITS, type JsonLimits, parseJsonBody } from "./json-input.js";
import { openObject, responses } from "./openapi.js";
import { registerClusterRoutes } from "./cluster.js";
import { registerCollectionRoutes } from "./collections.js";
import { BATCH_BODY_BYTES_MAX, registerRecordRoutes } from "./records.js";
import { registerSearchRoutes } from "./search.js";
import type { IndexService } from "../data/index-service.js";

export { ID_PATTERN, decodeCursor, encodeCursor } from "./records.js";

export interface ApiOptions {
  node: MultiRaftNode;
  gateway: Gateway;
  logger: FastifyBaseLogger;
  /** Largest accepted request body (the payload limit). */
  bodyLimitBytes?: number;
  /** This node's payload and vector indexes (search and count answer from them; writes are refused while they are too far behind). */
  indexes?: IndexService;
  /** Largest accepted body of a batch upsert. */
  batchBodyLimitBytes?: number;
  /** Bounds on a body's JSON (depth, fields, key length); defaults in DEFAULT_JSON_LIMITS. */
  jsonLimits?: Partial<JsonLimits>;
  /** Test mode: exposes POST /v1/test/faults (transport fault injection). Never on in production. */
  testMode?: boolean;
  /** The node's placement driver: cluster health and operator metrics. */
  placement?: PlacementDriver;
  /** The node's data directory: disk metrics. */
  dataDir?: string;
  /** The node's recent log lines, served by GET /v1/node/logs. */
  logs?: LogRing;
  /** The node's shard agent: the load of the shards it leads, for GET /v1/node/stats. */
  shardAgent?: ShardAgent;
  /** Whether requests are traced (an OpenTelemetry SDK is registered: cli/tracing.ts). */
  tracing?: boolean;
  /** Test mode: makes the next n joins handled here fail after registering (see Membership). */
  failJoins?: (n: number) => void;
}


declare module "fastify" {
  interface FastifyContextConfig {
    /** The operation name for the latency histogram. */
    op?: string;
    /** A batch route's top-level list, whose every item is held to the JSON limits on its own. */
    jsonItemsOf?: string;
  }
}

/** The requests the dashboard's chart counts: clients' reads and writes, not the dashboard's own polling. */
const DATA_OPS = new Set(["get", "put", "put-many", "delete", "delete-filtered", "scan", "scan-filtered", "search", "search-batch", "count"]);

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
  const metrics = nodeMetrics({
    node, gateway, ...(opts.indexes !== undefined ? { indexes: opts.indexes } : {}),
    ...(opts.placement !== undefined ? { placement: opts.placement } : {}), ...(opts.dataDir !== undefined ? { dataDir: opts.dataDir } : {}),
  });
  const registry = metrics.registry;
  // The dashboard's chart of this node's requests (GET /v1/node/stats).
  const windows = new RequestWindows();

  installEnvelope(app, { onError: (code) => metrics.countError(code), closing: () => closing });
  if (opts.tracing === true) installTracing(app, opts.logger);
  // Bodies are parsed and checked (size, depth, fields, keys, exact numbers) before any route sees them.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser("application/json", { parseAs: "buffer" }, (_req, body, done) => {
    try {
      done(null, parseJsonBody(body as Buffer, limits, _req.routeOptions.config.jsonItemsOf));
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

  app.addHook("onResponse", async (req, reply) => {
    const op = req.routeOptions.config.op;
    if (op === undefined) return;
    // Only a collection this node knows is a label value: a name from a request alone could be anything.
    const named = (req.params as { collection?: unknown } | undefined)?.collection;
    const collection = typeof named === "string" && node.metaState().collections.has(named) ? named : "";
    const outcome = answeredCode(reply) ?? (reply.statusCode < 400 ? "ok" : `http_${reply.statusCode}`);
    metrics.observeRequest(op, collection, outcome, reply.elapsedTime / 1000);
    if (DATA_OPS.has(op)) windows.observe(Date.now(), reply.elapsedTime, reply.statusCode >= 500);
  });

  await registerRecordRoutes(app, node, gateway, opts.batchBodyLimitBytes ?? BATCH_BODY_BYTES_MAX, opts.indexes ?? null);
  await registerSearchRoutes(app, node, gateway);

  app.get("/v1/cluster/status", {
    config: { op: "status" },
    schema: { operationId: "clusterStatus", summary: "This node's view of every shard it holds and of the metadata group", response: responses({ ...openObject, description: "node, meta and shards" }) },
  }, async () => {
    const st = node.status();
    const meta = node.metaStatus();
    // A leader's view of each replica: how far it has it (match) and how it sends to it (state, whether it
    // heard from it in the last election timeout, a snapshot in flight): what a stuck replica needs.
    const replicasOf = (progress: typeof meta.progress) => progress === null ? undefined : Object.fromEntries([...progress].map(([id, p]) =>
      [id, { match: p.match, state: p.state, active: p.recentActive, ...(p.pendingSnapshot > 0 ? { snapshotIndex: p.pendingSnapshot } : {}) }]));
    return {
      node: st.id,
      meta: {
        role: meta.role, leader: meta.lead, term: meta.term, commit: meta.commit, applied: meta.applied, voters: meta.config.voters, learners: meta.config.learners,
        replicas: replicasOf(meta.progress),
      },
      shards: st.groups.map((g) => ({
        shard: g.shard, role: g.role, leader: g.lead, term: g.term, commit: g.commit, applied: g.applied,
        firstIndex: g.firstIndex, lastIndex: g.lastIndex,
        voters: g.config.voters,
        replicas: replicasOf(g.progress),
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
    if (node.failure !== null) throw new ApiError("not_ready", node.failure.message);
    if (node.leaderOf(META_GROUP) === 0) {
      // A joined node that has heard nothing of the metadata group yet (term 0) waits for its leader to
      // call; if the cluster removed it before it started (silent past nodeRemoveAfterMs), none ever will.
      const heardNothing = node.metaStatus().term === 0;
      throw new ApiError("not_ready", heardNothing
        ? "the metadata group has no leader: nothing heard from it yet (a joined node waits for its leader to call; if GET /v1/cluster/nodes on a member shows this node removed, join again with an empty data dir)"
        : "the metadata group has no leader");
    }
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
  const logs = opts.logs;
  app.get<{ Querystring: { limit: number } }>("/v1/node/logs", {
    config: { op: "logs" },
    schema: {
      operationId: "nodeLogs", summary: "This node's most recent log lines (JSON objects as logged, oldest first), kept in memory",
      querystring: { type: "object", additionalProperties: false, properties: { limit: { type: "integer", minimum: 1, maximum: 2000, default: 200 } } },
      response: responses({ ...openObject, description: "node and lines" }, "not_built"),
    },
  }, async (req) => {
    if (logs === undefined) throw new ApiError("not_built", "this node keeps no log lines in memory (it was not started by `shoal start`)");
    return { node: node.id, lines: logs.recent(req.query.limit).map((line) => parseLine(line)) };
  });
  registerStatsRoutes(app, {
    node, windows, ...(opts.shardAgent !== undefined ? { shardAgent: opts.shardAgent } : {}),
    ...(opts.indexes !== undefined ? { indexes: opts.indexes } : {}), ...(opts.dataDir !== undefined ? { dataDir: opts.dataDir } : {}),
  });
  registerUiRoutes(app);
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

/** A logged line as an object (pino writes JSON; anything else is kept as its text). */
function parseLine(line: string): unknown {
  try {
    return JSON.parse(line) as unknown;
  } catch {
    return { msg: line };
  }
}
