/**
 * The tracing helpers under a registered SDK (an in-memory exporter, a synchronous context manager):
 * nothing is made outside a traced request; inside one, log lines carry its ids through the pino
 * mixin, the carrier continues the trace on another node, and a proposal's spans form one tree.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { Writable } from "node:stream";
import { context, propagation, trace } from "@opentelemetry/api";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import { InMemorySpanExporter, SimpleSpanProcessor, StackContextManager, TracerProvider } from "@opentelemetry/sdk-trace";
import { pino } from "pino";
import { contextFrom, inSpan, proposalAppended, proposalApplied, proposalSettled, proposalSpans, traceCarrier, traceFields, tracer } from "./tracing.js";

const exporter = new InMemorySpanExporter();
trace.setGlobalTracerProvider(new TracerProvider({ spanProcessors: [new SimpleSpanProcessor({ exporter })] }));
context.setGlobalContextManager(new StackContextManager().enable());
propagation.setGlobalPropagator(new W3CTraceContextPropagator());

test("outside a traced request nothing is made; inside one, log lines carry its ids and the carrier continues its trace", async () => {
  exporter.reset();
  assert.deepEqual(traceFields(), {});
  assert.equal(traceCarrier(), undefined);
  assert.equal(proposalSpans(1), undefined);
  assert.equal(await inSpan("shoal.forward", {}, async () => 7), 7);
  assert.equal(exporter.getFinishedSpans().length, 0, "no span without a traced request");

  const lines: string[] = [];
  const logger = pino({ mixin: traceFields }, new Writable({ write(chunk: Buffer, _enc, done) { lines.push(chunk.toString()); done(); } }));
  let carrier: Record<string, string> | undefined;
  const root = tracer.startSpan("shoal.request");
  context.with(trace.setSpan(context.active(), root), () => {
    logger.info("inside");
    carrier = traceCarrier();
  });
  root.end();
  const { traceId, spanId } = root.spanContext();
  const logged = JSON.parse(lines[0]!) as { trace_id: string; span_id: string; msg: string };
  assert.deepEqual([logged.trace_id, logged.span_id, logged.msg], [traceId, spanId, "inside"]);
  assert.match(carrier?.["traceparent"] ?? "", new RegExp(`^00-${traceId}-${spanId}-01$`));

  // Another node continues the trace from the carrier; an error marks its span.
  await assert.rejects(inSpan("shoal.forwarded", { "shoal.shard": 3 }, async () => {
    throw new Error("not the leader");
  }, contextFrom(carrier!)), /not the leader/);
  const forwarded = exporter.getFinishedSpans().find((s) => s.name === "shoal.forwarded")!;
  assert.equal(forwarded.spanContext().traceId, traceId);
  assert.equal(forwarded.parentSpanContext?.spanId, spanId);
  assert.equal(forwarded.status.code, 2, "ERROR");
  assert.equal(forwarded.attributes["shoal.shard"], 3);
});

test("a proposal's spans: propose, with commit from its append and apply from its turn's start, all in the request's trace", () => {
  exporter.reset();
  const root = tracer.startSpan("shoal.request");
  const spans = context.with(trace.setSpan(context.active(), root), () => proposalSpans(5))!;
  assert.ok(spans !== undefined);
  proposalAppended(spans, 42, 3);
  const applyStartMs = performance.now();
  proposalApplied(spans, applyStartMs);
  assert.equal(spans.commit, undefined, "the commit span ended when the apply began");
  proposalSettled(spans);
  root.end();
  const by = new Map(exporter.getFinishedSpans().map((s) => [s.name, s]));
  const propose = by.get("shoal.propose")!;
  assert.equal(propose.parentSpanContext?.spanId, root.spanContext().spanId);
  assert.deepEqual([propose.attributes["shoal.shard"], propose.attributes["raft.index"], propose.attributes["raft.term"]], [5, 42, 3]);
  for (const name of ["shoal.commit", "shoal.apply"]) {
    const s = by.get(name)!;
    assert.equal(s.parentSpanContext?.spanId, propose.spanContext().spanId, `${name} is a child of the proposal`);
    assert.equal(s.spanContext().traceId, root.spanContext().traceId);
  }
  // A proposal that failed (a timeout: its outcome unknown) says so.
  assert.equal(context.with(trace.setSpan(context.active(), root), () => proposalSpans(5)), undefined, "an ended request makes no more spans");
  const root2 = tracer.startSpan("shoal.request");
  const failed = context.with(trace.setSpan(context.active(), root2), () => proposalSpans(5))!;
  proposalAppended(failed, 43, 3);
  proposalSettled(failed, new Error("not applied within 10000 ms"));
  const last = exporter.getFinishedSpans().filter((s) => s.name === "shoal.propose").at(-1)!;
  assert.match(last.status.message ?? "", /not applied within/);
  assert.equal(exporter.getFinishedSpans().filter((s) => s.name === "shoal.commit").length, 2, "an open commit span ends with its proposal");
});
