/**
 * Tests on real processes: three `shoal start` processes on loopback, clients over HTTP, kill -9.
 * Every acknowledged write must survive, and the clients' history must be linearizable.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, openSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type HistoryEvent, checkOperations, kvModel, operationsFromEvents } from "../check/index.js";
import { shardOf } from "../node/multi-raft.js";
import { waitFor } from "../node/testing.js";
import { Client, type Cluster, checkAcked, freePorts, kill9, leaderOf, ready, run, shoal, startCluster, startProc, stop } from "./testing.js";

test("kill -9 of a shard leader under load, then of every node: nothing acknowledged is lost, the history is linearizable", async () => {
  const c = await startCluster();
  const history: HistoryEvent[] = [];
  const t0 = performance.now();
  const clients = [1, 2, 3, 4].map((i) => new Client(i, history, t0));
  await run(c, clients, 15);
  const leader = await leaderOf(c, 1);
  assert.ok(leader !== 0);
  await kill9(c, leader);
  await run(c, clients, 30); // a new leader takes over; the clients carry on
  startProc(c, leader);
  await ready(c, [1, 2, 3]);
  // Now everything at once, in the middle of the load.
  const acked = () => clients.reduce((n, cl) => n + cl.acked.size, 0);
  const before = acked();
  const load = run(c, clients, 20);
  await waitFor("the load to be under way", () => acked() >= before + 5);
  for (const id of [1, 2, 3]) c.procs.get(id)?.kill("SIGKILL");
  await load.catch(() => undefined);
  await Promise.all([...c.procs.values()].map((p) => (p.exitCode !== null || p.signalCode !== null ? null : new Promise((r) => p.once("exit", r)))));
  c.procs.clear();
  for (const id of [1, 2, 3]) startProc(c, id);
  await ready(c, [1, 2, 3]);
  const checked = await checkAcked(c, clients);
  assert.ok(checked > 30, `${checked} acknowledged writes checked`);
  const verdict = checkOperations(kvModel, operationsFromEvents(history));
  assert.equal(verdict.verdict, "linearizable", JSON.stringify(verdict.failure?.stuck.slice(0, 3)));
  await stop(c);
});

interface ShardStatus { shard: number; role: string; leader: number; commit: number; applied: number; firstIndex: number; lastIndex: number }

async function shardStatus(c: Cluster, id: number, shard: number): Promise<ShardStatus> {
  const r = await fetch(`http://127.0.0.1:${c.http.get(id)}/v1/cluster/status`, { signal: AbortSignal.timeout(5000) });
  return ((await r.json()) as { shards: ShardStatus[] }).shards.find((s) => s.shard === shard)!;
}

async function setFaults(c: Cluster, id: number, faults: { cut: number[] } | null): Promise<void> {
  const r = await fetch(`http://127.0.0.1:${c.http.get(id)}/v1/test/faults`, {
    method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(faults), signal: AbortSignal.timeout(5000),
  });
  assert.equal(r.status, 200);
}

async function putVia(c: Cluster, id: number, key: string, payload: unknown): Promise<Response> {
  return fetch(`http://127.0.0.1:${c.http.get(id)}/v1/collections/default/records/${key}`, {
    method: "PUT", headers: { "content-type": "application/json" }, body: JSON.stringify({ payload }), signal: AbortSignal.timeout(10_000),
  });
}

test("a partition: the minority commits nothing, the majority goes on; after healing the lagging node catches up by snapshot", async () => {
  const c = await startCluster(["--compact-after-entries", "20"], true);
  const keys = Array.from({ length: 400 }, (_, i) => `p${i}`).filter((k) => shardOf(k, 2) === 1);
  assert.equal((await putVia(c, 1, keys[0]!, "before")).status, 200);
  const isolated = await leaderOf(c, 1);
  const majority = [1, 2, 3].filter((id) => id !== isolated);
  await setFaults(c, isolated, { cut: majority });
  for (const id of majority) await setFaults(c, id, { cut: [isolated] });
  const frozen = await shardStatus(c, isolated, 1);
  // The isolated (old) leader cannot commit: its write times out with an unknown outcome.
  const minorityWrite = await putVia(c, isolated, keys[1]!, "minority");
  assert.ok(minorityWrite.status === 504 || minorityWrite.status === 503, `minority write answered ${minorityWrite.status}`);
  assert.equal((await shardStatus(c, isolated, 1)).commit, frozen.commit, "the minority committed nothing");
  // The majority elects a leader and goes on, well past a compaction.
  let written = 0;
  for (const key of keys.slice(2, 62)) {
    await waitFor(`majority write ${key}`, async () => (await putVia(c, majority[written % 2]!, key, "majority")).status === 200, 15_000);
    written++;
  }
  const newLeader = await leaderOf(c, 1);
  assert.notEqual(newLeader, isolated);
  const lead = await shardStatus(c, newLeader, 1);
  assert.ok(lead.firstIndex > frozen.lastIndex + 1, "the leader compacted past everything the isolated node has");
  for (const id of [1, 2, 3]) await setFaults(c, id, null);
  // Converge: the isolated node catches up (by snapshot: the entries it lacks are gone from the log).
  // The placement driver may hand the leadership back to the isolated node once it caught up (leader
  // balancing), so the leader is looked up each time rather than assumed to stay where it was.
  await waitFor("the isolated node to catch up", async () => {
    const leader = await leaderOf(c, 1);
    if (leader === 0) return false;
    const [a, b] = await Promise.all([shardStatus(c, isolated, 1), shardStatus(c, leader, 1)]);
    return b.role === "leader" && a.applied === b.commit && (a.role === "follower" || leader === isolated);
  }, 20_000);
  const caughtUp = await shardStatus(c, isolated, 1);
  assert.ok(caughtUp.firstIndex > frozen.lastIndex + 1, "its log restarts after a snapshot");
  const last = await fetch(`http://127.0.0.1:${c.http.get(isolated)}/v1/collections/default/records/${keys[61]}?consistency=eventual`);
  assert.equal(last.status, 200, "the majority's writes reached the isolated node");
  await stop(c);
});

test("shoal node ls / shard ls / collection: every node registers in the metadata group, any node shows the same map, collections are created and changed", async () => {
  const c = await startCluster();
  const run = (args: string[]) => spawnSync(process.execPath, [shoal, ...args], { encoding: "utf8" });
  await waitFor("every node registered and ready", () => {
    const r = run(["node", "ls", "--json", "--endpoint", `http://127.0.0.1:${c.http.get(2)}`]);
    const body = r.status === 0 ? JSON.parse(r.stdout) as { nodes: { id: number; worker: string; lifecycle: string }[] } : { nodes: [] };
    return body.nodes.length === 3 && body.nodes.every((n) => n.worker === "ready" && n.lifecycle === "voter");
  }, 20_000);
  const table = run(["node", "ls", "--endpoint", `http://127.0.0.1:${c.http.get(3)}`]);
  assert.equal(table.status, 0, table.stderr);
  assert.match(table.stdout, new RegExp(`127\\.0\\.0\\.1:${c.peer.get(2)}\\s+127\\.0\\.0\\.1:${c.http.get(2)}\\s+standard\\s+voter\\s+ready`));
  await waitFor("the shard map recorded", () => {
    const r = run(["shard", "ls", "--json", "--endpoint", `http://127.0.0.1:${c.http.get(1)}`]);
    return r.status === 0 && (JSON.parse(r.stdout) as { shards: unknown[] }).shards.length === 2;
  }, 20_000);
  const shards = run(["shard", "ls", "--endpoint", `http://127.0.0.1:${c.http.get(1)}`]);
  assert.match(shards.stdout, /1\s+default\s+0x00000000-0x7fffffff\s+1\s+1,2,3/);
  // Collections: created born replicated, listed, changed; a bad declaration is refused naming its field.
  const at = (id: number) => ["--endpoint", `http://127.0.0.1:${c.http.get(id)}`];
  const created = run(["collection", "create", "shoes", "--shards", "2", "--dim", "4", "--metric", "cosine", "--index", "color=keyword", ...at(2)]);
  assert.equal(created.status, 0, created.stderr);
  assert.match(created.stdout, /created collection shoes: 2 shards \(\d+, \d+\), 3 replicas each, vectors 4-d cosine f32/);
  await waitFor("node 3 lists it", () => /shoes/.test(run(["collection", "ls", ...at(3)]).stdout));
  assert.match(run(["collection", "ls", ...at(3)]).stdout, /shoes\s+2\s+3\s+hash\s+4-d cosine f32\s+color:keyword/);
  const updated = run(["collection", "update", "shoes", "--replication-factor", "2", ...at(1)]);
  assert.equal(updated.status, 0, updated.stderr);
  assert.equal((JSON.parse(updated.stdout) as { replicationFactor: number }).replicationFactor, 2);
  const bad = run(["collection", "create", "boots", "--dim", "4", ...at(1)]);
  assert.equal(bad.status, 1);
  assert.match(bad.stderr, /invalid_collection.*vectors\.metric/);
  // Records with vectors loaded in batches from a file, searched with a filter and counted from other nodes.
  const dir = mkdtempSync(join(tmpdir(), "shoal-upsert-"));
  try {
    const file = join(dir, "shoes.jsonl");
    const lines = Array.from({ length: 250 }, (_, i) => JSON.stringify({ id: `s${i}`, payload: { color: i % 5 === 0 ? "red" : "blue", size: i }, vector: [1, i / 250, (i % 7) / 7, 0.5] }));
    writeFileSync(file, lines.join("\n") + "\n");
    const loaded = run(["upsert", "shoes", "--file", file, "--batch", "100", ...at(1)]);
    assert.equal(loaded.status, 0, loaded.stderr);
    assert.match(loaded.stdout, /^250 records written to shoes in [\d.]+ s$/m);
    const found = run(["search", "shoes", "--vector", "[1, 0.4, 0.2857, 0.5]", "-k", "3", "--filter", '{"must": [{"key": "color", "match": "red"}]}', ...at(3)]);
    assert.equal(found.status, 0, found.stderr);
    assert.match(found.stdout, /^s100\s+1\.0000\s+\{"color":"red","size":100\}$/m, "the nearest red shoe first");
    assert.match(found.stdout, /3 results from 2\/2 shards/);
    const counted = run(["count", "shoes", "--filter", '{"must": [{"key": "size", "range": {"lt": 10}}]}', ...at(2)]);
    assert.equal(counted.status, 0, counted.stderr);
    assert.equal(counted.stdout.trim(), "10");
    assert.match(counted.stderr, /without a payload index \(records read\): size/);
    const wrong = run(["search", "shoes", "--vector", "[1, 2]", ...at(2)]);
    assert.equal(wrong.status, 1);
    assert.match(wrong.stderr, /invalid_vector/);
    const dropped = run(["collection", "drop", "shoes", "--yes", ...at(2)]);
    assert.equal(dropped.status, 0, dropped.stderr);
    assert.match(dropped.stdout, /dropped collection shoes \(2 shards\)/);
    assert.match(run(["count", "shoes", ...at(3)]).stderr, /collection_not_found/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const down = run(["node", "ls", "--endpoint", "http://127.0.0.1:1"]);
  assert.equal(down.status, 1);
  assert.match(down.stderr, /cannot reach/);
  await stop(c);
});

test("shoal start --join: nodes join a running cluster, become ready learners, are promoted in a pair, serve requests, and restart as themselves", async () => {
  const c = await startCluster();
  const [p4, p5] = await freePorts(4).then((ps) => [ps.slice(0, 2), ps.slice(2)] as [number[], number[]]);
  const joinProc = (slot: number, [http, peer]: number[]) => {
    const child = spawn(process.execPath, [shoal, "start", "--join", `http://127.0.0.1:${c.http.get(2)}`, "--data-dir", join(c.dir, `j${slot}`),
      "--http", `127.0.0.1:${http}`, "--listen", `127.0.0.1:${peer}`, "--labels", `zone=z${slot}`],
    { stdio: ["ignore", openSync(join(c.dir, `j${slot}.log`), "a"), "inherit"] });
    c.procs.set(slot, child);
    c.http.set(slot, http!);
  };
  const nodes = async () => {
    const r = await fetch(`http://127.0.0.1:${c.http.get(1)}/v1/cluster/nodes`, { signal: AbortSignal.timeout(5000) });
    return ((await r.json()) as { nodes: { id: number; lifecycle: string; worker: string; labels: { zone?: string } }[] }).nodes;
  };
  await waitFor("the founders registered", async () => (await nodes()).filter((n) => n.lifecycle === "voter").length === 3, 20_000);
  joinProc(4, p4);
  await waitFor("node 4 joined and ready", async () => (await nodes()).some((n) => n.id === 4 && n.lifecycle === "ready" && n.worker === "ready"), 30_000);
  assert.equal((await nodes()).find((n) => n.id === 4)?.labels.zone, "z4");
  // Node 4 may hold no shard yet: its gateway forwards.
  const put = await fetch(`http://127.0.0.1:${c.http.get(4)}/v1/collections/default/records/joined`, {
    method: "PUT", headers: { "content-type": "application/json" }, body: JSON.stringify({ payload: 4 }), signal: AbortSignal.timeout(10_000),
  });
  assert.equal(put.status, 200);
  joinProc(5, p5);
  await waitFor("4 and 5 promoted to voters (voters stay odd: 3 -> 5)", async () => (await nodes()).filter((n) => n.lifecycle === "voter").length === 5, 30_000);
  // A joined node restarts as itself: its identity is in its data directory.
  await kill9(c, 4);
  joinProc(4, p4);
  await waitFor("node 4 back", async () => {
    try {
      return (await fetch(`http://127.0.0.1:${c.http.get(4)}/readyz`)).status === 200;
    } catch {
      return false;
    }
  }, 30_000);
  const get = await fetch(`http://127.0.0.1:${c.http.get(4)}/v1/collections/default/records/joined`);
  assert.equal(get.status, 200);
  assert.equal((await nodes()).length, 5, "no second registration");
  // Worker lifecycle: a node holding replicas cannot be removed; a drained node without replicas can.
  const cli = (args: string[]) => spawnSync(process.execPath, [shoal, ...args, "--endpoint", `http://127.0.0.1:${c.http.get(3)}`], { encoding: "utf8" });
  const refused = cli(["node", "remove", "1"]);
  assert.equal(refused.status, 1);
  assert.match(refused.stderr, /409 node_holds_replicas: node 1 still holds \d+ replica\(s\)/);
  assert.equal(cli(["node", "drain", "4"]).status, 0);
  // Whatever the placement driver gave node 4 moves away; then the removal is accepted.
  // Moves on a loaded machine (two test files at once on two cores) can take a while; a failure says
  // what the last refusal was.
  let lastRefusal = "";
  await waitFor("node 4 removable", () => {
    const r = cli(["node", "remove", "4"]);
    lastRefusal = r.stderr.trim();
    return r.status === 0;
  }, 60_000).catch((e: unknown) => {
    throw new Error(`${(e as Error).message}; the last refusal: ${lastRefusal}`);
  });
  await waitFor("node 4 removed from the map and the metadata group", async () => {
    const st = (await nodes()).find((n) => n.id === 4);
    return st?.worker === "removed";
  }, 10_000);
  assert.match(cli(["node", "drain", "99"]).stderr, /404 node_not_found/);
  // Bad input to the join endpoint is refused with a reason.
  const bad = await fetch(`http://127.0.0.1:${c.http.get(1)}/v1/cluster/join`, {
    method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ peer: "nowhere", http: "127.0.0.1:1" }),
  });
  assert.equal(bad.status, 400);
  await stop(c);
});
