import { test } from "node:test";
import assert from "node:assert/strict";
import { DEFAULT_PLACEMENT, type PlacementConfig } from "../placement/types.js";
import { ENDED_OPERATORS_MAX, type MetaCommand, type MetaState, SETTINGS_HISTORY_MAX, type ShardRecord, applyMeta, currentSettings, initialMetaState } from "./state.js";
import { type HashRange, KEY_SPACE_END, RouteTable } from "./ranges.js";

function register(s: MetaState, port: number, role: "standard" | "analytics" | "standby" = "standard"): number {
  const r = applyMeta(s, { kind: "register-node", peer: { host: "127.0.0.1", port }, http: { host: "127.0.0.1", port: port + 1000 }, labels: {}, role, atMs: 0 });
  assert.ok(r.ok);
  return r.value!;
}

test("nodes get ids in join order; a peer address is registered once", () => {
  const s = initialMetaState(DEFAULT_PLACEMENT, 0);
  assert.equal(register(s, 7000), 1);
  assert.equal(register(s, 7001), 2);
  const dup = applyMeta(s, { kind: "register-node", peer: { host: "127.0.0.1", port: 7000 }, http: { host: "127.0.0.1", port: 1 }, labels: {}, role: "standard", atMs: 0 });
  assert.deepEqual(dup.ok ? null : dup.code, "address_in_use");
  assert.equal(s.nodes.size, 2, "a refused command changes nothing");
});

test("worker lifecycle: joining -> ready -> draining -> removed, and removal is refused while the node holds replicas", () => {
  const s = initialMetaState(DEFAULT_PLACEMENT, 0);
  const [a, b, c, d] = [7000, 7001, 7002, 7003].map((p) => register(s, p)) as [number, number, number, number];
  for (const n of [a, b, c, d]) assert.ok(applyMeta(s, { kind: "set-worker-state", node: n, state: "ready", atMs: 1 }).ok);
  assert.ok(applyMeta(s, { kind: "create-collection", name: "default", replicationFactor: 3, placements: [[a, b, c], [b, c, d]], atMs: 1 }).ok);
  const early = applyMeta(s, { kind: "set-worker-state", node: d, state: "removed", atMs: 2 });
  assert.equal(early.ok ? null : early.code, "node_holds_replicas", "the guardrail is the reason given first");
  const e = register(s, 7004);
  applyMeta(s, { kind: "set-worker-state", node: e, state: "ready", atMs: 2 });
  const undrained = applyMeta(s, { kind: "set-worker-state", node: e, state: "removed", atMs: 2 });
  assert.deepEqual(undrained.ok ? null : [undrained.code, undrained.message], ["invalid_transition", `node ${e} is ready: it cannot become removed: drain it first`]);
  assert.ok(applyMeta(s, { kind: "set-worker-state", node: d, state: "draining", atMs: 2 }).ok);
  const held = applyMeta(s, { kind: "set-worker-state", node: d, state: "removed", atMs: 3 });
  assert.equal(held.ok ? null : held.code, "node_holds_replicas");
  assert.match(held.ok ? "" : held.message, /still holds 1 replica/);
  const shard = [...s.shards.values()].find((x) => x.replicas.some((r) => r.node === d))!;
  assert.ok(applyMeta(s, { kind: "set-replicas", shard: shard.id, confIndex: 10, replicas: [{ node: b, role: "voter" }, { node: c, role: "voter" }, { node: a, role: "voter" }], atMs: 4 }).ok);
  assert.ok(applyMeta(s, { kind: "set-worker-state", node: d, state: "removed", atMs: 5 }).ok);
});

test("the shard map: ranges cover the hash space; a replica set mirrored from an older configuration is refused (fencing)", () => {
  const s = initialMetaState(DEFAULT_PLACEMENT, 0);
  const ids = [7000, 7001, 7002].map((p) => register(s, p));
  assert.ok(applyMeta(s, { kind: "create-collection", name: "default", replicationFactor: 3, placements: [ids, ids, ids], atMs: 0 }).ok);
  const shards = [...s.shards.values()];
  assert.equal(shards[0]!.range.start, 0);
  assert.equal(shards[2]!.range.end, 2 ** 32);
  for (let i = 1; i < shards.length; i++) assert.equal(shards[i]!.range.start, shards[i - 1]!.range.end, "no gap, no overlap");
  // The ranges agree with routing (node/group.ts shardOf: shard = 1 + floor(h * n / 2^32)) at every boundary.
  for (const [i, sh] of shards.entries()) {
    const range = sh.range as HashRange;
    assert.equal(Math.floor((range.start * 3) / 2 ** 32), i, `shard ${sh.id} starts inside itself`);
    assert.equal(Math.floor(((range.end - 1) * 3) / 2 ** 32), i, `shard ${sh.id} ends inside itself`);
  }
  const cmd: MetaCommand = { kind: "set-replicas", shard: 1, confIndex: 5, replicas: [{ node: 1, role: "voter" }, { node: 2, role: "voter" }], atMs: 1 };
  assert.deepEqual(applyMeta(s, cmd), { ok: true, value: 2 }, "the epoch moves with the replica set");
  const again = applyMeta(s, { ...cmd, confIndex: 4, replicas: [{ node: 3, role: "voter" }] });
  assert.equal(again.ok ? null : again.code, "stale_configuration", "a mirror read at an older index (a stale leader's) is refused");
  assert.deepEqual(s.shards.get(1)!.replicas.map((r) => r.node), [1, 2]);
  const none = applyMeta(s, { ...cmd, confIndex: 6, replicas: [{ node: 1, role: "learner" }] });
  assert.equal(none.ok ? null : none.code, "no_voter");
});

test("settings an earlier version wrote apply: renamed ones are dropped, new ones take their defaults", () => {
  const s = initialMetaState(DEFAULT_PLACEMENT, 0);
  const { maxMoveBytesPerNodePerWindow: _bytes, moveCostMinBytes: _min, ...rest } = DEFAULT_PLACEMENT;
  const old = { ...rest, maxMovesPerNodePerWindow: 16, maxMovesTotal: 300 } as unknown as PlacementConfig;
  assert.deepEqual(applyMeta(s, { kind: "set-settings", baseVersion: 1, placement: old, note: "old", atMs: 1 }), { ok: true, value: 2 });
  const now = currentSettings(s).placement;
  assert.equal(now.maxMovesTotal, 300);
  assert.equal(now.moveCostMinBytes, DEFAULT_PLACEMENT.moveCostMinBytes);
  assert.ok(!Object.hasOwn(now, "maxMovesPerNodePerWindow"));
});

test("settings are versioned, validated before they apply, changed against the version read, and rolled back as a new version", () => {
  const s = initialMetaState(DEFAULT_PLACEMENT, 0);
  const bad = applyMeta(s, { kind: "set-settings", baseVersion: 1, placement: { ...DEFAULT_PLACEMENT, maxMovesTotal: 0 }, note: "", atMs: 1 });
  assert.equal(bad.ok ? null : bad.code, "invalid_settings");
  assert.deepEqual(applyMeta(s, { kind: "set-settings", baseVersion: 1, placement: { ...DEFAULT_PLACEMENT, maxMovesTotal: 200 }, note: "slower", atMs: 2 }), { ok: true, value: 2 });
  const stale = applyMeta(s, { kind: "set-settings", baseVersion: 1, placement: DEFAULT_PLACEMENT, note: "", atMs: 3 });
  assert.equal(stale.ok ? null : stale.code, "stale_settings");
  assert.deepEqual(applyMeta(s, { kind: "rollback-settings", toVersion: 1, atMs: 4 }), { ok: true, value: 3 });
  assert.equal(currentSettings(s).placement.maxMovesTotal, DEFAULT_PLACEMENT.maxMovesTotal);
  for (let i = 0; i < SETTINGS_HISTORY_MAX + 10; i++) {
    applyMeta(s, { kind: "set-settings", baseVersion: currentSettings(s).version, placement: DEFAULT_PLACEMENT, note: `${i}`, atMs: 5 + i });
  }
  assert.equal(s.settings.length, SETTINGS_HISTORY_MAX, "bounded history");
  const gone = applyMeta(s, { kind: "rollback-settings", toVersion: 1, atMs: 100 });
  assert.equal(gone.ok ? null : gone.code, "settings_version_not_found");
});

test("operator records keep every running operator and a bounded number of ended ones", () => {
  const s = initialMetaState(DEFAULT_PLACEMENT, 0);
  const op = (id: number) => ({ id, shard: 1, epoch: 1, reason: "repair" as const, steps: [], stepIndex: 0, startedAtMs: 0, stepStartedAtMs: 0 });
  applyMeta(s, { kind: "record-operator", operator: op(0), status: "running", atMs: 0 });
  for (let i = 1; i <= ENDED_OPERATORS_MAX + 5; i++) applyMeta(s, { kind: "record-operator", operator: op(i), status: "done", atMs: i });
  assert.equal(s.operators.size, ENDED_OPERATORS_MAX + 1);
  assert.equal(s.operators.get(0)?.status, "running");
  assert.ok(!s.operators.has(1), "the oldest ended record went first");
});

test("a node that is not standard can never become a voter", () => {
  const s = initialMetaState(DEFAULT_PLACEMENT, 0);
  const a = register(s, 7000, "analytics");
  const r = applyMeta(s, { kind: "set-lifecycle", node: a, lifecycle: "voter", atMs: 0 });
  assert.equal(r.ok ? null : r.code, "not_promotable");
});

test("a node may bring its own id (static members); ids stay unique and later ones continue above it", () => {
  const s = initialMetaState(DEFAULT_PLACEMENT, 0);
  const r = applyMeta(s, { kind: "register-node", id: 5, peer: { host: "h", port: 1 }, http: { host: "h", port: 2 }, labels: {}, role: "standard", atMs: 0 });
  assert.deepEqual(r, { ok: true, value: 5 });
  const again = applyMeta(s, { kind: "register-node", id: 5, peer: { host: "h", port: 3 }, http: { host: "h", port: 4 }, labels: {}, role: "standard", atMs: 0 });
  assert.equal(again.ok ? null : again.code, "node_exists");
  assert.equal(register(s, 9000), 6);
});

test("a split is recorded once: the upper part becomes a new shard on the same replicas, the parent's range shrinks and its epoch moves", () => {
  const s = initialMetaState(DEFAULT_PLACEMENT, 0);
  const ids = [7000, 7001, 7002].map((p) => register(s, p));
  assert.ok(applyMeta(s, { kind: "create-collection", name: "default", replicationFactor: 3, placements: [ids, ids], atMs: 0 }).ok);
  const reserved = applyMeta(s, { kind: "reserve-shard-id", atMs: 1 });
  assert.deepEqual(reserved, { ok: true, value: 3 });
  const at = 2 ** 31 + 2 ** 30;
  assert.deepEqual(applyMeta(s, { kind: "split-shard", shard: 2, child: 3, at, end: 2 ** 32, index: 9, atMs: 2 }), { ok: true, value: 3 });
  assert.deepEqual(s.shards.get(2)!.range, { start: 2 ** 31, end: at });
  assert.equal(s.shards.get(2)!.epoch, 2);
  assert.deepEqual(s.shards.get(3)!.range, { start: at, end: 2 ** 32 });
  assert.deepEqual(s.shards.get(3)!.origin, { parent: 2, index: 9 });
  assert.deepEqual(s.shards.get(3)!.replicas, s.shards.get(2)!.replicas);
  assert.deepEqual(s.collections.get("default")!.shards, [1, 2, 3]);
  const again = applyMeta(s, { kind: "split-shard", shard: 2, child: 4, at, end: 2 ** 32, index: 9, atMs: 3 });
  assert.equal(again.ok ? null : again.code, "stale_split", "a second report of the same split changes nothing");
  const outside = applyMeta(s, { kind: "split-shard", shard: 2, child: 4, at: 2 ** 31, end: at, index: 10, atMs: 3 });
  assert.equal(outside.ok ? null : outside.code, "bad_request");
  assert.equal(applyMeta(s, { kind: "reserve-shard-id", atMs: 4 }).ok && s.nextShardId, 5, "ids are never reused");
});

test("a merge is recorded once: the lower shard takes the upper one's range, the upper one is retired with no replicas", () => {
  const s = initialMetaState(DEFAULT_PLACEMENT, 0);
  const ids = [7000, 7001, 7002].map((p) => register(s, p));
  assert.ok(applyMeta(s, { kind: "create-collection", name: "default", replicationFactor: 3, placements: [ids, ids, ids], atMs: 0 }).ok);
  const [a, b, c] = [1, 2, 3].map((id) => s.shards.get(id)!);
  const notNext = applyMeta(s, { kind: "merge-shards", into: 1, from: 3, end: c!.range.end, atMs: 1 });
  assert.equal(notNext.ok ? null : notNext.code, "not_adjacent");
  assert.deepEqual(applyMeta(s, { kind: "merge-shards", into: 1, from: 2, end: b!.range.end, atMs: 1 }), { ok: true, value: 1 });
  assert.deepEqual(a!.range, { start: 0, end: c!.range.start });
  assert.equal(b!.retiredInto, 1);
  assert.deepEqual(b!.replicas, []);
  assert.deepEqual(s.collections.get("default")!.shards, [1, 3]);
  const again = applyMeta(s, { kind: "merge-shards", into: 1, from: 2, end: b!.range.end, atMs: 2 });
  assert.equal(again.ok ? null : again.code, "stale_merge");
  const mirror = applyMeta(s, { kind: "set-replicas", shard: 2, confIndex: 99, replicas: [{ node: ids[0]!, role: "voter" }], atMs: 3 });
  assert.equal(mirror.ok ? null : mirror.code, "shard_retired", "a late mirror of a retired shard changes nothing");
});

test("a declared collection keeps its schema and replicas per shard; the replicas change at runtime, within 1 to 7", () => {
  const s = initialMetaState(DEFAULT_PLACEMENT, 0);
  const ids = [1, 2, 3].map((port) => applyMeta(s, { kind: "register-node", peer: { host: "h", port }, http: { host: "h", port: 9000 + port }, labels: {}, role: "standard", atMs: 0 })).map((r) => (r.ok ? r.value! : 0));
  const schema = { partitioning: "hash" as const, vectors: { dim: 4, metric: "l2" as const, storage: "f32" as const, hnsw: { m: 16, efConstruction: 128, efSearch: 64 } },
    payloadIndexes: { color: "keyword" as const }, ttlMs: null };
  const early = applyMeta(s, { kind: "create-collection", name: "shoes", replicationFactor: 3, placements: [ids], schema, atMs: 1 });
  assert.equal(early.ok ? "" : early.code, "not_ready", "before the default collection (the founders' shards) is recorded: its ids would collide");
  assert.ok(applyMeta(s, { kind: "create-collection", name: "default", replicationFactor: 3, placements: [ids], atMs: 1 }).ok);
  const bad = applyMeta(s, { kind: "create-collection", name: "shoes", replicationFactor: 3, placements: [ids], schema, targetReplicas: 8, atMs: 1 });
  assert.equal(bad.ok, false);
  assert.equal(s.collections.has("shoes"), false, "nothing recorded when refused");
  assert.ok(applyMeta(s, { kind: "create-collection", name: "shoes", replicationFactor: 3, placements: [ids, ids], schema, targetReplicas: 3, atMs: 1 }).ok);
  const c = s.collections.get("shoes")!;
  assert.deepEqual(c.schema, schema);
  assert.equal(c.targetReplicas, 3);
  assert.equal(c.shards.length, 2);
  assert.deepEqual(applyMeta(s, { kind: "set-collection-replicas", name: "shoes", replicationFactor: 5, atMs: 2 }), { ok: true, value: 5 });
  assert.equal(s.collections.get("shoes")!.targetReplicas, 5);
  for (const rf of [0, 8, 2.5]) {
    const r = applyMeta(s, { kind: "set-collection-replicas", name: "shoes", replicationFactor: rf, atMs: 3 });
    assert.ok(!r.ok && r.code === "bad_request", `${rf} replicas refused`);
  }
  const missing = applyMeta(s, { kind: "set-collection-replicas", name: "boots", replicationFactor: 3, atMs: 3 });
  assert.ok(!missing.ok && missing.code === "collection_not_found");
  assert.equal(s.collections.get("shoes")!.targetReplicas, 5, "refusals change nothing");
});

test("a range collection's shards own the id ranges its split points cut, route ids by their order, split at an id and merge back", () => {
  const s = initialMetaState(DEFAULT_PLACEMENT, 0);
  const [a, b, c] = [7000, 7001, 7002].map((p) => register(s, p)) as [number, number, number];
  assert.ok(applyMeta(s, { kind: "create-collection", name: "default", replicationFactor: 3, placements: [[a, b, c]], atMs: 1 }).ok);
  const range = { partitioning: "range" as const, vectors: null, payloadIndexes: {}, ttlMs: null };
  const bad = applyMeta(s, { kind: "create-collection", name: "log", replicationFactor: 3, placements: [[a], [b], [c]], schema: range, splitPoints: ["p", "g"], atMs: 2 });
  assert.equal(bad.ok ? null : bad.code, "bad_request", "unsorted split points are refused");
  assert.ok(!s.collections.has("log"), "and change nothing");
  assert.ok(applyMeta(s, { kind: "create-collection", name: "log", replicationFactor: 3, placements: [[a], [b], [c]], schema: range, splitPoints: ["g", "p"], atMs: 2 }).ok);
  const log = s.collections.get("log")!;
  const [first, second, third] = log.shards.map((id) => s.shards.get(id)!) as [ShardRecord, ShardRecord, ShardRecord];
  assert.deepEqual([first.range, second.range, third.range], [{ start: "", end: "g" }, { start: "g", end: "p" }, { start: "p", end: KEY_SPACE_END }]);
  const route = () => new RouteTable("range", [...s.shards.values()].filter((sh) => sh.collection === "log"));
  assert.deepEqual(["a", "f9", "g", "k", "p", "zz"].map((id) => route().shardOf(id)), [first.id, first.id, second.id, second.id, third.id, third.id]);
  // Cut the middle shard at "k": "k" and above go to the child.
  const reserved = applyMeta(s, { kind: "reserve-shard-id", atMs: 3 });
  assert.ok(reserved.ok);
  const child = reserved.value!;
  const wrongKind = applyMeta(s, { kind: "split-shard", shard: second.id, child, at: 12345, end: "p", index: 9, atMs: 3 });
  assert.equal(wrongKind.ok ? null : wrongKind.code, "bad_request", "a hash is no split point of an id range");
  assert.ok(applyMeta(s, { kind: "split-shard", shard: second.id, child, at: "k", end: "p", index: 9, atMs: 3 }).ok);
  assert.deepEqual(s.shards.get(child)!.range, { start: "k", end: "p" });
  assert.deepEqual(["j", "jz", "k", "o"].map((id) => route().shardOf(id)), [second.id, second.id, child, child]);
  const again = applyMeta(s, { kind: "split-shard", shard: second.id, child, at: "k", end: "p", index: 9, atMs: 4 });
  assert.equal(again.ok ? null : again.code, "stale_split", "a split is recorded once");
  // Merge the child back: its range joins its lower neighbour's.
  assert.ok(applyMeta(s, { kind: "merge-shards", into: second.id, from: child, end: "p", atMs: 5 }).ok);
  assert.deepEqual(s.shards.get(second.id)!.range, { start: "g", end: "p" });
  assert.deepEqual(["j", "k", "o"].map((id) => route().shardOf(id)), [second.id, second.id, second.id]);
  assert.deepEqual(s.collections.get("log")!.shards, [first.id, second.id, third.id]);
});
