/**
 * The metadata state as records of the state store (one per node, collection, shard, settings version,
 * operator, plus the id counters), so that the metadata group is persisted, snapshotted and installed by
 * the same machinery as a data shard, and an applied command rewrites only what it touched.
 * Invariant (records.test.ts): after any sequence of applied commands, metaFromRecords of the records
 * written so far (starting from none) equals the state.
 */
import { type ApplyResult, type MetaCommand, type MetaState, applyMeta } from "./state.js";
import type { CollectionRecord, MetaNode, OperatorRecord, SettingsVersion, ShardRecord } from "./state.js";
import { SETTINGS_HISTORY_MAX, initialMetaState } from "./state.js";
import { DEFAULT_PLACEMENT, upgradePlacementConfig } from "../placement/types.js";

const SEQ = "seq";
/** The ids of dropped collections' shards (MetaState.droppedShards), sorted. */
const DROPPED = "dropped";
const nodeKey = (id: number) => `n:${id}`;
const collectionKey = (name: string) => `c:${name}`;
const shardKey = (id: number) => `s:${id}`;
const settingsKey = (version: number) => `v:${version}`;
const operatorKey = (id: number) => `o:${id}`;
/** The settings version of the initial state (initialMetaState). */
const INITIAL_SETTINGS_VERSION = 1;

export interface MetaChanges {
  puts: [string, unknown][];
  deletes: string[];
}

/**
 * Applies a command and says which records changed (nothing when it was refused). Written so that the
 * records always rebuild the state: every record a command touched is put while the state holds it and
 * deleted once it does not (a record pruned by the same command that wrote it included), and what the
 * initial state holds without a record (see metaFromRecords) is written once a command changes it.
 */
export function applyMetaTracked(s: MetaState, cmd: MetaCommand): { result: ApplyResult; changes: MetaChanges } {
  const settingsBefore = cmd.kind === "set-settings" || cmd.kind === "rollback-settings" ? s.settings.map((v) => v.version) : [];
  const operatorsBefore = cmd.kind === "record-operator" ? new Set(s.operators.keys()) : new Set<number>();
  const shardsBefore = s.nextShardId;
  const seqBefore = [s.nextNodeId, s.nextShardId];
  const droppedBefore = cmd.kind === "drop-collection" ? new Set(s.droppedShards) : new Set<number>();
  const result = applyMeta(s, cmd);
  const changes: MetaChanges = { puts: [], deletes: [] };
  if (!result.ok) return { result, changes };
  const written = new Set<string>();
  /** Puts the record, or deletes it when the state no longer holds it; one change per key. */
  const record = (key: string, value: unknown) => {
    if (written.has(key)) return;
    written.add(key);
    if (value === undefined) changes.deletes.push(key);
    else changes.puts.push([key, value]);
  };
  const putNode = (id: number) => record(nodeKey(id), s.nodes.get(id));
  const putShard = (id: number) => record(shardKey(id), s.shards.get(id));
  const putCollection = (name: string) => record(collectionKey(name), s.collections.get(name));
  switch (cmd.kind) {
    case "register-node":
      putNode(result.value!);
      break;
    case "set-lifecycle":
    case "set-worker-state":
    case "forget-node":
      putNode(cmd.node);
      break;
    case "create-collection":
      putCollection(cmd.name);
      for (let id = shardsBefore; id < s.nextShardId; id++) putShard(id);
      break;
    case "set-replicas":
      putShard(cmd.shard);
      break;
    case "set-collection-replicas":
      putCollection(cmd.name);
      break;
    case "reserve-shard-id":
      break;
    case "drop-collection":
      putCollection(cmd.name);
      for (const id of s.droppedShards) if (!droppedBefore.has(id)) putShard(id);
      record(DROPPED, [...s.droppedShards].sort((a, b) => a - b));
      break;
    case "merge-shards": {
      putShard(cmd.into);
      putShard(cmd.from);
      const target = s.shards.get(cmd.into);
      if (target !== undefined) putCollection(target.collection);
      break;
    }
    case "split-shard": {
      putShard(cmd.shard);
      putShard(cmd.child);
      const shard = s.shards.get(cmd.shard);
      if (shard !== undefined) putCollection(shard.collection);
      break;
    }
    case "set-settings":
    case "rollback-settings": {
      const now = new Map(s.settings.map((v) => [v.version, v]));
      for (const v of settingsBefore) if (!now.has(v)) record(settingsKey(v), undefined);
      // The initial version is in a fresh store's state without a record: written while it is kept (it
      // never changes, so writing it again is harmless; it heals stores written before it was written).
      const initial = now.get(INITIAL_SETTINGS_VERSION);
      if (initial !== undefined) record(settingsKey(INITIAL_SETTINGS_VERSION), initial);
      const current = s.settings[s.settings.length - 1]!;
      record(settingsKey(current.version), current);
      break;
    }
    case "record-operator":
      // Pruning may drop the record just written (an ended operator older than the newest kept ones).
      record(operatorKey(cmd.operator.id), s.operators.get(cmd.operator.id));
      for (const id of operatorsBefore) if (!s.operators.has(id)) record(operatorKey(id), undefined);
      break;
  }
  // The id counters, whichever command moved them.
  if (s.nextNodeId !== seqBefore[0] || s.nextShardId !== seqBefore[1]) record(SEQ, { nextNodeId: s.nextNodeId, nextShardId: s.nextShardId });
  return { result, changes };
}

/**
 * Every record of a state (to check the mapping round-trips). A fresh store holds none: the initial
 * state is what metaFromRecords makes of no records, and applyMetaTracked writes its parts as they change.
 */
export function metaToRecords(s: MetaState): [string, unknown][] {
  const out: [string, unknown][] = [[SEQ, { nextNodeId: s.nextNodeId, nextShardId: s.nextShardId }]];
  for (const n of s.nodes.values()) out.push([nodeKey(n.id), n]);
  for (const c of s.collections.values()) out.push([collectionKey(c.name), c]);
  for (const sh of s.shards.values()) out.push([shardKey(sh.id), sh]);
  for (const v of s.settings) out.push([settingsKey(v.version), v]);
  for (const o of s.operators.values()) out.push([operatorKey(o.operator.id), o]);
  if (s.droppedShards.size > 0) out.push([DROPPED, [...s.droppedShards].sort((a, b) => a - b)]);
  return out;
}

/** Rebuilds the state from its records (on open, and after a snapshot was installed). */
export function metaFromRecords(records: Iterable<[string, unknown]>): MetaState {
  const s = initialMetaState(DEFAULT_PLACEMENT, 0);
  s.settings = [];
  for (const [key, value] of records) {
    // A record without a value stands for none: stores written before pruning was tracked as a delete
    // hold one for an operator record pruned by the command that wrote it.
    if (value === undefined || value === null) continue;
    const [kind] = key.split(":", 1);
    switch (kind) {
      case SEQ: {
        const v = value as { nextNodeId: number; nextShardId: number };
        s.nextNodeId = v.nextNodeId;
        s.nextShardId = v.nextShardId;
        break;
      }
      case "n": s.nodes.set((value as MetaNode).id, value as MetaNode); break;
      case "c": s.collections.set((value as CollectionRecord).name, value as CollectionRecord); break;
      case "s": s.shards.set((value as ShardRecord).id, value as ShardRecord); break;
      // Settings added since a version was written take their defaults.
      case "v": s.settings.push({ ...(value as SettingsVersion), placement: upgradePlacementConfig((value as SettingsVersion).placement as unknown as Record<string, unknown>) }); break;
      case "o": s.operators.set((value as OperatorRecord).operator.id, value as OperatorRecord); break;
      case DROPPED: s.droppedShards = new Set(value as number[]); break;
      default: throw new Error(`unknown metadata record ${key}`);
    }
  }
  s.settings.sort((a, b) => a.version - b.version);
  // The initial version has no record until a settings change writes it (a fresh store holds no
  // record at all). Stores written before that change wrote it hold versions 2.. only, fewer than
  // SETTINGS_HISTORY_MAX of them, while the state that wrote them still kept version 1 (pruned only
  // once SETTINGS_HISTORY_MAX later versions exist): it is restored here. A store written since never
  // holds that shape (version 1 has a record while kept, and once pruned the history is full).
  const first = s.settings[0];
  if (first === undefined || (first.version === INITIAL_SETTINGS_VERSION + 1 && s.settings.length < SETTINGS_HISTORY_MAX)) {
    s.settings.unshift(...initialMetaState(DEFAULT_PLACEMENT, 0).settings);
  }
  return s;
}
