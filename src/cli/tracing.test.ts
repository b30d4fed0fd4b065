/**
 * Tracing end to end: three `shoal start` processes export spans over OTLP/HTTP to a collector this test
 * runs (it decodes the JSON the exporter sends). A put sent to a node that does not lead the record's
 * shard must show, in the client's own trace, the request and the forward on that node and the
 * forwarded request, the proposal, its commit and its apply on the leader; a search shows one span per
 * shard; the nodes' log lines of a traced request carry its trace id.
 */
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { type AddressInfo } from "node:net";
import { api, startCluster, stop } from "./testing.js";
import { tracingOptions } from "./tracing.js";
import { ConfigError } from "./config-error.js";
import { waitFor } from "../node/testing.js";

test("tracing is off unless an endpoint is configured; flags and the standard variables name the collector", () => {
  assert.equal(tracingOptions({}, {}), null);
  assert.deepEqual(tracingOptions({ otlpEndpoint: "http://127.0.0.1:4318" }, {}), { url: "http://127.0.0.1:4318/v1/traces", sampleRatio: 1 });
  assert.deepEqual(tracingOptions({}, { OTEL_EXPORTER_OTLP_ENDPOINT: "http://collector:4318/" }), { url: "http://collector:4318/v1/traces", sampleRatio: 1 });
  // The signal's own variable is the URL as is.
  assert.deepEqual(tracingOptions({ traceSampleRatio: "0.25" }, { OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: "https://c.example/otlp/spans" }),
    { url: "https://c.example/otlp/spans", sampleRatio: 0.25 });
  assert.throws(() => tracingOptions({ otlpEndpoint: "collector:4318" }, {}), (e: Error) => e instanceof ConfigError && /http:\/\/ or https:\/\//.test(e.message));
  assert.throws(() => tracingOptions({ otlpEndpoint: "not a url" }, {}), (e: Error) => e instanceof ConfigError && /is not a URL/.test(e.message));
  // An empty variable is unset: it hides neither the other variable nor turns tracing off.
  assert.deepEqual(tracingOptions({}, { OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: "", OTEL_EXPORTER_OTLP_ENDPOINT: "http://c:4318" }), { url: "http://c:4318/v1/traces", sampleRatio: 1 });
  assert.equal(tracingOptions({}, { OTEL_EXPORTER_OTLP_ENDPOINT: " " }), null);
  for (const bad of ["1.5", "-0.1", "", "half"]) {
    assert.throws(() => tracingOptions({ otlpEndpoint: "http://c:4318", traceSampleRatio: bad }, {}), (e: Error) => e instanceof ConfigError && /--trace-sample-ratio/.test(e.message));
  }
});

interface OtlpSpan { traceId: string; spanId: string; parentSpanId?: string; name: string; attributes?: { key: string; value: Record<string, unknown> }[] }
interface Span { node: number; traceId: string; spanId: string; parent: string; name: string; attrs: Record<string, unknown> }

/** A collector for OTLP/HTTP JSON: every span received, with the node its resource names. */
async function collector(): Promise<{ url: string; spans: Span[]; close: () => Promise<void> }> {
  const spans: Span[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      assert.equal(req.url, "/v1/traces");
      assert.match(String(req.headers["content-type"]), /application\/json/);
      const body = JSON.parse(Buffer.concat(chunks).toString("utf8")) as {
        resourceSpans: { resource: { attributes: { key: string; value: Record<string, unknown> }[] }; scopeSpans: { spans: OtlpSpan[] }[] }[];
      };
      for (const rs of body.resourceSpans) {
        const node = Number(rs.resource.attributes.find((a) => a.key === "service.instance.id")?.value["stringValue"]);
        for (const ss of rs.scopeSpans) {
          for (const s of ss.spans) {
            const attrs = Object.fromEntries((s.attributes ?? []).map((a) => [a.key, Object.values(a.value)[0]]));
            spans.push({ node, traceId: s.traceId, spanId: s.spanId, parent: s.parentSpanId ?? "", name: s.name, attrs });
          }
        }
      }
      res.writeHead(200, { "content-type": "application/json" }).end("{}");
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as AddressInfo).port;
  return { url: `http://127.0.0.1:${port}`, spans, close: () => new Promise((r) => server.close(() => r())) };
}

test("a traced put shows spans from two nodes sharing the client's trace id; a search shows a span per shard", async (t) => {
  const otlp = await collector();
  after(() => otlp.close());
  // Exported every 100 ms instead of every 5 s: the test waits on what arrives.
  process.env["OTEL_BSP_SCHEDULE_DELAY"] = "100";
  const c = await startCluster(["--otlp-endpoint", otlp.url, "--log-level", "debug"]);
  try {
    // The same record put through each node, each put in its own trace: at most one node leads its shard.
    const traces = new Map<number, string>();
    let leader = 0;
    for (const gateway of [1, 2, 3]) {
      const traceId = randomBytes(16).toString("hex");
      traces.set(gateway, traceId);
      const r = await fetch(`http://127.0.0.1:${c.http.get(gateway)}/v1/collections/default/records/traced`, {
        method: "PUT", headers: { "content-type": "application/json", traceparent: `00-${traceId}-${randomBytes(8).toString("hex")}-01` },
        body: JSON.stringify({ payload: { gateway } }), signal: AbortSignal.timeout(10_000),
      });
      assert.equal(r.status, 200, await r.text());
      const hint = r.headers.get("shoal-leader");
      if (hint !== null) leader = Number(hint.split(":")[1]);
    }
    assert.ok(leader !== 0, "at least two of the three puts were forwarded, and named the leader");
    const forwardedVia = [1, 2, 3].filter((n) => n !== leader);
    const of = (traceId: string) => otlp.spans.filter((s) => s.traceId === traceId);
    const has = (spans: Span[], node: number, name: string) => spans.find((s) => s.node === node && s.name === name);
    await waitFor("every forwarded put's spans, from both nodes", () => forwardedVia.every((g) => {
      const spans = of(traces.get(g)!);
      return ["shoal.request", "shoal.forward"].every((n) => has(spans, g, n) !== undefined)
        && ["shoal.forwarded", "shoal.propose", "shoal.commit", "shoal.apply"].every((n) => has(spans, leader, n) !== undefined);
    }), 15_000);
    for (const g of forwardedVia) {
      const spans = of(traces.get(g)!);
      const request = has(spans, g, "shoal.request")!;
      const forward = has(spans, g, "shoal.forward")!;
      const forwarded = has(spans, leader, "shoal.forwarded")!;
      const propose = has(spans, leader, "shoal.propose")!;
      assert.equal(new Set(spans.map((s) => s.node)).size, 2, `trace ${traces.get(g)}: spans from the gateway ${g} and the leader ${leader}`);
      // One tree: the client's span, then across the nodes, down to the proposal's commit and apply.
      assert.equal(forward.parent, request.spanId);
      assert.equal(forwarded.parent, forward.spanId, "the leader's span is a child of the gateway's forward");
      assert.equal(propose.parent, forwarded.spanId);
      assert.equal(has(spans, leader, "shoal.commit")!.parent, propose.spanId);
      assert.equal(has(spans, leader, "shoal.apply")!.parent, propose.spanId);
      assert.equal(request.attrs["shoal.op"], "put");
      assert.equal(request.attrs["http.response.status_code"], 200);
      assert.equal(typeof propose.attrs["raft.index"], "number", "the proposal's span names its index");
      assert.equal(forward.attrs["shoal.to"], leader);
    }
    // The put sent to the leader itself: traced there, with no forward and no other node.
    await waitFor("the leader's own put's spans", () => has(of(traces.get(leader)!), leader, "shoal.apply") !== undefined, 15_000);
    const direct = of(traces.get(leader)!);
    assert.deepEqual([...new Set(direct.map((s) => s.node))], [leader]);
    assert.equal(direct.filter((s) => s.name === "shoal.forward").length, 0);
    const shown = of(traces.get(forwardedVia[0]!)!).map((s) => `node ${s.node} ${s.name}`).join(", ");
    t.diagnostic(`put through node ${forwardedVia[0]}, leader ${leader}, trace ${traces.get(forwardedVia[0]!)}: ${shown}`);

    // A search over a 3-shard collection: one span per shard, each in the search's trace.
    // Until every node is judged healthy, a collection asking for 3 replicas is refused (409 not_enough_nodes).
    await waitFor("the collection created", async () => (await api(c, 1, "POST", "/v1/collections", { name: "docs", shards: 3, vectors: { dim: 4, metric: "cosine" } })).status === 200, 15_000);
    const records = Array.from({ length: 30 }, (_, i) => ({ id: `r${i}`, payload: { i }, vector: [1, i, i % 3, 1] }));
    assert.equal((await api(c, 1, "POST", "/v1/collections/docs/records", { records })).status, 200);
    const searchTrace = randomBytes(16).toString("hex");
    const r = await fetch(`http://127.0.0.1:${c.http.get(2)}/v1/collections/docs/search`, {
      method: "POST", headers: { "content-type": "application/json", traceparent: `00-${searchTrace}-${randomBytes(8).toString("hex")}-01` },
      body: JSON.stringify({ vector: [1, 2, 0, 1], k: 3 }), signal: AbortSignal.timeout(10_000),
    });
    assert.equal(r.status, 200, await r.text());
    await waitFor("a span per shard of the search", () => new Set(of(searchTrace).filter((s) => s.name === "shoal.search.shard").map((s) => s.attrs["shoal.shard"])).size === 3, 15_000);
    const request = has(of(searchTrace), 2, "shoal.request")!;
    assert.ok(of(searchTrace).filter((s) => s.name === "shoal.search.shard").every((s) => s.parent === request.spanId && s.node === 2));

    // The gateway's log line of a traced request carries the trace id (pino, JSON lines).
    const g = forwardedVia[0]!;
    await waitFor("the request's log line", () => readFileSync(join(c.dir, `n${g}.log`), "utf8").includes(traces.get(g)!), 10_000);
    const line = readFileSync(join(c.dir, `n${g}.log`), "utf8").split("\n").find((l) => l.includes(traces.get(g)!))!;
    const logged = JSON.parse(line) as { node: number; trace_id: string; op: string; status: number };
    assert.deepEqual([logged.node, logged.trace_id, logged.op, logged.status], [g, traces.get(g), "put", 200]);
  } finally {
    await stop(c);
    delete process.env["OTEL_BSP_SCHEDULE_DELAY"];
  }
});
