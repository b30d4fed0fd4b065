import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { startApiCluster } from "./testing.js";
import { waitFor } from "../node/testing.js";
import { META_GROUP } from "../node/multi-raft.js";

const DEPLOY = fileURLToPath(new URL("../../../deploy/", import.meta.url));
const RULES = `${DEPLOY}prometheus/alerts.yml`;
const DASHBOARD = `${DEPLOY}grafana/shoal.json`;

/** Suffixes a histogram or gauge may end in: base units (seconds, bytes) or what is counted. */
const UNITS = /_(seconds|bytes|records|entries|shards|nodes|ops|frames|operations|per_second|ratio|info|active|breaker|turns)$/;

/**
 * Where a Prometheus text exposition breaks the conventions this project holds its metrics to
 * (https://prometheus.io/docs/practices/naming/): every family has HELP and TYPE, counters and only
 * counters end in `_total`, units are base units named last, names and labels are snake_case, and no
 * series appears twice. Returns one line per problem.
 */
export function conventionProblems(text: string): string[] {
  const problems: string[] = [];
  const help = new Map<string, string>();
  const type = new Map<string, string>();
  const seen = new Set<string>();
  for (const line of text.split("\n")) {
    if (line === "") continue;
    const meta = /^# (HELP|TYPE) (\S+) ?(.*)$/.exec(line);
    if (meta !== null) (meta[1] === "HELP" ? help : type).set(meta[2]!, meta[3]!);
    if (line.startsWith("#")) continue;
    const series = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? \S+$/.exec(line);
    if (series === null) {
      problems.push(`not a sample line: ${line}`);
      continue;
    }
    if (seen.has(`${series[1]}${series[2] ?? ""}`)) problems.push(`series twice: ${series[1]}${series[2] ?? ""}`);
    seen.add(`${series[1]}${series[2] ?? ""}`);
    for (const l of (series[2] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="/g)) if (!/^[a-z][a-z0-9_]*$/.test(l[1]!)) problems.push(`${series[1]}: label ${l[1]} is not snake_case`);
  }
  for (const [name, t] of type) {
    if (!name.startsWith("shoal_")) continue; // Node's own process_* and nodejs_* families are prom-client's
    if ((help.get(name) ?? "") === "") problems.push(`${name}: no HELP`);
    if (!/^shoal_[a-z0-9_]+$/.test(name)) problems.push(`${name}: not snake_case`);
    if (/_(ms|milliseconds|us|microseconds|kb|kib|mb|mib|percent)(_|$)/.test(name)) problems.push(`${name}: not in base units (seconds, bytes, ratios)`);
    if (t === "counter" && !name.endsWith("_total")) problems.push(`${name}: a counter not ending in _total`);
    if (t !== "counter" && name.endsWith("_total")) problems.push(`${name}: a ${t} ending in _total`);
    if ((t === "histogram" || t === "gauge") && !UNITS.test(name)) problems.push(`${name}: a ${t} whose name does not end in its unit`);
  }
  for (const name of help.keys()) if (!type.has(name)) problems.push(`${name}: HELP without TYPE`);
  return problems;
}

/** The value of the sample of `name` whose labels are exactly `labels` (in any order), or null. */
function sampleOf(text: string, name: string, labels: Record<string, string>): string | null {
  const want = Object.entries(labels).map(([k, v]) => `${k}="${v}"`).sort().join(",");
  for (const line of text.split("\n")) {
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (m === null || m[1] !== name) continue;
    if ((m[2] ?? "").split(/,(?=[a-zA-Z_]+=")/).filter((x) => x !== "").sort().join(",") === want) return m[3]!;
  }
  return null;
}

test("the conventions check finds what breaks them", () => {
  const bad = [
    "# HELP shoal_x_ms latency", "# TYPE shoal_x_ms histogram", "shoal_x_ms_count 1",
    "# TYPE shoal_writes counter", "shoal_writes{Node=\"1\"} 3",
    "# HELP shoal_up_total up", "# TYPE shoal_up_total gauge", "shoal_up_total 1", "shoal_up_total 1",
  ].join("\n");
  const found = conventionProblems(bad).join("\n");
  for (const expected of [/shoal_x_ms: not in base units/, /shoal_writes: no HELP/, /shoal_writes: a counter not ending in _total/, /label Node is not snake_case/,
    /shoal_up_total: a gauge ending in _total/, /series twice: shoal_up_total/]) assert.match(found, expected);
  assert.deepEqual(conventionProblems("# HELP shoal_a_total a\n# TYPE shoal_a_total counter\nshoal_a_total{node=\"1\"} 2\n"), []);
});

test("/metrics: request latency by operation, collection and outcome; Raft, WAL, transport, cluster and disk families; Prometheus conventions", async (t) => {
  const api = await startApiCluster(3, 2, { placement: true });
  try {
    await api.registered();
    const app = api.apps.get(1)!;
    const rec = (id: string) => `/v1/collections/default/records/${id}`;
    for (let i = 0; i < 20; i++) assert.equal((await app.inject({ method: "PUT", url: rec(`m${i}`), payload: { payload: { i } } })).statusCode, 200);
    assert.equal((await app.inject({ url: rec("m1") })).statusCode, 200);
    assert.equal((await app.inject({ url: rec("absent") })).statusCode, 404);
    assert.equal((await app.inject({ method: "DELETE", url: rec("m2") })).statusCode, 200);
    assert.equal((await app.inject({ url: "/v1/collections/default/records?limit=5" })).statusCode, 200);
    assert.equal((await app.inject({ url: "/v1/collections/nonesuch/records/x" })).statusCode, 404);
    const scrape = async (id: number) => (await api.apps.get(id)!.inject({ url: "/metrics" })).body;
    // A leader change (the first leaders after the start are not changes): shard 1's leadership handed on.
    const one = api.c.nodes.get(1)!;
    await waitFor("shard 1's leader known", () => one.leaderOf(1) !== 0);
    const from = one.leaderOf(1);
    const to = from === 3 ? 2 : 3;
    // Asked through the API: a manual operator of the placement driver, counted by kind once it ended.
    const asked = await app.inject({ method: "POST", url: "/v1/cluster/shards/1/transfer-leader?waitMs=30000", payload: { to } });
    assert.equal(asked.statusCode, 200, asked.body);
    await waitFor("node 1 saw the new leader", () => one.leaderOf(1) === to, 15_000);
    // Counted when node 1's loop takes the Ready that names the new leader (a turn after Raft learns it).
    await waitFor("the leader change counted", async () => /^[1-9]/.test(sampleOf(await scrape(1), "shoal_raft_leader_changes_total", { node: "1" }) ?? ""), 10_000);
    // The placement driver runs on the metadata leader: its node exports the cluster's health.
    await waitFor("a metadata leader", () => api.c.nodes.get(1)!.leaderOf(META_GROUP) !== 0);
    const pdNode = api.c.nodes.get(1)!.leaderOf(META_GROUP);
    const text = await scrape(1);
    const problems = conventionProblems(text);
    assert.deepEqual(problems, [], problems.join("\n"));
    const expected: [string, Record<string, string>, RegExp][] = [
      ["shoal_request_duration_seconds_bucket", { op: "put", collection: "default", outcome: "ok", le: "0.005" }, /^\d+$/],
      ["shoal_request_duration_seconds_count", { op: "get", collection: "default", outcome: "not_found" }, /^1$/],
      ["shoal_request_duration_seconds_count", { op: "get", collection: "", outcome: "collection_not_found" }, /^1$/], // an unknown name is no label value
      ["shoal_request_duration_seconds_count", { op: "delete", collection: "default", outcome: "ok" }, /^1$/],
      ["shoal_request_duration_seconds_count", { op: "scan", collection: "default", outcome: "ok" }, /^1$/],
      ["shoal_raft_proposals_total", {}, /^[1-9]/], ["shoal_raft_leader_changes_total", {}, /^[1-9]/],
      ["shoal_raft_apply_lag_entries", {}, /^\d+$/], ["shoal_raft_replication_lag_entries", {}, /^\d+$/],
      ["shoal_raft_leaderless_shards", {}, /^0$/], ["shoal_raft_snapshot_installed_bytes_total", {}, /^\d+$/],
      ["shoal_wal_sync_seconds_count", {}, /^[1-9]/], ["shoal_wal_batch_records_bucket", { le: "1" }, /^\d+$/],
      ["shoal_transport_frames_sent_total", { plane: "data" }, /^[1-9]/], ["shoal_transport_sent_bytes_total", { plane: "control" }, /^[1-9]/],
      ["shoal_transport_queued_frames", { plane: "bulk" }, /^0$/], ["shoal_transport_peer_breaker", { peer: "2", state: "closed" }, /^1$/],
      ["shoal_placement_split_requests_per_second", {}, /^5000$/], ["shoal_disk_free_bytes", {}, /^[1-9]/], ["shoal_index_lag_entries", {}, /^\d+$/],
    ];
    for (const [name, labels, value] of expected) assert.match(sampleOf(text, name, { ...labels, node: "1" }) ?? "(none)", value, `${name} ${JSON.stringify(labels)}`);
    // The driver starts with its first cycle on the metadata leader.
    await waitFor("the placement driver active", async () => sampleOf(await scrape(pdNode), "shoal_placement_driver_active", { node: String(pdNode) }) === "1");
    const manual = { kind: "transfer-leader", reason: "manual", outcome: "done", node: String(pdNode) };
    await waitFor("the manual transfer counted as ended", async () => /^[1-9]/.test(sampleOf(await scrape(pdNode), "shoal_placement_operators_total", manual) ?? ""), 15_000);
    const pd = await scrape(pdNode);
    for (const family of ["shoal_cluster_dead_nodes", "shoal_cluster_under_replicated_shards", "shoal_cluster_leaderless_shards", "shoal_cluster_hottest_shard_requests_per_second"]) {
      assert.match(sampleOf(pd, family, { node: String(pdNode) }) ?? "(none)", /^\d/, family);
    }
    // The alert rules and the Grafana dashboard name only families a node exports.
    const families = new Set([...pd.matchAll(/^# TYPE (\S+) /gm), ...text.matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1]!));
    for (const file of [RULES, DASHBOARD]) {
      const named = new Set([...readFileSync(file, "utf8").matchAll(/\b(?:shoal|nodejs)_[a-z0-9_]*[a-z0-9]\b/g)].map((m) => m[0].replace(/_(bucket|count|sum)$/, "")));
      assert.ok(named.size > 5, `${file} names metrics`);
      const unknown = [...named].filter((n) => !families.has(n));
      assert.deepEqual(unknown, [], `${file} names families no node exports`);
    }
    const promtool = spawnSync("promtool", ["check", "metrics"], { input: text, encoding: "utf8" });
    if (promtool.error !== undefined) t.diagnostic(`promtool check metrics: skipped, promtool is not installed (Debian package prometheus): ${promtool.error.message}`);
    else assert.equal(promtool.status, 0, `promtool check metrics:\n${promtool.stdout}${promtool.stderr}`);

    // A dropped collection's request series go with it (label values stay bounded by the collections that exist).
    await waitFor("a collection created", async () => (await app.inject({ method: "POST", url: "/v1/collections", payload: { name: "brief", shards: 1 } })).statusCode === 200, 15_000);
    assert.equal((await app.inject({ method: "PUT", url: "/v1/collections/brief/records/a", payload: { payload: 1 } })).statusCode, 200);
    assert.equal(sampleOf(await scrape(1), "shoal_request_duration_seconds_count", { op: "put", collection: "brief", outcome: "ok", node: "1" }), "1");
    assert.equal((await app.inject({ method: "DELETE", url: "/v1/collections/brief" })).statusCode, 200);
    await waitFor("the drop applied on node 1", () => !api.c.nodes.get(1)!.metaState().collections.has("brief"));
    assert.equal(sampleOf(await scrape(1), "shoal_request_duration_seconds_count", { op: "put", collection: "brief", outcome: "ok", node: "1" }), null);
    assert.match(sampleOf(await scrape(1), "shoal_request_duration_seconds_count", { op: "put", collection: "default", outcome: "ok", node: "1" }) ?? "", /^[1-9]/);
  } finally {
    await api.stop();
  }
});

test("alert rules: promtool check rules passes, and each alert fires on the series that should raise it (promtool test rules)", (t) => {
  const check = spawnSync("promtool", ["check", "rules", RULES], { encoding: "utf8" });
  if (check.error !== undefined) {
    t.skip(`promtool is not installed (Debian package prometheus): ${check.error.message}`);
    return;
  }
  assert.equal(check.status, 0, `promtool check rules:\n${check.stdout}${check.stderr}`);
  assert.match(check.stdout, /SUCCESS: 9 rules found/);
  const unit = spawnSync("promtool", ["test", "rules", `${DEPLOY}prometheus/alerts.test.yml`], { encoding: "utf8" });
  assert.equal(unit.status, 0, `promtool test rules:\n${unit.stdout}${unit.stderr}`);
  t.diagnostic(`promtool: ${check.stdout.trim().split("\n").pop()}; ${unit.stdout.trim().split("\n").pop()}`);
});

test("the Grafana dashboard is a dashboard: unique panel ids, a datasource variable, every query's refId unique within its panel", () => {
  const d = JSON.parse(readFileSync(DASHBOARD, "utf8")) as { uid: string; panels: { id: number; type: string; targets?: { refId: string; expr: string }[] }[]; templating: { list: { name: string }[] } };
  assert.equal(d.uid, "shoal-cluster");
  assert.ok(d.templating.list.some((v) => v.name === "datasource"));
  const ids = d.panels.map((p) => p.id);
  assert.equal(new Set(ids).size, ids.length);
  for (const p of d.panels.filter((x) => x.type !== "row")) {
    assert.ok((p.targets ?? []).length > 0, `panel ${p.id} queries something`);
    assert.equal(new Set(p.targets!.map((x) => x.refId)).size, p.targets!.length);
  }
});

test("every alert names a runbook section that exists in docs/runbooks.md", () => {
  const runbooks = readFileSync(`${DEPLOY}../docs/runbooks.md`, "utf8");
  const anchors = new Set([...runbooks.matchAll(/^## (.+)$/gm)].map((m) => m[1]!.toLowerCase().replace(/[^a-z0-9 -]/g, "").replace(/ /g, "-")));
  const linked = [...readFileSync(RULES, "utf8").matchAll(/runbook: "docs\/runbooks\.md#([a-z0-9-]+)"/g)].map((m) => m[1]!);
  assert.equal(linked.length, 9, "one runbook per alert");
  assert.deepEqual(linked.filter((a) => !anchors.has(a)), []);
});
