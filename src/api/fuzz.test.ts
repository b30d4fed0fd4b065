/**
 * A request fuzzer: generated hostile requests, sent over real HTTP (raw bytes on a TCP socket, so
 * that malformed ones reach the server as written) to a live single node, and every answer checked.
 *
 * The node: a single-node cluster in this process (MultiRaftNode, Gateway, Membership, ShardAgent,
 * PlacementDriver, as `shoal start` wires them), its API on 127.0.0.1 with a 64 KiB body limit. Before
 * the fuzzing, 20 records with varied payloads are written (ids `fixed-…`); requests other than GET
 * and HEAD never name them, nor drain / remove node 1, split / merge a real shard, change the settings
 * (baseVersion never matches) or join a new member (addresses are the node's own or invalid).
 *
 * A case is a batch of 1-10 requests (fast-check arbitraries in fuzz-requests.ts: methods, paths from
 * the real route templates with mutated ids, query strings, headers, bodies, body framing), sent one
 * after the other, each on its own connection; after each batch the node must still be healthy and
 * every `fixed-…` record must read back unchanged (same payload and version). After the last batch,
 * the server must have closed every connection its clients closed. An exception nobody catches (the
 * node's loop dying) fails the run at once, naming the requests just before it.
 *
 * Every answer (fuzz-oracle.ts):
 * - is a well-formed HTTP response, within a per-request deadline (no hang, no reset, no close
 *   without an answer), and the only one (no bytes after it; no body after a HEAD response); the
 *   server closes the connection after it when the request said Connection: close;
 * - has status 200 or a status of the error table (src/api/error-table.ts); every answer >= 400 to a
 *   request other than HEAD is application/json `{"error": {"code", "message", ...}}` with a code of
 *   the table and the table's status for it; a 405 has an Allow header (not listing the method
 *   refused); a code with retryAfterS has a Retry-After header; 500 `internal` has a requestId, and
 *   is reported anyway: the table calls it a bug;
 * - a 200 to a GET of a record is {id, payload, version}; a `fixed-…` record reads back as written.
 * Semantic rules, where the request reaches its route unmutated and well-framed:
 * - a record written with 200 reads back exactly as sent (same JSON, same version); a body accepted
 *   must be UTF-8 JSON; a record deleted with 200 reads 404 not_found;
 * - a body over the limit (application/json, to a route taking one) is refused 413 payload_too_large;
 * - an unknown query parameter is never accepted (200);
 * - body fields of the wrong JSON type (e.g. ifVersion "0", null, true) and integer parameters that
 *   cannot be exact (1e400, 9007199254740993) are refused, not coerced;
 * - join addresses must be host:port with a port in 1-65535.
 *
 * Requests malformed at the HTTP level (decided precisely in fuzz-requests.ts, expectationOf): each
 * defect either restricts the answer's status (where RFC 9112 / 9110 say MUST) or lets the server
 * serve or refuse it (where they say MAY); with several defects, the refusal of any may come first.
 * - Must be a 400, then a close: an invalid Content-Length or two different ones; a Transfer-Encoding
 *   whose final coding is not chunked; no Host, two Host fields or an invalid one; whitespace before a
 *   header's colon; a method that is not a token; a request-target that is empty, has control or
 *   non-ASCII bytes, or is neither origin-form ("/…") nor absolute-form; a malformed HTTP-version.
 *   An unknown method: 400, 404 or 405 (the table has no 501). A head past Node's 16 KiB limit (with
 *   a 1 KiB margin either side): 431, or 414 when the target alone is past it.
 * - A defect in the body only (shorter than its Content-Length then the client's end, broken chunks,
 *   chunked over a body that is not): the server may answer from the head before it reads the body,
 *   answer 400 when it does, or close without an answer once the client's end arrives; a route that
 *   reads the body must not act on it (no 200).
 * - Bytes past the body (Content-Length too small, or a body without framing): the first answer by
 *   the general rules, any further ones only 400 (the leftover read as a next request).
 * - May be served or refused (400): obs-fold, NUL or controls in a value, other malformed header
 *   lines, bare LF line ends, whitespace around the request-target (RFC 9112 §3 lets it separate), a
 *   version other than 1.0 / 1.1, none (HTTP/0.9), two equal Content-Length fields, both
 *   Transfer-Encoding and Content-Length, a misused "*" target.
 * The error table has no 417, 501 or 505 (nor 3xx, 206, 304): those statuses are failures.
 *
 * Running it:
 *   npx tsc -p tsconfig.json && node --test dist/src/api/fuzz.test.js
 * Environment:
 *   SHOAL_FUZZ_RUNS=N        cases (batches of 1-10 requests; default 60, about 300 requests)
 *   SHOAL_FUZZ_SEED=S        the seed (printed at the start and on failure); with the same runs it replays the run
 *   SHOAL_FUZZ_PATH=P        with the seed: replays the shrunk counterexample fast-check printed
 *   SHOAL_FUZZ_SURVEY=1      do not stop at the first failure: run every case, then list each class of
 *                            failure once, with its smallest request and where it occurred (method, route)
 *   SHOAL_FUZZ_DEADLINE_MS   per-request deadline (default 5000)
 *   SHOAL_FUZZ_TIME_LIMIT_MS the whole run, shrinking included (default 120000): interrupted, it
 *                            reports what it found so far
 *   SHOAL_FUZZ_VERBOSE=1     print each request before it is sent (the last one printed before a crash)
 *   SHOAL_FUZZ_LOG=error     the node's log level (default silent): shows the stack of a 500
 * It ends with one line: requests sent and the answers by status and code.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { type AddressInfo, type Socket, createServer } from "node:net";
import { join } from "node:path";
import { isDeepStrictEqual } from "node:util";
import type { FastifyInstance } from "fastify";
import fc from "fast-check";
import { pino } from "pino";
import { Gateway } from "../node/gateway.js";
import { Membership } from "../node/membership.js";
import { MultiRaftNode } from "../node/multi-raft.js";
import { PlacementDriver } from "../node/placement-driver.js";
import { ShardAgent } from "../node/shard-agent.js";
import { waitFor } from "../node/testing.js";
import { ERRORS, isErrorCode } from "./error-table.js";
import { type Exchange, type HttpResponse, send } from "./fuzz-http.js";
import { type JudgeContext, type Violation, envelopeOf, jsonOf, judge, preview, routable } from "./fuzz-oracle.js";
import { type FuzzRequest, type RenderContext, describe, render, requestArb } from "./fuzz-requests.js";
import { buildApi } from "./server.js";

const env = (name: string) => process.env[name];
const BODY_LIMIT = 64 * 1024;
const RUNS = Number(env("SHOAL_FUZZ_RUNS") ?? 60);
const SEED = env("SHOAL_FUZZ_SEED") === undefined ? undefined : Number(env("SHOAL_FUZZ_SEED"));
const PATH = env("SHOAL_FUZZ_PATH");
const SURVEY = env("SHOAL_FUZZ_SURVEY") === "1";
const DEADLINE_MS = Number(env("SHOAL_FUZZ_DEADLINE_MS") ?? 5000);
const TIME_LIMIT_MS = Number(env("SHOAL_FUZZ_TIME_LIMIT_MS") ?? 120_000);
const VERBOSE = env("SHOAL_FUZZ_VERBOSE") === "1";
const LOG_LEVEL = env("SHOAL_FUZZ_LOG") ?? "silent";
const HOST = "127.0.0.1";
/** After a complete response on a connection that may stay open, how long to wait for stray bytes or a close. */
const GRACE_MS = 250;

/**
 * The records written before the fuzzing: varied payloads, ids with every character an id may have.
 * Their ids contain "fixed": the generators never write or delete such an id.
 */
const FIXED: [string, unknown][] = [
  ["fixed-00", { a: 1, b: [true, false, null], c: "x" }],
  ["fixed-01", "unicode ☃ 𝄞 é \u2028 \u0000 end"],
  ["fixed-02", 0],
  ["fixed-03", -1.5],
  ["fixed-04", 9007199254740991],
  ["fixed-05", -9007199254740991],
  ["fixed-06", 5e-324],
  ["fixed-07", 0.1],
  ["fixed-08", true],
  ["fixed-09", null],
  ["fixed-10", []],
  ["fixed-11", {}],
  ["fixed-12", ""],
  ["fixed-13", Array.from({ length: 20 }).reduce<unknown>((inner) => ({ n: inner }), 1)],
  ["fixed-14", Array.from({ length: 500 }, (_, i) => i * 1.5)],
  ["fixed-15", Object.fromEntries(Array.from({ length: 200 }, (_, i) => [`k${i}`, i]))],
  ["fixed-16", { constructor: 1, toString: "x", hasOwnProperty: null, "": { "": [] } }],
  ["fixed-17", "s".repeat(10_000)],
  ["fixed-:@!$&'()*+,;=", { special: "id" }],
  ["fixed-._~", [[[]], [{}], "👩‍👩‍👧"]],
];
const recordPath = (id: string) => `/v1/collections/default/records/${id}`;

let node: MultiRaftNode | undefined;
let app: FastifyInstance | undefined;
let stopAgents = () => {};
let dir: string | undefined;
let renderCtx: RenderContext;
/** The server's side of every connection, and which request each carried (by the client's port). */
const serverSockets = new Set<Socket>();
const requestByPort = new Map<number, string>();
const fixed = new Map<string, { payload: unknown; version: number }>();
const judgeCtx: JudgeContext = { bodyLimit: BODY_LIMIT, fixed };

/** A well-formed request (JSON body when given), its first response or null. */
async function call(method: string, path: string, body?: unknown): Promise<{ ex: Exchange; r: HttpResponse | null }> {
  const payload = body === undefined ? Buffer.alloc(0) : Buffer.from(JSON.stringify(body), "utf8");
  const head = `${method} ${path} HTTP/1.1\r\nHost: ${HOST}:${renderCtx.port}\r\nConnection: close\r\n` +
    (body === undefined ? "" : `Content-Type: application/json\r\nContent-Length: ${payload.length}\r\n`) + "\r\n";
  const ex = await send({ head: Buffer.from(head, "latin1"), body: payload, halfClose: false, isHead: method === "HEAD" }, { host: HOST, port: renderCtx.port, deadlineMs: DEADLINE_MS, graceMs: GRACE_MS, expectClose: true });
  return { ex, r: ex.responses[0] ?? null };
}

/** A read that waits out retryable refusals (an election, a busy node) for a few seconds. */
async function readRecord(id: string): Promise<HttpResponse | null> {
  const deadline = Date.now() + 5000;
  for (;;) {
    const { r } = await call("GET", recordPath(id));
    const code = r === null ? undefined : envelopeOf(r)?.code;
    const retryable = code !== undefined && isErrorCode(code) && ERRORS[code].retryable && code !== "internal";
    if (!retryable || Date.now() > deadline) return r;
    await new Promise((done) => setTimeout(done, 50));
  }
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), "shoal-fuzz-"));
  const n = node = await MultiRaftNode.open({ id: 1, dataDir: dir, listen: { host: HOST, port: 0 }, peers: new Map(), shards: 2, tickMs: 10 });
  const peerPort = await n.start();
  const gateway = new Gateway(n);
  const a = app = await buildApi({ node: n, gateway, logger: pino({ level: LOG_LEVEL }), bodyLimitBytes: BODY_LIMIT });
  a.server.on("connection", (socket: Socket) => {
    serverSockets.add(socket);
    socket.once("close", () => serverSockets.delete(socket));
  });
  const port = Number(new URL(await a.listen({ host: HOST, port: 0 })).port);
  renderCtx = { port, ownPeer: `${HOST}:${peerPort}`, ownHttp: `${HOST}:${port}` };
  const membership = new Membership(n, gateway, { peer: { host: HOST, port: peerPort }, http: { host: HOST, port }, founders: [1], shards: 2, intervalMs: 20 });
  membership.start();
  const agent = new ShardAgent(n, gateway);
  agent.start();
  const pd = new PlacementDriver(n, gateway);
  pd.start();
  stopAgents = () => {
    membership.stop();
    agent.stop();
    pd.stop();
  };
  await waitFor("node 1 registered and the default collection recorded", () => n.metaState().nodes.has(1) && n.metaState().collections.has("default"), 10_000);
  await waitFor("ready", async () => (await call("GET", "/readyz")).r?.status === 200, 10_000);
  for (const [id, payload] of FIXED) {
    const { r } = await call("PUT", recordPath(id), { payload });
    assert.equal(r?.status, 200, `writing ${id}: ${r === null ? "no answer" : preview(r.body)}`);
    const version = (jsonOf(r!.body)?.value as { version: number }).version;
    const back = await readRecord(id);
    assert.deepEqual(back === null ? null : jsonOf(back.body)?.value, { id, payload, version }, `${id} reads back as written`);
    fixed.set(id, { payload, version });
  }
});

/** A step of the cleanup, bounded: a node that crashed may never finish stopping. */
async function bounded(what: string, step: () => Promise<unknown> | undefined): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([step(), new Promise((_, fail) => { timer = setTimeout(() => fail(new Error(`${what}: still running after 10 s`)), 10_000); })]);
  } catch (e) {
    console.log(`fuzz cleanup: ${what} failed: ${(e as Error).message}`);
    // What did not stop (a crashed node's loop) would keep the process, and CI, waiting forever.
    setTimeout(() => process.exit(1), 2000).unref();
  } finally {
    clearTimeout(timer);
  }
}

after(async () => {
  stopAgents();
  // A connection the server keeps after its client left (reported by the test) must not hold the close up.
  app?.server.closeAllConnections();
  await bounded("closing the API", () => app?.close());
  await bounded("stopping the node", () => node?.stop());
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
});

/** An exception nobody caught (the node's loop dying, say) while fuzzing, with the requests that came just before. */
let crash: { error: unknown; after: string[] } | null = null;
const recent: string[] = [];
const onCrash = (error: unknown) => {
  crash ??= { error, after: recent.slice() };
};
const crashReport = () => `the node crashed (an uncaught exception: ${crash!.error instanceof Error ? crash!.error.stack : String(crash!.error)})\n` +
  `after these requests (the last one last):\n${crash!.after.join("\n")}`;

/** The node is up and the records written before the fuzzing are unchanged. */
async function invariants(): Promise<Violation[]> {
  const out: Violation[] = [];
  const health = await call("GET", "/healthz");
  if (health.r?.status !== 200) out.push({ kind: "the node is not healthy after a batch", detail: health.r === null ? `no answer (${health.ex.end})` : `${health.r.status} ${preview(health.r.body)}` });
  const reads = await Promise.all(FIXED.map(async ([id]) => [id, await readRecord(id)] as const));
  for (const [id, r] of reads) {
    const want = fixed.get(id)!;
    const got = r === null ? undefined : (jsonOf(r.body)?.value as { payload?: unknown; version?: unknown } | undefined);
    if (r?.status !== 200 || got === undefined || !isDeepStrictEqual(got.payload, want.payload) || got.version !== want.version) {
      out.push({ kind: "a record written before the fuzzing does not read back unchanged after a batch", detail: `${id}: ${r === null ? "no answer" : `${r.status} ${preview(r.body)}`}` });
    }
  }
  return out;
}

interface Tally { requests: number; cases: number; answers: Map<string, number> }

/** Sends one request and judges the answer; a record written or deleted is read back. */
async function exercise(req: FuzzRequest, tally: Tally): Promise<Violation[]> {
  const r = render(req, renderCtx);
  if (VERBOSE) console.log(`fuzz> ${describe(req)}`);
  recent.push(describe(req));
  if (recent.length > 3) recent.shift();
  const ex = await send({ head: r.head, body: r.body, halfClose: r.halfClose, isHead: r.isHead }, {
    host: HOST, port: renderCtx.port, deadlineMs: DEADLINE_MS, graceMs: GRACE_MS, expectClose: r.expect.mustClose,
    onConnect: (localPort) => requestByPort.set(localPort, describe(req)),
  });
  tally.requests++;
  const first = ex.responses[0];
  const key = first === undefined ? `no answer (${ex.end})` : `${first.status}${r.isHead ? "" : ` ${envelopeOf(first)?.code ?? ""}`}`.trim();
  tally.answers.set(key, (tally.answers.get(key) ?? 0) + 1);
  const out = judge(req, r, ex, judgeCtx);
  if (first?.status !== 200 || req.route !== "record" || !routable(req) || r.expect.defects.length > 0) return out;
  const path = r.target.split("?", 1)[0]!;
  if (req.method === "PUT") {
    // What was accepted is what is stored: the body is UTF-8 JSON, and reads back as sent.
    const sent = jsonOf(r.logicalBody)?.value as { payload?: unknown } | undefined;
    const version = (jsonOf(first.body)?.value as { version?: unknown } | undefined)?.version;
    if (typeof sent !== "object" || sent === null || !Object.hasOwn(sent, "payload")) {
      out.push({ kind: "a record write accepted (200) whose body is not a UTF-8 JSON object with a payload", detail: preview(r.logicalBody) });
      return out;
    }
    const back = await readRecord(decodeURIComponent(path.slice(path.lastIndexOf("/") + 1)));
    const got = back === null ? undefined : (jsonOf(back.body)?.value as { payload?: unknown; version?: unknown } | undefined);
    // JSON cannot tell -0 from 0: compare what the JSON text says.
    const expected = JSON.parse(JSON.stringify(sent.payload) ?? "null") as unknown;
    if (back?.status !== 200 || got === undefined) out.push({ kind: "a record written (200) does not read back", detail: back === null ? "no answer" : `${back.status} ${preview(back.body)}` });
    else if (!isDeepStrictEqual(got.payload, expected) || got.version !== version) {
      out.push({ kind: "a record written (200) reads back different from what was sent", detail: `sent ${preview(JSON.stringify(sent.payload), 120)} (version ${String(version)}), read ${preview(back.body, 120)}` });
    }
  } else if (req.method === "DELETE") {
    const back = await readRecord(decodeURIComponent(path.slice(path.lastIndexOf("/") + 1)));
    if (back?.status !== 404 || envelopeOf(back)?.code !== "not_found") out.push({ kind: "a record deleted (200) still reads", detail: back === null ? "no answer" : `${back.status} ${preview(back.body)}` });
  }
  return out;
}

function summary(tally: Tally, ms: number, seed: number, violations: number): string {
  const answers = [...tally.answers].sort((a, b) => b[1] - a[1]).map(([k, n]) => `${k} ×${n}`).join(", ");
  return `fuzz summary: ${tally.requests} requests in ${tally.cases} cases (seed ${seed}, ${(ms / 1000).toFixed(1)} s): ${answers}; ${violations} violation(s)`;
}

test("the exchange reader takes an event stream's head as its answer also after a 100 Continue (a watch asked with Expect: 100-continue)", async () => {
  // Found by seed 449736560: the reader looked for the stream's head at the start of what arrived only,
  // saw the interim 100, and waited for the deadline as if the server hung.
  const streamHead = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n";
  const sockets: Socket[] = [];
  const server = createServer((socket) => {
    sockets.push(socket);
    socket.on("error", () => undefined);
    socket.write(`HTTP/1.1 100 Continue\r\n\r\n${streamHead}11\r\nevent: snapshot\n\n\r\n`);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  try {
    const port = (server.address() as AddressInfo).port;
    const ex = await send({ head: Buffer.from("GET /v1/cluster/watch HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n", "latin1"),
      body: Buffer.from("{}"), halfClose: false, isHead: false }, { host: "127.0.0.1", port, deadlineMs: 5000, graceMs: 50, expectClose: false });
    assert.deepEqual([ex.end, ex.stream, ex.interim.map((i) => i.status), ex.responses.map((r) => r.status)], ["done", true, [100], [200]]);
  } finally {
    for (const socket of sockets) socket.destroy();
    await new Promise((resolve) => server.close(resolve));
  }
});

test("fuzz: hostile requests get well-formed answers from the error table, and the node keeps its data", async () => {
  const seed = SEED ?? Math.floor(Math.random() * 2 ** 31);
  console.log(`fuzz: seed ${seed}, ${RUNS} cases${SURVEY ? ", survey" : ""} (SHOAL_FUZZ_SEED=${seed} SHOAL_FUZZ_RUNS=${RUNS} replays it)`);
  const tally: Tally = { requests: 0, cases: 0, answers: new Map() };
  /** Survey mode: each class of failure, with its smallest request. */
  const classes = new Map<string, { count: number; size: number; example: string; where: Map<string, number> }>();
  let violations = 0;
  const started = Date.now();
  const arb = fc.array(requestArb({ bodyLimit: BODY_LIMIT, fixedIds: FIXED.map(([id]) => id) }), { minLength: 1, maxLength: 10 });
  const property = fc.asyncProperty(arb, async (batch) => {
    // Once the node crashed nothing more is learnt (and shrinking must not blame another batch).
    if (crash !== null) return;
    tally.cases++;
    const found: { req: FuzzRequest | null; v: Violation }[] = [];
    for (const req of batch) {
      for (const v of await exercise(req, tally)) found.push({ req, v });
      if (crash !== null) throw new Error(crashReport());
    }
    for (const v of await invariants()) found.push({ req: null, v });
    if (crash !== null) throw new Error(crashReport());
    if (found.length === 0) return;
    violations += found.length;
    const show = ({ req, v }: (typeof found)[number]) =>
      `- ${v.kind}: ${v.detail}\n  ${req === null ? `after the batch:\n  ${batch.map(describe).join("\n  ")}` : describe(req).replaceAll("\n", "\n  ")}`;
    if (!SURVEY) throw new Error(`${found.length} violation(s):\n${found.map(show).join("\n")}`);
    for (const f of found) {
      const size = f.req === null ? Infinity : (() => {
        const r = render(f.req, renderCtx);
        return r.head.length + r.body.length;
      })();
      const where = f.req === null ? "after a batch" : `${f.req.method.slice(0, 12)} ${f.req.route}`;
      const c = classes.get(f.v.kind) ?? { count: 0, size: Infinity, example: "", where: new Map<string, number>() };
      c.count++;
      c.where.set(where, (c.where.get(where) ?? 0) + 1);
      if (size < c.size) Object.assign(c, { size, example: show(f) });
      classes.set(f.v.kind, c);
    }
  });
  let details: fc.RunDetails<[FuzzRequest[]]> | undefined;
  process.on("uncaughtException", onCrash);
  process.on("unhandledRejection", onCrash);
  try {
    details = await fc.check(property, {
      numRuns: RUNS, seed, ...(PATH !== undefined ? { path: PATH } : {}), interruptAfterTimeLimit: TIME_LIMIT_MS, markInterruptAsFailure: false, includeErrorInReport: true,
    });
  } finally {
    process.off("uncaughtException", onCrash);
    process.off("unhandledRejection", onCrash);
    console.log(summary(tally, Date.now() - started, seed, violations));
  }
  // Every client has closed its connection: the server must have let go of them all (a connection it
  // keeps holds a socket, and a graceful shutdown, until something else ends it).
  let lingering: string[] = [];
  for (let i = 0; i < 20; i++) {
    lingering = [...serverSockets].map((s) => requestByPort.get(s.remotePort ?? -1) ?? `(a connection from port ${s.remotePort ?? "?"})`);
    if (lingering.length === 0) break;
    await new Promise((done) => setTimeout(done, 100));
  }
  const failures: string[] = [];
  if (crash !== null) failures.push(`${crashReport()}\n(seed ${seed}: SHOAL_FUZZ_SEED=${seed} SHOAL_FUZZ_RUNS=${RUNS} replays the run)`);
  if (details.failed && crash === null) failures.push(`${fc.defaultReportMessage(details)}\n(replay: SHOAL_FUZZ_SEED=${details.seed} SHOAL_FUZZ_PATH=${details.counterexamplePath ?? ""})`);
  if (classes.size > 0) {
    const list = [...classes].sort((a, b) => b[1].count - a[1].count).map(([kind, c]) => {
      const where = [...c.where].sort((a, b) => b[1] - a[1]).slice(0, 8).map(([w, n]) => `${w} ×${n}`).join(", ");
      return `## ${kind} (×${c.count}: ${where})\n${c.example}`;
    });
    failures.push(`${classes.size} class(es) of failure (seed ${seed}):\n${list.join("\n")}`);
  }
  if (lingering.length > 0) {
    failures.push(`## server-side connections still open 2 s after their clients closed them (×${lingering.length}), opened by:\n` +
      lingering.map((d) => `- ${d.replaceAll("\n", "\n  ")}`).join("\n"));
  }
  if (failures.length > 0) assert.fail(failures.join("\n\n"));
  assert.ok(tally.requests > 0, "requests were sent");
});
