import { test } from "node:test";
import assert from "node:assert/strict";
import type { InjectOptions } from "fastify";
import { pino } from "pino";
import { Gateway } from "../node/gateway.js";
import { Membership } from "../node/membership.js";
import { PlacementDriver } from "../node/placement-driver.js";
import { ShardAgent } from "../node/shard-agent.js";
import { META_GROUP, MultiRaftNode } from "../node/multi-raft.js";
import { tempDir, waitFor } from "../node/testing.js";
import { buildApi } from "./server.js";

async function singleNode() {
  const node = await MultiRaftNode.open({
    id: 1, dataDir: tempDir("shoal-api-"), listen: { host: "127.0.0.1", port: 0 }, peers: new Map(), shards: 2, tickMs: 10,
  });
  await node.start();
  const app = await buildApi({ node, gateway: new Gateway(node), logger: pino({ level: "silent" }), bodyLimitBytes: 2048 });
  // Not /readyz: with no membership running, the shard map is never recorded, so the node is never ready.
  await waitFor("leaders", () => node.leaderOf(META_GROUP) !== 0 && node.status().groups.every((g) => g.lead !== 0));
  return { node, app };
}

const rec = (id: string) => `/v1/collections/default/records/${id}`;

test("records: put, get, compare-and-set, delete, scan", async () => {
  const { node, app } = await singleNode();
  const put = await app.inject({ method: "PUT", url: rec("a1"), payload: { payload: { x: 1 } } });
  assert.equal(put.statusCode, 200);
  const { version } = put.json() as { version: number };
  const get = await app.inject({ url: rec("a1") });
  assert.deepEqual(get.json(), { id: "a1", payload: { x: 1 }, version });
  const stale = await app.inject({ method: "PUT", url: rec("a1"), payload: { payload: 2, ifVersion: version + 100 } });
  assert.equal(stale.statusCode, 409);
  assert.deepEqual(stale.json(), { error: { code: "version_mismatch", message: `record is at version ${version}`, currentVersion: version } });
  const absent = await app.inject({ method: "PUT", url: rec("new"), payload: { payload: 1, ifVersion: 0 } });
  assert.equal(absent.statusCode, 200, "ifVersion 0: create only if absent");
  assert.equal((await app.inject({ method: "PUT", url: rec("new"), payload: { payload: 1, ifVersion: 0 } })).statusCode, 409);
  for (const consistency of ["linearizable", "eventual"]) {
    assert.equal((await app.inject({ url: `${rec("a1")}?consistency=${consistency}` })).statusCode, 200);
  }
  const sequential = await app.inject({ url: `${rec("a1")}?consistency=sequential` });
  assert.equal(sequential.statusCode, 400, "sequential is not a mode of its own yet: refused, not served as linearizable");
  assert.match((sequential.json() as { error: { message: string } }).error.message, /not a mode of its own/);
  assert.equal((await app.inject({ method: "DELETE", url: rec("a1") })).statusCode, 200);
  const gone = await app.inject({ url: rec("a1") });
  assert.equal(gone.statusCode, 404);
  assert.equal((gone.json() as { error: { code: string } }).error.code, "not_found");
  for (let i = 0; i < 5; i++) await app.inject({ method: "PUT", url: rec(`s${i}`), payload: { payload: i } });
  const page1 = (await app.inject({ url: "/v1/collections/default/records?limit=3" })).json() as { records: { id: string }[]; cursor: string };
  assert.deepEqual(page1.records.map((r) => r.id), ["new", "s0", "s1"]);
  const page2 = (await app.inject({ url: `/v1/collections/default/records?limit=3&cursor=${page1.cursor}` })).json() as { records: { id: string }[]; cursor: string | null };
  assert.deepEqual(page2.records.map((r) => r.id), ["s2", "s3", "s4"]);
  await app.close();
  await node.stop();
});

test("idempotency keys: a repeated key answers the first outcome (marked replayed) without applying; another write under it is refused", async () => {
  const { node, app } = await singleNode();
  const key = { "idempotency-key": "order-7f3a" };
  const first = await app.inject({ method: "PUT", url: rec("acct"), payload: { payload: { balance: 10 } }, headers: key });
  assert.equal(first.statusCode, 200);
  assert.equal(first.headers["idempotent-replayed"], undefined);
  const { version } = first.json() as { version: number };
  const again = await app.inject({ method: "PUT", url: rec("acct"), payload: { payload: { balance: 10 } }, headers: key });
  assert.equal(again.statusCode, 200);
  assert.deepEqual(again.json(), { version }, "the first outcome");
  assert.equal(again.headers["idempotent-replayed"], "true");
  assert.equal(((await app.inject({ url: rec("acct") })).json() as { version: number }).version, version, "applied once");
  const other = await app.inject({ method: "PUT", url: rec("acct"), payload: { payload: { balance: 99 } }, headers: key });
  assert.equal(other.statusCode, 422);
  assert.equal((other.json() as { error: { code: string } }).error.code, "idempotency_key_reused");
  // A compare-and-set refused stays refused for its key, even once the version it named would match.
  const cas = await app.inject({ method: "PUT", url: rec("acct"), payload: { payload: 1, ifVersion: version + 1000 }, headers: { "idempotency-key": "cas-1" } });
  assert.equal(cas.statusCode, 409);
  const casAgain = await app.inject({ method: "PUT", url: rec("acct"), payload: { payload: 1, ifVersion: version + 1000 }, headers: { "idempotency-key": "cas-1" } });
  assert.deepEqual([casAgain.statusCode, casAgain.headers["idempotent-replayed"]], [409, "true"]);
  const del = await app.inject({ method: "DELETE", url: rec("acct"), headers: { "idempotency-key": "del-1" } });
  const delAgain = await app.inject({ method: "DELETE", url: rec("acct"), headers: { "idempotency-key": "del-1" } });
  assert.deepEqual(delAgain.json(), del.json(), "a repeated delete answers the first outcome (deleted: true), not 'nothing to delete'");
  assert.equal((del.json() as { deleted: boolean }).deleted, true);
  for (const bad of ["", "with space", "x".repeat(256), "é"]) {
    const r = await app.inject({ method: "PUT", url: rec("acct"), payload: { payload: 1 }, headers: { "idempotency-key": bad } });
    assert.equal(r.statusCode, 400, `key ${JSON.stringify(bad)}`);
  }
  // Record scans never show what the shard remembers for idempotency.
  const page = (await app.inject({ url: "/v1/collections/default/records?limit=100" })).json() as { records: { id: string }[] };
  assert.deepEqual(page.records.map((r) => r.id), []);
  await app.close();
  await node.stop();
});

test("bad input gets a 4xx with a machine-readable code, and never reaches the log", async () => {
  const { node, app } = await singleNode();
  const before = node.counters.proposals;
  const cases: [string, InjectOptions, number, string][] = [
    ["malformed JSON", { method: "PUT", url: rec("x"), payload: "{oops", headers: { "content-type": "application/json" } }, 400, "invalid_json"],
    ["missing payload", { method: "PUT", url: rec("x"), payload: { nope: 1 } }, 400, "bad_request"],
    ["wrong ifVersion type", { method: "PUT", url: rec("x"), payload: { payload: 1, ifVersion: "abc" } }, 400, "bad_request"],
    ["bad id", { method: "PUT", url: rec("a%20b"), payload: { payload: 1 } }, 400, "bad_request"],
    ["too long id", { method: "PUT", url: rec("x".repeat(300)), payload: { payload: 1 } }, 400, "bad_request"],
    ["payload over the limit", { method: "PUT", url: rec("x"), payload: { payload: "y".repeat(5000) } }, 413, "payload_too_large"],
    ["unknown consistency", { url: `${rec("x")}?consistency=strongest` }, 400, "bad_request"],
    ["unknown collection", { method: "PUT", url: "/v1/collections/other/records/x", payload: { payload: 1 } }, 404, "collection_not_found"],
    ["unknown route", { url: "/v2/nothing" }, 404, "route_not_found"],
    ["bad scan limit", { url: "/v1/collections/default/records?limit=0" }, 400, "bad_request"],
  ];
  for (const [what, req, status, code] of cases) {
    const r = await app.inject(req);
    assert.equal(r.statusCode, status, what);
    const body = r.json() as { error: { code: string; message: string } };
    assert.equal(body.error.code, code, what);
    assert.ok(body.error.message.length > 0, what);
  }
  assert.equal(node.counters.proposals, before, "nothing malformed was proposed");
  await app.close();
  await node.stop();
});

test("status, health, readiness, metrics and the OpenAPI document", async () => {
  const { node, app } = await singleNode();
  await app.inject({ method: "PUT", url: rec("m"), payload: { payload: 1 } });
  const st = (await app.inject({ url: "/v1/cluster/status" })).json() as { node: number; shards: { role: string }[] };
  assert.equal(st.node, 1);
  assert.deepEqual(st.shards.map((s) => s.role), ["leader", "leader"]);
  assert.equal((await app.inject({ url: "/healthz" })).statusCode, 200);
  const metrics = (await app.inject({ url: "/metrics" })).body;
  assert.match(metrics, /shoal_request_duration_seconds_bucket\{.*op="put"/);
  assert.match(metrics, /shoal_wal_batches_total\{node="1"\} \d+/);
  assert.match(metrics, /process_cpu_user_seconds_total/);
  assert.match(metrics, /shoal_wal_sync_seconds_count\{node="1"\} [1-9]/);
  assert.match(metrics, /shoal_raft_leaderships_won_total\{node="1"\} 3/, "two shards and the metadata group");
  // Totals are counters (they only grow; rate() applies), levels are gauges.
  for (const m of metrics.matchAll(/^# TYPE (shoal_\w+) (\w+)$/gm)) {
    if (m[1]!.endsWith("_total")) assert.equal(m[2], "counter", `${m[1]} is a counter`);
    else if (m[1]!.endsWith("_seconds")) assert.equal(m[2], "histogram", `${m[1]} is a histogram`);
  }
  const again = (await app.inject({ url: "/metrics" })).body;
  assert.match(again, /shoal_raft_leaderships_won_total\{node="1"\} 3/, "a second scrape adds nothing that did not happen");
  await app.close();
  await node.stop();
});

test("settings: read, changed against the version read, validated, kept in a history, rolled back", async () => {
  const { node, app } = await singleNode();
  const get = async () => (await app.inject({ url: "/v1/cluster/config" })).json() as { version: number; placement: { maxMovesTotal: number } };
  const v1 = await get();
  assert.equal(v1.version, 1);
  const put = (body: unknown) => app.inject({ method: "PUT", url: "/v1/cluster/config", payload: body as object });
  const ok = await put({ baseVersion: 1, settings: { maxMovesTotal: 200 }, note: "slower rebalancing" });
  assert.equal(ok.statusCode, 200, ok.body);
  assert.deepEqual(ok.json(), { version: 2 });
  assert.equal((await get()).placement.maxMovesTotal, 200);
  const stale = await put({ baseVersion: 1, settings: { maxMovesTotal: 300 } });
  assert.equal(stale.statusCode, 409);
  assert.equal((stale.json() as { error: { code: string } }).error.code, "stale_settings");
  const invalid = await put({ baseVersion: 2, settings: { maxMovesTotal: 0 } });
  assert.equal(invalid.statusCode, 400);
  assert.match((invalid.json() as { error: { message: string } }).error.message, /maxMovesTotal must be a positive integer/);
  const unknown = await put({ baseVersion: 2, settings: { noSuchSetting: 1, maxMovesTotal: 0 } });
  assert.equal(unknown.statusCode, 400, "unknown settings are refused, not ignored");
  const named = unknown.json() as { error: { code: string; message: string } };
  assert.equal(named.error.code, "invalid_settings");
  assert.match(named.error.message, /unknown setting "noSuchSetting"/);
  assert.match(named.error.message, /maxMovesTotal must be a positive integer/, "every problem is named, not only the first");
  const history = (await app.inject({ url: "/v1/cluster/config/history" })).json() as { versions: { version: number; note: string }[] };
  assert.deepEqual(history.versions.map((v) => [v.version, v.note]), [[1, "initial"], [2, "slower rebalancing"]]);
  const back = await app.inject({ method: "POST", url: "/v1/cluster/config/rollback", payload: { toVersion: 1 } });
  assert.deepEqual(back.json(), { version: 3 });
  assert.equal((await get()).placement.maxMovesTotal, v1.placement.maxMovesTotal);
  assert.equal((await app.inject({ method: "POST", url: "/v1/cluster/config/rollback", payload: { toVersion: 99 } })).statusCode, 404);
  await app.close();
  await node.stop();
});

test("cluster routes: a watch stream of node changes, operators, a manual operator refused with its reason, a split and a merge", async () => {
  const { node, app, gateway, stopAgents } = await (async () => {
    const n = await MultiRaftNode.open({
      id: 1, dataDir: tempDir("shoal-api-"), listen: { host: "127.0.0.1", port: 0 }, peers: new Map(), shards: 2, tickMs: 10,
    });
    const port = await n.start();
    const gw = new Gateway(n);
    const membership = new Membership(n, gw, { peer: { host: "127.0.0.1", port }, http: { host: "127.0.0.1", port: 1 }, founders: [1], shards: 2, intervalMs: 20 });
    membership.start();
    const pd = new PlacementDriver(n, gw);
    const agent = new ShardAgent(n, gw);
    agent.start();
    const a = await buildApi({ node: n, gateway: gw, logger: pino({ level: "silent" }) });
    return { node: n, app: a, gateway: gw, stopAgents: () => { membership.stop(); pd.stop(); agent.stop(); } };
  })();
  await waitFor("node 1 registered", () => node.metaState().nodes.has(1) && node.metaState().collections.has("default"), 10_000);
  const url = await app.listen({ host: "127.0.0.1", port: 0 });
  const stream = await fetch(`${url}/v1/cluster/watch`);
  assert.equal(stream.headers.get("content-type"), "text/event-stream");
  const reader = stream.body!.getReader();
  const decoder = new TextDecoder();
  let text = "";
  const nextEvent = async (): Promise<{ event: string; data: Record<string, unknown> }> => {
    for (;;) {
      const end = text.indexOf("\n\n");
      if (end !== -1) {
        const block = text.slice(0, end);
        text = text.slice(end + 2);
        if (block.startsWith(":")) continue;
        return { event: /^event: (.*)$/m.exec(block)![1]!, data: JSON.parse(/^data: (.*)$/m.exec(block)![1]!) as Record<string, unknown> };
      }
      const { value, done } = await reader.read();
      assert.ok(!done, "the stream stays open");
      text += decoder.decode(value, { stream: true });
    }
  };
  const first = await nextEvent();
  assert.equal(first.event, "snapshot");
  assert.deepEqual((first.data.nodes as { id: number }[]).map((n) => n.id), [1]);
  assert.equal((first.data.shards as unknown[]).length, 2);
  assert.ok((await gateway.proposeMeta({ kind: "set-worker-state", node: 1, state: "draining", atMs: 1 })).ok);
  const change = await nextEvent();
  assert.deepEqual([change.event, change.data.id, change.data.worker], ["node", 1, "draining"]);
  await reader.cancel();
  assert.equal((await app.inject({ url: "/v1/cluster/operators" })).statusCode, 200);
  const move = await app.inject({ method: "POST", url: "/v1/cluster/shards/1/move", payload: { from: 1, to: 7 } });
  assert.deepEqual([move.statusCode, (move.json() as { error: { code: string } }).error.code], [409, "node_not_placeable"], "no node 7");
  const cancel = await app.inject({ method: "POST", url: "/v1/cluster/operators/42/cancel" });
  assert.deepEqual([cancel.statusCode, (cancel.json() as { error: { code: string } }).error.code], [404, "operator_not_found"]);
  try {
    const badSplit = await app.inject({ method: "POST", url: "/v1/cluster/shards/1/split", payload: { at: 2 ** 32 - 1 } });
    assert.deepEqual([badSplit.statusCode, (badSplit.json() as { error: { code: string } }).error.code], [400, "bad_request"], "outside the shard");
    const split = await app.inject({ method: "POST", url: "/v1/cluster/shards/1/split" });
    assert.equal(split.statusCode, 200, split.body);
    const child = (split.json() as { child: number }).child;
    assert.ok(child > 2);
    await waitFor("the split recorded", () => node.metaState().shards.has(child), 10_000);
    const first = await app.inject({ method: "POST", url: "/v1/cluster/shards/1/merge" });
    assert.deepEqual([first.statusCode, (first.json() as { error: { code: string } }).error.code], [409, "no_neighbour"]);
    await waitFor("the child merged back", async () => {
      const merge = await app.inject({ method: "POST", url: `/v1/cluster/shards/${child}/merge` });
      assert.ok(merge.statusCode === 200 || (merge.json() as { error: { code: string } }).error.code === "shard_busy", merge.body);
      return merge.statusCode === 200;
    }, 10_000);
    await waitFor("the merge recorded", () => node.metaState().shards.get(child)?.retiredInto === 1, 10_000);
    const listed = (await app.inject({ url: "/v1/cluster/shards" })).json() as { shards: { shard: number }[] };
    assert.deepEqual(listed.shards.map((s) => s.shard), [1, 2], "a retired shard is not listed");
  } finally {
    stopAgents();
    await app.close();
    await node.stop();
  }
});
