/** `shoal node promote`, `shoal shard move | transfer-leader | split | merge`, `shoal operator ls | cancel`, `shoal alerts`, `shoal watch`. */
import { type ClientOptions, call, report, table } from "./client.js";

const base = (opts: ClientOptions) => `${opts.endpoint.replace(/\/$/, "")}/v1/cluster`;

/** A positive integer argument, or null after saying what is wrong (exit 2). */
function idArg(what: string, v: string | undefined): number | null {
  const n = Number(v);
  if (v === undefined || !Number.isInteger(n) || n < 1) {
    console.error(`shoal: ${what} must be a positive integer, got ${JSON.stringify(v)}`);
    return null;
  }
  return n;
}

export async function promoteCommand(id: string, opts: ClientOptions & { with?: string }): Promise<number> {
  const node = idArg("the node id", id);
  const partner = opts.with === undefined ? undefined : idArg("--with", opts.with);
  if (node === null || partner === null) return 2;
  return report(await call("POST", `${base(opts)}/nodes/${node}/promote`, partner === undefined ? {} : { with: partner }));
}

export async function shardMoveCommand(id: string, opts: ClientOptions & { from?: string; to?: string }): Promise<number> {
  const [shard, from, to] = [idArg("the shard id", id), idArg("--from", opts.from), idArg("--to", opts.to)];
  if (shard === null || from === null || to === null) return 2;
  return report(await call("POST", `${base(opts)}/shards/${shard}/move`, { from, to }));
}

export async function transferLeaderCommand(id: string, opts: ClientOptions & { to?: string }): Promise<number> {
  const [shard, to] = [idArg("the shard id", id), idArg("--to", opts.to)];
  if (shard === null || to === null) return 2;
  return report(await call("POST", `${base(opts)}/shards/${shard}/transfer-leader`, { to }));
}

export async function splitCommand(id: string, opts: ClientOptions & { at?: string }): Promise<number> {
  const shard = idArg("the shard id", id);
  const at = opts.at === undefined ? undefined : idArg("--at", opts.at);
  if (shard === null || at === null) return 2;
  return report(await call("POST", `${base(opts)}/shards/${shard}/split`, at === undefined ? {} : { at }));
}

export async function mergeCommand(id: string, opts: ClientOptions): Promise<number> {
  const shard = idArg("the shard id", id);
  if (shard === null) return 2;
  return report(await call("POST", `${base(opts)}/shards/${shard}/merge`));
}

interface OperatorView {
  id: number; shard: number; reason: string; status: string; stepIndex: number; startedAtMs: number; updatedAtMs: number;
  steps: ({ kind: string; node?: number; to?: number })[];
}

export async function operatorListCommand(opts: ClientOptions & { running?: boolean }): Promise<number> {
  const res = await call("GET", `${base(opts)}/operators${opts.running === true ? "?status=running" : ""}`);
  if (res.status >= 400 || opts.json) return report(res);
  const ops = (res.body as { operators: OperatorView[] }).operators;
  const step = (s: OperatorView["steps"][number], i: number, at: number) =>
    `${i < at ? "✓" : i === at ? ">" : " "}${s.kind}${s.kind === "transfer-leader" ? ` ${s.to}` : ` ${s.node}`}`;
  console.log(table(["id", "shard", "reason", "status", "started", "steps"], ops.map((o) => [
    o.id, o.shard, o.reason, o.status, new Date(o.startedAtMs).toISOString(), o.steps.map((s, i) => step(s, i, o.status === "done" ? o.steps.length : o.stepIndex)).join(", "),
  ])));
  return 0;
}

export async function operatorCancelCommand(id: string, opts: ClientOptions): Promise<number> {
  const op = idArg("the operator id", id);
  if (op === null) return 2;
  return report(await call("POST", `${base(opts)}/operators/${op}/cancel`));
}

export async function alertsCommand(opts: ClientOptions): Promise<number> {
  const res = await call("GET", `${base(opts)}/alerts`);
  if (res.status >= 400 || opts.json) return report(res);
  const alerts = (res.body as { alerts: { atMs: number; kind: string; node: number; message: string }[] }).alerts;
  if (alerts.length === 0) console.log("no alerts");
  else console.log(table(["at", "kind", "node", "message"], alerts.map((a) => [new Date(a.atMs).toISOString(), a.kind, a.node, a.message])));
  return 0;
}

/** Prints the watch stream's events, one JSON line each ({event, data}), until interrupted. */
export async function watchCommand(opts: ClientOptions): Promise<number> {
  const url = `${base(opts)}/watch`;
  let r: Response;
  try {
    r = await fetch(url);
  } catch (e) {
    console.error(`cannot reach ${url}: ${(e as Error).message}`);
    return 1;
  }
  if (!r.ok || r.body === null) return report({ status: r.status, body: await r.json().catch(() => null) });
  const decoder = new TextDecoder();
  let buffered = "";
  for await (const chunk of r.body) {
    buffered += decoder.decode(chunk as Uint8Array, { stream: true });
    for (let end = buffered.indexOf("\n\n"); end !== -1; end = buffered.indexOf("\n\n")) {
      const block = buffered.slice(0, end);
      buffered = buffered.slice(end + 2);
      const event = /^event: (.*)$/m.exec(block)?.[1];
      const data = /^data: (.*)$/m.exec(block)?.[1];
      if (event !== undefined && data !== undefined) console.log(JSON.stringify({ event, data: JSON.parse(data) }));
    }
  }
  return 0;
}
