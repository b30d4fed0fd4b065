import { test } from "node:test";
import assert from "node:assert/strict";
import { type Server, type Socket, createServer } from "node:net";
import { Http1Pool, waitedForPool, wasNotSent } from "./http1.js";
import { freePorts } from "../cli/testing.js";

/**
 * A raw TCP server speaking just enough HTTP/1.1 to script a node's answers byte by byte: each request
 * (head, then a Content-Length body) is handed to `answer`, which writes what it likes on the socket.
 */
async function rawServer(answer: (req: string, socket: Socket, n: number) => void): Promise<{ base: URL; server: Server; connections: () => number; closed: () => number; requests: string[] }> {
  let connections = 0;
  let closed = 0;
  const requests: string[] = [];
  const server = createServer((socket) => {
    connections++;
    let buf = "";
    socket.on("data", (chunk) => {
      buf += chunk.toString("latin1");
      for (;;) {
        const end = buf.indexOf("\r\n\r\n");
        if (end < 0) return;
        const length = Number(/\r\ncontent-length: *(\d+)/i.exec(buf.slice(0, end))?.[1] ?? 0);
        if (buf.length < end + 4 + length) return;
        const req = buf.slice(0, end + 4 + length);
        buf = buf.slice(end + 4 + length);
        requests.push(req);
        answer(req, socket, requests.length);
      }
    });
    socket.on("error", () => {});
    socket.on("close", () => closed++);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return { base: new URL(`http://127.0.0.1:${(server.address() as { port: number }).port}`), server, connections: () => connections, closed: () => closed, requests };
}

const ok = (body: string, extra = "") => `HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n${extra}\r\n${body}`;

test("answers framed by Content-Length, by chunks split across packets, and by the connection's end; keep-alive connections are reused", async () => {
  const s = await rawServer((req, socket, n) => {
    if (req.startsWith("GET /chunked")) {
      // Chunk sizes, data and the last chunk arrive in separate packets, some cut mid-line.
      const parts = ["HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nshoal-session: 3:7\r\n\r\n4\r", "\n{\"a\"\r\n", "5;ext=1\r\n:12}\n\r\n0\r\n", "\r\n"];
      parts.forEach((p, i) => setTimeout(() => socket.write(p), i * 5));
    } else if (req.startsWith("GET /close")) {
      socket.end("HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n{\"till\":\"end\"}");
    } else socket.write(ok(JSON.stringify({ n, body: req.split("\r\n\r\n")[1] })));
  });
  const pool = new Http1Pool(4);
  try {
    const a = await pool.request(s.base, "PUT", "/x", { "content-type": "application/json" }, Buffer.from("{\"v\":1}"), 1000);
    assert.equal(a.status, 200);
    assert.deepEqual(JSON.parse(a.body.toString()), { n: 1, body: "{\"v\":1}" });
    assert.match(s.requests[0]!, /^PUT \/x HTTP\/1\.1\r\nHost: 127\.0\.0\.1:\d+\r\ncontent-type: application\/json\r\nContent-Length: 7\r\n\r\n/);
    const c = await pool.request(s.base, "GET", "/chunked", {}, undefined, 1000);
    assert.deepEqual([c.status, c.body.toString(), c.headers.get("shoal-session")], [200, "{\"a\":12}\n", "3:7"]);
    assert.equal(s.connections(), 1, "the connection was kept and used again");
    const e = await pool.request(s.base, "GET", "/close", {}, undefined, 1000);
    assert.deepEqual(JSON.parse(e.body.toString()), { till: "end" });
    const after = await pool.request(s.base, "GET", "/y", {}, undefined, 1000);
    assert.equal(JSON.parse(after.body.toString()).n, 4);
    assert.equal(s.connections(), 2, "a connection the node closed is not used again");
  } finally {
    pool.close();
    s.server.close();
  }
});

test("requests beyond the socket bound wait for a free connection; a connection closed while idle is not reused; an answer's time limit ends its connection", async () => {
  const s = await rawServer((req, socket, n) => {
    if (req.startsWith("GET /slow")) return; // never answered
    setTimeout(() => socket.write(ok(String(n))), 5);
    if (req.startsWith("GET /bye")) setTimeout(() => socket.end(), 20); // an idle connection ended by the node
  });
  const pool = new Http1Pool(1);
  try {
    const answers = await Promise.all([1, 2, 3].map((i) => pool.request(s.base, "GET", `/q${i}`, {}, undefined, 2000)));
    assert.deepEqual(answers.map((a) => Number(a.body.toString())), [1, 2, 3]);
    assert.equal(s.connections(), 1, "three requests over one connection, in turn");
    await pool.request(s.base, "GET", "/bye", {}, undefined, 2000);
    // Once the node's side is closed, the client has seen the node end it (its own end answered the node's).
    const closedIdle = Date.now() + 2000;
    while (s.closed() === 0 && Date.now() < closedIdle) await new Promise((r) => setTimeout(r, 5));
    assert.equal(s.closed(), 1);
    assert.equal((await pool.request(s.base, "GET", "/after", {}, undefined, 2000)).status, 200, "a request after the node closed an idle connection is answered");
    assert.equal(s.connections(), 2);
    const slow = await pool.request(s.base, "GET", "/slow", {}, undefined, 100).catch((e: unknown) => e);
    assert.equal((slow as { code?: string }).code, "ETIMEDOUT");
    assert.equal((await pool.request(s.base, "GET", "/again", {}, undefined, 2000)).status, 200, "the pool works after a time-out");
    assert.equal(s.connections(), 3, "the timed-out connection was closed, not reused");
  } finally {
    pool.close();
    s.server.close();
  }
});

test("a refused connection, a header that would break framing, and a closed pool fail with their codes", async () => {
  const [dead] = await freePorts(1);
  const pool = new Http1Pool(2);
  const refused = await pool.request(new URL(`http://127.0.0.1:${dead}`), "GET", "/", {}, undefined, 1000).catch((e: unknown) => e);
  assert.equal((refused as { code?: string }).code, "ECONNREFUSED");
  assert.equal(wasNotSent(refused), true, "a refused connection sent nothing");
  const s = await rawServer(() => {});
  try {
    await assert.rejects(pool.request(s.base, "PUT", "/x", { "idempotency-key": "a\r\nb" }, undefined, 1000), (e: Error & { code?: string }) => e.code === "ERR_INVALID_CHAR");
    await assert.rejects(pool.request(s.base, "PUT", "/x", { "bad name": "v" }, undefined, 1000), (e: Error & { code?: string }) => e.code === "ERR_INVALID_CHAR");
    await assert.rejects(pool.request(s.base, "GET", "/a b", {}, undefined, 1000), (e: Error & { code?: string }) => e.code === "ERR_UNESCAPED_CHARACTERS");
    assert.equal(s.connections(), 0, "nothing was sent");
    const settled = (p: Promise<unknown>) => p.then(() => null, (e: unknown) => e as Error & { code?: string });
    const inFlight = [settled(pool.request(s.base, "GET", "/never", {}, undefined, 5000)), settled(pool.request(s.base, "GET", "/never", { "x-note": "caf\u00e9" }, undefined, 5000))];
    // Beyond the bound of 2: waits; one that waits past its own time limit was never sent, and the node is not to blame.
    const waitedOut = await settled(pool.request(s.base, "GET", "/waited", {}, undefined, 50));
    assert.deepEqual([waitedOut?.code, wasNotSent(waitedOut), waitedForPool(waitedOut)], ["ETIMEDOUT", true, true]);
    const queued = settled(pool.request(s.base, "GET", "/queued", {}, undefined, 5000));
    const sent = Date.now() + 2000;
    while (s.requests.length < 2 && Date.now() < sent) await new Promise((r) => setTimeout(r, 10));
    assert.ok(s.requests.some((r) => r.includes("x-note: caf\xe9\r\n")), `a value with obs-text (0x80-0xff) is sent as is: ${JSON.stringify(s.requests)}`);
    pool.close();
    // Closing ends the requests in flight (sent: their outcome is the node's) and those still waiting (never sent).
    for (const e of await Promise.all(inFlight)) assert.deepEqual([e?.code, wasNotSent(e)], ["ECONNRESET", false]);
    const q = await queued;
    assert.deepEqual([q?.code, wasNotSent(q)], ["ECONNRESET", true]);
    const after = await settled(pool.request(s.base, "GET", "/", {}, undefined, 1000));
    assert.deepEqual([after?.code, wasNotSent(after)], ["ECONNRESET", true]);
    const ended = Date.now() + 2000;
    while (s.closed() < 2 && Date.now() < ended) await new Promise((r) => setTimeout(r, 10));
    assert.equal(s.closed(), 2, "the connections in use were closed");
  } finally {
    pool.close();
    s.server.close();
  }
});

test("an idle pooled connection does not keep the process alive (a command exits once it is done, without closing its client)", async () => {
  const s = await rawServer((_req, socket) => socket.write(ok("{}")));
  try {
    const script = `import { Http1Pool } from ${JSON.stringify(new URL("./http1.js", import.meta.url).href)};
      const a = await new Http1Pool(2).request(new URL(${JSON.stringify(s.base.href)}), "GET", "/", {}, undefined, 5000);
      console.log("answered", a.status);`;
    const { execFile } = await import("node:child_process");
    const out = await new Promise<{ code: number | null; stdout: string; killed: boolean }>((resolve) => {
      const child = execFile(process.execPath, ["--input-type=module", "-e", script], { timeout: 20_000 }, (_e, stdout) => resolve({ code: child.exitCode, stdout, killed: child.killed }));
    });
    assert.equal(out.stdout.trim(), "answered 200");
    assert.equal(out.killed, false, "the process ended by itself, not by the time limit (the pool's idle timer is 30 s)");
    assert.equal(out.code, 0);
    assert.equal(s.connections(), 1);
  } finally {
    s.server.close();
  }
});

/** Each request's path and the connection (1, 2, …, in the order they opened) it arrived on. */
function connectionsOf(): { of: (socket: Socket) => number; seen: [string, number][] } {
  const ids = new WeakMap<Socket, number>();
  let next = 1;
  const seen: [string, number][] = [];
  return {
    seen,
    of: (socket) => {
      let id = ids.get(socket);
      if (id === undefined) ids.set(socket, (id = next++));
      return id;
    },
  };
}

const pathOf = (req: string) => req.split(" ")[1]!;

test("the reads of one tick are pipelined on one connection up to the depth, and each answer reaches its own request", async () => {
  const conns = connectionsOf();
  // Answers after a pause, so that the reads of one tick are all in flight together.
  const s = await rawServer((req, socket) => {
    conns.seen.push([pathOf(req), conns.of(socket)]);
    setTimeout(() => socket.write(ok(JSON.stringify({ path: pathOf(req) }))), 20);
  });
  // A clock that stands still: the reads in flight are never too old to join (JOIN_AGE_MS_MAX).
  const pool = new Http1Pool(4, 4, () => 1000);
  try {
    await pool.request(s.base, "GET", "/first", {}, undefined, 2000);
    const paths = ["/a", "/b", "/c", "/d", "/e", "/f"];
    const answers = await Promise.all(paths.map((p) => pool.request(s.base, "GET", p, {}, undefined, 2000)));
    assert.deepEqual(answers.map((a) => JSON.parse(a.body.toString()).path), paths, "answers matched to their requests in order");
    // Four on the connection that was idle (the depth), then one new connection each: a connection
    // still being opened takes no read.
    const on = new Map(conns.seen);
    assert.deepEqual(["/first", "/a", "/b", "/c", "/d"].map((p) => on.get(p)), [1, 1, 1, 1, 1], JSON.stringify(conns.seen));
    assert.deepEqual(new Set([on.get("/e"), on.get("/f")]), new Set([2, 3]), JSON.stringify(conns.seen));
    assert.equal(s.connections(), 3);
    // All three idle again: the reads of one tick go out together on one of them.
    await Promise.all(["/g", "/h", "/i"].map((p) => pool.request(s.base, "GET", p, {}, undefined, 2000)));
    assert.equal(new Set(conns.seen.slice(7).map(([, c]) => c)).size, 1, `three reads of one tick on one connection: ${JSON.stringify(conns.seen.slice(7))}`);
  } finally {
    pool.close();
    s.server.close();
  }
});

test("a read joins only reads sent shortly before it: never a write, nor reads older than the join age, nor reads due after it", async () => {
  const conns = connectionsOf();
  // Answers go out in each connection's order, as a node's do: one held back holds back those behind it.
  const queues = new Map<Socket, { text: string; ready: boolean }[]>();
  const flush = (socket: Socket) => {
    const q = queues.get(socket)!;
    while (q.length > 0 && q[0]!.ready) socket.write(q.shift()!.text);
  };
  const held: (() => void)[] = [];
  const s = await rawServer((req, socket) => {
    conns.seen.push([pathOf(req), conns.of(socket)]);
    if (!queues.has(socket)) queues.set(socket, []);
    const entry = { text: ok(JSON.stringify({ path: pathOf(req) })), ready: false };
    queues.get(socket)!.push(entry);
    const answer = () => {
      entry.ready = true;
      flush(socket);
    };
    if (pathOf(req).startsWith("/hold")) held.push(answer);
    else setTimeout(answer, 5);
  });
  const arrived = async (n: number) => {
    const deadline = Date.now() + 2000;
    while (s.requests.length < n && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
    assert.equal(s.requests.length, n, `requests arrived: ${JSON.stringify(conns.seen)}`);
  };
  let nowMs = 1000;
  const pool = new Http1Pool(6, 4, () => nowMs);
  try {
    // Six connections, all idle (writes are never pipelined: one connection each).
    await Promise.all([1, 2, 3, 4, 5, 6].map((i) => pool.request(s.base, "PUT", `/open${i}`, {}, Buffer.from("{}"), 2000)));
    assert.equal(s.connections(), 6);
    const read = pool.request(s.base, "GET", "/hold-read", {}, undefined, 5000);
    const write = pool.request(s.base, "PUT", "/hold-write", {}, Buffer.from("{}"), 5000);
    const behindWrite = pool.request(s.base, "GET", "/after-write", {}, undefined, 5000);
    await arrived(9);
    nowMs += 50; // past the join age of /hold-read (JOIN_AGE_MS_MAX, 10 ms)
    const later = pool.request(s.base, "GET", "/later", {}, undefined, 5000);
    await arrived(10);
    nowMs += 50;
    // Due before the reads of its tick: its own connection (its time-out must not end theirs).
    const due = [pool.request(s.base, "GET", "/long", {}, undefined, 5000), pool.request(s.base, "GET", "/short", {}, undefined, 1000)];
    await arrived(12);
    const on = new Map(conns.seen);
    assert.equal(on.get("/hold-read"), on.get("/after-write"), `the read after the write joined the read before it: ${JSON.stringify(conns.seen)}`);
    assert.equal(new Set(["/hold-read", "/hold-write", "/later", "/long", "/short"].map((p) => on.get(p))).size, 5,
      `the write, the read sent once the others were too old to join, and the read due sooner each on a connection of their own: ${JSON.stringify(conns.seen)}`);
    assert.deepEqual((await Promise.all([later, ...due])).map((a) => JSON.parse(a.body.toString()).path), ["/later", "/long", "/short"]);
    held.shift()!();
    held.shift()!();
    assert.deepEqual((await Promise.all([read, behindWrite, write])).map((a) => JSON.parse(a.body.toString()).path), ["/hold-read", "/after-write", "/hold-write"]);
  } finally {
    pool.close();
    s.server.close();
  }
});

test("a time-out, or a node closing after an answer, fails every read pipelined behind it as sent", async () => {
  const s = await rawServer((req, socket) => {
    const path = pathOf(req);
    if (path === "/never" || path === "/behind") return; // unanswered (a node answers in order: nothing after /never)
    if (path === "/last") socket.end(ok(JSON.stringify({ path }), "connection: close\r\n"));
    else socket.write(ok(JSON.stringify({ path })));
  });
  const pool = new Http1Pool(1, 8, () => 1000);
  const settled = (p: Promise<unknown>) => p.then(() => null, (e: unknown) => e as Error & { code?: string });
  try {
    await pool.request(s.base, "GET", "/open", {}, undefined, 2000);
    const stuck = [settled(pool.request(s.base, "GET", "/never", {}, undefined, 100)), settled(pool.request(s.base, "GET", "/behind", {}, undefined, 5000))];
    for (const e of await Promise.all(stuck)) assert.deepEqual([e?.code, e !== null && wasNotSent(e)], ["ETIMEDOUT", false]);
    await pool.request(s.base, "GET", "/open-again", {}, undefined, 2000);
    const last = pool.request(s.base, "GET", "/last", {}, undefined, 2000);
    const after = settled(pool.request(s.base, "GET", "/after-close", {}, undefined, 2000));
    assert.equal(JSON.parse((await last).body.toString()).path, "/last");
    const e = await after;
    assert.deepEqual([e?.code, e !== null && wasNotSent(e)], ["ECONNRESET", false], "sent behind the answer that closed the connection: its outcome is unknown to the pool");
    assert.equal((await pool.request(s.base, "GET", "/fresh", {}, undefined, 2000)).status, 200, "a new connection after both");
  } finally {
    pool.close();
    s.server.close();
  }
});

test("a pipelined read answered after the time limit of the read before it, but within its own, is answered, on the same connection", async () => {
  // The connection's one timer follows its oldest request: once that one is answered, the timer's firing
  // at its limit must move on to the next read's limit, not end the connection.
  const s = await rawServer((req, socket) => {
    const path = pathOf(req);
    const delayMs = path === "/first" ? 50 : path === "/second" ? 900 : 0;
    setTimeout(() => socket.write(ok(JSON.stringify({ path }))), delayMs);
  });
  const pool = new Http1Pool(1, 8, () => 1000);
  try {
    await pool.request(s.base, "GET", "/open", {}, undefined, 2000); // so that the two reads go out together on it
    const first = pool.request(s.base, "GET", "/first", {}, undefined, 500);
    const second = pool.request(s.base, "GET", "/second", {}, undefined, 3000);
    assert.equal(JSON.parse((await first).body.toString()).path, "/first");
    assert.equal(JSON.parse((await second).body.toString()).path, "/second", "answered 400 ms after the first read's limit, within its own");
    assert.equal((await pool.request(s.base, "GET", "/third", {}, undefined, 2000)).status, 200);
    assert.equal(s.connections(), 1, "one connection carried all four");
  } finally {
    pool.close();
    s.server.close();
  }
});
