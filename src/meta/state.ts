/**
 * The metadata state machine (DESIGN: meta/): applied on every node from the metadata group's log, so
 * every node holds the whole cluster map. Nodes (addresses, labels, role, membership lifecycle, worker
 * state), collections, the shard map with epochs, versioned settings, operator records. Pure and
 * deterministic: a command carries the proposer's clock (`atMs`), apply never reads one, and a refused
 * command changes nothing and says why with a machine-readable code.
 */
import { type CollectionSpec, type Partitioning, REPLICATION_FACTOR_MAX } from "./collections.js";
import type { Operator, PlacementConfig, ReplicaRole, WorkerState } from "../placement/types.js";
import { upgradePlacementConfig, validatePlacementConfig } from "../placement/types.js";
import type { Labels, NodeId } from "../placement/types.js";
import { type Position, type ShardRange, cutRange, describeRange, initialRanges } from "./ranges.js";

/** MEM-3: standard nodes may vote; analytics nodes stay learners and serve reads; standby nodes wait. */
export type NodeRole = "standard" | "analytics" | "standby";

/**
 * Membership in the metadata group (MEM-2): Joining -> Syncing -> Ready -> (Voter | Pairing -> Voter |
 * StandbyLearner | KeepAsLearner).
 */
export type MemberLifecycle = "joining" | "syncing" | "ready" | "pairing" | "voter" | "standby-learner" | "keep-as-learner";

export interface Address {
  host: string;
  port: number;
}

export interface MetaNode {
  id: NodeId;
  /** Peer (Raft transport) and HTTP addresses. */
  peer: Address;
  http: Address;
  labels: Labels;
  role: NodeRole;
  lifecycle: MemberLifecycle;
  worker: WorkerState;
  joinedAtMs: number;
  /** When the node reported it had caught up (ReadyNotification). */
  readyAtMs: number | null;
  /** When it started waiting for a partner to be promoted with. */
  pairingSinceMs: number | null;
}

export interface ShardRecord {
  id: number;
  collection: string;
  /**
   * Half-open range [start, end) of its collection's positions (meta/ranges.ts ShardRange): of the
   * 32-bit hash of record ids (numbers), or of the ids themselves in a range collection (strings).
   */
  range: ShardRange;
  /** A shard made by splitting `parent` at its log index `index` (its replicas create it when they apply the split). */
  origin?: { parent: number; index: number };
  /** Merged into that shard: no range, no replicas (its replicas drop it); kept so that nothing recreates it. */
  retiredInto?: number;
  /** Bumped by every change of the replica set: stale routing and stale operators are refused (PD-5). */
  epoch: number;
  /**
   * The replica set mirrors the shard's Raft configuration as of this applied index of the shard's
   * log (0: as created). A mirror read at a lower index is older and refused, whoever sends it.
   */
  confIndex: number;
  replicas: { node: NodeId; role: ReplicaRole }[];
}

export interface CollectionRecord {
  name: string;
  /** Voters each shard was created with. */
  replicationFactor: number;
  /** Its live shards (retired ones leave). */
  shards: number[];
  /** Shards it was created with: merging never goes below this. */
  initialShards?: number;
  /**
   * Replicas the placement driver keeps for each shard, as declared or changed since; absent: the
   * settings' replicationFactor (the default collection, which grows with the cluster).
   */
  targetReplicas?: number;
  /** What it was declared with beyond its shards; absent for the default collection. */
  schema?: CollectionSchema;
}

/** A collection's declaration beyond its shards and replicas (collections.ts checks it). */
export type CollectionSchema = Pick<CollectionSpec, "partitioning" | "vectors" | "payloadIndexes" | "ttlMs"> & Partial<Pick<CollectionSpec, "writeMode">>;

export interface SettingsVersion {
  version: number;
  placement: PlacementConfig;
  atMs: number;
  /** What the change said of itself (operator, reason). */
  note: string;
}

export type OperatorStatus = "running" | "done" | "timed-out" | "fenced" | "cancelled";

export interface OperatorRecord {
  operator: Operator;
  status: OperatorStatus;
  updatedAtMs: number;
}

/** Settings versions kept for rollback; operator records kept once ended. Bounds on the state's size. */
/**
 * The collection a cluster is created with (membership.ts creates it once the founders registered).
 * Code paths look collections up in the metadata by the name a request carries; this name is spelled
 * only where the cluster creates it and where record routes have no collection yet (one collection
 * until collections with schemas land).
 */
export const DEFAULT_COLLECTION = "default";

export const SETTINGS_HISTORY_MAX = 64;
export const ENDED_OPERATORS_MAX = 1000;

export interface MetaState {
  nodes: Map<NodeId, MetaNode>;
  nextNodeId: NodeId;
  collections: Map<string, CollectionRecord>;
  shards: Map<number, ShardRecord>;
  nextShardId: number;
  /** Oldest first; the last is in force. Invariant: non-empty, versions strictly increasing. */
  settings: SettingsVersion[];
  operators: Map<number, OperatorRecord>;
  /**
   * Shards of dropped collections: gone from the map, so that nothing routes to, places or repairs
   * them; their replicas drop them (hosting.ts), which a shard merely missing from the map (a founder's,
   * before its collection is recorded) must not make them do. Ids are never reused.
   */
  droppedShards: Set<number>;
}

export function initialMetaState(placement: PlacementConfig, atMs: number): MetaState {
  return {
    nodes: new Map(), nextNodeId: 1, collections: new Map(), shards: new Map(), nextShardId: 1,
    settings: [{ version: 1, placement, atMs, note: "initial" }], operators: new Map(), droppedShards: new Set(),
  };
}

export type MetaCommand =
  /**
   * A node asks to join (MEM-1); the state machine assigns its id, unless the node brings one (a member
   * of a cluster started from a static peer list).
   */
  | { kind: "register-node"; id?: NodeId; peer: Address; http: Address; labels: Labels; role: NodeRole; atMs: number }
  | { kind: "set-lifecycle"; node: NodeId; lifecycle: MemberLifecycle; atMs: number }
  | { kind: "set-worker-state"; node: NodeId; state: WorkerState; atMs: number }
  /** Rolls back a join that failed midway: the node leaves the map as if it never joined. */
  | { kind: "forget-node"; node: NodeId; atMs: number }
  /**
   * A collection and its shards, born on their voters (`placements`, one list per shard). `schema` and
   * `targetReplicas` come with a collection declared through the API (absent for the default one).
   */
  | {
    kind: "create-collection"; name: string; replicationFactor: number; placements: NodeId[][]; schema?: CollectionSchema; targetReplicas?: number;
    /** A range collection's shard boundaries (one fewer than the placements); absent for hash collections. */
    splitPoints?: string[]; atMs: number;
  }
  /** Changes the replicas the placement driver keeps for each shard of a collection (it adds or removes them). */
  | { kind: "set-collection-replicas"; name: string; replicationFactor: number; atMs: number }
  /** Drops a collection: its shards leave the map (their replicas drop them) and its name is free again. */
  | { kind: "drop-collection"; name: string; atMs: number }
  /**
   * A shard's replica set as its leader's Raft configuration has it at applied index `confIndex`
   * (the leader mirrors every configuration change it applies); refused unless newer than the record's.
   */
  | { kind: "set-replicas"; shard: number; confIndex: number; replicas: { node: NodeId; role: ReplicaRole }[]; atMs: number }
  | { kind: "set-settings"; baseVersion: number; placement: PlacementConfig; note: string; atMs: number }
  | { kind: "rollback-settings"; toVersion: number; atMs: number }
  | { kind: "record-operator"; operator: Operator; status: OperatorStatus; atMs: number }
  /** Reserves a shard id for a split (the split's log entry names the new shard). */
  | { kind: "reserve-shard-id"; atMs: number }
  /**
   * Records a split that `shard`'s replicas applied at its log index `index`: the positions from `at` to
   * `end` (the shard's end before the split) now belong to the new shard `child`, on the same replicas.
   */
  | { kind: "split-shard"; shard: number; child: number; at: Position; end: Position; index: number; atMs: number }
  /** Records that `into` absorbed its upper neighbour `from` (whose range ended at `end`): `from` is retired. */
  | { kind: "merge-shards"; into: number; from: number; end: Position; atMs: number };

export type ApplyResult = { ok: true; value?: number } | { ok: false; code: string; message: string };

const refuse = (code: string, message: string): ApplyResult => ({ ok: false, code, message });

/** Applies one committed command. Mutates `s` only when the result is ok. */
export function applyMeta(s: MetaState, cmd: MetaCommand): ApplyResult {
  switch (cmd.kind) {
    case "register-node": {
      for (const n of s.nodes.values()) {
        if (n.peer.host === cmd.peer.host && n.peer.port === cmd.peer.port && n.worker !== "removed") {
          return refuse("address_in_use", `node ${n.id} already has peer address ${cmd.peer.host}:${cmd.peer.port}`);
        }
      }
      if (cmd.id !== undefined && (!Number.isInteger(cmd.id) || cmd.id < 1)) return refuse("bad_request", `node id must be a positive integer, got ${cmd.id}`);
      if (cmd.id !== undefined && s.nodes.has(cmd.id)) return refuse("node_exists", `node ${cmd.id} is registered`);
      const id = cmd.id ?? s.nextNodeId;
      s.nextNodeId = Math.max(s.nextNodeId, id + 1);
      s.nodes.set(id, {
        id, peer: cmd.peer, http: cmd.http, labels: cmd.labels, role: cmd.role, lifecycle: "joining", worker: "joining",
        joinedAtMs: cmd.atMs, readyAtMs: null, pairingSinceMs: null,
      });
      return { ok: true, value: id };
    }
    case "set-lifecycle": {
      const n = s.nodes.get(cmd.node);
      if (n === undefined) return refuse("node_not_found", `no node ${cmd.node}`);
      if (cmd.lifecycle === "voter" && n.role !== "standard") return refuse("not_promotable", `node ${n.id} is ${n.role}: it never votes`);
      n.lifecycle = cmd.lifecycle;
      if (cmd.lifecycle === "ready" && n.readyAtMs === null) n.readyAtMs = cmd.atMs;
      n.pairingSinceMs = cmd.lifecycle === "pairing" ? cmd.atMs : null;
      return { ok: true };
    }
    case "set-worker-state":
      return setWorkerState(s, cmd.node, cmd.state);
    case "forget-node": {
      const n = s.nodes.get(cmd.node);
      if (n === undefined) return refuse("node_not_found", `no node ${cmd.node}`);
      if (replicasOn(s, n.id) > 0) return refuse("node_holds_replicas", `node ${n.id} holds replicas: drain it instead`);
      s.nodes.delete(n.id);
      return { ok: true };
    }
    case "create-collection": {
      if (cmd.targetReplicas !== undefined && !validReplicas(cmd.targetReplicas)) {
        return refuse("bad_request", `a collection keeps 1 to ${REPLICATION_FACTOR_MAX} replicas per shard, not ${cmd.targetReplicas}`);
      }
      const r = createCollection(s, cmd.name, cmd.replicationFactor, cmd.placements, cmd.schema?.partitioning ?? "hash", cmd.splitPoints);
      if (r.ok) {
        const created = s.collections.get(cmd.name)!;
        if (cmd.schema !== undefined) created.schema = cmd.schema;
        if (cmd.targetReplicas !== undefined) created.targetReplicas = cmd.targetReplicas;
      }
      return r;
    }
    case "set-collection-replicas": {
      const c = s.collections.get(cmd.name);
      if (c === undefined) return refuse("collection_not_found", `no collection ${cmd.name}`);
      if (!validReplicas(cmd.replicationFactor)) return refuse("bad_request", `a collection keeps 1 to ${REPLICATION_FACTOR_MAX} replicas per shard, not ${cmd.replicationFactor}`);
      c.targetReplicas = cmd.replicationFactor;
      return { ok: true, value: cmd.replicationFactor };
    }
    case "drop-collection": {
      const c = s.collections.get(cmd.name);
      if (c === undefined) return refuse("collection_not_found", `no collection ${cmd.name}`);
      if (cmd.name === DEFAULT_COLLECTION) return refuse("collection_protected", `the ${DEFAULT_COLLECTION} collection is the cluster's own: it cannot be dropped`);
      s.collections.delete(cmd.name);
      // Every shard of it, retired ones too (a merge source keeps its record until now).
      const gone = [...s.shards.values()].filter((sh) => sh.collection === cmd.name).map((sh) => sh.id);
      for (const id of gone) {
        s.shards.delete(id);
        s.droppedShards.add(id);
      }
      return { ok: true, value: gone.length };
    }
    case "set-replicas": {
      const shard = s.shards.get(cmd.shard);
      if (shard === undefined) return refuse("shard_not_found", `no shard ${cmd.shard}`);
      if (shard.retiredInto !== undefined) return refuse("shard_retired", `shard ${shard.id} was merged into shard ${shard.retiredInto}`);
      if (cmd.confIndex <= shard.confIndex) {
        return refuse("stale_configuration", `shard ${shard.id} mirrors its configuration as of index ${shard.confIndex}, not older ${cmd.confIndex}`);
      }
      const unknown = cmd.replicas.find((r) => !s.nodes.has(r.node));
      if (unknown !== undefined) return refuse("node_not_found", `no node ${unknown.node}`);
      if (!cmd.replicas.some((r) => r.role === "voter")) return refuse("no_voter", `shard ${shard.id} would have no voter`);
      shard.replicas = cmd.replicas.map((r) => ({ ...r }));
      shard.confIndex = cmd.confIndex;
      shard.epoch++;
      return { ok: true, value: shard.epoch };
    }
    case "set-settings": {
      const current = s.settings[s.settings.length - 1]!;
      if (cmd.baseVersion !== current.version) {
        return refuse("stale_settings", `settings are at version ${current.version}, not ${cmd.baseVersion}: read them again`);
      }
      // An entry written by an earlier version may name settings since renamed (see upgradePlacementConfig).
      const placement = upgradePlacementConfig(cmd.placement as unknown as Record<string, unknown>);
      const errors = validatePlacementConfig(placement);
      if (errors.length > 0) return refuse("invalid_settings", errors.join("; "));
      return pushSettings(s, placement, cmd.note, cmd.atMs);
    }
    case "rollback-settings": {
      const target = s.settings.find((v) => v.version === cmd.toVersion);
      if (target === undefined) return refuse("settings_version_not_found", `no settings version ${cmd.toVersion} in the kept history`);
      return pushSettings(s, target.placement, `rollback to version ${cmd.toVersion}`, cmd.atMs);
    }
    case "reserve-shard-id":
      return { ok: true, value: s.nextShardId++ };
    case "split-shard":
      return splitShard(s, cmd.shard, cmd.child, cmd.at, cmd.end, cmd.index);
    case "merge-shards":
      return mergeShards(s, cmd.into, cmd.from, cmd.end);
    case "record-operator": {
      s.operators.set(cmd.operator.id, { operator: cmd.operator, status: cmd.status, updatedAtMs: cmd.atMs });
      pruneOperators(s);
      return { ok: true };
    }
  }
}

export function replicasOn(s: MetaState, node: NodeId): number {
  let n = 0;
  for (const shard of s.shards.values()) if (shard.replicas.some((r) => r.node === node)) n++;
  return n;
}

/** MEM-5: joining -> ready -> draining -> removed; removal only once the node holds no replica. */
function setWorkerState(s: MetaState, id: NodeId, state: WorkerState): ApplyResult {
  const n = s.nodes.get(id);
  if (n === undefined) return refuse("node_not_found", `no node ${id}`);
  const allowed: Record<WorkerState, WorkerState[]> = {
    joining: ["ready", "removed"], ready: ["draining"], draining: ["ready", "removed"], removed: [],
  };
  if (n.worker === state) return { ok: true };
  if (state === "removed") {
    // The guardrail first: it is the reason an operator needs to hear.
    const held = replicasOn(s, id);
    if (held > 0) return refuse("node_holds_replicas", `node ${id} still holds ${held} replica(s): drain it and wait until they have moved`);
  }
  if (!allowed[n.worker].includes(state)) {
    const hint = n.worker === "ready" && state === "removed" ? ": drain it first" : "";
    return refuse("invalid_transition", `node ${id} is ${n.worker}: it cannot become ${state}${hint}`);
  }
  n.worker = state;
  return { ok: true };
}

function validReplicas(n: number): boolean {
  return Number.isInteger(n) && n >= 1 && n <= REPLICATION_FACTOR_MAX;
}

function createCollection(s: MetaState, name: string, replicationFactor: number, placements: NodeId[][], partitioning: Partitioning,
  splitPoints: readonly string[] | undefined): ApplyResult {
  if (s.collections.has(name)) return refuse("collection_exists", `collection ${name} exists`);
  // The founders host the default collection's shards (ids 1..n) from their first start, before it is
  // recorded: another collection recorded first would be given those same ids.
  if (name !== DEFAULT_COLLECTION && !s.collections.has(DEFAULT_COLLECTION)) {
    return refuse("not_ready", `the cluster's ${DEFAULT_COLLECTION} collection is not recorded yet (the founders are still registering): ask again shortly`);
  }
  if (placements.length === 0) return refuse("bad_request", "a collection needs at least one shard");
  for (const p of placements) {
    // Fewer nodes than the replication factor (a cluster founded by fewer): repair adds the rest later.
    if (p.length === 0 || p.length > replicationFactor || new Set(p).size !== p.length) {
      return refuse("bad_request", `each shard needs 1 to ${replicationFactor} distinct nodes`);
    }
    const unknown = p.find((id) => !s.nodes.has(id));
    if (unknown !== undefined) return refuse("node_not_found", `no node ${unknown}`);
  }
  const ranges = initialRanges(partitioning, placements.length, splitPoints);
  if (ranges === null) return refuse("bad_request", `the split points do not cut ${placements.length} ${partitioning} shards: sorted, distinct strings, one fewer than the shards (range collections only)`);
  const ids: number[] = [];
  for (const [i, p] of placements.entries()) {
    const id = s.nextShardId++;
    ids.push(id);
    s.shards.set(id, { id, collection: name, range: ranges[i]!, epoch: 1, confIndex: 0, replicas: p.map((node) => ({ node, role: "voter" as const })) });
  }
  s.collections.set(name, { name, replicationFactor, shards: ids, initialShards: ids.length });
  return { ok: true, value: ids.length };
}

function splitShard(s: MetaState, id: number, child: number, at: Position, end: Position, index: number): ApplyResult {
  const shard = s.shards.get(id);
  if (shard === undefined) return refuse("shard_not_found", `no shard ${id}`);
  // Recorded once: a second report of the same split (another leader's) finds the range already cut.
  if (shard.retiredInto !== undefined) return refuse("shard_retired", `shard ${id} was merged into shard ${shard.retiredInto}`);
  if (shard.range.end !== end) return refuse("stale_split", `shard ${id} ends at ${JSON.stringify(shard.range.end)}, not ${JSON.stringify(end)}: this split is recorded already`);
  const cut = cutRange(shard.range, at);
  if (cut === null) return refuse("bad_request", `split point ${JSON.stringify(at)} is not inside shard ${id}'s range ${describeRange(shard.range)}`);
  if (s.shards.has(child)) return refuse("shard_exists", `shard ${child} exists`);
  s.shards.set(child, {
    id: child, collection: shard.collection, range: cut.upper, epoch: 1, confIndex: 0,
    replicas: shard.replicas.map((r) => ({ ...r })), origin: { parent: id, index },
  });
  shard.range = cut.lower;
  shard.epoch++;
  s.collections.get(shard.collection)?.shards.push(child);
  s.nextShardId = Math.max(s.nextShardId, child + 1);
  return { ok: true, value: child };
}

function mergeShards(s: MetaState, into: number, from: number, end: Position): ApplyResult {
  const target = s.shards.get(into);
  const source = s.shards.get(from);
  if (target === undefined || source === undefined) return refuse("shard_not_found", `no shard ${target === undefined ? into : from}`);
  if (source.retiredInto !== undefined) return refuse("stale_merge", `shard ${from} was merged already`);
  if (target.range.end !== source.range.start || source.range.end !== end || target.collection !== source.collection) {
    return refuse("not_adjacent", `shard ${from} ${describeRange(source.range)} does not follow shard ${into} ${describeRange(target.range)}`);
  }
  target.range = { start: target.range.start, end };
  target.epoch++;
  source.retiredInto = into;
  source.replicas = [];
  source.range = { start: end, end };
  source.epoch++;
  const c = s.collections.get(source.collection);
  if (c !== undefined) c.shards = c.shards.filter((id) => id !== from);
  return { ok: true, value: into };
}

function pushSettings(s: MetaState, placement: PlacementConfig, note: string, atMs: number): ApplyResult {
  const version = s.settings[s.settings.length - 1]!.version + 1;
  s.settings.push({ version, placement, atMs, note });
  if (s.settings.length > SETTINGS_HISTORY_MAX) s.settings.shift();
  return { ok: true, value: version };
}

/** Keeps every running operator and the newest ENDED_OPERATORS_MAX ended ones. */
function pruneOperators(s: MetaState): void {
  const ended = [...s.operators.values()].filter((r) => r.status !== "running");
  if (ended.length <= ENDED_OPERATORS_MAX) return;
  ended.sort((a, b) => a.updatedAtMs - b.updatedAtMs || a.operator.id - b.operator.id);
  for (const r of ended.slice(0, ended.length - ENDED_OPERATORS_MAX)) s.operators.delete(r.operator.id);
}

/** How a collection places its records (the default collection, declared without a schema: by hash). */
export function collectionPartitioning(c: CollectionRecord | undefined): Partitioning {
  return c?.schema?.partitioning ?? "hash";
}

/** The settings in force. */
export function currentSettings(s: MetaState): SettingsVersion {
  return s.settings[s.settings.length - 1]!;
}
