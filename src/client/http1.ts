/**
 * A lean HTTP/1.1 client for the SDK's request/answer calls: keep-alive sockets pooled per origin, reads
 * pipelined on them (see Http1Pool), any other request alone on its socket. Written on `node:net`/`node:tls` rather than on `node:http` because a
 * client often shares its machine's cores with the nodes it talks to: node:http costs about 65 us of CPU
 * per request, this about 15 us (bench/load.ts measured both), which is the difference between a
 * routed put being faster than a forwarded one or not. It understands what a Shoal node (fastify on
 * node:http) answers: a status line, headers, and a body framed by Content-Length, by chunked transfer
 * coding, or by the end of the connection. Event streams (the watch) stay on node:http (transport.ts).
 */
import { type Socket, isIP, connect as netConnect } from "node:net";
import { connect as tlsConnect } from "node:tls";
import { assert } from "../util/assert.js";

/** A pooled socket unused for this long is closed by the client, below fastify's 72 s keep-alive timeout so that the client, not the server, ends it. */
const IDLE_MS_MAX = 30_000;
/** A connection opened for a request that was waiting for one (whose own time limit still holds). */
const CONNECT_MS_MAX = 10_000;
/**
 * A read joins reads in flight on a connection only while the oldest of them was sent less than this
 * long ago: a read the node is slow to answer (a session read waiting for its replica to catch up, say)
 * holds back only the reads that joined it in that time, not every read after it.
 */
const JOIN_AGE_MS_MAX = 10;
/** The longest head (status line and headers) accepted from a node. */
const HEAD_BYTES_MAX = 64 * 1024;

export interface Http1Answer {
  status: number;
  /** Header names in lower case. */
  headers: Map<string, string>;
  body: Buffer;
}

/** An error of the connection, with a `code` as node:net gives (ECONNRESET, ETIMEDOUT, …): the network's, not the request's. */
function netError(message: string, code: string): Error {
  return Object.assign(new Error(message), { code });
}

/**
 * An error of a request that never left this client (no connection, none free in time, the client
 * closed): nothing was sent, so nothing can have been applied, and any request may be sent again.
 * `poolWait`: it waited for one of this client's own connections, so the node is not to blame.
 */
function notSentError(message: string, code: string, poolWait = false): Error {
  return Object.assign(new Error(message), { code, notSent: true, ...(poolWait ? { poolWait: true } : {}) });
}

/** Whether the request failed before any of it was written to a connection (see notSentError). */
export function wasNotSent(e: unknown): boolean {
  return (e as { notSent?: unknown }).notSent === true;
}

/** Whether the request failed waiting for a free connection of this client's pool. */
export function waitedForPool(e: unknown): boolean {
  return (e as { poolWait?: unknown }).poolWait === true;
}

/** A header name is a token; a path and header values may not hold controls (obs-text, 0x80-0xff, is allowed in values, as node:http allows it). */
const PATH_SAFE = /^[\x21-\x7e]*$/;
const NAME_SAFE = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const VALUE_SAFE = /^[\t\x20-\x7e\x80-\xff]*$/;

interface Pending {
  resolve: (a: Http1Answer) => void;
  reject: (e: Error) => void;
  /** Its time limit, and when it runs out (performance.now(): the timers' time, not the pool's clock). */
  timeoutMs: number;
  dueAtMs: number;
  head: boolean;
  /** A GET: others may be pipelined behind it. */
  read: boolean;
  sentAtMs: number;
}

type AnswerHead = { status: number; headers: Map<string, string>; bodyAt: number; length: number | "chunked" | "close"; keepAlive: boolean };

/**
 * One keep-alive connection, with its requests sent and not answered yet, oldest first: the node answers
 * them in that order (HTTP/1.1 pipelining, RFC 9112 section 9.3.2). Only reads (GETs) are pipelined, and
 * only behind reads: a write is sent on a connection with nothing in flight, and nothing is sent behind
 * it, so that a write never waits for answers before it, nor its outcome for answers after it.
 * Invariant: queue.length <= the pool's depthMax; queue.length > 1 only when every entry is a read.
 */
class Connection {
  private buf: Buffer = Buffer.alloc(0);
  private readonly queue: Pending[] = [];
  private answer: AnswerHead | null = null;
  private chunks: Buffer[] = [];
  /**
   * The oldest request's time limit, and the rest's (IDLE_MS_MAX). Each timer is made once and re-armed
   * (refresh) rather than set and cleared per request: at one request in flight that made and dropped one
   * of Node's timer lists twice a request (a profile of the client at one connection: ~10 % of its CPU).
   * So a timer may fire for a request already answered, or a rest already over: it checks what is due.
   */
  private dueTimer: NodeJS.Timeout | null = null;
  private dueTimerMs = 0;
  private idleTimer: NodeJS.Timeout | null = null;
  /** Writes of this tick are held back and written together (one system call for a pipelined batch). */
  private corked = false;
  /** The latest deadline of the requests in flight (meaningful only while there are some). */
  private deadlineMaxMs = 0;
  closed = false;

  constructor(private readonly socket: Socket, private readonly onIdle: (c: Connection) => void, private readonly onClosed: (c: Connection) => void) {
    socket.setNoDelay(true);
    socket.on("data", (chunk: Buffer) => this.onData(chunk));
    socket.on("error", (e) => this.fail(e));
    // The node ended its side: the end of a body framed by it, else the connection is of no further use
    // (dropped at once, so that no request is sent on it after the node closed an idle connection).
    socket.on("end", () => this.onEnd());
    socket.on("close", () => this.fail(netError("the node closed the connection before answering", "ECONNRESET")));
  }

  /** Requests sent on it and not answered yet. */
  get inFlight(): number {
    return this.queue.length;
  }

  /**
   * Whether a read due by `deadlineMs`, sent at `nowMs`, may join the requests in flight: they are reads,
   * fewer than depthMax, the oldest sent less than JOIN_AGE_MS_MAX ago, none due later than it (its
   * time-out would end their connection before their own), and the node has not said it closes the
   * connection.
   */
  takesRead(depthMax: number, deadlineMs: number, nowMs: number): boolean {
    const n = this.queue.length;
    if (n === 0 || n >= depthMax || this.closed) return false;
    const oldest = this.queue[0]!;
    return oldest.read && nowMs - oldest.sentAtMs < JOIN_AGE_MS_MAX && deadlineMs >= this.deadlineMaxMs && (this.answer === null || this.answer.keepAlive);
  }

  /** `batched`: held back to the end of the tick, with the other reads sent on it meanwhile (pipelining). */
  send(head: string, body: Buffer | undefined, deadlineMs: number, nowMs: number, isHead: boolean, read: boolean, batched: boolean): Promise<Http1Answer> {
    assert(!this.closed, "a request is sent on an open connection");
    assert(this.queue.length === 0 || (read && this.queue[0]!.read), "only reads are pipelined, only behind reads");
    const first = this.queue.length === 0;
    if (first) {
      this.socket.ref();
      this.deadlineMaxMs = deadlineMs;
    } else this.deadlineMaxMs = Math.max(this.deadlineMaxMs, deadlineMs);
    const timeoutMs = Math.max(1, deadlineMs - nowMs);
    // Reads join others only when due no earlier (takesRead): the oldest request is always due first.
    if (first) this.armDue(timeoutMs);
    if (batched && !this.corked) {
      this.corked = true;
      this.socket.cork();
      process.nextTick(uncork, this);
    }
    const dueAtMs = performance.now() + timeoutMs;
    return new Promise<Http1Answer>((resolve, reject) => {
      this.queue.push({ resolve, reject, timeoutMs, dueAtMs, head: isHead, read, sentAtMs: nowMs });
      // The head is Latin-1 (one byte per character, as node:http writes it), with or without a body.
      if (body === undefined) this.socket.write(head, "latin1");
      else this.socket.write(Buffer.concat([Buffer.from(head, "latin1"), body]));
    });
  }

  /** Arms the time-limit timer to fire in `ms` (re-armed when made with the same duration: the usual case). */
  private armDue(ms: number): void {
    if (this.dueTimer !== null && this.dueTimerMs === ms) this.dueTimer.refresh().ref();
    else {
      if (this.dueTimer !== null) clearTimeout(this.dueTimer);
      this.dueTimer = setTimeout(() => this.onDue(), ms);
      this.dueTimerMs = ms;
    }
  }

  /**
   * The oldest request's time limit ran out: that ends the connection, and every request behind it fails
   * with it (all were sent). Else it was answered meanwhile: the timer follows the one now oldest, if any.
   */
  private onDue(): void {
    const oldest = this.queue[0];
    if (oldest === undefined || this.closed) return;
    const leftMs = oldest.dueAtMs - performance.now();
    // A timer may fire up to a millisecond early (Node rounds its start down).
    if (leftMs <= 1) this.destroy(netError(`no answer within ${oldest.timeoutMs} ms`, "ETIMEDOUT"));
    else this.armDue(Math.ceil(leftMs));
  }

  /** Writes what this tick's requests held back. */
  flush(): void {
    this.corked = false;
    if (!this.closed) this.socket.uncork();
  }

  destroy(e: Error): void {
    this.fail(e);
    this.socket.destroy();
  }

  /** Ends the connection: every request in flight on it fails with `e` (each was sent: its outcome is the node's). */
  private fail(e: Error): void {
    for (let p = this.queue.shift(); p !== undefined; p = this.queue.shift()) p.reject(e);
    if (!this.closed) {
      this.closed = true;
      if (this.dueTimer !== null) clearTimeout(this.dueTimer);
      if (this.idleTimer !== null) clearTimeout(this.idleTimer);
      this.socket.destroy();
      this.onClosed(this);
    }
  }

  private onData(chunk: Buffer): void {
    this.buf = this.buf.byteLength === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    // Answers in order, as many as have arrived whole.
    while (this.buf.byteLength > 0 && !this.closed) {
      if (this.queue.length === 0) {
        // Bytes nobody asked for: the connection's framing is lost.
        this.destroy(netError("the node sent bytes without a request", "ECONNRESET"));
        return;
      }
      if (this.answer === null && !this.parseHead()) return;
      const body = this.parseBody();
      if (body === null) return;
      this.finish(body);
    }
  }

  /** Reads the status line and headers once they are all here; false while they are not. */
  private parseHead(): boolean {
    const end = this.buf.indexOf("\r\n\r\n");
    if (end < 0) {
      if (this.buf.byteLength > HEAD_BYTES_MAX) this.destroy(netError(`an answer's head is over ${HEAD_BYTES_MAX} bytes`, "EPROTO"));
      return false;
    }
    const lines = this.buf.toString("latin1", 0, end).split("\r\n");
    const m = /^HTTP\/1\.([01]) (\d{3})/.exec(lines[0]!);
    if (m === null) {
      this.destroy(netError(`not an HTTP/1.x answer: ${lines[0]!.slice(0, 60)}`, "EPROTO"));
      return false;
    }
    const status = Number(m[2]);
    if (status >= 100 && status < 200) {
      // An interim answer (a node does not send one unasked): skipped; the final one follows.
      this.buf = this.buf.subarray(end + 4);
      return this.buf.byteLength > 0 && this.parseHead();
    }
    const headers = new Map<string, string>();
    for (let i = 1; i < lines.length; i++) {
      const line = lines[i]!;
      const colon = line.indexOf(":");
      if (colon <= 0) continue;
      const name = line.slice(0, colon).trim().toLowerCase();
      const value = line.slice(colon + 1).trim();
      const had = headers.get(name);
      headers.set(name, had === undefined ? value : `${had}, ${value}`);
    }
    const connection = headers.get("connection")?.toLowerCase();
    const keepAlive = m[1] === "1" ? connection !== "close" : connection === "keep-alive";
    let length: number | "chunked" | "close";
    if (this.queue[0]!.head || status === 204 || status === 304) length = 0;
    else if (headers.get("transfer-encoding")?.toLowerCase().includes("chunked") === true) length = "chunked";
    else if (headers.has("content-length")) {
      length = Number(headers.get("content-length"));
      if (!Number.isSafeInteger(length) || length < 0) {
        this.destroy(netError(`a bad Content-Length: ${headers.get("content-length")}`, "EPROTO"));
        return false;
      }
    } else length = "close";
    this.answer = { status, headers, bodyAt: end + 4, length, keepAlive: keepAlive && length !== "close" };
    return true;
  }

  /** The answer's body once it is all here (the rest of `buf` is what follows it), else null. */
  private parseBody(): Buffer | null {
    const a = this.answer!;
    if (typeof a.length === "number") {
      if (this.buf.byteLength - a.bodyAt < a.length) return null;
      const body = this.buf.subarray(a.bodyAt, a.bodyAt + a.length);
      this.buf = this.buf.subarray(a.bodyAt + a.length);
      return body;
    }
    if (a.length === "chunked") {
      for (;;) {
        const lineEnd = this.buf.indexOf("\r\n", a.bodyAt);
        if (lineEnd < 0) return null;
        const size = parseInt(this.buf.toString("latin1", a.bodyAt, lineEnd).split(";")[0]!, 16);
        if (!Number.isSafeInteger(size) || size < 0) {
          this.destroy(netError("a bad chunk size", "EPROTO"));
          return null;
        }
        if (size === 0) {
          // The last chunk, then trailers (none from a node) up to an empty line.
          const trailersEnd = this.buf.indexOf("\r\n\r\n", lineEnd);
          const end = this.buf.indexOf("\r\n", lineEnd + 2) === lineEnd + 2 ? lineEnd + 4 : trailersEnd < 0 ? -1 : trailersEnd + 4;
          if (end < 0) return null;
          const body = Buffer.concat(this.chunks);
          this.chunks = [];
          this.buf = this.buf.subarray(end);
          return body;
        }
        if (this.buf.byteLength < lineEnd + 2 + size + 2) return null;
        this.chunks.push(this.buf.subarray(lineEnd + 2, lineEnd + 2 + size));
        a.bodyAt = lineEnd + 2 + size + 2;
      }
    }
    // "close": the body is everything until the node ends the connection (onEnd).
    return null;
  }

  private onEnd(): void {
    const a = this.answer;
    if (a !== null && a.length === "close" && this.queue.length > 0) {
      const body = this.buf.subarray(a.bodyAt);
      this.buf = Buffer.alloc(0);
      this.finish(body);
    }
    this.fail(netError("the node closed the connection before answering", "ECONNRESET"));
  }

  private finish(body: Buffer): void {
    const a = this.answer!;
    const p = this.queue.shift()!;
    this.answer = null;
    p.resolve({ status: a.status, headers: a.headers, body });
    if (!a.keepAlive) {
      // The node closes after this answer: the requests behind it are not answered (sent: reads, asked again).
      this.fail(netError("the node closed the connection after an earlier answer", "ECONNRESET"));
      return;
    }
    if (this.queue.length > 0) return;
    if (this.buf.byteLength > 0) return; // onData finds bytes nobody asked for
    this.buf = Buffer.alloc(0);
    this.rest();
  }

  /**
   * Nothing in flight: the connection goes to the pool (a waiting request, else the idle ones). An idle
   * connection does not keep the process alive (a CLI command exits once it is done), as node:http's
   * agent does with its free sockets, and is closed after IDLE_MS_MAX.
   */
  rest(): void {
    assert(this.queue.length === 0 && !this.closed, "only an open connection with nothing in flight rests");
    this.socket.unref();
    // Armed still (the last request was answered before its time ran out): it must not keep the process alive.
    this.dueTimer?.unref();
    if (this.idleTimer !== null) this.idleTimer.refresh();
    else {
      // Fired while the connection was in use, it does nothing: the next rest arms it again.
      this.idleTimer = setTimeout(() => {
        if (this.queue.length === 0) this.fail(netError("idle", "ECONNRESET"));
      }, IDLE_MS_MAX);
      this.idleTimer.unref();
    }
    this.onIdle(this);
  }
}

function uncork(c: Connection): void {
  c.flush();
}

interface Waiter {
  /** False when the request stopped waiting (its time ran out): the connection is the pool's again. */
  take: (c: Connection) => boolean;
  refuse: (e: Error) => void;
}

interface Origin {
  base: URL;
  idle: Connection[];
  /** Every open connection, idle or in use (close() ends them all). */
  all: Set<Connection>;
  /** Connections open or being opened. Invariant: idle.length <= open <= socketsMax. */
  open: number;
  /** Requests waiting for a connection, oldest first (not bounded here: each is a caller's pending call, and its time limit covers the wait). */
  waiting: Waiter[];
  /** Requests to this origin not settled yet (waiting for a connection, or sent and not answered). */
  inFlight: number;
}

export class Http1Pool {
  private readonly origins = new Map<string, Origin>();
  /** Sockets still connecting (close() ends them: their requests fail as never sent). */
  private readonly connecting = new Set<Socket>();
  private closed = false;

  /**
   * `socketsMax` connections per origin at most; `depthMax` requests in flight on one connection at most
   * (1: no pipelining). A GET goes first to the busiest connection that still takes one (see
   * Connection.takesRead: reads only, the oldest under JOIN_AGE_MS_MAX old, fewer than depthMax, none due
   * after it), then to an idle one, then to a new one: so reads gather on few
   * connections, and the reads of one tick on a connection go out in one write (one system call for
   * them all, where each write to a socket costs about as much CPU as the rest of the request).
   * `clock`: the time in ms (a test's own, to say how old the reads in flight are).
   */
  constructor(private readonly socketsMax: number, private readonly depthMax = 1, private readonly clock: () => number = Date.now) {
    assert(socketsMax >= 1, "at least one socket per origin");
    assert(Number.isSafeInteger(depthMax) && depthMax >= 1, "at least one request in flight per connection");
  }

  /**
   * Sends one request to `base`'s origin and gives its answer; fails with a `code`d error when the
   * node cannot be reached, closes the connection or does not answer within `timeoutMs`, and with a
   * TypeError (code ERR_…, as node:http's) when the path or a header would break the request's framing.
   */
  async request(base: URL, method: string, path: string, headers: Record<string, string>, body: Buffer | undefined, timeoutMs: number): Promise<Http1Answer> {
    if (!path.startsWith("/") || !PATH_SAFE.test(path)) throw Object.assign(new TypeError(`path ${JSON.stringify(path)} cannot be sent as it is`), { code: "ERR_UNESCAPED_CHARACTERS" });
    let head = `${method} ${path} HTTP/1.1\r\nHost: ${base.host}\r\n`;
    for (const [name, value] of Object.entries(headers)) {
      if (!NAME_SAFE.test(name) || !VALUE_SAFE.test(value)) throw Object.assign(new TypeError(`header ${JSON.stringify(name)} has characters HTTP cannot carry`), { code: "ERR_INVALID_CHAR" });
      head += `${name}: ${value}\r\n`;
    }
    if (body !== undefined) head += `Content-Length: ${body.byteLength}\r\n`;
    head += "\r\n";
    const deadline = this.clock() + timeoutMs;
    const origin = this.originOf(base);
    const read = method === "GET";
    origin.inFlight++;
    try {
      // Chosen and sent in one go: no other request can take the same place on a connection between.
      // (A closed pool holds no connection: connection() refuses.)
      const now = (read ? this.pipelined(origin, deadline, this.clock()) : null) ?? origin.idle.pop() ?? null;
      const conn = now ?? await this.connection(origin, timeoutMs);
      return await conn.send(head, body, deadline, this.clock(), method === "HEAD", read, read && this.depthMax > 1);
    } finally {
      origin.inFlight--;
    }
  }

  /**
   * The busiest connection a read may join (Connection.takesRead), or null; none while requests wait
   * for a free connection: the connections drain for them. (So beyond socketsMax x depthMax requests in
   * flight to one origin, reads go one per connection until the wait is over.)
   */
  private pipelined(o: Origin, deadlineMs: number, nowMs: number): Connection | null {
    if (this.depthMax === 1 || o.waiting.length > 0) return null;
    let best: Connection | null = null;
    for (const c of o.all) if (c.takesRead(this.depthMax, deadlineMs, nowMs) && (best === null || c.inFlight > best.inFlight)) best = c;
    return best;
  }

  /** Requests to `base`'s origin not settled yet. */
  inFlight(base: URL): number {
    return this.origins.get(base.origin)?.inFlight ?? 0;
  }

  /**
   * Ends every connection: requests in flight fail with ECONNRESET (they were sent: their outcome is
   * the node's), requests waiting for a connection or opening one fail as never sent.
   */
  close(): void {
    this.closed = true;
    for (const o of this.origins.values()) {
      for (const w of o.waiting.splice(0)) w.refuse(notSentError("the client was closed", "ECONNRESET"));
      o.idle.length = 0;
      for (const c of [...o.all]) c.destroy(netError("the client was closed", "ECONNRESET"));
    }
    for (const s of [...this.connecting]) s.destroy(notSentError("the client was closed", "ECONNRESET"));
  }

  private originOf(base: URL): Origin {
    let o = this.origins.get(base.origin);
    if (o === undefined) {
      o = { base, idle: [], all: new Set(), open: 0, waiting: [], inFlight: 0 };
      this.origins.set(base.origin, o);
    }
    return o;
  }

  private connection(o: Origin, timeoutMs: number): Promise<Connection> {
    if (this.closed) return Promise.reject(notSentError("the client was closed", "ECONNRESET"));
    const idle = o.idle.pop();
    if (idle !== undefined) return Promise.resolve(idle);
    if (o.open < this.socketsMax) return this.opened(o, timeoutMs);
    return new Promise<Connection>((resolve, reject) => {
      let done = false;
      const timer = setTimeout(() => {
        done = true;
        const i = o.waiting.indexOf(w);
        if (i >= 0) o.waiting.splice(i, 1);
        reject(notSentError(`none of this client's ${this.socketsMax} connections to it was free within ${timeoutMs} ms`, "ETIMEDOUT", true));
      }, timeoutMs);
      const w: Waiter = {
        take: (c) => {
          if (done) return false;
          done = true;
          clearTimeout(timer);
          resolve(c);
          return true;
        },
        refuse: (e) => {
          if (done) return;
          done = true;
          clearTimeout(timer);
          reject(e);
        },
      };
      o.waiting.push(w);
    });
  }

  private async opened(o: Origin, timeoutMs: number): Promise<Connection> {
    o.open++;
    assert(o.open <= this.socketsMax, "open connections within the bound");
    let socket: Socket;
    try {
      socket = await this.connect(o.base, timeoutMs);
    } catch (e) {
      this.forget(o, null);
      throw e;
    }
    if (this.closed) {
      socket.destroy();
      this.forget(o, null);
      throw notSentError("the client was closed", "ECONNRESET");
    }
    const c = new Connection(socket, (c) => this.release(o, c), (c) => this.forget(o, c));
    o.all.add(c);
    return c;
  }

  private connect(base: URL, timeoutMs: number): Promise<Socket> {
    const tls = base.protocol === "https:";
    const port = Number(base.port || (tls ? 443 : 80));
    const host = base.hostname.startsWith("[") ? base.hostname.slice(1, -1) : base.hostname;
    return new Promise<Socket>((resolve, reject) => {
      // SNI names a host, never an address (RFC 6066; Node warns otherwise).
      const s: Socket = tls ? tlsConnect({ host, port, ...(isIP(host) === 0 ? { servername: host } : {}) }, () => done(null)) : netConnect({ host, port }, () => done(null));
      const timer = setTimeout(() => done(notSentError(`no connection within ${timeoutMs} ms`, "ETIMEDOUT")), timeoutMs);
      const onError = (e: Error) => done(e);
      s.once("error", onError);
      const connecting = this.connecting;
      connecting.add(s);
      function done(e: Error | null): void {
        clearTimeout(timer);
        connecting.delete(s);
        s.off("error", onError);
        if (e === null) resolve(s);
        else {
          s.destroy();
          // Refused, unresolvable, timed out: the connection never opened, so no request was sent.
          reject(Object.assign(e, { notSent: true }));
        }
      }
    });
  }

  /**
   * A connection free again: given to the oldest waiting request, else kept idle. A waiter gets it only
   * after the I/O events already read (a node's FIN right behind its answer) were seen: sent at once,
   * its request could go out on a connection the node has just closed. An idle connection is taken at
   * once by the next request (a caller's next call must not open a new connection); a node does not
   * close one right after answering unless it said so (`Connection: close`: never kept), and idle ones
   * are closed here (IDLE_MS_MAX) before a node's keep-alive timeout would.
   */
  private release(o: Origin, c: Connection): void {
    if (this.closed) {
      c.destroy(netError("the client was closed", "ECONNRESET"));
      return;
    }
    if (o.waiting.length === 0) {
      o.idle.push(c);
      return;
    }
    setImmediate(() => {
      if (c.closed) return; // forget() has let the oldest waiter open its own
      for (let w = o.waiting.shift(); w !== undefined; w = o.waiting.shift()) if (w.take(c)) return;
      if (this.closed) c.destroy(netError("the client was closed", "ECONNRESET"));
      else o.idle.push(c);
    });
  }

  /** A connection closed, or failed to open: the oldest waiting request may open its own now. */
  private forget(o: Origin, c: Connection | null): void {
    if (c !== null) {
      o.all.delete(c);
      const i = o.idle.indexOf(c);
      if (i >= 0) o.idle.splice(i, 1);
    }
    o.open--;
    assert(o.open >= 0, "open connections never negative");
    const w = o.waiting.shift();
    if (w === undefined || this.closed) return;
    this.opened(o, CONNECT_MS_MAX).then((c) => {
      // The waiter gave up meanwhile: the new connection rests in the pool, as one that answered does.
      if (!w.take(c) && !c.closed) c.rest();
    }, w.refuse);
  }
}
