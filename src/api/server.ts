/**
 * The public HTTP API of a node (every node is a gateway). JSON in and out; every error is
 * `{"error": {"code", "message", ...}}` with the status of its code in the error table. Routes are
 * described by JSON schemas, which validate input before anything reaches the log and generate the
 * OpenAPI document (browsable at /docs).
 */
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from "fastify";
import swagger from "@fastify/swagger";
import swaggerUi from "@fastify/swagger-ui";
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import type { Gateway } from "../node/gateway.js";
import { type MultiRaftNode, META_GROUP } from "../node/multi-raft.js";
import { ApiError } from "./error-table.js";
import { envelopeOptions, installEnvelope } from "./envelope.js";
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
  /** Test mode: makes the next n joins handled here fail after registering (see Membership). */
  failJoins?: (n: number) => void;
}

/** How often the event-loop delay metric samples (see collectDefaultMetrics below). */
const EVENT_LOOP_SAMPLE_MS = 100;

declare module "fastify" {
  interface FastifyContextConfig {
    /** The operation name for the latency histogram. */
    op?: string;
    /** A batch route's top-level list, whose every item is held to the JSON limits on its own. */
    jsonItemsOf?: string;
  }
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
  counter("shoal_gateway_forwarded_requests_total", "record writes and reads this node's gateway sent on to the shard's leader on another node", () => gateway.forwardedRequests);
  const walSync = new Histogram({
    name: "shoal_wal_sync_seconds", help: "WAL batch write + fdatasync latency", registers: [registry],
    buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25],
  });
  node.onWalSync = (s) => walSync.observe(s);
  if (opts.indexes !== undefined) {
    const indexes = opts.indexes;
    gauge("shoal_index_pending_ops", "writes applied on this node's replicas but not yet in their vector graphs (searches scan them exactly)", () => indexes.stats().pendingOps);
    gauge("shoal_index_lag_entries", "the largest distance, in applied log entries, between a replica here and its index", () => indexes.stats().lagEntriesMax);
    gauge("shoal_index_records", "records held by this node's replica indexes", () => indexes.stats().records);
  }
  const errors = new Counter({ name: "shoal_request_errors_total", help: "error responses by code", labelNames: ["code"], registers: [registry] });

  app.addHook("onResponse", async (req, reply) => {
    const op = req.routeOptions.config.op;
    if (op !== undefined) latency.observe({ op, status: String(reply.statusCode) }, reply.elapsedTime / 1000);
  });

  await registerRecordRoutes(app, node, gateway, opts.batchBodyLimitBytes ?? BATCH_BODY_BYTES_MAX, opts.indexes ?? null);
  await registerSearchRoutes(app, node, gateway);

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
