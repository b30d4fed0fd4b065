/**
 * Outcomes a client can trust, on real processes (issue 11): versions only grow across a split and a
 * merge, and writes retried with their idempotency keys across a leader kill and a split apply once.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { rmSync } from "node:fs";
import { type Cluster, api, configure, kill9, leaderOf, shards, startCluster, stop } from "./testing.js";
import { waitFor } from "../node/testing.js";

const recordUrl = (c: Cluster, node: number, id: string) => `http://127.0.0.1:${c.http.get(node)}/v1/collections/default/records/${id}`;

interface WriteAnswer { status: number; version?: number; code?: string; replayed: boolean; attempts: number }

/**
 * A keyed write asked until it gets a final answer, through the live nodes in turn, as a careful client
 * does: an error that leaves the outcome unknown (a 504, a dropped connection) or says "not now" (503)
 * is asked again with the same key. Bounded by attempts.
 */
async function keyedWrite(c: Cluster, id: string, body: unknown, key: string, attemptsMax = 60): Promise<WriteAnswer> {
  for (let attempt = 1; attempt <= attemptsMax; attempt++) {
    const live = [...c.procs.keys()];
    const node = live[attempt % live.length]!;
    try {
      const r = await fetch(recordUrl(c, node, id), {
        method: "PUT", headers: { "content-type": "application/json", "idempotency-key": key }, body: JSON.stringify(body),
        signal: AbortSignal.timeout(8000),
      });
      const json = (await r.json()) as { version?: number; error?: { code: string } };
      if (r.status < 500) {
        return { status: r.status, ...(json.version !== undefined ? { version: json.version } : {}), ...(json.error ? { code: json.error.code } : {}),
          replayed: r.headers.get("idempotent-replayed") === "true", attempts: attempt };
      }
    } catch {
      // No answer: the write may or may not have been applied; the key makes asking again safe.
    }
    await new Promise((r) => setTimeout(r, Math.min(500, 20 * attempt)));
  }
  throw new Error(`write ${key} got no final answer in ${attemptsMax} attempts`);
}

async function readVersion(c: Cluster, id: string): Promise<number> {
  const node = [...c.procs.keys()][0]!;
  const r = await fetch(recordUrl(c, node, id), { signal: AbortSignal.timeout(8000) });
  assert.equal(r.status, 200, `record ${id}`);
  return ((await r.json()) as { version: number }).version;
}

async function withCluster(body: (c: Cluster) => Promise<void>): Promise<void> {
  const c = await startCluster();
  try {
    // Only the operators the test asks for: no automatic splits or merges.
    await configure(c, 1, { mergeBelowRecords: 0, splitRequestRate: 0, splitSizeBytes: 0 });
    await waitFor("the shard map", async () => (await live(c)).length === 2, 20_000);
    await body(c);
  } finally {
    await stop(c);
    rmSync(c.dir, { recursive: true, force: true });
  }
}

/** Splits a shard, waiting (bounded) for an operator of the placement driver in its way, e.g. a repair after a kill. */
async function splitShard(c: Cluster, shard: number): Promise<{ child: number }> {
  let last: { status: number; body: unknown } = { status: 0, body: null };
  for (let attempt = 0; attempt < 6; attempt++) {
    last = await api<{ child: number }>(c, [...c.procs.keys()][0]!, "POST", `/v1/cluster/shards/${shard}/split?waitMs=8000`, {});
    if (last.status === 200) return last.body as { child: number };
    assert.equal((last.body as { error: { code: string } }).error.code, "shard_busy", JSON.stringify(last.body));
  }
  assert.fail(`split of shard ${shard}: ${JSON.stringify(last.body)}`);
}

const live = async (c: Cluster) => (await shards(c, [...c.procs.keys()][0]!)).filter((s) => (s as { retiredInto?: number }).retiredInto === undefined);

test("versions only grow: records written many times, then a split and a merge; every later write is above every earlier version, and stale compare-and-sets are refused", async () => {
  await withCluster(async (c) => {
    const ids = Array.from({ length: 40 }, (_, i) => `rec${i}`);
    const highest = new Map<string, number>();
    for (let round = 0; round < 5; round++) {
      await Promise.all(ids.map(async (id) => {
        const a = await keyedWrite(c, id, { payload: round }, `v-${id}-${round}`);
        assert.equal(a.status, 200);
        highest.set(id, Math.max(highest.get(id) ?? 0, a.version!));
      }));
    }
    const first = (await live(c))[0]!.shard;
    const { child } = await splitShard(c, first);
    await waitFor("the split in the shard map", async () => (await live(c)).some((s) => s.shard === child), 20_000);
    for (const [label, phase] of [["split", 10], ["merge", 20]] as const) {
      if (label === "merge") {
        await waitFor("the child shard merged back", async () => {
          const r = await api<unknown>(c, 1, "POST", `/v1/cluster/shards/${child}/merge?waitMs=5000`, {});
          if (r.status !== 200 && r.status !== 409) assert.fail(`merge answered ${r.status} ${JSON.stringify(r.body)}`);
          return r.status === 200;
        }, 20_000);
        await waitFor("the merge in the shard map", async () => !(await live(c)).some((s) => s.shard === child), 20_000);
      }
      for (const id of ids) {
        const stale = highest.get(id)! - 1;
        const cas = await keyedWrite(c, id, { payload: "stale", ifVersion: stale }, `cas-${id}-${label}`);
        assert.equal(cas.code, "version_mismatch", `${id} after the ${label}: a compare-and-set naming an older version is refused`);
        const a = await keyedWrite(c, id, { payload: phase }, `v-${id}-${label}`);
        assert.equal(a.status, 200);
        assert.ok(a.version! > highest.get(id)!, `${id} after the ${label}: version ${a.version} must be above ${highest.get(id)}`);
        highest.set(id, a.version!);
        const ok = await keyedWrite(c, id, { payload: "cas", ifVersion: a.version }, `cas-ok-${id}-${label}`);
        assert.equal(ok.status, 200, `${id}: a compare-and-set naming the current version applies`);
        assert.ok(ok.version! > a.version!);
        highest.set(id, ok.version!);
      }
    }
  });
});

test("writes retried with their idempotency keys across a leader kill and a split are each applied exactly once", async () => {
  await withCluster(async (c) => {
    // Create-only writes (ifVersion 0): a second application would answer version_mismatch, not the first outcome.
    const ops = Array.from({ length: 90 }, (_, i) => ({ id: `once${i}`, key: `op-${i}` }));
    const first = new Map<string, WriteAnswer>();
    const shard = (await live(c))[0]!.shard;
    const leader = await leaderOf(c, shard);
    let done = 0;
    const killed = (async () => {
      await waitFor("some writes acknowledged", () => done >= 15, 20_000);
      await kill9(c, leader);
    })();
    // Four clients in parallel, so that writes are in flight when the leader dies.
    await Promise.all([0, 1, 2, 3].map(async (w) => {
      for (const op of ops.filter((_, i) => i % 4 === w && i < 60)) {
        first.set(op.key, await keyedWrite(c, op.id, { payload: op.key, ifVersion: 0 }, op.key));
        done++;
      }
    }));
    await killed;
    // The rest are written while the split is under way.
    const [split] = await Promise.all([splitShard(c, shard),
      ...ops.slice(60).map(async (op) => first.set(op.key, await keyedWrite(c, op.id, { payload: op.key, ifVersion: 0 }, op.key)))]);
    await waitFor("the split in the shard map", async () => (await live(c)).some((s) => s.shard === split.child), 20_000);
    let retried = 0;
    for (const op of ops) {
      const a = first.get(op.key)!;
      assert.equal(a.status, 200, `${op.key}: ${a.code ?? ""} — a retry must answer the first outcome, not apply again`);
      if (a.attempts > 1) retried++;
      // Asked again after the leader change and the split (records moved to the new shard with their keys).
      const again = await keyedWrite(c, op.id, { payload: op.key, ifVersion: 0 }, op.key);
      assert.deepEqual([again.status, again.version, again.replayed], [200, a.version, true], `${op.key} asked again`);
      assert.equal(await readVersion(c, op.id), a.version, `${op.key} applied once`);
    }
    const moved = (await live(c)).length;
    console.log(`idempotent retries: ${ops.length} writes, ${retried} needed more than one attempt, all applied once; ${moved} shards after the split`);
  });
});
