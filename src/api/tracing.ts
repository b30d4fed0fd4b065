/**
 * A `shoal.request` span for each API request that names an operation (records, search, cluster
 * calls; not /metrics, the dashboard's files and polls, or the watch stream), continuing the client's trace when it sends a W3C
 * `traceparent` header. Installed only when the node traces (cli/tracing.ts started an SDK).
 *
 * The span becomes the active context in a callback-style preHandler hook: the handler runs inside
 * that hook's `done`, so every await under it (the gateway, a forward, a proposal) sees the span. An
 * earlier hook would not do: the body is parsed from the socket's events, which run outside it.
 */
import type { IncomingMessage } from "node:http";
import type { FastifyInstance } from "fastify";
import { SpanKind, SpanStatusCode, context, trace } from "@opentelemetry/api";
import { type Span, contextFrom, tracer } from "../util/tracing.js";
import type { Logger } from "../util/logger.js";
import { answeredCode } from "./envelope.js";

/**
 * Operations not traced: the watch stream (a span would last as long as the stream, and may never end
 * if the client vanishes) and what the dashboard polls every few seconds (its stats and logs).
 */
const UNTRACED_OPS = new Set(["watch", "stats", "logs"]);

export function installTracing(app: FastifyInstance, logger: Logger): void {
  const spans = new WeakMap<IncomingMessage, Span>();
  app.addHook("onRequest", (req, _reply, done) => {
    const op = req.routeOptions.config.op;
    if (op === undefined || UNTRACED_OPS.has(op)) {
      done();
      return;
    }
    const span = tracer.startSpan("shoal.request", {
      kind: SpanKind.SERVER,
      attributes: { "http.request.method": req.method, "http.route": req.routeOptions.url ?? "", "shoal.op": op },
    }, contextFrom(req.headers));
    spans.set(req.raw, span);
    done();
  });
  app.addHook("preHandler", (req, _reply, done) => {
    const span = spans.get(req.raw);
    if (span === undefined) done();
    else context.with(trace.setSpan(context.active(), span), done);
  });
  app.addHook("onResponse", (req, reply, done) => {
    const span = spans.get(req.raw);
    if (span !== undefined) {
      spans.delete(req.raw);
      const outcome = answeredCode(reply) ?? (reply.statusCode < 400 ? "ok" : `http_${reply.statusCode}`);
      span.setAttributes({ "http.response.status_code": reply.statusCode, "shoal.outcome": outcome });
      if (reply.statusCode >= 500) span.setStatus({ code: SpanStatusCode.ERROR, message: outcome });
      span.end();
      const c = span.spanContext();
      logger.debug({ trace_id: c.traceId, span_id: c.spanId, op: req.routeOptions.config.op, status: reply.statusCode, outcome, ms: reply.elapsedTime }, "request");
    }
    done();
  });
  // A client gone before its answer: the span still ends, said so, and the work under it ends as it does.
  app.addHook("onRequestAbort", (req, done) => {
    const span = spans.get(req.raw);
    if (span !== undefined) {
      spans.delete(req.raw);
      span.setAttributes({ "shoal.outcome": "client_aborted" });
      span.end();
    }
    done();
  });
}
