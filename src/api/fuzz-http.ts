/**
 * A raw HTTP/1.1 client for the request fuzzer (fuzz.test.ts): it writes the request's bytes on a
 * TCP socket exactly as given (fetch/undici and node:http normalise or refuse malformed requests, so
 * they would never reach the server), reads everything the server answers until it closes the
 * connection, and parses the answer strictly as a sequence of HTTP/1.x responses. Nothing here judges
 * the answer: fuzz.test.ts does.
 */
import { connect } from "node:net";

export interface HttpResponse {
  /** "HTTP/1.1" */
  version: string;
  status: number;
  reason: string;
  /** In the order received; names as sent. */
  headers: [string, string][];
  body: Buffer;
  /** The body ran to the end of the connection (no Content-Length, not chunked). */
  closeDelimited: boolean;
}

/** The first value of a header (names compare case-insensitively). */
export function headerOf(r: HttpResponse, name: string): string | undefined {
  const lower = name.toLowerCase();
  return r.headers.find(([n]) => n.toLowerCase() === lower)?.[1];
}

export function headersOf(r: HttpResponse, name: string): string[] {
  const lower = name.toLowerCase();
  return r.headers.filter(([n]) => n.toLowerCase() === lower).map(([, v]) => v);
}

/** How an exchange ended. */
export type EndReason =
  /** The server closed the connection (FIN). */
  | "closed"
  /** The connection was reset, or failed with another socket error (see `socketError`). */
  | "error"
  /** Nothing more arrived for `graceMs` after a complete response (a kept-alive connection), or an event stream began. */
  | "done"
  /** The deadline passed without a close (with or without a complete response). */
  | "deadline";

export interface Exchange {
  /** Interim (1xx) responses, in order. */
  interim: HttpResponse[];
  /** Complete final responses, in order (more than one only when the server parsed leftover bytes as a next request). */
  responses: HttpResponse[];
  /** Bytes received after the last complete response (an incomplete or malformed response included). */
  rest: Buffer;
  /** Why the bytes received are not a sequence of HTTP responses, or null. */
  malformed: string | null;
  end: EndReason;
  socketError: string | null;
  /** The last response is an event stream that was left open on purpose (GET /v1/cluster/watch). */
  stream: boolean;
  ms: number;
  /** The client's port (what the server sees as the remote port). */
  localPort: number | undefined;
}

export interface RawRequest {
  head: Buffer;
  body: Buffer;
  /** Half-close the connection once the request is written (the client has nothing more to send). */
  halfClose: boolean;
  /** A HEAD request: its responses have no body whatever their headers say. */
  isHead: boolean;
}

export interface SendOptions {
  host: string;
  port: number;
  /** Nothing complete and no close by then: the exchange ends as "deadline". */
  deadlineMs: number;
  /** After a complete response, wait this long for more bytes or a close before ending the exchange ("done"). */
  graceMs: number;
  /** The server must close the connection after its answer: wait for the close until the deadline, not just `graceMs`. */
  expectClose: boolean;
  /** Told the client's port once connected. */
  onConnect?: (localPort: number) => void;
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const STATUS_LINE = /^(HTTP\/1\.[01]) ([1-5][0-9][0-9])(?: ([\t\x20-\x7e\x80-\xff]*))?$/;

type Parsed =
  | { kind: "response"; response: HttpResponse; consumed: number }
  | { kind: "incomplete" }
  | { kind: "malformed"; why: string };

/**
 * Parses one response at the start of `buf`. `ended`: the connection has ended, so a close-delimited
 * body is complete. `isHead`: the response to a HEAD request (no body, RFC 9112 §6.3).
 */
export function parseResponse(buf: Buffer, isHead: boolean, ended: boolean): Parsed {
  const headEnd = buf.indexOf("\r\n\r\n");
  if (headEnd === -1) {
    if (buf.length > 64 * 1024) return { kind: "malformed", why: "no end of the response head in 64 KiB" };
    if (ended && buf.length > 0) return { kind: "malformed", why: "the connection ended inside a response head" };
    return { kind: "incomplete" };
  }
  const lines = buf.subarray(0, headEnd).toString("latin1").split("\r\n");
  const statusLine = STATUS_LINE.exec(lines[0]!);
  if (statusLine === null) return { kind: "malformed", why: `bad status line ${JSON.stringify(lines[0]!.slice(0, 100))}` };
  const headers: [string, string][] = [];
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(":");
    const name = colon === -1 ? "" : line.slice(0, colon);
    if (!TOKEN.test(name) || /[\0\r\n]/.test(line)) return { kind: "malformed", why: `bad header line ${JSON.stringify(line.slice(0, 100))}` };
    headers.push([name, line.slice(colon + 1).trim()]);
  }
  const status = Number(statusLine[2]);
  const response: HttpResponse = { version: statusLine[1]!, status, reason: statusLine[3] ?? "", headers, body: Buffer.alloc(0), closeDelimited: false };
  const bodyStart = headEnd + 4;
  if (isHead || (status >= 100 && status < 200) || status === 204 || status === 304) return { kind: "response", response, consumed: bodyStart };
  const te = headersOf(response, "transfer-encoding");
  const cl = headersOf(response, "content-length");
  if (te.length > 0) {
    if (te.join(",").trim().toLowerCase() !== "chunked") return { kind: "malformed", why: `response Transfer-Encoding ${JSON.stringify(te.join(","))}` };
    if (cl.length > 0) return { kind: "malformed", why: "response with both Transfer-Encoding and Content-Length" };
    return parseChunked(buf, bodyStart, response, ended);
  }
  if (cl.length > 0) {
    const values = new Set(cl.flatMap((v) => v.split(",")).map((v) => v.trim()));
    if (values.size !== 1) return { kind: "malformed", why: `conflicting Content-Length ${JSON.stringify(cl)}` };
    const text = [...values][0]!;
    if (!/^[0-9]{1,15}$/.test(text)) return { kind: "malformed", why: `bad Content-Length ${JSON.stringify(text)}` };
    const length = Number(text);
    if (buf.length < bodyStart + length) {
      return ended ? { kind: "malformed", why: `the connection ended ${bodyStart + length - buf.length} bytes short of the Content-Length` } : { kind: "incomplete" };
    }
    response.body = buf.subarray(bodyStart, bodyStart + length);
    return { kind: "response", response, consumed: bodyStart + length };
  }
  // Neither: the body runs to the end of the connection (RFC 9112 §6.3, item 8).
  if (!ended) return { kind: "incomplete" };
  response.body = buf.subarray(bodyStart);
  response.closeDelimited = true;
  return { kind: "response", response, consumed: buf.length };
}

function parseChunked(buf: Buffer, start: number, response: HttpResponse, ended: boolean): Parsed {
  const parts: Buffer[] = [];
  let at = start;
  const short: Parsed = ended ? { kind: "malformed", why: "the connection ended inside a chunked body" } : { kind: "incomplete" };
  for (;;) {
    const lineEnd = buf.indexOf("\r\n", at);
    if (lineEnd === -1) return short;
    const sizeText = buf.subarray(at, lineEnd).toString("latin1").split(";", 1)[0]!.trim();
    if (!/^[0-9a-fA-F]{1,8}$/.test(sizeText)) return { kind: "malformed", why: `bad chunk size ${JSON.stringify(sizeText.slice(0, 40))}` };
    const size = parseInt(sizeText, 16);
    at = lineEnd + 2;
    if (size === 0) {
      // Trailer fields, then an empty line.
      for (;;) {
        const end = buf.indexOf("\r\n", at);
        if (end === -1) return short;
        const empty = end === at;
        at = end + 2;
        if (empty) break;
      }
      response.body = Buffer.concat(parts);
      return { kind: "response", response, consumed: at };
    }
    if (buf.length < at + size + 2) return short;
    parts.push(buf.subarray(at, at + size));
    if (buf[at + size] !== 13 || buf[at + size + 1] !== 10) return { kind: "malformed", why: "a chunk not followed by CRLF" };
    at += size + 2;
  }
}

/** Splits what the server sent into interim and final responses, and what is left over. */
export function parseAll(buf: Buffer, isHead: boolean, ended: boolean): Pick<Exchange, "interim" | "responses" | "rest" | "malformed"> {
  const interim: HttpResponse[] = [];
  const responses: HttpResponse[] = [];
  let at = 0;
  let malformed: string | null = null;
  while (at < buf.length) {
    const p = parseResponse(buf.subarray(at), isHead, ended);
    if (p.kind === "incomplete") break;
    if (p.kind === "malformed") {
      malformed = p.why;
      break;
    }
    at += p.consumed;
    if (p.response.status < 200 && p.response.status !== 101) interim.push(p.response);
    else {
      responses.push(p.response);
      // After a response to HEAD, bytes that do not begin a response are a body sent anyway: left over.
      const next = buf.subarray(at, at + 5).toString("latin1");
      if (isHead && next !== "" && !"HTTP/".startsWith(next)) break;
    }
  }
  return { interim, responses, rest: buf.subarray(at), malformed };
}

const isEventStream = (r: HttpResponse) => r.status === 200 && (headerOf(r, "content-type") ?? "").startsWith("text/event-stream");

/**
 * The head of an event stream left open, from what parseAll made of `buf`: the stream is where it
 * stopped (interim responses, such as a 100 Continue to Expect: 100-continue, come first and are
 * parsed already); `consumed` counts those too.
 */
function streamHead(buf: Buffer, parsed: ReturnType<typeof parseAll>): { response: HttpResponse; consumed: number; interim: HttpResponse[] } | null {
  if (parsed.responses.length > 0 || parsed.malformed !== null) return null;
  const head = parseResponse(parsed.rest, true, false);
  return head.kind === "response" && isEventStream(head.response)
    ? { response: head.response, consumed: buf.length - parsed.rest.length + head.consumed, interim: parsed.interim } : null;
}

/**
 * Sends one request on a new connection and collects the answer. The body is written in 64 KiB
 * pieces, and no more of it once the server has begun to answer (as a client does when a server
 * refuses a large body early: RFC 9112 §9.6).
 */
export function send(req: RawRequest, opts: SendOptions): Promise<Exchange> {
  const started = Date.now();
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let received = 0;
    let socketError: string | null = null;
    let finished = false;
    let graceTimer: NodeJS.Timeout | null = null;
    let localPort: number | undefined;
    const socket = connect({ host: opts.host, port: opts.port });
    socket.setNoDelay(true);
    const finish = (end: EndReason) => {
      if (finished) return;
      finished = true;
      clearTimeout(deadline);
      if (graceTimer !== null) clearTimeout(graceTimer);
      socket.destroy();
      const buf = Buffer.concat(chunks);
      let parsed = parseAll(buf, req.isHead, end === "closed" || end === "error");
      let stream = false;
      const head = streamHead(buf, parsed);
      if (head !== null) {
        // An event stream left open (never complete): its head, and its body so far undecoded.
        stream = true;
        parsed = { interim: head.interim, responses: [{ ...head.response, body: buf.subarray(head.consumed) }], rest: Buffer.alloc(0), malformed: null };
      }
      resolve({ ...parsed, end, socketError, stream, ms: Date.now() - started, localPort });
    };
    const deadline = setTimeout(() => finish("deadline"), opts.deadlineMs);
    /** After each arrival: a complete response (or an event stream's first event) starts the grace period. */
    const check = () => {
      const buf = Buffer.concat(chunks);
      const parsed = parseAll(buf, req.isHead, false);
      if (parsed.malformed !== null) return finish("done");
      // An event stream never completes: its head is its answer (then the grace period).
      const stream = streamHead(buf, parsed) !== null;
      if (parsed.responses.length === 0 && !stream) return;
      if (opts.expectClose && !stream) return;
      if (graceTimer !== null) clearTimeout(graceTimer);
      graceTimer = setTimeout(() => finish("done"), opts.graceMs);
    };
    socket.on("data", (b: Buffer) => {
      chunks.push(b);
      received += b.length;
      check();
    });
    socket.on("end", () => finish("closed"));
    socket.on("close", () => finish(socketError === null ? "closed" : "error"));
    socket.on("error", (e: Error & { code?: string }) => {
      socketError = e.code ?? e.message;
      finish("error");
    });
    socket.once("connect", () => {
      localPort = socket.localPort;
      opts.onConnect?.(socket.localPort!);
      void (async () => {
        const write = (b: Buffer) => new Promise<void>((done) => {
          if (finished || socket.destroyed) return done();
          if (socket.write(b)) return done();
          const onDrain = () => {
            socket.off("close", onDrain);
            socket.off("drain", onDrain);
            done();
          };
          socket.once("drain", onDrain);
          socket.once("close", onDrain);
        });
        await write(req.head);
        for (let at = 0; at < req.body.length && received === 0 && !finished; at += 64 * 1024) {
          await write(req.body.subarray(at, at + 64 * 1024));
        }
        if (req.halfClose && !finished && !socket.destroyed) socket.end();
      })();
    });
  });
}
