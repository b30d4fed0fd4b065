/**
 * `shoal start`: runs one node (its Raft groups, the peer transport and the HTTP API). The CLI's part:
 * arguments, the node's identity in its data directory, the data-dir lock, the pino logger, the HTTP
 * API, signals and the crash log; the node's components and their order are node/shoal-node.ts's.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { type Level, type Logger, destination, multistream, pino } from "pino";
import { LogRing } from "../util/log-ring.js";
import { traceFields } from "../util/tracing.js";
import { ConfigError } from "./config-error.js";
import { type Tracing, startTracing, tracingOptions } from "./tracing.js";
import { buildApi } from "../api/server.js";
import { INDEX_THREADS_DEFAULT, INDEX_THREADS_MAX, INDEX_WORKER_NICENESS, IndexService } from "../data/index-service.js";
import { NICENESS_MAX } from "../data/thread-priority.js";
import { ExpirySweeper } from "../data/expiry.js";
import { DataDirInUseError, type DataDirLock, acquireDataDirLock } from "../node/data-dir-lock.js";
import { Gateway } from "../node/gateway.js";
import { ShoalNode, buildNodeComponents, raftComponent } from "../node/shoal-node.js";
import { MultiRaftNode } from "../node/multi-raft.js";
import type { PeerAddress } from "../transport/transport.js";
import type { Labels } from "../placement/types.js";
import { SHARDS_MAX } from "../meta/ranges.js";

export interface StartOptions {
  id: string;
  dataDir: string;
  http: string;
  /** The HTTP address other nodes and clients should use, when not --http (a node listening on all interfaces). */
  advertiseHttp?: string;
  listen: string;
  advertise?: string;
  peers: string;
  shards: string;
  maxPayloadBytes: string;
  maxBatchBytes?: string;
  indexNiceness?: string;
  indexThreads?: string;
  maxJsonDepth: string;
  maxJsonFields: string;
  maxKeyLength: string;
  compactAfterEntries?: string;
  logLevel: "debug" | "info" | "warn" | "error";
  /** A member's HTTP API: join that running cluster instead of founding one. */
  join?: string;
  labels?: string;
  role: "standard" | "analytics" | "standby";
  /** OTLP/HTTP collector to send spans to (tracing is off without one). */
  otlpEndpoint?: string;
  traceSampleRatio?: string;
}

/** "zone=a,rack=b,host=c" */
export function parseLabels(s: string | undefined): Labels {
  const labels: Labels = {};
  for (const part of (s ?? "").split(",").map((p) => p.trim()).filter((p) => p !== "")) {
    const m = /^(zone|rack|host)=([^=,]+)$/.exec(part);
    if (m === null) throw new ConfigError(`--labels: expected zone=…,rack=…,host=…, got ${JSON.stringify(part)}`);
    labels[m[1] as keyof Labels] = m[2]!;
  }
  return labels;
}

interface Identity {
  id: number;
  members: number[];
  shards: number;
  /** Joined a running cluster (its membership lives in the metadata group, not in flags). */
  joined?: boolean;
  /**
   * The members the cluster named when this node joined. Until it has caught up with the metadata (which
   * names every node), they are the only addresses it knows: without them, a node stopped early in its
   * join restarts unable to reach anyone, and never catches up.
   */
  joinedVia?: { id: number; peer: string }[];
}

function readIdentity(dataDir: string): Identity | null {
  const file = join(dataDir, "node.json");
  return existsSync(file) ? JSON.parse(readFileSync(file, "utf8")) as Identity : null;
}

/** Asks a member to let this node join; the cluster assigns the id and says who the members are. */
async function requestJoin(url: string, body: { peer: string; http: string; labels: Labels; role: string }): Promise<{ id: number; shards: number; members: { id: number; peer: string }[] }> {
  const deadlineMs = performance.now() + 30_000;
  let last = "";
  // Retried while the cluster is not ready (no metadata leader yet, a join ahead of ours); bounded.
  for (let attempt = 0; attempt < 30 && performance.now() < deadlineMs; attempt++) {
    try {
      const r = await fetch(`${url.replace(/\/$/, "")}/v1/cluster/join`, {
        method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body), signal: AbortSignal.timeout(10_000),
      });
      const answer = await r.json() as { id: number; shards: number; members: { id: number; peer: string }[]; error?: { code: string; message: string } };
      if (r.ok) return answer;
      last = `${r.status} ${answer.error?.code}: ${answer.error?.message}`;
      if (r.status < 500) break;
    } catch (e) {
      last = (e as Error).message;
    }
    await new Promise((res) => setTimeout(res, 1000));
  }
  throw new ConfigError(`--join ${url}: the cluster did not accept this node (${last})`);
}

/** Addresses that mean "every interface" to listen on, and nothing to connect to from elsewhere. */
const UNSPECIFIED_HOSTS = new Set(["0.0.0.0", "::", "[::]"]);

/** SHOAL_TEST_MODE=1 turns on fault-injection hooks (transport and API); for tests and chaos drills only. */
const testMode = process.env.SHOAL_TEST_MODE === "1";


export function parseAddress(flag: string, s: string): PeerAddress {
  const m = /^(\[[^\]]+\]|[^:]+):(\d{1,5})$/.exec(s.trim());
  const port = m ? Number(m[2]) : NaN;
  if (m === null || port < 0 || port > 65535) throw new ConfigError(`${flag}: expected HOST:PORT, got ${JSON.stringify(s)}`);
  return { host: m[1]!.replace(/^\[|\]$/g, ""), port };
}

/** "2=127.0.0.1:7501,3=127.0.0.1:7502" */
export function parsePeers(s: string, self: number): Map<number, PeerAddress> {
  const peers = new Map<number, PeerAddress>();
  for (const part of s.split(",").map((p) => p.trim()).filter((p) => p !== "")) {
    const m = /^(\d+)=(.+)$/.exec(part);
    if (m === null) throw new ConfigError(`--peers: expected ID=HOST:PORT, got ${JSON.stringify(part)}`);
    const id = Number(m[1]);
    if (id === self) throw new ConfigError(`--peers: lists this node's own id ${id}`);
    if (peers.has(id)) throw new ConfigError(`--peers: id ${id} listed twice`);
    peers.set(id, parseAddress("--peers", m[2]!));
  }
  return peers;
}

function intInRange(flag: string, v: string, min: number, max: number): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max) throw new ConfigError(`${flag}: expected an integer from ${min} to ${max}, got ${JSON.stringify(v)}`);
  return n;
}

function positiveInt(flag: string, v: string, max = Number.MAX_SAFE_INTEGER): number {
  return intInRange(flag, v, 1, max);
}

/**
 * The data directory remembers which node and cluster shape it belongs to; starting it with another
 * id, shard count or member set would silently corrupt the cluster, so it is refused.
 */
function checkIdentity(dataDir: string, identity: { id: number; members: number[]; shards: number }): void {
  const file = join(dataDir, "node.json");
  if (!existsSync(file)) {
    writeFileSync(file, JSON.stringify(identity, null, 2) + "\n");
    return;
  }
  const prev = JSON.parse(readFileSync(file, "utf8")) as typeof identity;
  const same = prev.id === identity.id && prev.shards === identity.shards &&
    JSON.stringify(prev.members) === JSON.stringify(identity.members);
  if (!same) {
    throw new ConfigError(`${dataDir} belongs to node ${prev.id} of members [${prev.members}] with ${prev.shards} shards; ` +
      `refusing to start it as node ${identity.id} of [${identity.members}] with ${identity.shards} shards`);
  }
}

/**
 * A crash (an exception or rejection nobody handled) is logged with its stack through the node's logger,
 * so it is in the node's log and not only on a stderr nobody kept, and then ends the process: its state
 * past the crash is unknown. Before the logger exists, stderr is all there is.
 */
export function exitOnCrash(logger: () => Logger | null): void {
  const crash = (what: string) => (e: unknown) => {
    const log = logger();
    if (log !== null) log.fatal({ err: e }, `${what}: the node stops`);
    else console.error(`shoal start: ${what}:`, e);
    process.exit(70); // EX_SOFTWARE
  };
  process.on("uncaughtException", crash("uncaught exception"));
  process.on("unhandledRejection", crash("unhandled promise rejection"));
}

export async function startCommand(opts: StartOptions): Promise<number> {
  let node: MultiRaftNode | null = null;
  let http: PeerAddress;
  let id: number;
  let nodeLogger: Logger | null = null;
  let lock: DataDirLock | null = null;
  let shoal: ShoalNode | null = null;
  exitOnCrash(() => nodeLogger);
  const dataDir = resolve(opts.dataDir);
  try {
    id = positiveInt("--id", opts.id);
    http = parseAddress("--http", opts.http);
    // What the cluster map records for this node's API: clients route to it, nodes gather from it.
    const advertiseHttp = opts.advertiseHttp ?? opts.http;
    const httpAdvertised = parseAddress("--advertise-http", advertiseHttp);
    const listen = parseAddress("--listen", opts.listen);
    const peers = parsePeers(opts.peers, id);
    let shards = positiveInt("--shards", opts.shards, SHARDS_MAX);
    const maxPayloadBytes = positiveInt("--max-payload-bytes", opts.maxPayloadBytes, 64 << 20);
    const maxBatchBytes = positiveInt("--max-batch-bytes", opts.maxBatchBytes ?? String(32 << 20), 256 << 20);
    const indexThreads = intInRange("--index-threads", opts.indexThreads ?? String(INDEX_THREADS_DEFAULT), 1, INDEX_THREADS_MAX);
    const indexNiceness = intInRange("--index-niceness", opts.indexNiceness ?? String(INDEX_WORKER_NICENESS), 0, NICENESS_MAX);
    // Bounded so that no body can overflow the stack of the log's encoder, however the flags are set.
    const jsonLimits = {
      depthMax: positiveInt("--max-json-depth", opts.maxJsonDepth, 256),
      fieldsMax: positiveInt("--max-json-fields", opts.maxJsonFields, 1_000_000),
      keyLengthMax: positiveInt("--max-key-length", opts.maxKeyLength, 65_536),
    };
    const labels = parseLabels(opts.labels);
    const tracingAsked = tracingOptions(opts);
    const advertise = opts.advertise ?? opts.listen;
    parseAddress("--advertise", advertise);
    mkdirSync(dataDir, { recursive: true });
    // Before anything reads node.json or opens the WAL and the store: a second process on them corrupts both.
    const held = acquireDataDirLock(dataDir, { http: opts.http, peer: advertise });
    lock = held;
    // Whichever way the process ends (a crash included), the directory is free once it has.
    process.once("exit", () => lock?.release());
    const known = readIdentity(dataDir);
    let joined = known?.joined === true;
    if (opts.join !== undefined && known === null) {
      // A new node: the cluster assigns its id; its peers and the shard count come from the answer.
      const answer = await requestJoin(opts.join, { peer: advertise, http: advertiseHttp, labels, role: opts.role });
      id = answer.id;
      shards = answer.shards;
      peers.clear();
      for (const m of answer.members) if (m.id !== id) peers.set(m.id, parseAddress("members", m.peer));
      const joinedVia = answer.members.filter((m) => m.id !== id);
      writeFileSync(join(dataDir, "node.json"), JSON.stringify({ id, members: [], shards, joined: true, joinedVia } satisfies Identity, null, 2) + "\n");
      joined = true;
    } else if (joined) {
      // A joined node restarting: it is whoever it was; the metadata it holds names its peers.
      id = known!.id;
      shards = known!.shards;
      for (const m of known!.joinedVia ?? []) if (m.id !== id && !peers.has(m.id)) peers.set(m.id, parseAddress("node.json", m.peer));
    } else {
      checkIdentity(dataDir, { id, members: [id, ...peers.keys()].sort((a, b) => a - b), shards });
    }
    // Synchronous writes (pino's default, said here because it matters): a line logged just before the
    // process ends (a crash) must reach the log.
    // The recent lines are also kept in memory for GET /v1/node/logs (diagnostics, the dashboard).
    const logRing = new LogRing();
    // A line logged inside a traced request carries its trace and span ids.
    const logger = pino({ base: { node: id }, level: opts.logLevel, ...(tracingAsked !== null ? { mixin: traceFields } : {}) }, multistream([
      { level: opts.logLevel as Level, stream: destination({ dest: 1, sync: true }) },
      { level: opts.logLevel as Level, stream: logRing },
    ]));
    nodeLogger = logger;
    if (held.tookOverFrom !== null) {
      const stale = held.tookOverFrom;
      logger.warn({ stale }, `took over the lock of ${dataDir} left by process ${stale.pid} (started ${stale.startedAt}), which no longer runs`);
    }
    const compactAfterEntries = opts.compactAfterEntries === undefined ? undefined : positiveInt("--compact-after-entries", opts.compactAfterEntries);
    node = await MultiRaftNode.open({
      // Leaderships are balanced by the placement driver, not by the node's static preference.
      id, dataDir, listen, peers, shards, logger: logger.child({ component: "multi-raft" }), ...(joined ? { join: true } : {}),
      ...(compactAfterEntries !== undefined ? { compactAfterEntries } : {}), ...(testMode ? { testFaults: true } : {}),
    });
    const gateway = new Gateway(node);
    const raft = raftComponent(node);
    const advertised = parseAddress("--advertise", advertise);
    const agents = buildNodeComponents(node, gateway, {
      peer: () => ({ host: advertised.host, port: advertised.port === 0 ? raft.port() : advertised.port }), http: httpAdvertised, labels, role: opts.role,
      founders: joined ? [] : [id, ...peers.keys()], shards, logger,
    });
    // Payload and vector indexes of this node's replicas, kept by a worker thread off the Raft loop.
    const indexes = new IndexService(node, gateway, { dir: join(dataDir, "indexes"), logger: logger.child({ component: "indexes" }), niceness: indexNiceness, threads: indexThreads });
    // Records of collections with a TTL: deleted once expired, by the shards' leaders (reads hide them already).
    const sweeper = new ExpirySweeper(node, gateway, logger.child({ component: "expiry" }));
    const app = await buildApi({
      node, gateway, logger, bodyLimitBytes: maxPayloadBytes, batchBodyLimitBytes: maxBatchBytes, jsonLimits, testMode, indexes,
      placement: agents.placement, shardAgent: agents.shardAgent, dataDir, logs: logRing, tracing: tracingAsked !== null,
      failJoins: (n) => {
        agents.membership.failJoinsForTest = n;
      },
    });
    if (testMode) logger.warn("test mode: fault-injection hooks are enabled");
    for (const [flag, addr, fix] of [["--http", httpAdvertised, "--advertise-http"], ["--listen", advertised, "--advertise"]] as const) {
      if (UNSPECIFIED_HOSTS.has(addr.host)) {
        logger.warn({ [flag]: `${addr.host}:${addr.port}` }, `${flag} listens on every interface and no ${fix} names this node's address: the cluster map records ${addr.host}, which only this machine can reach (give ${fix} HOST:PORT for clients and other nodes)`);
      }
    }
    // Started in this order, stopped in reverse: the agents stop proposing, the API stops accepting and
    // waits for in-flight requests, the node finishes its turn (fsync included) and closes its log and
    // store, and only then is the data directory free for another process.
    let tracing: Tracing | null = null;
    shoal = new ShoalNode([
      { name: "data-dir-lock", start: () => undefined, stop: () => held.release() },
      // Stopped after everything else: the spans of the last requests are exported too.
      {
        name: "tracing",
        start: async () => void (tracing = tracingAsked === null ? null : await startTracing(id, tracingAsked, logger.child({ component: "tracing" }))),
        stop: () => tracing?.stop(),
      },
      raft,
      { name: "indexes", start: () => indexes.start(), stop: () => indexes.stop() },
      { name: "expiry", start: () => sweeper.start(), stop: () => sweeper.stop() },
      { name: "api", start: async () => void await app.listen({ host: http.host, port: http.port }), stop: () => app.close() },
      ...agents.components,
    ], logger);
    await shoal.start();
    logger.info({ http: `${http.host}:${http.port}`, advertiseHttp, peer: `${listen.host}:${raft.port()}`, advertise: opts.advertise ?? opts.listen,
      dataDir, peers: [...peers.keys()], shards }, "node started");
    const running = shoal;
    let stopping = false;
    const shutdown = async (signal: string) => {
      if (stopping) return;
      stopping = true;
      logger.info({ signal }, "shutting down: no new requests, finishing in-flight ones");
      await running.stop();
      logger.info("stopped");
      process.exit(0);
    };
    process.on("SIGTERM", () => void shutdown("SIGTERM"));
    process.on("SIGINT", () => void shutdown("SIGINT"));
    return await new Promise<number>(() => undefined); // runs until a signal
  } catch (e) {
    // Whatever started before the failure (timers, sockets) must not keep the process alive.
    await shoal?.stop().catch(() => undefined);
    await node?.stop().catch(() => undefined);
    lock?.release();
    if (e instanceof ConfigError || e instanceof DataDirInUseError) {
      console.error(`shoal start: ${e.message}`);
      return 2;
    }
    if (e instanceof Error && "code" in e && (e.code === "EADDRINUSE" || e.code === "EACCES")) {
      console.error(`shoal start: cannot listen: ${e.message}`);
      return 2;
    }
    nodeLogger?.fatal({ err: e }, "startup failed");
    throw e;
  }
}
