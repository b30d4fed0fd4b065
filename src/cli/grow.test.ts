/**
 * The control plane on real processes: a cluster founded by one node grows to five under a write load
 * (nodes join, the metadata voters become 3 then 5, the placement driver spreads the replicas), a node
 * that leads shards is drained (leaderships first) and removed, and a node killed with -9 is found
 * dead, its replicas are rebuilt elsewhere and it leaves the map. No acknowledged write is lost and the
 * clients' history is linearizable. The figures (time to rebalance, unavailability during the drain)
 * are printed for the record; targets are shown by benchmarks, not asserted as timings here, except the
 * one the issue sets for a drain (no write waits a second or more).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { checkOperations, kvModel, operationsFromEvents, type HistoryEvent } from "../check/index.js";
import { shardOf } from "../node/group.js";
import { waitFor } from "../node/testing.js";
import { Client, type Cluster, api, checkAcked, configure, joinProc, kill9, nodes, ready, shards, startFounder, stop } from "./testing.js";

const SHARDS = 4;

/** The metadata group's Raft voters, as the node in `slot` knows them. */
async function metaVoters(c: Cluster, slot: number): Promise<number[]> {
  return (await api<{ meta: { voters: number[] } }>(c, slot, "GET", "/v1/cluster/status")).body.meta.voters;
}

/** Replicas per node in the shard map. */
function replicaCounts(map: Awaited<ReturnType<typeof shards>>): Map<number, number> {
  const counts = new Map<number, number>();
  for (const s of map) for (const r of s.replicas) counts.set(r.node, (counts.get(r.node) ?? 0) + 1);
  return counts;
}

async function runningOperators(c: Cluster, slot: number): Promise<number> {
  return (await api<{ operators: unknown[] }>(c, slot, "GET", "/v1/cluster/operators?status=running")).body.operators.length;
}

/** Keeps `clients` busy until `stop()` is called. */
function load(c: Cluster, clients: Client[]): { stop: () => Promise<void> } {
  let stopped = false;
  const done = Promise.all(clients.map(async (cl) => {
    while (!stopped) await cl.step(c);
  }));
  return { stop: async () => { stopped = true; await done; } };
}

/** Writes to one key of every shard in turn through `slot`; the longest a write took (retrying 503s) is the unavailability. */
function probe(c: Cluster, slot: () => number): { stop: () => Promise<number> } {
  const keys = Array.from({ length: SHARDS }, (_, s) => Array.from({ length: 1000 }, (_, i) => `probe-${i}`).find((k) => shardOf(k, SHARDS) === s + 1)!);
  let stopped = false;
  let worstMs = 0;
  const done = Promise.all(keys.map(async (key) => {
    for (let n = 0; !stopped; n++) {
      const t0 = performance.now();
      for (;;) {
        const r = await api(c, slot(), "PUT", `/v1/collections/default/records/${key}`, { payload: n }).catch(() => ({ status: 0 }));
        if (r.status === 200 || stopped) break;
      }
      worstMs = Math.max(worstMs, performance.now() - t0);
    }
  }));
  return { stop: async () => { stopped = true; await done; return worstMs; } };
}

test("grow 1 -> 5 under load (voters 3 then 5, replicas spread), drain a leader's node then remove it, kill -9 a node: repaired, nothing acknowledged lost", async () => {
  const c = await startFounder(SHARDS);
  c.up = new Set([1]);
  await waitFor("the shard map recorded", async () => (await shards(c, 1)).length === SHARDS, 20_000);
  // Nodes are judged dead (and removed) quickly only from the kill -9 on: a node is silent from when its
  // join is registered until its process is up, which on a loaded machine took 5 s, and a 4 s removal
  // removed node 5 before it started (it then waited for a metadata leader that would never call).
  await configure(c, 1, { scheduleIntervalMs: 200, shardCooldownMs: 1000, stepTimeoutMs: 20_000 });
  const history: HistoryEvent[] = [];
  const t0 = performance.now();
  const clients = [1, 2, 3, 4].map((i) => new Client(i, history, t0));
  const writes = load(c, clients);
  let unavailable: { stop: () => Promise<number> } | null = null;
  try {

    // Grow: nodes join one at a time through any member; ids are assigned in order.
    const votersSeen: number[][] = [[1]];
    const noteVoters = async () => {
      const v = await metaVoters(c, 1);
      if (JSON.stringify(v) !== JSON.stringify(votersSeen.at(-1))) votersSeen.push(v);
      return v;
    };
    let grownAtMs = 0;
    for (const slot of [2, 3, 4, 5]) {
      await joinProc(c, slot, slot - 1);
      // A join under load catches up on every shard first: on a loaded 2-core machine (the whole suite
      // running) node 4 once took over 30 s.
      await ready(c, [slot], 60_000);
      await waitFor(`node ${slot} ready in the map`, async () => {
        await noteVoters();
        return (await nodes(c, 1)).some((n) => n.id === slot && n.worker === "ready");
      }, 30_000);
      c.up.add(slot);
      grownAtMs = performance.now();
    }
    await waitFor("five metadata voters", async () => (await noteVoters()).length === 5, 30_000);
    assert.deepEqual(votersSeen.map((v) => v.length), [1, 3, 5], `the voters stay odd, joining in pairs: ${JSON.stringify(votersSeen)}`);
    // Settled: every shard on 3 nodes, every node holding 2 or 3 of the 12 replicas, nothing running.
    await waitFor("the replicas spread over the five nodes", async () => {
      const map = await shards(c, 2);
      const counts = replicaCounts(map);
      return map.every((s) => s.replicas.filter((r) => r.role === "voter").length === 3 && s.replicas.length === 3) &&
        [1, 2, 3, 4, 5].every((id) => (counts.get(id) ?? 0) >= 2 && (counts.get(id) ?? 0) <= 3) && (await runningOperators(c, 2)) === 0;
    }, 60_000);
    const rebalanceMs = performance.now() - grownAtMs;
    await writes.stop();
    const acked = await checkAcked(c, clients);
    assert.ok(acked > 20, `${acked} acknowledged writes checked`);
    const verdict = checkOperations(kvModel, operationsFromEvents(history));
    assert.equal(verdict.verdict, "linearizable", JSON.stringify(verdict.failure?.stuck.slice(0, 3)));
    const leaders = (await shards(c, 1)).map((s) => s.leader);
    console.log(`# grow 1 -> 5: ${acked} acknowledged writes kept, history linearizable; rebalanced ${Math.round(rebalanceMs)} ms after the fifth node was ready; replicas per node ${JSON.stringify([...replicaCounts(await shards(c, 1))].sort())}; shard leaders ${JSON.stringify(leaders)}`);

    // Drain a node that leads shards: leaderships leave first, writes never wait a second; then remove it.
    const st = await api<{ shards: { shard: number; leader: number }[] }>(c, 2, "GET", "/v1/cluster/status");
    const drained = st.body.shards.map((s) => s.leader).find((l) => l !== 0)!;
    c.up.delete(drained);
    const via = () => [...c.up!][0]!;
    unavailable = probe(c, via);
    assert.equal((await api(c, via(), "POST", `/v1/cluster/nodes/${drained}/drain`)).status, 200);
    const early = await api<{ error: { code: string } }>(c, via(), "POST", `/v1/cluster/nodes/${drained}/remove`);
    assert.deepEqual([early.status, early.body.error.code], [409, "node_holds_replicas"], "removal refused while it holds replicas");
    const drainStartMs = performance.now();
    await waitFor(`node ${drained} holds no replica`, async () => (replicaCounts(await shards(c, via())).get(drained) ?? 0) === 0, 60_000);
    const drainMs = performance.now() - drainStartMs;
    const worstWriteMs = await unavailable.stop();
    const ops = (await api<{ operators: { reason: string; status: string; steps: { kind: string }[]; startedAtMs: number; updatedAtMs: number }[] }>(c, via(), "GET", "/v1/cluster/operators")).body.operators
      .filter((o) => o.reason === "drain");
    const firstCopyMs = Math.min(...ops.filter((o) => o.steps.some((s) => s.kind === "add-learner")).map((o) => o.startedAtMs));
    const handOvers = ops.filter((o) => o.steps.length === 1 && o.steps[0]!.kind === "transfer-leader");
    assert.ok(handOvers.length > 0 && handOvers.every((o) => o.updatedAtMs <= firstCopyMs), `leaderships moved before any replica: ${JSON.stringify(ops)}`);
    assert.ok(worstWriteMs < 1000, `a write waited ${Math.round(worstWriteMs)} ms during the drain`);
    await waitFor("the removal accepted", async () => (await api(c, via(), "POST", `/v1/cluster/nodes/${drained}/remove`)).status === 200, 20_000);
    assert.equal((await nodes(c, via())).find((n) => n.id === drained)?.worker, "removed");
    console.log(`# drain of node ${drained} (leading shards): replicas moved in ${Math.round(drainMs)} ms; the longest write took ${Math.round(worstWriteMs)} ms`);
    const p = c.procs.get(drained)!;
    p.kill("SIGTERM");
    await new Promise((r) => p.once("exit", r));
    c.procs.delete(drained);

    // kill -9 a node holding replicas (not the metadata leader): unhealthy, then dead; repaired; removed.
    await configure(c, via(), { nodeDeadAfterMs: 4000, nodeRemoveAfterMs: 4000 });
    const leader = (await api<{ metaLeader: number }>(c, via(), "GET", "/v1/cluster/nodes")).body.metaLeader;
    const victim = [...c.up].find((id) => id !== leader)!;
    c.up.delete(victim);
    await kill9(c, victim);
    const healthSeen = new Set<string>();
    await waitFor(`node ${victim} dead`, async () => {
      const h = (await nodes(c, via())).find((n) => n.id === victim)?.health ?? "gone";
      healthSeen.add(h);
      return h === "dead" || h === "removed";
    }, 30_000);
    assert.ok(healthSeen.has("unhealthy"), `marked unhealthy before dead: ${[...healthSeen]}`);
    const killedAtMs = performance.now();
    await waitFor("its replicas rebuilt on the other three", async () => {
      const map = await shards(c, via());
      return map.every((s) => s.replicas.length === 3 && s.replicas.every((r) => r.role === "voter" && r.node !== victim));
    }, 60_000);
    const repairMs = performance.now() - killedAtMs;
    await waitFor(`node ${victim} removed from the map`, async () => (await nodes(c, via())).find((n) => n.id === victim)?.worker === "removed", 30_000);
    const kept = await checkAcked(c, clients);
    assert.equal(kept, acked);
    console.log(`# kill -9 of node ${victim}: replicas rebuilt ${Math.round(repairMs)} ms after it was found dead; ${kept} acknowledged writes kept`);
  } finally {
    // Also after a failure: the clients and the probe stop, then the nodes (a hung client loop kept the test process alive).
    await writes.stop();
    await unavailable?.stop();
    await stop(c);
  }
});

test("roles and failed joins: an analytics node is never promoted, a learner whose partner never comes becomes a standby learner, a join that fails midway is rolled back", async () => {
  const c = await startFounder(2, [], true);
  await waitFor("the shard map recorded", async () => (await shards(c, 1)).length === 2, 20_000);
  await configure(c, 1, { scheduleIntervalMs: 200, pairingWaitMs: 1000, promotionWindowMs: 3000 });
  // A join that fails after registering: refused with the reason, and the registration is undone.
  assert.equal((await api(c, 1, "POST", "/v1/test/faults", { failJoins: 1 })).status, 200);
  const failed = await api<{ error: { code: string; message: string } }>(c, 1, "POST", "/v1/cluster/join", { peer: "127.0.0.1:1", http: "127.0.0.1:2" });
  assert.deepEqual([failed.status, failed.body.error.code], [503, "join_failed"]);
  assert.match(failed.body.error.message, /rolled back/);
  assert.deepEqual((await nodes(c, 1)).map((n) => n.id), [1], "no trace of the failed join");
  // `shoal start --join` retries a failed join; the retry gets a new id and joins.
  assert.equal((await api(c, 1, "POST", "/v1/test/faults", { failJoins: 1 })).status, 200);
  await joinProc(c, 2, 1, ["--role", "analytics"]);
  await ready(c, [2]);
  const analytics = await waitForNode(c, (n) => n.role === "analytics" && n.lifecycle === "keep-as-learner");
  await joinProc(c, 3, 1);
  await ready(c, [3]);
  const lonely = await waitForNode(c, (n) => n.role === "standard" && n.id !== 1 && n.lifecycle === "standby-learner");
  const seen = await nodes(c, 1);
  assert.equal(seen.length, 3, JSON.stringify(seen));
  assert.equal(seen.find((n) => n.id === analytics)!.lifecycle, "keep-as-learner", "the analytics node stays a learner");
  assert.deepEqual(await metaVoters(c, 1), [1], "neither was promoted: one alone would make the voters even");
  assert.ok(lonely > analytics, "the retried join was assigned a new id");
  assert.ok((await shards(c, 1)).every((s) => s.replicas.every((r) => r.node !== analytics)), "no voter replica on the analytics node");
  // The analytics node serves reads (through its gateway, from a replica that holds the record).
  assert.equal((await api(c, 1, "PUT", "/v1/collections/default/records/r", { payload: 1 })).status, 200);
  await waitFor("the analytics node reads the record", async () =>
    (await api(c, 2, "GET", "/v1/collections/default/records/r?consistency=eventual")).status === 200, 10_000);
  await stop(c);
});

/** Waits until node 1's map shows a node matching `pred`; returns its id. */
async function waitForNode(c: Cluster, pred: (n: Awaited<ReturnType<typeof nodes>>[number]) => boolean): Promise<number> {
  let id = 0;
  await waitFor("a node in the expected state", async () => {
    id = (await nodes(c, 1)).find(pred)?.id ?? 0;
    return id !== 0;
  }, 30_000);
  return id;
}
