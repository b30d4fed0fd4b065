/**
 * The cluster routes of the HTTP API (`/v1/cluster/…`): join, the nodes' lifecycle (drain, remove,
 * promote), the shard map and its operators (move, transfer-leader, split), the placement driver's
 * operators and alerts, the central configuration, and a watch stream of node and shard changes.
 * Reads come from this node's copy of the metadata (eventually consistent); commands go through the
 * metadata group's leader or the shard's leader, wherever they are.
 */
import type { FastifyInstance, FastifyReply } from "fastify";
import { ApiError, refusalError } from "./error-table.js";
import { sendError } from "./envelope.js";
import { JSON_BODY, openObject, responses, THROUGH_RAFT } from "./openapi.js";
import { type ApplyResult, type MetaNode, type MetaState, type OperatorRecord, type SettingsVersion, type ShardRecord, currentSettings } from "../meta/state.js";
import { DEFAULT_PLACEMENT, type PlacementConfig, validatePlacementConfig } from "../placement/types.js";
import type { Gateway } from "../node/gateway.js";
import { type Position, boundView, rangeView } from "../meta/ranges.js";
import { drainNode, removeNode } from "../node/membership.js";
import { META_GROUP, type MultiRaftNode } from "../node/multi-raft.js";
import { PLACEMENT_WAIT_MS_MAX, type PlacementAnswer, type PlacementRequest } from "../node/placement-driver.js";

/** Operator records listed at most (newest first). */
const OPERATORS_LIST_MAX = 1000;
/** A watch stream whose client reads slower than this much buffered output is closed. */
const WATCH_BUFFER_MAX_BYTES = 1 << 20;
/** Comment lines keep idle watch streams open through proxies. */
const WATCH_KEEPALIVE_MS = 15_000;

export async function registerClusterRoutes(app: FastifyInstance, node: MultiRaftNode, gateway: Gateway): Promise<void> {
  /** A refused cluster command: its code's entry in the error table decides the status. */
  const refuse = (reply: FastifyReply, r: { code: string; message: string; operator?: unknown }) => {
    // A shard_busy refusal names the operator in the way, for a script to wait for or cancel.
    const e = refusalError(r, r.operator !== undefined ? { operator: r.operator } : {});
    return sendError(reply, e.code, e.message, e.extra);
  };
  /** A free-form view answered with 200, and the codes of routes that ask the metadata or placement leader. */
  const view = (description: string) => ({ ...openObject, description });
  const VIA_LEADER = [...THROUGH_RAFT, ...JSON_BODY, "bad_request"] as const;

  // MEM-1: a node asks any member to join; the metadata leader handles joins one at a time.
  // A port from 1 to 65535: 0 would be "any port", and the socket layer refuses larger ones outright.
  const port = "(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3})";
  const addressSchema = { type: "string", pattern: `^(\\[[0-9A-Fa-f:.]+\\]|[A-Za-z0-9._-]+):${port}$`, description: "HOST:PORT (port 1-65535)" } as const;
  app.post<{ Body: { peer: string; http: string; labels?: { zone?: string; rack?: string; host?: string }; role?: "standard" | "analytics" | "standby" } }>("/v1/cluster/join", {
    config: { op: "join" },
    schema: {
      operationId: "joinCluster",
      summary: "Join the cluster: registers the node and adds it to the metadata group as a learner",
      response: responses(view("the assigned id, the shard count and the members"), "address_in_use", "join_failed", ...VIA_LEADER),
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
    const [peer, http] = [addr(req.body.peer), addr(req.body.http)];
    const same = (a: { host: string; port: number }, b: { host: string; port: number }) => a.host === b.host && a.port === b.port;
    if (same(peer, http)) throw new ApiError("bad_request", "peer and http must be different addresses");
    // Any address a member uses (peer or HTTP) is taken: a second node there could only be the same process.
    for (const n of node.metaState().nodes.values()) {
      if (n.worker === "removed") continue;
      for (const mine of [peer, http]) {
        if (same(mine, n.peer) || same(mine, n.http)) throw new ApiError("address_in_use", `node ${n.id} already uses ${mine.host}:${mine.port}`);
      }
    }
    const r = await gateway.join({ peer, http, labels: req.body.labels ?? {}, role: req.body.role ?? "standard" });
    if (!r.ok) return refuse(reply, r);
    return { id: r.id, shards: r.shards, members: r.members.map((m) => ({ id: m.id, peer: `${m.peer.host}:${m.peer.port}` })) };
  });

  const idParams = { type: "object", required: ["id"], properties: { id: { type: "integer", minimum: 1 } } } as const;

  // MEM-5: drain and remove. A refusal (a node still holding replicas, a wrong transition) is a 409 with its reason.
  for (const action of ["drain", "remove"] as const) {
    app.post<{ Params: { id: number } }>(`/v1/cluster/nodes/:id/${action}`, {
      config: { op: action },
      schema: {
        operationId: action === "drain" ? "drainNode" : "removeNode",
        summary: action === "drain" ? "Drain a node: no new replicas; its replicas move away, leaders first" : "Remove a node that holds no replica",
        params: idParams,
        response: responses(view("the node and its worker state"), "node_not_found", "node_holds_replicas", "invalid_transition", ...VIA_LEADER),
      },
    }, async (req, reply) => {
      const r = action === "drain" ? await drainNode(gateway, req.params.id) : await removeNode(gateway, node, req.params.id);
      if (!r.ok) return refuse(reply, r);
      return { node: req.params.id, worker: action === "drain" ? "draining" : "removed" };
    });
  }

  // PD-8: cluster-wide settings, versioned in the metadata group; validated before they apply.
  const settingsView = (v: SettingsVersion) => ({ version: v.version, atMs: v.atMs, note: v.note, placement: v.placement });
  app.get("/v1/cluster/config", { config: { op: "config" }, schema: { operationId: "getConfig", summary: "The settings in force (placement driver)", response: responses(view("the version in force")) } }, async () =>
    settingsView(currentSettings(node.metaState() as MetaState)));
  app.get("/v1/cluster/config/history", { config: { op: "config" }, schema: { operationId: "getConfigHistory", summary: "Kept settings versions, oldest first", response: responses(view("the kept versions")) } }, async () =>
    ({ versions: node.metaState().settings.map(settingsView) }));
  const settingsReply = (r: ApplyResult, reply: FastifyReply) => (r.ok ? { version: r.value } : refuse(reply, r));
  app.put<{ Body: { baseVersion: number; settings: Partial<PlacementConfig>; note?: string } }>("/v1/cluster/config", {
    config: { op: "config" },
    schema: {
      operationId: "setConfig",
      summary: "Change settings: only against the version read (409 stale_settings otherwise); unknown names and invalid values are refused, each named (400 invalid_settings)",
      response: responses(view("the new version"), "invalid_settings", "stale_settings", ...VIA_LEADER),
      body: {
        type: "object", required: ["baseVersion", "settings"], additionalProperties: false,
        properties: {
          baseVersion: { type: "integer", minimum: 1 }, note: { type: "string", maxLength: 200 },
          // Unknown names are refused by the handler with the other invalid settings, all named at once.
          settings: { type: "object", additionalProperties: { type: "number" }, properties: Object.fromEntries(Object.keys(DEFAULT_PLACEMENT).map((k) => [k, { type: "number" }])) },
        },
      },
    },
  }, async (req, reply) => {
    const current = currentSettings(node.metaState() as MetaState);
    const placement = { ...current.placement, ...req.body.settings };
    const unknown = Object.keys(req.body.settings).filter((k) => !Object.hasOwn(DEFAULT_PLACEMENT, k));
    const problems = [...unknown.map((k) => `unknown setting ${JSON.stringify(k)}`), ...validatePlacementConfig(placement)];
    if (unknown.length > 0) problems.push(`the settings are: ${Object.keys(DEFAULT_PLACEMENT).join(", ")}`);
    if (problems.length > 0) throw new ApiError("invalid_settings", problems.join("; "));
    return settingsReply(await gateway.proposeMeta({ kind: "set-settings", baseVersion: req.body.baseVersion, placement, note: req.body.note ?? "", atMs: Date.now() }), reply);
  });
  app.post<{ Body: { toVersion: number } }>("/v1/cluster/config/rollback", {
    config: { op: "config" },
    schema: {
      operationId: "rollbackConfig",
      summary: "Roll the settings back to a kept version (recorded as a new version)",
      response: responses(view("the new version"), "settings_version_not_found", ...VIA_LEADER),
      body: { type: "object", required: ["toVersion"], additionalProperties: false, properties: { toVersion: { type: "integer", minimum: 1 } } },
    },
  }, async (req, reply) => settingsReply(await gateway.proposeMeta({ kind: "rollback-settings", toVersion: req.body.toVersion, atMs: Date.now() }), reply));

  const nodeView = (n: MetaNode) => ({
    id: n.id, peer: `${n.peer.host}:${n.peer.port}`, http: `${n.http.host}:${n.http.port}`, labels: n.labels, role: n.role,
    lifecycle: n.lifecycle, worker: n.worker, joinedAtMs: n.joinedAtMs, readyAtMs: n.readyAtMs,
    // As this node's failure detector sees it (phi-accrual over the frames it receives).
    health: n.worker === "removed" ? "removed" : node.peerHealth(n.id),
    phi: n.worker === "removed" ? null : roundPhi(node.peerPhi(n.id)),
  });
  const shardView = (sh: ShardRecord) => ({
    shard: sh.id, collection: sh.collection, range: rangeView(sh.range), epoch: sh.epoch, replicas: sh.replicas,
    // This node's view of the leader, when it holds a replica, and since when (wall-clock ms) it knows it.
    leader: node.leaderOf(sh.id),
    leaderSinceMs: node.leaderKnownSinceMs(sh.id),
  });
  const operatorView = (r: OperatorRecord) => ({
    id: r.operator.id, shard: r.operator.shard, reason: r.operator.reason, status: r.status, steps: r.operator.steps,
    stepIndex: r.operator.stepIndex, epoch: r.operator.epoch, startedAtMs: r.operator.startedAtMs, updatedAtMs: r.updatedAtMs,
    ...(r.operator.reshape !== undefined ? { reshape: r.operator.reshape.kind === "split" ? { ...r.operator.reshape, end: boundView(r.operator.reshape.end) } : r.operator.reshape } : {}),
  });

  // The cluster map, read from this node's copy of the metadata group (eventually consistent).
  app.get("/v1/cluster/nodes", { config: { op: "nodes" }, schema: { operationId: "listNodes", summary: "The cluster's nodes, from the metadata group", response: responses(view("the nodes and the metadata leader")) } }, async () => {
    const meta = node.metaState();
    return { metaLeader: node.leaderOf(META_GROUP), nodes: [...meta.nodes.values()].sort((a, b) => a.id - b.id).map(nodeView) };
  });
  app.get("/v1/cluster/shards", { config: { op: "shards" }, schema: { operationId: "listShards", summary: "The shard map (ranges, replicas, epochs), from the metadata group", response: responses(view("the shards")) } }, async () => {
    const meta = node.metaState();
    return { shards: [...meta.shards.values()].filter((sh) => sh.retiredInto === undefined).sort((a, b) => a.id - b.id).map(shardView) };
  });

  // PD-7: the placement driver's operators (from the metadata), and operators asked for by hand.
  app.get<{ Querystring: { status?: "running" | "all" } }>("/v1/cluster/operators", {
    config: { op: "operators" },
    schema: {
      operationId: "listOperators",
      summary: "Placement operators, newest first (running ones only with status=running)",
      response: responses(view("the operators"), "bad_request"),
      querystring: { type: "object", properties: { status: { type: "string", enum: ["running", "all"], default: "all" } } },
    },
  }, async (req) => {
    const all = [...node.metaState().operators.values()].filter((r) => req.query.status !== "running" || r.status === "running");
    all.sort((a, b) => b.operator.id - a.operator.id);
    return { operators: all.slice(0, OPERATORS_LIST_MAX).map(operatorView) };
  });
  const placementReply = (r: PlacementAnswer, reply: FastifyReply) => {
    if (!r.ok) return refuse(reply, r);
    return r.operator === undefined ? { ok: true } : { operator: r.operator.id, steps: r.operator.steps };
  };
  // Operators asked by hand may wait (bounded) for the operators running on their shards instead of being refused.
  const waitQuery = {
    type: "object", properties: {
      waitMs: {
        type: "integer", minimum: 0, maximum: PLACEMENT_WAIT_MS_MAX, default: 0,
        description: `while another operator runs on the shard, wait up to this long for it to end, then run (0: refuse at once with shard_busy naming it; at most ${PLACEMENT_WAIT_MS_MAX})`,
      },
    },
  } as const;
  const ask = (req: PlacementRequest, waitMs: number | undefined) => gateway.placementWaiting(req, waitMs ?? 0);
  app.post<{ Params: { id: number } }>("/v1/cluster/operators/:id/cancel", {
    config: { op: "operators" },
    schema: {
      operationId: "cancelOperator", summary: "Cancel a running operator (finished steps stand; a learner it left is removed by repair)", params: idParams,
      response: responses(view("done"), "operator_not_found", ...VIA_LEADER),
    },
  }, async (req, reply) => placementReply(await gateway.placement({ kind: "cancel", operator: req.params.id }), reply));
  app.post<{ Params: { id: number }; Body: { from: number; to: number }; Querystring: { waitMs?: number } }>("/v1/cluster/shards/:id/move", {
    config: { op: "move" },
    schema: {
      operationId: "moveReplica",
      summary: "Move a replica of the shard from one node to another (learner, promoted once caught up, then the old one leaves)",
      response: responses(view("the operator started"), "shard_not_found", "shard_retired", "replica_not_found", "shard_busy", "replica_exists", "node_not_placeable", "node_not_found", ...VIA_LEADER),
      params: idParams, querystring: waitQuery,
      body: { type: "object", required: ["from", "to"], additionalProperties: false, properties: { from: { type: "integer", minimum: 1 }, to: { type: "integer", minimum: 1 } } },
    },
  }, async (req, reply) => placementReply(await ask({ kind: "move", shard: req.params.id, from: req.body.from, to: req.body.to }, req.query.waitMs), reply));
  app.post<{ Params: { id: number }; Body: { to: number }; Querystring: { waitMs?: number } }>("/v1/cluster/shards/:id/transfer-leader", {
    config: { op: "transfer-leader" },
    schema: {
      operationId: "transferLeader",
      summary: "Move the shard's leadership to another of its voters",
      response: responses(view("the operator started"), "shard_not_found", "shard_retired", "shard_busy", "not_a_voter", "already_leader", ...VIA_LEADER),
      params: idParams, querystring: waitQuery,
      body: { type: "object", required: ["to"], additionalProperties: false, properties: { to: { type: "integer", minimum: 1 } } },
    },
  }, async (req, reply) => placementReply(await ask({ kind: "transfer-leader", shard: req.params.id, to: req.body.to }, req.query.waitMs), reply));
  app.post<{ Params: { id: number }; Body: { with?: number } | undefined }>("/v1/cluster/nodes/:id/promote", {
    config: { op: "promote" },
    schema: {
      operationId: "promoteNode",
      summary: "Promote a caught-up metadata learner to voter; name a partner (with) when one alone would make the voters even",
      response: responses(view("the promoted nodes"), "node_not_found", "voters_must_stay_odd", "not_caught_up", "not_promotable", "not_a_learner", "conf_change_refused", ...VIA_LEADER),
      params: idParams,
      body: { type: ["object", "null"], additionalProperties: false, properties: { with: { type: "integer", minimum: 1 } } },
    },
  }, async (req, reply) => {
    const partner = req.body?.with;
    const r = await gateway.placement({ kind: "promote", nodes: partner === undefined ? [req.params.id] : [req.params.id, partner] });
    if (!r.ok) return refuse(reply, r);
    return { promoted: partner === undefined ? [req.params.id] : [req.params.id, partner] };
  });
  app.get("/v1/cluster/alerts", { config: { op: "alerts" }, schema: { operationId: "listAlerts", summary: "The placement driver's alerts (dead nodes, stale learners), oldest first", response: responses(view("the alerts"), ...VIA_LEADER) } }, async (_req, reply) => {
    const r = await gateway.placement({ kind: "alerts" });
    return r.ok ? { alerts: r.alerts ?? [] } : refuse(reply, r);
  });

  // MEM-7: a stream (server-sent events) of node and shard changes, starting with the whole map.
  const streams = new Set<() => void>();
  app.addHook("preClose", async () => {
    for (const close of [...streams]) close();
  });
  app.get("/v1/cluster/watch", {
    config: { op: "watch" },
    schema: {
      operationId: "watchCluster",
      summary: "Server-sent events: `snapshot` (every node and live shard), then `node` and `shard` on each change (`removed: true` when gone; a merged shard also names `retiredInto`)",
      response: responses({ description: "an event stream", content: { "text/event-stream": { schema: { type: "string" } } } }, "overloaded"),
    },
  }, (req, reply) => {
    reply.hijack();
    const out = reply.raw;
    out.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
    // An answer to HEAD is its headers alone; a stream never ends by itself.
    if (req.method === "HEAD") return void out.end();
    out.flushHeaders();
    // A body nobody reads would keep the socket paused, and its client's close unseen.
    req.raw.resume();
    const send = (event: string, data: unknown) => {
      out.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
      if (out.writableLength > WATCH_BUFFER_MAX_BYTES) close();
    };
    const snapshot = () => {
      const meta = node.metaState();
      // Live shards only, as /v1/cluster/shards: a retired shard keeps an empty range, which is no part of the map.
      send("snapshot", { nodes: [...meta.nodes.values()].map(nodeView), shards: [...meta.shards.values()].filter((sh) => sh.retiredInto === undefined).map(shardView) });
    };
    let unsubscribe: (() => void) | null = null;
    const keepalive = setInterval(() => out.write(": keepalive\n\n"), WATCH_KEEPALIVE_MS);
    const close = () => {
      clearInterval(keepalive);
      unsubscribe?.();
      unsubscribe = null;
      if (!out.writableEnded) out.end();
    };
    // The response closes with its connection (the request closes as soon as its body is read), and
    // every stream ends when the server closes (a graceful stop would wait for them otherwise).
    out.on("close", close);
    streams.add(close);
    out.once("close", () => streams.delete(close));
    try {
      unsubscribe = node.watchMeta((keys) => {
        if (keys.includes("*")) return snapshot();
        const meta = node.metaState();
        for (const key of keys) {
          const [kind, id] = [key.slice(0, 2), Number(key.slice(2))];
          if (kind === "n:") {
            const n = meta.nodes.get(id);
            send("node", n === undefined ? { id, removed: true } : nodeView(n));
          } else if (kind === "s:") {
            const sh = meta.shards.get(id);
            // A merge retires its source: gone from the map (its range is the target's now), not a shard with an empty range.
            if (sh === undefined || sh.retiredInto !== undefined) send("shard", { shard: id, removed: true, ...(sh?.retiredInto !== undefined ? { retiredInto: sh.retiredInto } : {}) });
            else send("shard", shardView(sh));
          }
        }
      });
    } catch (e) {
      out.write(`event: error\ndata: ${JSON.stringify({ code: "overloaded", message: (e as Error).message })}\n\n`);
      return close();
    }
    snapshot();
  });

  // PD-6: split a shard in two (its replicas apply the split at one log index), or merge one into its neighbour.
  // A split point is a hash (an integer) for a hash collection's shard, an id (a string) for a range collection's.
  const bounds = (r: [Position, Position] | undefined) => (r === undefined ? undefined : [r[0], boundView(r[1])]);
  app.post<{ Params: { id: number }; Body: { at?: Position } | undefined; Querystring: { waitMs?: number } }>("/v1/cluster/shards/:id/split", {
    config: { op: "split" },
    schema: {
      operationId: "splitShard",
      summary: "Split a shard in two at a position: a hash of a hash collection's shard (default: the middle of its range), an id of a range collection's " +
        "(default: the id in the middle of its records); the upper part becomes a new shard on the same replicas",
      response: responses(view("the shard and its new child, with both ranges [start, end) (a range collection's: ids, the open end null)"),
        "shard_not_found", "shard_retired", "bad_split", "shard_busy", "stale_split", "split_pending", ...VIA_LEADER),
      params: idParams, querystring: waitQuery,
      body: {
        type: ["object", "null"], additionalProperties: false,
        properties: { at: { type: ["integer", "string"], minimum: 1, maximum: 2 ** 32 - 1, minLength: 1, maxLength: 256, description: "a hash (integer) or an id (string)" } },
      },
    },
  }, async (req, reply) => {
    const r = await ask({ kind: "split", shard: req.params.id, ...(req.body?.at !== undefined ? { at: req.body.at } : {}) }, req.query.waitMs);
    if (!r.ok) return refuse(reply, r);
    return { shard: req.params.id, range: bounds(r.range), child: r.child, childRange: bounds(r.childRange), operator: r.operator?.id };
  });
  app.post<{ Params: { id: number }; Querystring: { waitMs?: number } }>("/v1/cluster/shards/:id/merge", {
    config: { op: "merge" },
    schema: {
      operationId: "mergeShard", summary: "Merge a small shard into its lower neighbour (the shard freezes, its records move through the neighbour's log)", params: idParams,
      querystring: waitQuery,
      response: responses(view("the shard retired and the one surviving, with the survivor's range once merged, and the merge's operator (done when the shard map retires the shard)"),
        "shard_not_found", "shard_retired", "no_neighbour", "too_large", "shard_busy", "stale_merge", ...VIA_LEADER),
    },
  }, async (req, reply) => {
    const r = await ask({ kind: "merge", shard: req.params.id }, req.query.waitMs);
    if (!r.ok) return refuse(reply, r);
    return { shard: req.params.id, into: r.into, retired: req.params.id, surviving: r.into, range: bounds(r.range), operator: r.operator?.id };
  });
}

/** Two decimals: phi grows without bound for a silent peer (Infinity is not JSON; null then). */
function roundPhi(phi: number | null): number | null {
  return phi === null || !Number.isFinite(phi) ? null : Math.round(phi * 100) / 100;
}
