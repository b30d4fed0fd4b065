/**
 * The read levels' guarantees (DATA-3, DATA-4) and the write modes, through `shoal/client` against three in-process nodes
 * with the HTTP API listening on loopback. A replica is made to lag by cutting it off from the other
 * two (a quorum still acknowledges writes), so that a read served from what it holds would show an old
 * value: eventual reads there do, which is how each test shows the lag is real.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import type { AddressInfo } from "node:net";
import { type ApiCluster, startApiCluster } from "./testing.js";
import { ShoalClient, ShoalError } from "../client/index.js";
import { waitFor } from "../node/testing.js";
import type { NodeConfig } from "../node/multi-raft.js";

interface Three {
  api: ApiCluster;
  url: Map<number, string>;
  group: number;
  leader: number;
  followers: [number, number];
  /** Cuts `id` off from the other nodes (both ways); `heal` joins every node again. */
  isolate(id: number): Promise<void>;
  heal(): Promise<void>;
  /** A client of one node (no routing, one attempt); closed by stop(). */
  client(node: number, opts?: { sessionToken?: string }): ShoalClient;
  /** Closes the clients, heals every cut and stops the cluster. */
  stop(): Promise<void>;
}

async function three(node: Partial<NodeConfig> = {}): Promise<Three> {
  const api = await startApiCluster(3, 1, { node });
  await api.registered();
  const url = new Map<number, string>();
  for (const [id, app] of api.apps) {
    await app.listen({ host: "127.0.0.1", port: 0 });
    url.set(id, `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`);
  }
  const node1 = api.c.nodes.get(1)!;
  const group = node1.shardOf("k", "default");
  await waitFor("the shard has a leader all nodes know", () => [...api.c.nodes.values()].every((n) => n.leaderOf(group) !== 0 && n.leaderOf(group) === node1.leaderOf(group)));
  const leader = node1.leaderOf(group);
  const followers = [1, 2, 3].filter((id) => id !== leader) as [number, number];
  const cut = async (id: number, peers: number[]) => {
    const r = await api.apps.get(id)!.inject({ method: "POST", url: "/v1/test/faults", payload: { cut: peers } });
    assert.equal(r.statusCode, 200, r.body);
  };
  const clients: ShoalClient[] = [];
  const heal = async () => {
    for (const id of [1, 2, 3]) await cut(id, []);
  };
  return {
    api, url, group, leader, followers, heal,
    async isolate(id) {
      await cut(id, [1, 2, 3].filter((x) => x !== id));
      for (const other of [1, 2, 3].filter((x) => x !== id)) await cut(other, [id]);
    },
    client(node, opts = {}) {
      const c = new ShoalClient({ endpoints: [url.get(node)!], routing: false, attemptsMax: 1, timeoutMs: 20_000, ...opts });
      clients.push(c);
      return c;
    },
    async stop() {
      for (const c of clients) c.close();
      await heal();
      await api.stop();
    },
  };
}

/**
 * A session read at a replica that lags and is cut off: it waits there (until `heal`), or, once the node
 * has noticed it reaches no quorum, is refused (retryable, nothing applied) and asked again after
 * healing. Either way it never answers from the lagging state. Returns the answer and how it went.
 */
async function sessionRead<T>(read: () => Promise<T>, waiting: () => boolean, heal: () => Promise<void>): Promise<{ value: T; how: "waited" | "refused, then asked again" }> {
  const first = read().then((value) => ({ value }), (error: unknown) => ({ error }));
  let settled = false;
  void first.then(() => { settled = true; });
  await waitFor("the session read waits at the lagging replica, or is refused", () => waiting() || settled);
  await heal();
  const r = await first;
  if ("value" in r) return { value: r.value, how: "waited" };
  assert.ok(r.error instanceof ShoalError && r.error.retryable && r.error.applied === "no", String(r.error));
  // Healed, the node sees its peers again within a few frames: until then it refuses the same way.
  let value: { v: T } | null = null;
  await waitFor("the session read answers once healed", async () => {
    try {
      value = { v: await read() };
      return true;
    } catch (e) {
      if (e instanceof ShoalError && e.retryable && e.applied === "no") return false;
      throw e;
    }
  });
  return { value: value!.v, how: "refused, then asked again" };
}

test("session: a read through a lagging node waits for the session's writes made through another node, and then sees them", { timeout: 60_000 }, async () => {
  const t = await three();
  const [lagging] = t.followers;
  const writer = t.client(t.leader);
  let reader: ShoalClient | null = null;
  try {
    await writer.collection("default").put("k", { n: 1 });
    const lagNode = t.api.c.nodes.get(lagging)!;
    await waitFor("the lagging node holds version 1", () => lagNode.localRecord(t.group, "k") !== undefined);
    await t.isolate(lagging);
    const { version } = await writer.collection("default").put("k", { n: 2 });
    reader = t.client(lagging, { sessionToken: writer.sessionToken() });
    assert.ok(writer.sessionToken().split(",").includes(`${t.group}:${version}`), `the write's answer carried its shard and version: ${writer.sessionToken()}`);
    const stale = await reader.collection("default").get("k", { consistency: "eventual" });
    assert.deepEqual(stale?.payload, { n: 1 }, "the node lags: an eventual read there shows the old value");
    const r = await sessionRead(() => reader!.collection("default").get("k", { consistency: "session" }), () => lagNode.pendingReads(t.group) === 1, () => t.heal());
    assert.deepEqual([r.value?.payload, r.value?.version], [{ n: 2 }, version], `the session's own write is seen (${r.how})`);
  } finally {
    await t.stop();
  }
});

test("session: reads never go back across a leader change, even on a replica that missed the newer write", { timeout: 60_000 }, async () => {
  const t = await three();
  const [other, lagging] = t.followers;
  const setup = t.client(t.leader);
  const viaOther = t.client(other);
  let viaLagging: ShoalClient | null = null;
  try {
    await setup.collection("default").put("m", "old");
    const lagNode = t.api.c.nodes.get(lagging)!;
    await waitFor("the lagging node holds the old value", () => lagNode.localRecord(t.group, "m") !== undefined);
    await t.isolate(lagging);
    const newer = await setup.collection("default").put("m", "new");
    // The session reads the new value through a node that has it (a linearizable read there).
    const seen = await viaOther.collection("default").get("m", { consistency: "session" });
    assert.deepEqual([seen?.payload, seen?.version], ["new", newer.version]);
    assert.equal(await t.api.c.nodes.get(t.leader)!.transferLeadershipAndWait(t.group, other), "completed");
    await waitFor("the shard's leader changed", () => t.api.c.nodes.get(other)!.leaderOf(t.group) === other);
    viaLagging = t.client(lagging, { sessionToken: viaOther.sessionToken() });
    assert.equal((await viaLagging.collection("default").get("m", { consistency: "eventual" }))?.payload, "old", "the node lags");
    const { value: after, how } = await sessionRead(() => viaLagging!.collection("default").get("m", { consistency: "session" }), () => lagNode.pendingReads(t.group) === 1, () => t.heal());
    assert.ok(after !== null && after.version >= newer.version && after.payload === "new", `went back to ${JSON.stringify(after)} (${how})`);
  } finally {
    await t.stop();
  }
});

test("bounded: a replica serves from what it holds only within the bound; past it, it confirms with the leader or refuses", { timeout: 60_000 }, async () => {
  const t = await three();
  const [lagging] = t.followers;
  const writer = t.client(t.leader);
  const reader = t.client(lagging);
  const records = reader.collection("default");
  try {
    await writer.collection("default").put("b", 1);
    // A linearizable read there makes the replica fresh as of now.
    assert.equal((await records.get("b"))?.payload, 1);
    await t.isolate(lagging);
    await writer.collection("default").put("b", 2);
    // Within a minute's bound, the replica's own (older) value is a right answer: the write is younger.
    assert.equal((await records.get("b", { consistency: "bounded", maxStalenessMs: 60_000 }))?.payload, 1);
    // With no staleness allowed the replica must confirm with a leader it cannot reach: it refuses.
    const refused = await records.get("b", { consistency: "bounded", maxStalenessMs: 0 }).catch((e: unknown) => e);
    assert.ok(refused instanceof ShoalError && refused.retryable && refused.applied === "no", String(refused));
    await t.heal();
    await waitFor("the healed replica confirms with its leader", async () =>
      (await records.get("b", { consistency: "bounded", maxStalenessMs: 0 }).catch(() => null))?.payload === 2);
  } finally {
    await t.stop();
  }
});

test("counts and searches take the levels: a session count through a lagging node waits for the session's write; a bounded one past its bound refuses", { timeout: 60_000 }, async () => {
  const t = await three();
  const [lagging] = t.followers;
  const writer = t.client(t.leader);
  let reader: ShoalClient | null = null;
  try {
    await writer.collection("default").put("c1", 1);
    const lagNode = t.api.c.nodes.get(lagging)!;
    await waitFor("the lagging node holds the first record", () => lagNode.localRecord(t.group, "c1") !== undefined);
    reader = t.client(lagging);
    // A linearizable get there (served by its own replica after a ReadIndex round) makes the replica fresh as of now.
    assert.equal((await reader.collection("default").get("c1"))?.payload, 1);
    await t.isolate(lagging);
    await writer.collection("default").put("c2", 2);
    reader.close();
    reader = t.client(lagging, { sessionToken: writer.sessionToken() });
    const records = reader.collection("default");
    assert.equal((await records.count({ consistency: "eventual" })).count, 1, "the node lags");
    assert.equal((await records.count({ consistency: "bounded", maxStalenessMs: 60_000 })).count, 1, "within a minute's bound the replica's own count is a right answer");
    const refused = await records.count({ consistency: "bounded", maxStalenessMs: 0, timeoutMs: 1500 }).catch((e: unknown) => e);
    assert.ok(refused instanceof ShoalError && refused.applied === "no", String(refused));
    const r = await sessionRead(() => records.count({ consistency: "session", timeoutMs: 20_000 }), () => lagNode.pendingReads(t.group) === 1, () => t.heal());
    assert.equal(r.value.count, 2, `the session's own write is counted (${r.how})`);
  } finally {
    await t.stop();
  }
});

test("a session token that is not shard:version pairs is refused with 400, naming the header", async () => {
  const api = await startApiCluster(1, 1);
  try {
    await api.registered();
    const r = await api.apps.get(1)!.inject({ method: "GET", url: "/v1/collections/default/records/x?consistency=session", headers: { "shoal-session": "1:abc" } });
    assert.equal(r.statusCode, 400, r.body);
    assert.deepEqual([JSON.parse(r.body).error.code, JSON.parse(r.body).error.field], ["bad_request", "shoal-session"]);
    const fine = await api.apps.get(1)!.inject({ method: "GET", url: "/v1/collections/default/records/x?consistency=session", headers: { "shoal-session": "1:0" } });
    assert.equal(fine.statusCode, 404, fine.body);
    assert.match(String(fine.headers["shoal-session"]), /^\d+:\d+,1000000:\d+$/, "an absent record's answer carries the token too (with the metadata index)");
  } finally {
    await api.stop();
  }
});

test("write mode async: answered (202) once the leader's log holds the write, before a quorum does; it then commits at the version it was given", { timeout: 60_000 }, async () => {
  // Elections slow enough that delayed messages do not start one.
  const t = await three({ electionTicks: 50 });
  const writer = t.client(t.leader);
  const leaderNode = t.api.c.nodes.get(t.leader)!;
  const commit = () => leaderNode.status().groups.find((g) => g.shard === t.group)!.commit;
  try {
    await writer.collection("default").put("w", 0);
    // The leader's messages leave 400 ms late: no follower acknowledges anything sooner.
    const slow = await t.api.apps.get(t.leader)!.inject({ method: "POST", url: "/v1/test/faults", payload: { delayMs: 400 } });
    assert.equal(slow.statusCode, 200, slow.body);
    const before = commit();
    const ack = await writer.collection("default").put("w", 1, { writeMode: "async" });
    const committedAtAck = commit();
    const index = ack.version - (leaderNode.shardState(t.group).versionBase ?? 0);
    assert.equal(ack.mode, "async");
    assert.ok(committedAtAck < index, `answered before commit: commit ${committedAtAck} (was ${before}), the write's index ${index}`);
    await t.heal();
    // Not committed yet, a linearizable read may not show it; a session read waits for it.
    const read = await writer.collection("default").get("w", { consistency: "session" });
    assert.deepEqual([read?.payload, read?.version], [1, ack.version], "committed at the version the answer gave");
  } finally {
    await t.stop();
  }
});

test("write mode per collection and per request: a collection declared async answers puts with 202; a compare-and-set is sync, and refused when asked async", { timeout: 60_000 }, async () => {
  const api = await startApiCluster(3, 1);
  const app = api.apps.get(1)!;
  const ask = async (method: "PUT" | "POST" | "GET", url: string, payload?: Record<string, unknown>) => {
    const r = await app.inject({ method, url, ...(payload !== undefined ? { payload } : {}) });
    return { status: r.statusCode, body: JSON.parse(r.body) as Record<string, unknown> & { error?: { code: string; field?: string } } };
  };
  try {
    await api.registered();
    const created = await ask("POST", "/v1/collections", { name: "logs", shards: 1, writeMode: "async" });
    assert.equal(created.status, 200, JSON.stringify(created.body));
    assert.equal((await ask("GET", "/v1/collections/logs")).body.writeMode, "async");
    assert.equal((await ask("GET", "/v1/collections/default")).body.writeMode, "sync");
    const bad = await ask("POST", "/v1/collections", { name: "x", writeMode: "eventually" });
    assert.deepEqual([bad.status, bad.body.error?.code, bad.body.error?.field], [400, "invalid_collection", "writeMode"]);
    let put: Awaited<ReturnType<typeof ask>> = { status: 0, body: {} };
    await waitFor("the collection's shard takes writes", async () => (put = await ask("PUT", "/v1/collections/logs/records/a", { payload: 1 })).status === 202);
    assert.equal(put.body.mode, "async");
    const sync = await ask("PUT", "/v1/collections/logs/records/a?writeMode=sync", { payload: 2 });
    assert.deepEqual([sync.status, sync.body.mode], [200, undefined]);
    const cas = await ask("PUT", "/v1/collections/logs/records/a", { payload: 3, ifVersion: sync.body.version });
    assert.deepEqual([cas.status, cas.body.mode], [200, undefined], "a compare-and-set is sync in an async collection");
    const refused = await ask("PUT", "/v1/collections/logs/records/a?writeMode=async", { payload: 4, ifVersion: cas.body.version });
    assert.deepEqual([refused.status, refused.body.error?.code, refused.body.error?.field], [400, "bad_request", "writeMode"]);
    // A keyed write is answered once applied, so that a retry under its key gets its outcome.
    const keyed = await app.inject({ method: "PUT", url: "/v1/collections/logs/records/a", payload: { payload: 5 }, headers: { "idempotency-key": "k1" } });
    assert.deepEqual([keyed.statusCode, JSON.parse(keyed.body).mode], [200, undefined]);
    const again = await app.inject({ method: "PUT", url: "/v1/collections/logs/records/a", payload: { payload: 5 }, headers: { "idempotency-key": "k1" } });
    assert.deepEqual([again.statusCode, again.headers["idempotent-replayed"], JSON.parse(again.body).version], [200, "true", JSON.parse(keyed.body).version]);
    // A shard frozen for a merge takes no async write: its leader refuses it before proposing it
    // (the gateway waits for the map to route it elsewhere, in vain here), never answers 202 and drops it.
    const node1 = api.c.nodes.get(1)!;
    const group = node1.metaState().collections.get("logs")!.shards[0]!;
    const leader = [...api.c.nodes.values()].find((n) => n.leaderOf(group) === n.id)!;
    assert.ok((await leader.propose(group, { op: "freeze", into: group + 1000 })).ok);
    await assert.rejects(leader.proposeAsync(group, { op: "put", key: "b", payload: 1 }), (e: Error) => e.name === "WrongShardError");
    assert.ok((await leader.propose(group, { op: "unfreeze" })).ok);
    const after = await leader.proposeAsync(group, { op: "put", key: "b", payload: 2 });
    assert.ok(after.ok && "async" in after, JSON.stringify(after));
  } finally {
    await api.stop();
  }
});
