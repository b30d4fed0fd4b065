/**
 * OpenTelemetry tracing for `shoal start`: off unless an OTLP endpoint is configured (`--otlp-endpoint`,
 * or the standard OTEL_EXPORTER_OTLP_TRACES_ENDPOINT / OTEL_EXPORTER_OTLP_ENDPOINT variables). Then the
 * SDK is loaded (not before: it is large, and an untraced node has no use for it), spans go to the
 * collector over OTLP/HTTP in batches, W3C trace context propagates from clients and between nodes,
 * and each span's resource names the node. Metrics stay with Prometheus and logs with pino: the SDK's
 * own metric and log pipelines are not started.
 */
import type { Logger } from "../util/logger.js";
import { ConfigError } from "./config-error.js";

/** How long a stopping node waits for its last spans to be exported. */
const SHUTDOWN_WAIT_MS = 3000;
/** How long one export to the collector may take. */
const EXPORT_TIMEOUT_MS = 2000;

export interface TracingOptions {
  /** Where spans go: a full OTLP/HTTP traces URL (…/v1/traces). */
  url: string;
  /** Share of traces started here that are recorded (0..1); a client's sampled trace is always followed. */
  sampleRatio: number;
}

/** The tracing asked for by the flags and the environment, or null (tracing off). */
export function tracingOptions(flags: { otlpEndpoint?: string; traceSampleRatio?: string }, env: NodeJS.ProcessEnv = process.env): TracingOptions | null {
  // An empty variable counts as unset (as the OpenTelemetry specification says), so it hides no other.
  const set = (v: string | undefined) => (v === undefined || v.trim() === "" ? undefined : v);
  const tracesVar = set(env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]);
  const base = set(flags.otlpEndpoint) ?? tracesVar ?? set(env["OTEL_EXPORTER_OTLP_ENDPOINT"]);
  if (base === undefined) return null;
  let url: URL;
  try {
    url = new URL(base);
  } catch {
    throw new ConfigError(`--otlp-endpoint: ${JSON.stringify(base)} is not a URL (e.g. http://127.0.0.1:4318)`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") throw new ConfigError(`--otlp-endpoint: ${JSON.stringify(base)} must be http:// or https:// (OTLP over HTTP)`);
  // The signal-specific variable is the full URL; the others name the collector, to which /v1/traces is added.
  const full = set(flags.otlpEndpoint) === undefined && tracesVar !== undefined;
  if (!full && !url.pathname.endsWith("/v1/traces")) url.pathname = `${url.pathname.replace(/\/+$/, "")}/v1/traces`;
  const ratioText = flags.traceSampleRatio ?? "1";
  const sampleRatio = Number(ratioText);
  if (ratioText.trim() === "" || !Number.isFinite(sampleRatio) || sampleRatio < 0 || sampleRatio > 1) {
    throw new ConfigError(`--trace-sample-ratio: ${JSON.stringify(ratioText)} is not a number from 0 to 1`);
  }
  return { url: url.toString(), sampleRatio };
}

export interface Tracing {
  /** Exports what is buffered (bounded by the exporter's timeout) and stops. */
  stop(): Promise<void>;
}

/** Registers the SDK for this process: from here on, the API's spans are recorded and exported. */
export async function startTracing(nodeId: number, opts: TracingOptions, logger: Logger): Promise<Tracing> {
  const [{ NodeSDK }, { OTLPTraceExporter }, { resourceFromAttributes }, { ParentBasedSampler, TraceIdRatioBasedSampler }] = await Promise.all([
    import("@opentelemetry/sdk-node"), import("@opentelemetry/exporter-trace-otlp-http"), import("@opentelemetry/resources"), import("@opentelemetry/sdk-trace"),
  ]);
  const sdk = new NodeSDK({
    resource: resourceFromAttributes({ "service.name": "shoal", "service.instance.id": String(nodeId), "shoal.node": nodeId }),
    autoDetectResources: false,
    traceExporter: new OTLPTraceExporter({ url: opts.url, timeoutMillis: EXPORT_TIMEOUT_MS }),
    sampler: new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(opts.sampleRatio) }),
    instrumentations: [],
    metricReaders: [],
    logRecordProcessors: [],
  });
  sdk.start();
  logger.info({ otlp: opts.url, sampleRatio: opts.sampleRatio }, "tracing: spans are exported over OTLP/HTTP");
  return {
    // Bounded: a collector that is down must not hold up a node's shutdown (the spans are lost, and said so).
    stop: () => new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        logger.warn({ waitedMs: SHUTDOWN_WAIT_MS }, "tracing: the collector did not take the last spans in time; they are dropped");
        resolve();
      }, SHUTDOWN_WAIT_MS);
      timer.unref();
      sdk.shutdown().then(() => resolve(), (e: unknown) => {
        logger.warn({ err: e }, "tracing: the last spans could not be exported");
        resolve();
      }).finally(() => clearTimeout(timer));
    }),
  };
}
