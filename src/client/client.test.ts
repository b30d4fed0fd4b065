import { test } from "node:test";
import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import { createServer as createNetServer } from "node:net";
import { execFile } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { ShoalClient, ShoalError } from "./index.js";
import { Transport } from "./transport.js";
import { api, freePorts, nodes, startCluster, stop } from "../cli/testing.js";
import { waitFor } from "../node/testing.js";

const repo = fileURLToPath(new URL("../../../", import.meta.url));

/** A server answering each request with the next of `answers` ([status, body text, headers]), then the last again. */
async function scripted(answers: [number, string, Record<string, string>?][]): Promise<{ url: string; server: Server; seen: string[] }> {
  const seen: string[] = [];
  const server = createServer((req, res) => {
    seen.push(`${req.method} ${req.url} key=${req.headers["idempotency-key"] ?? "-"}`);
    const [status, body, headers] = answers[Math.min(seen.length - 1, answers.length - 1)]!;
    res.writeHead(status, { "content-type": "application/json", ...headers }).end(body);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return { url: `http://127.0.0.1:${(server.address() as { port: number }).port}`, server, seen };
}

test("refusals come back as ShoalErrors from the error table; retryable ones are retried under the same idempotency key", async () => {
  const s = await scripted([
    [503, JSON.stringify({ error: { code: "no_leader", message: "electing" } }), { "retry-after": "0" }],
    [200, JSON.stringify({ version: 7 })],
    [409, JSON.stringify({ error: { code: "version_mismatch", message: "at 7", currentVersion: 7 } })],
    [502, "<html>bad gateway</html>"],
  ]);
  const client = new ShoalClient({ endpoints: [s.url], backoffMsMax: 20, routing: false });
  try {
    assert.deepEqual(await client.collection("c").put("a", { x: 1 }, { idempotencyKey: "k1" }), { version: 7 });
    assert.deepEqual(s.seen, ["PUT /v1/collections/c/records/a key=k1", "PUT /v1/collections/c/records/a key=k1"]);
    const e = await client.collection("c").put("a", 1, { ifVersion: 3 }).catch((x: unknown) => x);
    assert.ok(e instanceof ShoalError);
    assert.deepEqual([e.code, e.status, e.retryable, e.applied, e.details["currentVersion"]], ["version_mismatch", 409, false, "no", 7]);
    // The request's own faults are thrown at once, never sent or retried as if the network had failed.
    const before = s.seen.length;
    await assert.rejects(client.collection("c").put("a", 1, { idempotencyKey: "bad\nkey" }), (e: Error & { code?: string }) => e.code === "ERR_INVALID_CHAR");
    await assert.rejects(client.collection("c").put("a", { n: 1n }), TypeError);
    assert.equal(s.seen.length, before, "nothing sent");
    for (const pipelineDepth of [0, 1.5]) assert.throws(() => new ShoalClient({ endpoints: [s.url], pipelineDepth }), RangeError);
    const bad = await client.collection("c").get("a").catch((x: unknown) => x);
    assert.ok(bad instanceof ShoalError && bad.code === "bad_answer" && /not JSON: <html>bad gateway/.test(bad.message), String(bad));
  } finally {
    client.close();
    s.server.close();
  }
});

test("beyond directInFlightMax requests in flight to one shard map node, the rest go through the endpoints in turn", async () => {
  // The "leader" holds its answers until released; the gateways answer at once.
  const held: (() => void)[] = [];
  const leader = createServer((req, res) => {
    held.push(() => res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ version: 1 })));
  });
  await new Promise<void>((r) => leader.listen(0, "127.0.0.1", r));
  const leaderUrl = `http://127.0.0.1:${(leader.address() as { port: number }).port}`;
  const g1 = await scripted([[200, JSON.stringify({ version: 2 })]]);
  const g2 = await scripted([[200, JSON.stringify({ version: 3 })]]);
  const t = new Transport({ endpoints: [g1.url, leaderUrl, g2.url], timeoutMs: 5000, attemptsMax: 1, backoffMsMax: 10, socketsPerEndpointMax: 8, pipelineDepthMax: 1, directInFlightMax: 2 });
  try {
    const call = () => t.call<{ version: number }>({ method: "PUT", path: "/v1/collections/c/records/a", body: { payload: 1 }, write: true, idempotent: true, prefer: leaderUrl });
    const toLeader = [call(), call()];
    await waitFor("two requests held by the leader", () => held.length === 2);
    // The leader has two in flight: these go to the gateways, in turn, never to the busy leader.
    const spread = await Promise.all([call(), call(), call(), call()]);
    assert.deepEqual(spread.map((a) => a.version).sort(), [2, 2, 3, 3]);
    assert.equal(held.length, 2, "nothing more reached the leader");
    for (const release of held) release();
    assert.deepEqual((await Promise.all(toLeader)).map((a) => a.version), [1, 1]);
    // Free again: the next one goes straight to the leader.
    const next = call();
    await waitFor("the leader asked again", () => held.length === 3);
    held[2]!();
    assert.equal((await next).version, 1);
  } finally {
    t.close();
    leader.close();
    g1.server.close();
    g2.server.close();
  }
});

test("an unreachable endpoint is skipped; a write no node took is not applied, one a node dropped unanswered is unknown; a closed client refuses", async () => {
  const [dead] = await freePorts(1);
  const s = await scripted([[200, JSON.stringify({ id: "a", payload: 1, version: 2 })]]);
  const client = new ShoalClient({ endpoints: [`http://127.0.0.1:${dead}`, s.url], backoffMsMax: 10, routing: false });
  const none = new ShoalClient({ endpoints: [`http://127.0.0.1:${dead}`], backoffMsMax: 10, attemptsMax: 2, routing: false });
  try {
    assert.deepEqual(await client.collection("c").get("a"), { id: "a", payload: 1, version: 2 });
    // A node that is not ready: the next endpoint is asked.
    const notReady = await scripted([[503, JSON.stringify({ error: { code: "not_ready", message: "starting" } }), { "retry-after": "0" }]]);
    const two = new ShoalClient({ endpoints: [notReady.url, s.url], backoffMsMax: 10, routing: false });
    assert.deepEqual(await two.collection("c").get("a"), { id: "a", payload: 1, version: 2 });
    two.close();
    notReady.server.close();
    // A shard map's node that cannot be reached: the endpoints answer at once, within the same attempts.
    const t = new Transport({ endpoints: [s.url], timeoutMs: 2000, attemptsMax: 1, backoffMsMax: 10, socketsPerEndpointMax: 2, pipelineDepthMax: 1, directInFlightMax: 16 });
    assert.deepEqual(await t.call({ method: "GET", path: "/x", write: false, idempotent: true, prefer: `http://127.0.0.1:${dead}` }), { id: "a", payload: 1, version: 2 });
    t.close();
    // Refused connections: the write never left the client, so it was not applied (and was tried again).
    const w = await none.collection("c").put("a", 1).catch((x: unknown) => x);
    assert.ok(w instanceof ShoalError);
    assert.deepEqual([w.code, w.retryable, w.applied], ["unreachable", true, "no"]);
    // A node that took the request and closed the connection unanswered: the write may have been applied.
    const dropper = createNetServer((socket) => socket.once("data", () => socket.destroy()));
    await new Promise<void>((r) => dropper.listen(0, "127.0.0.1", r));
    const dropped = new ShoalClient({ endpoints: [`http://127.0.0.1:${(dropper.address() as { port: number }).port}`], backoffMsMax: 10, attemptsMax: 2, routing: false });
    const d = await dropped.collection("c").put("a", 1).catch((x: unknown) => x);
    dropped.close();
    assert.ok(d instanceof ShoalError);
    assert.deepEqual([d.code, d.applied], ["unreachable", "unknown"]);
    // Dropped unanswered, then refused on the retry: the first attempt may have been applied, so the call's outcome stays unknown.
    const thenRefused = new ShoalClient({ endpoints: [`http://127.0.0.1:${(dropper.address() as { port: number }).port}`, `http://127.0.0.1:${dead}`], backoffMsMax: 10, attemptsMax: 2, routing: false });
    const both = await thenRefused.collection("c").put("a", 1).catch((x: unknown) => x);
    thenRefused.close();
    dropper.close();
    assert.ok(both instanceof ShoalError);
    assert.deepEqual([both.code, both.applied], ["unreachable", "unknown"]);
    assert.match(both.message, /connection refused.*an earlier attempt of this write may have been applied/);
    const r = await none.collection("c").get("a").catch((x: unknown) => x);
    assert.ok(r instanceof ShoalError);
    assert.deepEqual([r.code, r.applied], ["unreachable", "no"]);
    client.close();
    const closed = await client.collection("c").get("a").catch((x: unknown) => x);
    assert.ok(closed instanceof ShoalError && closed.code === "client_closed");
  } finally {
    client.close();
    none.close();
    s.server.close();
  }
});

test("a fresh project that depends on shoal imports shoal/client and uses a 3-node cluster through it; the client routes to the shards' leaders", { timeout: 120_000 }, async (t) => {
  const c = await startCluster();
  // A collection with 3 replicas a shard is placed on 3 nodes the metadata leader sees ready and healthy.
  const allSeen = async () => {
    for (const slot of [1, 2, 3]) if ((await nodes(c, slot)).filter((n) => n.worker === "ready" && n.health === "healthy").length < 3) return false;
    return true;
  };
  await waitFor("3 ready, healthy nodes, as every node sees them", allSeen, 30_000);
  const app = mkdtempSync(join(tmpdir(), "shoal-sdk-app-"));
  try {
    // What `npm install <path to shoal>` leaves: a dependency and a link in node_modules.
    writeFileSync(join(app, "package.json"), JSON.stringify({ name: "app", private: true, type: "module", dependencies: { shoal: `file:${repo}` } }));
    mkdirSync(join(app, "node_modules"));
    symlinkSync(repo, join(app, "node_modules", "shoal"), "dir");
    writeFileSync(join(app, "main.mjs"), `
import { ShoalClient, ShoalError } from "shoal/client";
const client = new ShoalClient({ endpoints: process.argv.slice(2) });
const out = {};
await client.createCollection({ name: "sdk", shards: 2, replicationFactor: 3, vectors: { dim: 3, metric: "cosine" }, payloadIndexes: { n: "integer" } });
const docs = client.collection("sdk");
out.put = await docs.put("a", { n: -1 }, { vector: [1, 0, 0] });
out.get = await docs.get("a", { consistency: "linearizable" });
const many = await docs.upsertMany(Array.from({ length: 1500 }, (_, i) => ({ id: "r" + i, payload: { n: i }, vector: [1, i / 1500, 0.5] })));
out.written = many.filter((r) => "version" in r).length;
const hits = await docs.search([1, 0, 0], { k: 3, consistency: "linearizable" });
out.nearest = hits.results[0].id;
out.filtered = (await docs.search([1, 0, 0], { k: 5, filter: { must: [{ key: "n", range: { gte: 1000 } }] } })).results.map((r) => r.payload.n >= 1000);
out.count = (await docs.count({ filter: { must: [{ key: "n", range: { lt: 100 } }] } })).count;
let scanned = 0;
for await (const r of docs.scan({ pageSize: 400 })) scanned++;
out.scanned = scanned;
out.deleted = await docs.delete("a");
out.gone = await docs.get("a");
try { await docs.put("r1", {}, { vector: [1, 0, 0], ifVersion: 999 }); } catch (e) { out.refused = e instanceof ShoalError ? [e.code, e.status, e.retryable, e.applied] : String(e); }
client.close();
console.log(JSON.stringify(out));
`);
    const endpoints = [1, 2, 3].map((id) => `http://127.0.0.1:${c.http.get(id)}`);
    const { stdout } = await promisify(execFile)(process.execPath, [join(app, "main.mjs"), ...endpoints], { cwd: app, timeout: 90_000 });
    const out = JSON.parse(stdout) as Record<string, unknown>;
    assert.equal((out["put"] as { version: number }).version > 0, true);
    assert.deepEqual(out["get"], { id: "a", payload: { n: -1 }, version: (out["put"] as { version: number }).version });
    assert.equal(out["written"], 1500);
    assert.equal(out["nearest"], "a");
    assert.deepEqual(out["filtered"], [true, true, true, true, true]);
    assert.equal(out["count"], 101, "r0..r99 and a");
    assert.equal(out["scanned"], 1501);
    assert.equal((out["deleted"] as { deleted: boolean }).deleted, true);
    assert.equal(out["gone"], null);
    assert.deepEqual(out["refused"], ["version_mismatch", 409, false, "no"]);

    // The README's example, as printed there, against this cluster.
    const readme = readFileSync(join(repo, "README.md"), "utf8");
    const example = /## From a program[^]*?```js\n([^]*?)```/.exec(readme)?.[1];
    assert.ok(example !== undefined, "the README has the client example");
    writeFileSync(join(app, "readme.mjs"), example.replace(/endpoints: \[[^\]]*\]/, `endpoints: ${JSON.stringify(endpoints)}`));
    const printed = (await promisify(execFile)(process.execPath, [join(app, "readme.mjs")], { cwd: app, timeout: 60_000 })).stdout;
    assert.match(printed, /id: 'n1'/, printed);
    assert.match(printed, /text: 'buy milk'/, printed);
    assert.deepEqual(printed.trim().split("\n").slice(-2).sort(), ["n1", "n2"], printed);

    // Routing: through a gateway that does not lead every shard, requests are forwarded; with the
    // client's shard map they go straight to the leaders and none is.
    const shardsNow = (await api<{ shards: { shard: number; collection: string; leader: number }[] }>(c, 1, "GET", "/v1/cluster/shards")).body.shards.filter((x) => x.collection === "sdk");
    const gateway = [1, 2, 3].find((id) => shardsNow.some((x) => x.leader !== id))!;
    const forwarded = async () => {
      let sum = 0;
      for (const id of [1, 2, 3]) {
        const text = await (await fetch(`http://127.0.0.1:${c.http.get(id)}/metrics`)).text();
        sum += Number(/^shoal_gateway_forwarded_requests_total\{[^}]*\} (\d+)/m.exec(text)?.[1] ?? NaN);
      }
      return sum;
    };
    const traffic = async (client: ShoalClient) => {
      const docs = client.collection("sdk");
      const before = await forwarded();
      for (let i = 0; i < 40; i++) {
        await docs.put(`route${i}`, { n: i }, { vector: [1, 0, i / 40] });
        assert.equal((await docs.get(`route${i}`))?.version !== undefined, true);
      }
      return (await forwarded()) - before;
    };
    const proxied = new ShoalClient({ endpoints: [`http://127.0.0.1:${c.http.get(gateway)}`], routing: false });
    const routed = new ShoalClient({ endpoints: [`http://127.0.0.1:${c.http.get(gateway)}`] });
    try {
      assert.equal(await routed.refreshShardMap(), true);
      const viaGateway = await traffic(proxied);
      const direct = await traffic(routed);
      t.diagnostic(`requests forwarded between nodes: ${viaGateway} through node ${gateway}, ${direct} routed by the client`);
      assert.ok(viaGateway > 0, "node " + gateway + " forwards the requests of shards it does not lead");
      assert.ok(direct <= 2, `routed requests reach the leaders (forwarded: ${direct}, a leader change may cost one)`);
    } finally {
      proxied.close();
      routed.close();
    }

    // The map follows the watch stream: a split shows without a map read (the next is an hour away).
    const watcher = new ShoalClient({ endpoints: [`http://127.0.0.1:${c.http.get(1)}`], mapMaxAgeMs: 3_600_000 });
    try {
      assert.equal(await watcher.refreshShardMap(), true);
      const ids = Array.from({ length: 40 }, (_, i) => `route${i}`);
      const parent = watcher.shardOf("sdk", ids[0]!)!;
      assert.ok(parent !== null, "the map places the id");
      // A leader-balance operator may be moving the shard's leader just now: the split waits for it.
      const split = await api<{ child: number }>(c, 1, "POST", `/v1/cluster/shards/${parent}/split?waitMs=10000`, {});
      assert.equal(split.status, 200, JSON.stringify(split.body));
      await waitFor("the client's map shows the split's new shard", () => ids.some((id) => watcher.shardOf("sdk", id) === split.body.child), 15_000);
    } finally {
      watcher.close();
    }
  } finally {
    await stop(c);
    rmSync(app, { recursive: true, force: true });
  }
});
