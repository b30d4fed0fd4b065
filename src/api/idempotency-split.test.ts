/**
 * Remembered outcomes whose store keys are 64 characters or longer, read back from LMDB by a split.
 * LMDB's array keys end such a string at a NUL, and outcomes were keyed with NULs between their fields:
 * read back, a key came in parts, and a hot-shard split under keyed load crashed every replica on the
 * same entry (found by a 256-connection run of the client). Here the outcomes are committed to LMDB
 * first (the log is compacted, which flushes the store), then the shard splits, then every write is
 * asked again under its key: each is answered with its first outcome, on whichever shard holds it now.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { startApiCluster } from "./testing.js";
import { waitFor } from "../node/testing.js";

test("a shard whose long remembered outcomes are in LMDB splits, and every retry is answered with its first outcome", { timeout: 60_000 }, async () => {
  const api = await startApiCluster(1, 1, { node: { compactAfterEntries: 20 } });
  try {
    await api.registered();
    const node = api.c.nodes.get(1)!;
    const app = api.apps.get(1)!;
    await waitFor("shard 1 has a leader", () => node.leaderOf(1) !== 0);
    // 40-character ids and 36-character keys starting with a digit: store keys far over 64 characters.
    const writes = Array.from({ length: 40 }, (_, i) => ({ id: `${"r".repeat(38)}${String(i).padStart(2, "0")}`, key: `0${String(i).padStart(35, "7")}` }));
    const first = new Map<string, number>();
    for (const w of writes) {
      const r = await app.inject({ method: "PUT", url: `/v1/collections/default/records/${w.id}`, payload: { payload: w.id }, headers: { "idempotency-key": w.key } });
      assert.equal(r.statusCode, 200, r.body);
      first.set(w.id, (r.json() as { version: number }).version);
    }
    await waitFor("the log compacted past the writes (the store flushed them to LMDB)",
      () => (node.status().groups.find((g) => g.shard === 1)?.firstIndex ?? 0) > 20);
    const split = await app.inject({ method: "POST", url: "/v1/cluster/shards/1/split?waitMs=10000" });
    assert.equal(split.statusCode, 200, split.body);
    const child = (split.json() as { child: number }).child;
    await waitFor("the child has a leader", () => node.leaderOf(child) !== 0);
    for (const w of writes) {
      const r = await app.inject({ method: "PUT", url: `/v1/collections/default/records/${w.id}`, payload: { payload: w.id }, headers: { "idempotency-key": w.key } });
      assert.equal(r.statusCode, 200, r.body);
      assert.equal(r.headers["idempotent-replayed"], "true", `${w.id}: answered again, not applied again`);
      assert.equal((r.json() as { version: number }).version, first.get(w.id));
    }
  } finally {
    await api.stop();
  }
});
