/**
 * The metadata state as records of the state store (one per node, collection, shard, settings version,
 * operator, plus the id counters), so that the metadata group is persisted, snapshotted and installed by
 * the same machinery as a data shard, and an applied command rewrites only what it touched.
 */
import { type ApplyResult, type MetaCommand, type MetaState, applyMeta } from "./state.js";
import type { CollectionRecord, MetaNode, OperatorRecord, SettingsVersion, ShardRecord } from "./state.js";
import { initialMetaState } from "./state.js";
import { DEFAULT_PLACEMENT } from "../placement/types.js";

const SEQ = "seq";
const nodeKey = (id: number) => `n:${id}`;
const collectionKey = (name: string) => `c:${name}`;
const shardKey = (id: number) => `s:${id}`;
const settingsKey = (version: number) => `v:${version}`;
const operatorKey = (id: number) => `o:${id}`;

export interface MetaChanges {
  puts: [string, unknown][];
  deletes: string[];
}

/** Applies a command and says which records changed (nothing when it was refused). */
export function applyMetaTracked(s: MetaState, cmd: MetaCommand): { result: ApplyResult; changes: MetaChanges } {
  const settingsBefore = cmd.kind === "set-settings" || cmd.kind === "rollback-settings" ? s.settings.map((v) => v.version) : [];
  const operatorsBefore = cmd.kind === "record-operator" ? new Set(s.operators.keys()) : new Set<number>();
  const shardsBefore = s.nextShardId;
  const result = applyMeta(s, cmd);
  const changes: MetaChanges = { puts: [], deletes: [] };
  if (!result.ok) return { result, changes };
  const putNode = (id: number) => {
    const n = s.nodes.get(id);
    if (n === undefined) changes.deletes.push(nodeKey(id));
    else changes.puts.push([nodeKey(id), n]);
  };
  const seq = () => changes.puts.push([SEQ, { nextNodeId: s.nextNodeId, nextShardId: s.nextShardId }]);
  switch (cmd.kind) {
    case "register-node":
      putNode(result.value!);
      seq();
      break;
    case "set-lifecycle":
    case "set-worker-state":
    case "forget-node":
      putNode(cmd.node);
      break;
    case "create-collection":
      changes.puts.push([collectionKey(cmd.name), s.collections.get(cmd.name)]);
      for (let id = shardsBefore; id < s.nextShardId; id++) changes.puts.push([shardKey(id), s.shards.get(id)]);
      seq();
      break;
    case "set-replicas":
      changes.puts.push([shardKey(cmd.shard), s.shards.get(cmd.shard)]);
      break;
    case "reserve-shard-id":
      seq();
      break;
    case "merge-shards": {
      const target = s.shards.get(cmd.into)!;
      changes.puts.push([shardKey(cmd.into), target], [shardKey(cmd.from), s.shards.get(cmd.from)]);
      changes.puts.push([collectionKey(target.collection), s.collections.get(target.collection)]);
      break;
    }
    case "split-shard": {
      const shard = s.shards.get(cmd.shard)!;
      changes.puts.push([shardKey(cmd.shard), shard], [shardKey(cmd.child), s.shards.get(cmd.child)]);
      changes.puts.push([collectionKey(shard.collection), s.collections.get(shard.collection)]);
      seq();
      break;
    }
    case "set-settings":
    case "rollback-settings": {
      const now = new Set(s.settings.map((v) => v.version));
      for (const v of settingsBefore) if (!now.has(v)) changes.deletes.push(settingsKey(v));
      const current = s.settings[s.settings.length - 1]!;
      changes.puts.push([settingsKey(current.version), current]);
      break;
    }
    case "record-operator":
      changes.puts.push([operatorKey(cmd.operator.id), s.operators.get(cmd.operator.id)]);
      for (const id of operatorsBefore) if (!s.operators.has(id)) changes.deletes.push(operatorKey(id));
      break;
  }
  return { result, changes };
}

/** Every record of a state (for a fresh store, and to check the mapping round-trips). */
export function metaToRecords(s: MetaState): [string, unknown][] {
  const out: [string, unknown][] = [[SEQ, { nextNodeId: s.nextNodeId, nextShardId: s.nextShardId }]];
  for (const n of s.nodes.values()) out.push([nodeKey(n.id), n]);
  for (const c of s.collections.values()) out.push([collectionKey(c.name), c]);
  for (const sh of s.shards.values()) out.push([shardKey(sh.id), sh]);
  for (const v of s.settings) out.push([settingsKey(v.version), v]);
  for (const o of s.operators.values()) out.push([operatorKey(o.operator.id), o]);
  return out;
}

/** Rebuilds the state from its records (on open, and after a snapshot was installed). */
export function metaFromRecords(records: Iterable<[string, unknown]>): MetaState {
  const s = initialMetaState(DEFAULT_PLACEMENT, 0);
  s.settings = [];
  for (const [key, value] of records) {
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
      case "v": s.settings.push(value as SettingsVersion); break;
      case "o": s.operators.set((value as OperatorRecord).operator.id, value as OperatorRecord); break;
      default: throw new Error(`unknown metadata record ${key}`);
    }
  }
  s.settings.sort((a, b) => a.version - b.version);
  if (s.settings.length === 0) s.settings = initialMetaState(DEFAULT_PLACEMENT, 0).settings;
  return s;
}
