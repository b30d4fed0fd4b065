/**
 * `shoal diagnose` against 3 real nodes, one of them killed: the archive holds the cluster's state, each
 * live node's status, metrics and logs, and names what the dead node did not give.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { extract } from "tar";
import { kill9, shoal, startCluster, stop } from "./testing.js";

const { SHOAL_ENDPOINT: _, ...env } = process.env;

test("shoal diagnose: one archive of the cluster's state and every node's status, metrics and logs; a dead node is named, not fatal", async () => {
  const c = await startCluster();
  const dir = mkdtempSync(join(tmpdir(), "shoal-diagnose-test-"));
  try {
    await kill9(c, 3);
    const out = join(dir, "bundle.tar.gz");
    const r = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
      const child = execFile(process.execPath, [shoal, "diagnose", "--out", out, "--endpoint", `http://127.0.0.1:${c.http.get(1)}`], { timeout: 60_000, env },
        (_e, stdout, stderr) => resolve({ code: child.exitCode, stdout, stderr }));
    });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`^wrote ${out.replace(/[.]/g, "\\.")}: \\d+ files from 3 node\\(s\\); 6 not collected`, "m"));
    assert.match(r.stdout, /node-3\/metrics\.txt: ECONNREFUSED/);
    assert.match(r.stderr, /diagnose: node 2 \(http:\/\/127\.0\.0\.1:\d+\) \[2\/3\]/, "progress per node");
    const unpacked = join(dir, "x");
    mkdirSync(unpacked);
    await extract({ file: out, cwd: unpacked });
    const [root] = readdirSync(unpacked);
    assert.match(root!, /^shoal-diagnose-\d{4}-/);
    const read = (f: string) => readFileSync(join(unpacked, root!, f), "utf8");
    assert.equal((JSON.parse(read("cluster/nodes.json")) as { nodes: unknown[] }).nodes.length, 3);
    for (const f of ["shards", "operators", "alerts", "config", "config-history", "collections"]) JSON.parse(read(`cluster/${f}.json`));
    // The load the dashboard charts: every node's (the killed one named as not answering).
    const stats = JSON.parse(read("cluster/stats.json")) as { nodes: { node: number; ok: boolean }[] };
    assert.deepEqual(stats.nodes.map((n) => [n.node, n.ok]), [[1, true], [2, true], [3, false]]);
    for (const id of [1, 2]) {
      assert.match(read(`node-${id}/metrics.txt`), /^shoal_raft_proposals_total\{node="\d"\} \d+/m);
      assert.equal((JSON.parse(read(`node-${id}/status.json`)) as { node: number }).node, id);
      assert.equal((JSON.parse(read(`node-${id}/stats.json`)) as { requests: unknown[] }).requests.length, 90);
      const logs = read(`node-${id}/logs.jsonl`).trim().split("\n").map((l) => JSON.parse(l) as { msg: string; node: number });
      assert.ok(logs.some((l) => l.msg === "node started" && l.node === id), `node ${id}'s log has its start`);
    }
    assert.deepEqual(readdirSync(join(unpacked, root!, "node-3")), [], "nothing from the dead node");
    const summary = JSON.parse(read("summary.json")) as { failed: { what: string }[]; files: { file: string }[] };
    assert.deepEqual(summary.failed.map((f) => f.what).sort(), ["healthz.json", "logs.jsonl", "metrics.txt", "readyz.json", "stats.json", "status.json"].map((f) => `node-3/${f}`));
  } finally {
    await stop(c);
    rmSync(dir, { recursive: true, force: true });
  }
});
