import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { request } from "node:http";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { FastifyInstance, InjectOptions } from "fastify";
import { pino } from "pino";
import { Validator } from "@seriousme/openapi-schema-validator";
import { Gateway } from "../node/gateway.js";
import { META_GROUP, MultiRaftNode } from "../node/multi-raft.js";
import { waitFor } from "../node/testing.js";
import { ERRORS, isErrorCode } from "./error-table.js";
import { buildApi, decodeCursor, encodeCursor } from "./server.js";

const BODY_LIMIT_BYTES = 64 << 10;
let node: MultiRaftNode;
let app: FastifyInstance;
let dir: string;
let port: number;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), "shoal-envelope-"));
  node = await MultiRaftNode.open({ id: 1, dataDir: dir, listen: { host: "127.0.0.1", port: 0 }, peers: new Map(), shards: 2, tickMs: 10 });
  await node.start();
  app = await buildApi({ node, gateway: new Gateway(node), logger: pino({ level: "silent" }), bodyLimitBytes: BODY_LIMIT_BYTES });
  // Not /readyz: with no membership running, the shard map is never recorded, so the node is never ready.
  await waitFor("leaders", () => node.leaderOf(META_GROUP) !== 0 && node.status().groups.every((g) => g.lead !== 0));
  port = Number(new URL(await app.listen({ host: "127.0.0.1", port: 0 })).port);
});

after(async () => {
  await app?.close();
  await node?.stop();
  rmSync(dir, { recursive: true, force: true });
});

const rec = (id: string) => `/v1/collections/default/records/${id}`;

/** Asserts the envelope: the code is in the table and the status is the table's. */
function assertEnvelope(what: string, status: number, headers: Record<string, unknown>, text: string, code: string): Record<string, unknown> {
  const body = JSON.parse(text) as { error: { code: string; message: string } & Record<string, unknown> };
  assert.equal(body.error.code, code, `${what}: ${text}`);
  assert.ok(isErrorCode(code), `${what}: ${code} is in the error table`);
  assert.equal(status, ERRORS[code].status, what);
  assert.ok(body.error.message.length > 0, what);
  if ("retryAfterS" in ERRORS[code]) assert.ok(headers["retry-after"] !== undefined, `${what}: Retry-After`);
  return body.error;
}

async function refused(what: string, req: InjectOptions, code: string): Promise<Record<string, unknown>> {
  const r = await app.inject(req);
  return assertEnvelope(what, r.statusCode, r.headers, r.body, code);
}

test("bodies are bounded and stored exactly: nesting, fields, keys, non-finite and unsafe numbers, __proto__", async () => {
  const before = node.counters.proposals;
  const put = (payload: string) => ({ method: "PUT" as const, url: rec("x"), payload, headers: { "content-type": "application/json" } });
  const n = 5000;
  // Once killed a node (the log's encoder overflowed its stack).
  const deep = await refused("deep nesting", put(`{"payload":${"[".repeat(n)}${"]".repeat(n)}}`), "limit_exceeded");
  assert.equal(deep.limit, "depthMax");
  await refused("1e400", put(`{"payload": 1e400}`), "unsafe_number");
  const unsafe = await refused("2^53 + 1", put(`{"payload": {"n": [1, 9007199254740993]}}`), "unsafe_number");
  assert.equal(unsafe.field, "payload.n[1]", "the field is named");
  await refused("__proto__", put(`{"payload": {"__proto__": {"x": 1}}}`), "forbidden_key");
  await refused("many fields", put(JSON.stringify({ payload: Array.from({ length: 10_001 }, () => 0) })), "limit_exceeded");
  await refused("long key", put(JSON.stringify({ payload: { ["k".repeat(1025)]: 1 } })), "limit_exceeded");
  await refused("trailing comma", put(`{"payload": 1,}`), "invalid_json");
  await refused("empty body", put(""), "invalid_json");
  await refused("text/plain", { method: "PUT", url: rec("x"), payload: "1", headers: { "content-type": "text/plain" } }, "unsupported_media_type");
  assert.equal(node.counters.proposals, before, "nothing refused was proposed");
  const exact = { n: 9007199254740991, f: 1.5e308, tiny: 5e-324, s: "x".repeat(100), nested: [[[{ a: null }]]] };
  const ok = await app.inject({ method: "PUT", url: rec("exact"), payload: { payload: exact } });
  assert.equal(ok.statusCode, 200, ok.body);
  assert.deepEqual((await app.inject({ url: rec("exact") })).json().payload, exact, "stored as sent");
});

test("one envelope for the framework's refusals: 405 with Allow, unknown parameters named, bad URLs, cursors", async () => {
  const wrong = await app.inject({ method: "POST", url: rec("x"), payload: { payload: 1 } });
  assertEnvelope("POST on a record", wrong.statusCode, wrong.headers, wrong.body, "method_not_allowed");
  assert.equal(wrong.headers.allow, "DELETE, GET, HEAD, PUT");
  const unknownPut = await refused("unknown parameter on PUT", { method: "PUT", url: `${rec("x")}?consistancy=eventual&b=1`, payload: { payload: 1 } }, "unknown_parameter");
  assert.deepEqual(unknownPut.parameters, ["consistancy", "b"]);
  await refused("unknown parameter on GET", { url: `${rec("x")}?consistancy=eventual` }, "unknown_parameter");
  await refused("bad percent-encoding", { url: "/v1/collections/%zz/records" }, "bad_request");
  await refused("very long id", { url: rec("a".repeat(2000)) }, "uri_too_long");
  await refused("malformed cursor", { url: "/v1/collections/default/records?cursor=s2" }, "bad_cursor");
  await refused("no route", { url: "/v2/nothing" }, "route_not_found");
  const missing = await app.inject({ method: "DELETE", url: rec("never-written") });
  assert.deepEqual(missing.json(), { version: (missing.json() as { version: number }).version, deleted: false }, "a delete says it found nothing");
  assert.equal(decodeCursor(encodeCursor("s:1")), "s:1");
  assert.throws(() => decodeCursor(`${encodeCursor("s1")}=`), /cursor/);
});

/** One raw HTTP exchange: the response's head and body, or how the connection ended. */
function raw(bytes: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, "127.0.0.1");
    let text = "";
    socket.setTimeout(5000, () => reject(new Error("no answer within 5 s")));
    socket.on("data", (d) => (text += d.toString())).on("end", () => resolve(text)).on("error", reject);
    socket.end(bytes);
  });
}

test("real sockets: oversized bodies get 413 (not a reset), huge headers 431, garbage 400, all in the envelope", async () => {
  for (const sizeBytes of [BODY_LIMIT_BYTES + 1, 16 << 20]) {
    // A client that sends its whole body before reading the answer (no Expect: 100-continue).
    const answer = await new Promise<{ status: number; text: string }>((resolve, reject) => {
      const req = request({ host: "127.0.0.1", port, method: "PUT", path: rec("big"), headers: { "content-type": "application/json", "content-length": sizeBytes } }, (res) => {
        let text = "";
        res.on("data", (c: Buffer) => (text += c.toString())).on("end", () => resolve({ status: res.statusCode!, text }));
      });
      req.on("error", reject);
      req.end(Buffer.alloc(sizeBytes, 0x20));
    });
    assertEnvelope(`${sizeBytes} bytes`, answer.status, { }, answer.text, "payload_too_large");
  }
  const huge = await raw(`GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${"a".repeat(20_000)}\r\n\r\n`);
  assert.match(huge, /^HTTP\/1\.1 431 /);
  assert.match(huge, /"code":"headers_too_large"/);
  const garbage = await raw("NOT HTTP AT ALL\r\n\r\n");
  assert.match(garbage, /^HTTP\/1\.1 400 /);
  assert.match(garbage, /"code":"bad_request"/);
  assert.equal((await app.inject({ url: "/healthz" })).statusCode, 200, "the node is up");
});

test("a CONNECT with a body is refused (405) and its connection goes once the client closes (it stayed open for good)", async () => {
  const serverSide = new Map<number, import("node:net").Socket>();
  const onConnection = (s: import("node:net").Socket) => serverSide.set(s.remotePort ?? -1, s);
  app.server.on("connection", onConnection);
  try {
    const socket = connect(port, "127.0.0.1");
    await new Promise((r) => socket.once("connect", r));
    const localPort = socket.localPort!;
    let text = "";
    socket.on("data", (d) => (text += d.toString())).on("error", () => undefined);
    const bodyBytes = 3 << 20;
    socket.write(`CONNECT /v1/collections/default/records HTTP/1.1\r\nHost: x\r\nContent-Length: ${bodyBytes}\r\n\r\n`);
    socket.write(Buffer.alloc(bodyBytes, 0x61));
    await waitFor("the answer", () => /\r\n\r\n\{.*\}$/s.test(text), 10_000);
    assert.match(text, /^HTTP\/1\.1 405 /);
    assert.match(text, /"code":"method_not_allowed"/);
    const server = serverSide.get(localPort);
    assert.ok(server !== undefined, "the server saw the connection");
    socket.destroy();
    await waitFor("the server lets the connection go", () => server.destroyed, 10_000);
  } finally {
    app.server.off("connection", onConnection);
  }
});

test("the OpenAPI document is valid, names every route's responses with schemas and operationIds, and is browsable at /docs", async () => {
  const doc = (await app.inject({ url: "/v1/openapi.json" })).json() as { paths: Record<string, Record<string, { operationId?: string; responses: Record<string, { description: string; content?: unknown }> }>> };
  const verdict = await new Validator().validate(doc as never);
  assert.ok(verdict.valid, JSON.stringify(verdict.errors));
  for (const path of ["/healthz", "/readyz", "/metrics", "/v1/collections/{collection}/records/{id}"]) assert.ok(path in doc.paths, path);
  const ids = new Set<string>();
  for (const [path, ops] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(ops)) {
      assert.ok(op.operationId !== undefined && !ids.has(op.operationId), `${method} ${path}: a unique operationId`);
      ids.add(op.operationId);
      assert.ok("200" in op.responses && "500" in op.responses, `${method} ${path}: success and internal error`);
      for (const [status, r] of Object.entries(op.responses)) {
        assert.notEqual(r.description, "Default Response", `${method} ${path} ${status}: described`);
        assert.ok(r.content !== undefined, `${method} ${path} ${status}: a schema`);
      }
    }
  }
  const put = doc.paths["/v1/collections/{collection}/records/{id}"]!.put!;
  assert.match(put.responses["409"]!.description, /version_mismatch/);
  assert.match(put.responses["504"]!.description, /timeout.*applied: unknown/);
  const page = await app.inject({ url: "/docs/" });
  assert.equal(page.statusCode, 200);
  assert.match(page.body, /swagger/i);
});

test("a 503 always means not applied; an unknown outcome is a 504 (or a 500 bug) and says to retry with the same idempotency key", () => {
  for (const [code, e] of Object.entries(ERRORS)) {
    if (e.status === 503) assert.equal(e.applied, "no", `${code}: a 503 must be certainly not applied`);
    if (e.applied === "unknown") {
      assert.ok(e.status === 504 || e.status === 500, `${code}: an unknown outcome is answered 504 (or 500), not ${e.status}`);
      if (e.status === 504) assert.match(e.meaning, /Idempotency-Key/, `${code}: says how to retry safely`);
    }
  }
});

test("the README's error table is the error table", async () => {
  const readme = readFileSync(fileURLToPath(new URL("../../../README.md", import.meta.url)), "utf8");
  const rows = new Map([...readme.matchAll(/^\| `([a-z_]+)` \| (\d{3}) \| (yes|no) \| (no|unknown) \|/gm)].map((m) => [m[1]!, m.slice(2, 5).join(" ")]));
  for (const [code, e] of Object.entries(ERRORS)) {
    assert.equal(rows.get(code), `${e.status} ${e.retryable ? "yes" : "no"} ${e.applied}`, `README row of ${code}`);
  }
  assert.equal(rows.size, Object.keys(ERRORS).length, "no README row for a code that does not exist");
});
