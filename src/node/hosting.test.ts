import { test } from "node:test";
import assert from "node:assert/strict";
import { applyMeta, initialMetaState } from "../meta/state.js";
import { DEFAULT_PLACEMENT } from "../placement/types.js";
import { hostingChanges } from "./hosting.js";

test("a node hosts the shards the metadata places on it; it drops the others only on caught-up metadata", () => {
  const s = initialMetaState(DEFAULT_PLACEMENT, 0);
  for (const port of [1, 2, 3, 4]) {
    assert.ok(applyMeta(s, { kind: "register-node", peer: { host: "h", port }, http: { host: "h", port: port + 100 }, labels: {}, role: "standard", atMs: 0 }).ok);
  }
  assert.ok(applyMeta(s, { kind: "create-collection", name: "default", replicationFactor: 3, placements: [[1, 2, 3], [2, 3, 4]], atMs: 0 }).ok);
  assert.deepEqual(hostingChanges(s, 1, new Set(), true), { create: [1], drop: [] });
  assert.deepEqual(hostingChanges(s, 4, new Set([1, 9]), true), { create: [2], drop: [1] }, "shard 9 is unknown to the metadata: kept");
  assert.deepEqual(hostingChanges(s, 4, new Set([1]), false), { create: [2], drop: [] }, "no drop on metadata that may be behind");
  assert.deepEqual(hostingChanges(s, 3, new Set([1, 2]), true), { create: [], drop: [] });
});
