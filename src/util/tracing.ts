/**
 * Tracing of a request's path across nodes, through OpenTelemetry's API. The API is a no-op until the
 * process registers an SDK (`cli/tracing.ts` does, only when an OTLP endpoint is configured), so the
 * simulator and untraced nodes pay one context lookup per request and allocate no span. Every helper
 * here first asks whether the active span is recorded, and does nothing more when it is not.
 *
 * Spans (names are stable: dashboards and tests look for them):
 * - `shoal.request` — a client's HTTP request at the node it reached (api/tracing.ts);
 * - `shoal.forward` — the gateway sending it to another node (the leader, or a replica), and
 *   `shoal.forwarded` — that node carrying it out, a child of the sender's span in the same trace;
 * - `shoal.propose` — a proposal on the leader from its call until answered, with children
 *   `shoal.commit` (appended to the leader's log until committed) and `shoal.apply` (applied, stored and
 *   answered);
 * - `shoal.search.shard` — one shard's part of a search or count fan-out.
 */
import { type Attributes, type Context, ROOT_CONTEXT, type Span, SpanKind, SpanStatusCode, context, propagation, trace } from "@opentelemetry/api";

export type { Span } from "@opentelemetry/api";

export const tracer = trace.getTracer("shoal");

/** The active span when it is being recorded (tracing on, and this trace sampled), else undefined. */
export function recordingSpan(): Span | undefined {
  const span = trace.getActiveSpan();
  return span !== undefined && span.isRecording() ? span : undefined;
}

/** The W3C trace context of the active span, for a message to another node; undefined when not traced. */
export function traceCarrier(): Record<string, string> | undefined {
  if (recordingSpan() === undefined) return undefined;
  const carrier: Record<string, string> = {};
  propagation.inject(context.active(), carrier);
  return Object.keys(carrier).length > 0 ? carrier : undefined;
}

/** The context a carrier from another node (or a client's `traceparent` header) continues. */
export function contextFrom(carrier: Record<string, unknown>): Context {
  return propagation.extract(ROOT_CONTEXT, carrier);
}

/** Marks the span failed with the error's name and message (the error table's code shows in the name). */
export function failSpan(span: Span, err: unknown): void {
  const e = err instanceof Error ? err : new Error(String(err));
  span.recordException(e);
  span.setStatus({ code: SpanStatusCode.ERROR, message: `${e.name}: ${e.message}` });
}

/** Runs `fn` in a span, ending it when `fn` settles; the span is a child of `parent` (default: the active context). */
export function inSpan<T>(name: string, attributes: Attributes, fn: () => Promise<T>, parent?: Context, kind: SpanKind = SpanKind.INTERNAL): Promise<T> {
  const ctx = parent ?? context.active();
  // Untraced: no span, not even a non-recording one. A carrier from a sampled trace makes a recorded one.
  if (trace.getSpan(ctx)?.isRecording() !== true && parent === undefined) return fn();
  return tracer.startActiveSpan(name, { kind, attributes }, ctx, async (span) => {
    try {
      return await fn();
    } catch (e) {
      failSpan(span, e);
      throw e;
    } finally {
      span.end();
    }
  });
}

/** A child span of `parent` that the caller ends (spans whose start and end are in different turns). */
export function childSpan(parent: Span, name: string, attributes: Attributes): Span {
  return tracer.startSpan(name, { attributes }, trace.setSpan(ROOT_CONTEXT, parent));
}

/**
 * A proposal's spans on its leader. Invariant: `commit` is open only between the entry's append to the
 * leader's log and the turn that applies it (or the proposal's answer, whichever comes first).
 */
export interface ProposalSpans {
  propose: Span;
  commit?: Span;
}

/** Spans for a proposal about to be made, when the request proposing it is traced; else undefined. */
export function proposalSpans(shard: number): ProposalSpans | undefined {
  if (recordingSpan() === undefined) return undefined;
  return { propose: tracer.startSpan("shoal.propose", { attributes: { "shoal.shard": shard } }) };
}

/** The leader appended the proposal at `index` of `term`: replication toward a quorum starts. */
export function proposalAppended(spans: ProposalSpans, index: number, term: number): void {
  spans.propose.setAttributes({ "raft.index": index, "raft.term": term });
  spans.commit = childSpan(spans.propose, "shoal.commit", { "raft.index": index });
}

/**
 * The proposal's entry was committed and applied in a turn that began applying at `applyStartMs`
 * (performance.now()): the commit span ends there, and an apply span covers the rest, until now.
 */
export function proposalApplied(spans: ProposalSpans, applyStartMs: number): void {
  spans.commit?.end(applyStartMs);
  spans.commit = undefined;
  tracer.startSpan("shoal.apply", { startTime: applyStartMs }, trace.setSpan(ROOT_CONTEXT, spans.propose)).end();
}

/** The proposal was answered (its result, an error, or a timeout with an unknown outcome). */
export function proposalSettled(spans: ProposalSpans, err?: Error): void {
  spans.commit?.end();
  spans.commit = undefined;
  if (err !== undefined) failSpan(spans.propose, err);
  spans.propose.end();
}

/** Trace and span ids of the active recorded span, for a structured log line; empty when not traced. */
export function traceFields(): { trace_id?: string; span_id?: string } {
  const span = recordingSpan();
  if (span === undefined) return {};
  const c = span.spanContext();
  return { trace_id: c.traceId, span_id: c.spanId };
}

export { SpanKind };
