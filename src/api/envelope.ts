/**
 * One error envelope for every answer a node gives, the framework's and Node's own included:
 * `{"error": {"code", "message", ...}}` with the status, Retry-After and meaning of the code's entry in
 * the error table. Without this, fastify and Node's HTTP parser answer in their own shapes (bare 431s,
 * "Client Error", FST_ERR_* codes), wrong methods get 404, and a thrown bug leaves no trace a client can
 * quote.
 */
import { type IncomingMessage, STATUS_CODES, type ServerOptions, type ServerResponse } from "node:http";
import { Socket } from "node:net";
import { randomUUID } from "node:crypto";
import type { ConnectionError, FastifyError, FastifyInstance, FastifyReply, FastifyRequest, FastifyServerOptions } from "fastify";
import { ApiError, ERRORS, type ErrorCode, NODE_ERROR_CODES } from "./error-table.js";

interface SchemaIssue { instancePath: string; keyword: string; message?: string; params: Record<string, unknown> }

/** The error code each answered request was given (for the latency histogram's outcome). */
const answered = new WeakMap<ServerResponse, ErrorCode>();

/** The error code a request was answered with, or undefined when it was not answered with an error envelope. */
export function answeredCode(reply: FastifyReply): ErrorCode | undefined {
  return answered.get(reply.raw);
}

/** Sends the envelope for a code, with the table's status and Retry-After. */
export function sendError(reply: FastifyReply, code: ErrorCode, message: string, extra: Record<string, unknown> = {}): FastifyReply {
  answered.set(reply.raw, code);
  const entry: { status: number; retryAfterS?: number } = ERRORS[code];
  if (entry.retryAfterS !== undefined) void reply.header("Retry-After", String(entry.retryAfterS));
  return reply.status(entry.status).send({ error: { code, message, ...extra } });
}

/** "body.settings: unknown field \"bogus\"; body.payload: required": every problem, each named. */
function describeSchemaIssues(issues: SchemaIssue[], part: string): string {
  return issues.map((i) => {
    const at = `${part}${i.instancePath.replace(/\//g, ".")}`;
    if (i.keyword === "additionalProperties") return `${at}: unknown field ${JSON.stringify(i.params.additionalProperty)}`;
    if (i.keyword === "required") return `${at}.${String(i.params.missingProperty)}: required`;
    return `${at}: ${i.message ?? i.keyword}`;
  }).join("; ");
}

/** The code and message a client sees for an error thrown while handling a request (null: a bug, internal). */
export function classify(err: Error): { code: ErrorCode; message: string; extra: Record<string, unknown> } | null {
  if (err instanceof ApiError) return { code: err.code, message: err.message, extra: err.extra };
  const nodeCode = NODE_ERROR_CODES[err.name];
  if (nodeCode !== undefined) {
    const leader = (err as { leader?: number }).leader;
    return { code: nodeCode, message: err.message, extra: typeof leader === "number" && leader !== 0 ? { leader } : {} };
  }
  const f = err as FastifyError & { validation?: SchemaIssue[]; validationContext?: string };
  if (f.validation !== undefined) return { code: "bad_request", message: describeSchemaIssues(f.validation, f.validationContext ?? "request"), extra: {} };
  switch (f.code) {
    case "FST_ERR_CTP_BODY_TOO_LARGE": return { code: "payload_too_large", message: err.message, extra: {} };
    case "FST_ERR_CTP_INVALID_MEDIA_TYPE": return { code: "unsupported_media_type", message: "the body must be application/json", extra: {} };
    case "FST_ERR_CTP_EMPTY_JSON_BODY":
    case "FST_ERR_CTP_INVALID_JSON_BODY": return { code: "invalid_json", message: err.message, extra: {} };
    case "FST_ERR_CTP_INVALID_CONTENT_LENGTH": return { code: "bad_request", message: "the Content-Length does not match the body", extra: {} };
  }
  if (typeof f.statusCode === "number" && f.statusCode < 500) return { code: "bad_request", message: err.message, extra: {} };
  return null;
}

/**
 * Connections whose request was answered before its body was complete (a route that reads no body):
 * when the rest never comes, the parser's error is about a request that has its answer already.
 */
const answeredEarly = new WeakSet<Socket>();
/** How long an answer under way may take to finish once its request turned out broken. */
const FINISH_ANSWER_MS = 5000;

/** Fastify options that route the framework's own refusals through the envelope. */
export function envelopeOptions(): Partial<FastifyServerOptions> & { http: ServerOptions } {
  return {
    genReqId: () => randomUUID(),
    // The node answers shutting_down itself (an onRequest hook), in the envelope.
    return503OnClosing: false,
    frameworkErrors: (err, req, reply) => {
      // A request whose framing is broken is refused for that first, whatever else is wrong with it.
      const problem = framingProblem(req.raw);
      if (problem !== null) return sendError(reply.header("connection", "close"), "bad_request", problem);
      if (err.code === "FST_ERR_MAX_PARAM_LENGTH") return sendError(reply, "uri_too_long", "a path segment is longer than the node accepts");
      if (err.code === "FST_ERR_BAD_URL") return sendError(reply, "bad_request", "the URL is malformed (bad percent-encoding)");
      return sendError(reply, "bad_request", err.message);
    },
    // The Host header is checked by the node (onRequest), so that its refusal is in the envelope too.
    http: { requireHostHeader: false },
    // Requests Node's HTTP parser refuses never reach fastify: answer them on the socket.
    clientErrorHandler: (err: ConnectionError, socket: Socket) => {
      // A response already under way on this connection cannot be followed by another one.
      const inFlight = (socket as Socket & { _httpMessage?: ServerResponse })._httpMessage;
      if (inFlight?.headersSent === true && socket.writable) {
        // An answer under way (a client that stopped sending its body early) is finished, then the
        // connection goes; a stream is ended where it stands.
        if (!inFlight.writableEnded) inFlight.end();
        inFlight.once("finish", () => socket.destroy());
        setTimeout(() => socket.destroy(), FINISH_ANSWER_MS).unref();
        return;
      }
      if (!socket.writable || inFlight?.headersSent === true || answeredEarly.has(socket)) {
        socket.destroy();
        return;
      }
      const [code, message]: [ErrorCode, string] = err.code === "HPE_HEADER_OVERFLOW"
        ? ["headers_too_large", "the request's headers are larger than the node accepts"]
        : err.code === "HPE_URI_TOO_LONG" ? ["uri_too_long", "the URL is longer than the node accepts"]
          : ["bad_request", `malformed HTTP request (${err.code ?? err.message})`];
      const raw: unknown = err.rawPacket;
      const head = inFlight?.req !== undefined ? inFlight.req.method === "HEAD" : Buffer.isBuffer(raw) && raw.subarray(0, 5).toString("latin1") === "HEAD ";
      endWithError(socket, code, message, head);
    },
  };
}

/**
 * What makes a request unanswerable as sent, whatever else is wrong with it: HTTP/1.1 requires exactly
 * one Host field, and a valid one (RFC 9112 3.2), and a body length it can know; a server MUST answer
 * 400 otherwise.
 */
function framingProblem(raw: IncomingMessage): string | null {
  if (raw.httpVersionMajor !== 1 || raw.httpVersionMinor < 1) return null;
  const fields = raw.rawHeaders.filter((_, i) => i % 2 === 0 && raw.rawHeaders[i]!.toLowerCase() === "host").length;
  const host = raw.headers.host;
  const m = host === undefined ? null : /^(\[[0-9A-Fa-f:.]+\]|(?:[A-Za-z0-9._~!$&'()*+,;=-]|%[0-9A-Fa-f]{2})*)(?::([0-9]{0,5}))?$/.exec(host);
  if (fields !== 1 || m === null || Number(m[2] ?? 0) > 65_535) {
    return fields === 0 ? "the request has no Host header" : fields > 1 ? "the request has more than one Host header" : "the Host header is not a valid host[:port]";
  }
  // RFC 9112 6.3: a body whose last transfer coding is not chunked has no knowable length.
  const te = raw.headers["transfer-encoding"];
  if (te !== undefined && te.split(",").map((c) => c.trim().toLowerCase()).pop() !== "chunked") {
    return `Transfer-Encoding ${JSON.stringify(te)} does not end in chunked: the body's length cannot be known`;
  }
  return null;
}

function errorBody(code: ErrorCode, message: string): string {
  return JSON.stringify({ error: { code, message } });
}

/**
 * Answers on a bare socket (requests that never reach fastify) in the envelope, then closes it; an
 * answer to HEAD has no body.
 */
function endWithError(socket: Socket, code: ErrorCode, message: string, head: boolean, extraHeaders = ""): void {
  const body = head ? "" : errorBody(code, message);
  const status = ERRORS[code].status;
  socket.end(`HTTP/1.1 ${status} ${STATUS_CODES[status] ?? "Error"}\r\n${extraHeaders}Content-Type: application/json; charset=utf-8\r\n` +
    `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
}

/**
 * The rest of a refused body is read and thrown away, up to a bound in bytes and time; then the
 * connection goes. `from` is the request, or the connection itself once Node has handed it over (CONNECT).
 */
const DISCARD_BYTES_MAX = 1 << 30;
const DISCARD_TIMEOUT_MS = 30_000;

function discardBody(from: IncomingMessage | Socket): void {
  const socket = from instanceof Socket ? from : from.socket;
  let bytes = 0;
  const done = () => {
    clearTimeout(timer);
    from.removeListener("data", onData);
  };
  const giveUp = () => {
    done();
    socket.destroy();
  };
  const onData = (chunk: Buffer) => {
    bytes += chunk.length;
    if (bytes > DISCARD_BYTES_MAX) giveUp();
  };
  const timer = setTimeout(giveUp, DISCARD_TIMEOUT_MS);
  timer.unref();
  from.on("data", onData).once("end", done).once("error", done).once("close", done);
  from.resume();
}

/** A route's path template as a matcher of concrete paths (":id" matches one segment). */
function templateMatcher(url: string): RegExp {
  const escaped = url.split("/").map((seg) => (seg.startsWith(":") ? "[^/]+" : seg.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"))).join("/");
  return new RegExp(`^${escaped}$`);
}

export interface EnvelopeHooks {
  /** Counts every error answered, by code. */
  onError: (code: ErrorCode) => void;
  /** Whether the node is stopping (new requests are refused with shutting_down). */
  closing: () => boolean;
}

/** Installs the error handler, 404/405 handling, and the query parameter check on every route. */
export function installEnvelope(app: FastifyInstance, hooks: EnvelopeHooks): void {
  const routes: { matcher: RegExp; methods: Set<string> }[] = [];
  const allowedQuery = new Map<string, Set<string>>();
  app.addHook("onRoute", (route) => {
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    const matcher = templateMatcher(route.url);
    let entry = routes.find((r) => r.matcher.source === matcher.source);
    if (entry === undefined) routes.push(entry = { matcher, methods: new Set() });
    for (const m of methods) entry.methods.add(m);
    const props = (route.schema?.querystring as { properties?: Record<string, unknown> } | undefined)?.properties ?? {};
    for (const m of methods) allowedQuery.set(`${m} ${route.url}`, new Set(Object.keys(props)));
  });

  // On close, fastify ends idle keep-alive connections, but Node counts a connection that has not sent
  // a request yet as busy (until its headers timeout, a minute): those go at once too.
  const connections = new Set<Socket>();
  app.server.on("connection", (socket: Socket) => {
    connections.add(socket);
    socket.once("close", () => connections.delete(socket));
  });
  app.addHook("preClose", async () => {
    for (const socket of connections) {
      if ((socket as Socket & { _httpMessage?: unknown })._httpMessage == null) socket.destroy();
    }
  });
  app.addHook("onRequest", async (req, reply) => {
    reply.raw.once("finish", () => {
      if (!req.raw.complete) answeredEarly.add(req.raw.socket);
    });
    if (hooks.closing()) throw new ApiError("shutting_down", "the node is shutting down: send the request to another node");
    const problem = framingProblem(req.raw);
    if (problem !== null) {
      // What follows on this connection cannot be framed reliably.
      void reply.header("connection", "close");
      throw new ApiError("bad_request", problem);
    }
    // Routes of GET and HEAD read no body: one sent anyway is dropped as it arrives, so that it
    // neither stalls the answer nor hides the client's close.
    const bodySent = Number(req.headers["content-length"] ?? 0) > 0 || req.headers["transfer-encoding"] !== undefined;
    if ((req.method === "GET" || req.method === "HEAD") && bodySent) discardBody(req.raw);
  });
  // Node closes a CONNECT without a word unless someone listens: this API tunnels nothing.
  app.server.on("connect", (req: IncomingMessage, socket: Socket) => {
    const problem = framingProblem(req);
    const code: ErrorCode = problem === null ? "method_not_allowed" : "bad_request";
    hooks.onError(code);
    endWithError(socket, code, problem ?? "CONNECT is not supported: this is not a proxy", false, "Allow: GET, HEAD, PUT, POST, DELETE\r\n");
    // Node hands the connection over paused: unread bytes sent after the request (a body) would keep it
    // from ever seeing the client's close, and it stayed open for good (fuzz seed 307531891: a CONNECT
    // with a 3 MB body).
    discardBody(socket);
  });
  // Node answers an Expect it does not know with a bare 417 unless someone listens.
  app.server.on("checkExpectation", (req: IncomingMessage, res: ServerResponse) => {
    const problem = framingProblem(req);
    const code: ErrorCode = problem === null ? "expectation_failed" : "bad_request";
    hooks.onError(code);
    const body = errorBody(code, problem ?? `Expect: ${String(req.headers.expect)} is not supported (only 100-continue)`);
    res.writeHead(ERRORS[code].status, { "content-type": "application/json; charset=utf-8", "content-length": Buffer.byteLength(body), connection: "close" });
    res.end(req.method === "HEAD" ? undefined : body);
  });
  // Unknown query parameters are refused on every route alike, naming them (a typo must not be ignored).
  app.addHook("preValidation", async (req: FastifyRequest) => {
    const allowed = allowedQuery.get(`${req.method} ${req.routeOptions.url}`);
    if (allowed === undefined) return;
    const unknown = Object.keys(req.query as object).filter((k) => !allowed.has(k));
    if (unknown.length > 0) {
      const takes = allowed.size === 0 ? "this route takes none" : `this route takes: ${[...allowed].join(", ")}`;
      throw new ApiError("unknown_parameter", `unknown query parameter${unknown.length > 1 ? "s" : ""} ${unknown.map((k) => JSON.stringify(k)).join(", ")}; ${takes}`, { parameters: unknown });
    }
  });

  app.setErrorHandler((err: Error, req, reply) => {
    const known = classify(err);
    // A client still sending a body it was refused for would see its connection reset, not the answer:
    // the answer goes now, the rest of the body is read and dropped (bounded), the connection stays.
    if (!req.raw.complete && !req.raw.readableEnded) {
      void reply.removeHeader("connection");
      discardBody(req.raw);
    }
    if (known === null) {
      app.log.error({ err, reqId: req.id, method: req.method, url: req.url }, "request failed with an unexpected error");
      hooks.onError("internal");
      return sendError(reply, "internal", `internal error; quote request ${req.id} when reporting it`, { requestId: req.id });
    }
    hooks.onError(known.code);
    return sendError(reply, known.code, known.message, known.extra);
  });

  app.setNotFoundHandler((req, reply) => {
    const path = req.url.split("?", 1)[0]!;
    const methods = new Set(routes.filter((r) => r.matcher.test(path)).flatMap((r) => [...r.methods]));
    if (methods.size > 0 && !methods.has(req.method)) {
      void reply.header("Allow", [...methods].sort().join(", "));
      hooks.onError("method_not_allowed");
      return sendError(reply, "method_not_allowed", `${req.method} is not allowed on ${path}; allowed: ${[...methods].sort().join(", ")}`);
    }
    hooks.onError("route_not_found");
    return sendError(reply, "route_not_found", `no route ${req.method} ${path}`);
  });
}
