/**
 * `shoal diagnose --out FILE`: one archive (tar.gz) of what an operator or a bug report needs: the
 * cluster's map, operators, alerts, settings with their history and collections (asked of the endpoint
 * given), and of every node the metadata lists: its status, health, readiness, metrics and recent log
 * lines. A node that does not answer is recorded as such (that is often why one runs this) and the
 * rest is still collected; `summary.json` lists every file and every failure.
 */
import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create as tarCreate } from "tar";
import { call } from "./client.js";

/** Each node request's time limit: a node that does not answer within it is recorded as not answering. */
const NODE_REQUEST_MS = 10_000;
/** Log lines asked of each node (all it keeps). */
const LOG_LINES = 2000;

interface Collected { file: string; bytes: number }
interface Failed { what: string; error: string }

export async function diagnoseCommand(opts: { endpoint: string; out: string }): Promise<number> {
  const started = new Date();
  const dir = mkdtempSync(join(tmpdir(), "shoal-diagnose-"));
  const root = `shoal-diagnose-${started.toISOString().replace(/[:.]/g, "-")}`;
  mkdirSync(join(dir, root, "cluster"), { recursive: true });
  const collected: Collected[] = [];
  const failed: Failed[] = [];
  const save = (file: string, content: string) => {
    writeFileSync(join(dir, root, file), content);
    collected.push({ file, bytes: Buffer.byteLength(content) });
  };
  try {
    console.error(`diagnose: asking ${opts.endpoint} for the cluster's state`);
    const cluster: [string, string][] = [
      ["nodes", "/v1/cluster/nodes"], ["shards", "/v1/cluster/shards"], ["operators", "/v1/cluster/operators?status=all"],
      ["alerts", "/v1/cluster/alerts"], ["config", "/v1/cluster/config"], ["config-history", "/v1/cluster/config/history"],
      ["collections", "/v1/collections"], ["stats", "/v1/cluster/stats"],
    ];
    let nodes: { id: number; http: string }[] = [];
    for (const [name, path] of cluster) {
      let res;
      try {
        res = await call(opts.endpoint, "GET", path);
      } catch (e) {
        // The endpoint itself is unreachable: nothing else can be found out (which nodes there are).
        if (name === "nodes") {
          console.error(`diagnose: ${(e as Error).message}`);
          return 1;
        }
        failed.push({ what: `cluster/${name}`, error: (e as Error).message });
        continue;
      }
      if (!res.ok) {
        failed.push({ what: `cluster/${name}`, error: `${res.error.code}: ${res.error.message}` });
        continue;
      }
      save(`cluster/${name}.json`, `${JSON.stringify(res.body, null, 2)}\n`);
      if (name === "nodes") nodes = (res.body as { nodes: { id: number; http: string }[] }).nodes;
    }
    for (const [i, n] of nodes.entries()) {
      const base = `http://${n.http}`;
      console.error(`diagnose: node ${n.id} (${base}) [${i + 1}/${nodes.length}]`);
      mkdirSync(join(dir, root, `node-${n.id}`));
      for (const [file, path] of [["status.json", "/v1/cluster/status"], ["healthz.json", "/healthz"], ["readyz.json", "/readyz"],
        ["metrics.txt", "/metrics"], ["stats.json", "/v1/node/stats"], ["logs.jsonl", `/v1/node/logs?limit=${LOG_LINES}`]] as const) {
        try {
          const r = await fetch(`${base}${path}`, { signal: AbortSignal.timeout(NODE_REQUEST_MS) });
          const text = await r.text();
          // Logs as JSON lines, one per logged line; anything else as the node answered it (with its status).
          const body = file === "logs.jsonl" && r.ok ? (JSON.parse(text) as { lines: unknown[] }).lines.map((l) => JSON.stringify(l)).join("\n") + "\n" : text;
          save(`node-${n.id}/${file}`, body);
          if (!r.ok && file !== "readyz.json" && file !== "healthz.json") failed.push({ what: `node-${n.id}/${file}`, error: `HTTP ${r.status}: ${text.slice(0, 200)}` });
        } catch (e) {
          const cause = (e as { cause?: { code?: string } }).cause?.code;
          failed.push({ what: `node-${n.id}/${file}`, error: cause ?? (e as Error).message });
        }
      }
    }
    const summary = {
      collectedAt: started.toISOString(), endpoint: opts.endpoint, nodes: nodes.map((n) => ({ id: n.id, http: n.http })),
      files: collected, failed,
    };
    save("summary.json", `${JSON.stringify(summary, null, 2)}\n`);
    await tarCreate({ gzip: true, file: opts.out, cwd: dir, portable: true }, [root]);
    console.log(`wrote ${opts.out}: ${collected.length} files from ${nodes.length} node(s)${failed.length > 0 ? `; ${failed.length} not collected (see summary.json):` : ""}`);
    for (const f of failed) console.log(`  ${f.what}: ${f.error}`);
    return 0;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
