/** `shoal put | get | del | status`: a small client of the HTTP API. */
export interface ClientOptions {
  endpoint: string;
  consistency?: string;
  ifVersion?: string;
  json?: boolean;
}

export async function call(method: string, url: string, body?: unknown): Promise<{ status: number; body: unknown }> {
  let r: Response;
  try {
    r = await fetch(url, {
      method,
      ...(body !== undefined ? { headers: { "content-type": "application/json" }, body: JSON.stringify(body) } : {}),
    });
  } catch (e) {
    throw new Error(`cannot reach ${url}: ${(e as Error).cause instanceof Error ? (e as Error & { cause: Error }).cause.message : (e as Error).message}`);
  }
  const text = await r.text();
  return { status: r.status, body: text === "" ? null : JSON.parse(text) };
}

function recordUrl(opts: ClientOptions, id: string): string {
  return `${opts.endpoint.replace(/\/$/, "")}/v1/collections/default/records/${encodeURIComponent(id)}`;
}

export function report(res: { status: number; body: unknown }): number {
  if (res.status >= 400) {
    const err = (res.body as { error?: { code: string; message: string } } | null)?.error;
    console.error(`error ${res.status}${err ? ` ${err.code}: ${err.message}` : ""}`);
    return 1;
  }
  console.log(JSON.stringify(res.body, null, 2));
  return 0;
}

export async function putCommand(id: string, payload: string, opts: ClientOptions): Promise<number> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(payload);
  } catch {
    console.error(`put: the payload must be JSON, got ${JSON.stringify(payload)}`);
    return 2;
  }
  const body: Record<string, unknown> = { payload: parsed };
  if (opts.ifVersion !== undefined) body.ifVersion = Number(opts.ifVersion);
  return report(await call("PUT", recordUrl(opts, id), body));
}

export async function getCommand(id: string, opts: ClientOptions): Promise<number> {
  const q = opts.consistency !== undefined ? `?consistency=${encodeURIComponent(opts.consistency)}` : "";
  return report(await call("GET", recordUrl(opts, id) + q));
}

export async function delCommand(id: string, opts: ClientOptions): Promise<number> {
  const q = opts.ifVersion !== undefined ? `?ifVersion=${encodeURIComponent(opts.ifVersion)}` : "";
  return report(await call("DELETE", recordUrl(opts, id) + q));
}

export async function statusCommand(opts: ClientOptions): Promise<number> {
  const res = await call("GET", `${opts.endpoint.replace(/\/$/, "")}/v1/cluster/status`);
  if (res.status >= 400 || opts.json) return report(res);
  const st = res.body as { node: number; shards: { shard: number; role: string; leader: number; term: number; commit: number; applied: number; voters: number[] }[] };
  console.log(`node ${st.node}`);
  console.log("shard  role        leader  term  commit  applied  voters");
  for (const s of st.shards) {
    console.log(`${String(s.shard).padEnd(6)} ${s.role.padEnd(11)} ${String(s.leader).padEnd(7)} ${String(s.term).padEnd(5)} ${String(s.commit).padEnd(7)} ${String(s.applied).padEnd(8)} ${s.voters.join(",")}`);
  }
  return 0;
}

/** Columns padded to their widest cell: tables for people (scripts use --json). */
export function table(header: string[], rows: (string | number)[][]): string {
  const cells = [header, ...rows.map((r) => r.map(String))];
  const widths = header.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? "").length)));
  return cells.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join("  ")).join("\n");
}

export async function nodeListCommand(opts: ClientOptions): Promise<number> {
  const res = await call("GET", `${opts.endpoint.replace(/\/$/, "")}/v1/cluster/nodes`);
  if (res.status >= 400 || opts.json) return report(res);
  const body = res.body as { metaLeader: number; nodes: { id: number; peer: string; http: string; labels: Record<string, string>; role: string; lifecycle: string; worker: string; health: string }[] };
  console.log(table(["id", "peer", "http", "role", "membership", "worker", "health", "labels"], body.nodes.map((n) => [
    `${n.id}${n.id === body.metaLeader ? "*" : ""}`, n.peer, n.http, n.role, n.lifecycle, n.worker, n.health,
    Object.entries(n.labels).map(([k, v]) => `${k}=${v}`).join(",") || "-",
  ])));
  console.log("* leads the metadata group");
  return 0;
}

export async function shardListCommand(opts: ClientOptions): Promise<number> {
  const res = await call("GET", `${opts.endpoint.replace(/\/$/, "")}/v1/cluster/shards`);
  if (res.status >= 400 || opts.json) return report(res);
  const body = res.body as { shards: { shard: number; collection: string; range: [number, number]; epoch: number; replicas: { node: number; role: string }[] }[] };
  const hex = (n: number) => `0x${n.toString(16).padStart(8, "0")}`;
  console.log(table(["shard", "collection", "hash range", "epoch", "replicas"], body.shards.map((s) => [
    s.shard, s.collection, `${hex(s.range[0])}-${hex(s.range[1] - 1)}`, s.epoch, s.replicas.map((r) => `${r.node}${r.role === "learner" ? "(learner)" : ""}`).join(","),
  ])));
  return 0;
}

export async function nodeActionCommand(action: "drain" | "remove", id: string, opts: ClientOptions): Promise<number> {
  return report(await call("POST", `${opts.endpoint.replace(/\/$/, "")}/v1/cluster/nodes/${encodeURIComponent(id)}/${action}`));
}

export async function configCommand(action: "get" | "history" | "set" | "rollback", args: string[], opts: ClientOptions & { note?: string }): Promise<number> {
  const base = `${opts.endpoint.replace(/\/$/, "")}/v1/cluster/config`;
  type Version = { version: number; atMs: number; note: string; placement: Record<string, number> };
  switch (action) {
    case "get": {
      const res = await call("GET", base);
      if (res.status >= 400 || opts.json) return report(res);
      const v = res.body as Version;
      console.log(`version ${v.version}${v.note ? ` (${v.note})` : ""}`);
      console.log(table(["setting", "value"], Object.entries(v.placement)));
      return 0;
    }
    case "history": {
      const res = await call("GET", `${base}/history`);
      if (res.status >= 400 || opts.json) return report(res);
      const vs = (res.body as { versions: Version[] }).versions;
      console.log(table(["version", "at", "note"], vs.map((v) => [v.version, v.atMs === 0 ? "-" : new Date(v.atMs).toISOString(), v.note || "-"])));
      return 0;
    }
    case "set": {
      const settings: Record<string, number> = {};
      for (const a of args) {
        const m = /^([A-Za-z]+)=(-?[0-9.]+)$/.exec(a);
        if (m === null) {
          console.error(`shoal config set: expected NAME=NUMBER, got ${JSON.stringify(a)}`);
          return 2;
        }
        settings[m[1]!] = Number(m[2]);
      }
      const current = await call("GET", base);
      if (current.status >= 400) return report(current);
      const baseVersion = (current.body as Version).version;
      return report(await call("PUT", base, { baseVersion, settings, ...(opts.note !== undefined ? { note: opts.note } : {}) }));
    }
    case "rollback":
      return report(await call("POST", `${base}/rollback`, { toVersion: Number(args[0]) }));
  }
}
