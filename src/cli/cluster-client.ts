/** `shoal node promote`, `shoal shard move | transfer-leader | split | merge`, `shoal operator ls | cancel`, `shoal alerts`, `shoal watch`. */
import { type ClientOptions, answer, call, readable, report, send, table } from "./client.js";

// Ids arrive checked as positive integers (main.ts).
const post = (opts: ClientOptions, path: string, body?: unknown) => call(opts.endpoint, "POST", `/v1/cluster${path}`, body);

export async function promoteCommand(node: number, opts: ClientOptions & { with?: number }): Promise<number> {
  return report(await post(opts, `/nodes/${node}/promote`, opts.with === undefined ? {} : { with: opts.with }));
}

export async function shardMoveCommand(shard: number, opts: ClientOptions & { from: number; to: number }): Promise<number> {
  return report(await post(opts, `/shards/${shard}/move`, { from: opts.from, to: opts.to }));
}

export async function transferLeaderCommand(shard: number, opts: ClientOptions & { to: number }): Promise<number> {
  return report(await post(opts, `/shards/${shard}/transfer-leader`, { to: opts.to }));
}

export async function splitCommand(shard: number, opts: ClientOptions & { at?: number }): Promise<number> {
  return report(await post(opts, `/shards/${shard}/split`, opts.at === undefined ? {} : { at: opts.at }));
}

export async function mergeCommand(shard: number, opts: ClientOptions): Promise<number> {
  return report(await post(opts, `/shards/${shard}/merge`));
}

interface OperatorView {
  id: number; shard: number; reason: string; status: string; stepIndex: number; startedAtMs: number; updatedAtMs: number;
  steps: ({ kind: string; node?: number; to?: number })[];
}

export async function operatorListCommand(opts: ClientOptions & { running?: boolean }): Promise<number> {
  const res = await call(opts.endpoint, "GET", `/v1/cluster/operators${opts.running === true ? "?status=running" : ""}`);
  if (!readable(res) || opts.json) return report(res);
  const ops = (res.body as { operators: OperatorView[] }).operators;
  const step = (s: OperatorView["steps"][number], i: number, at: number) =>
    `${i < at ? "✓" : i === at ? ">" : " "}${s.kind}${s.kind === "transfer-leader" ? ` ${s.to}` : ` ${s.node}`}`;
  console.log(table(["id", "shard", "reason", "status", "started", "steps"], ops.map((o) => [
    o.id, o.shard, o.reason, o.status, new Date(o.startedAtMs).toISOString(), o.steps.map((s, i) => step(s, i, o.status === "done" ? o.steps.length : o.stepIndex)).join(", "),
  ])));
  return 0;
}

export async function operatorCancelCommand(id: number, opts: ClientOptions): Promise<number> {
  return report(await post(opts, `/operators/${id}/cancel`));
}

export async function alertsCommand(opts: ClientOptions): Promise<number> {
  const res = await call(opts.endpoint, "GET", "/v1/cluster/alerts");
  if (!readable(res) || opts.json) return report(res);
  const alerts = (res.body as { alerts: { atMs: number; kind: string; node: number; message: string }[] }).alerts;
  if (alerts.length === 0) console.log("no alerts");
  else console.log(table(["at", "kind", "node", "message"], alerts.map((a) => [new Date(a.atMs).toISOString(), a.kind, a.node, a.message])));
  return 0;
}

/** Prints the watch stream's events, one JSON line each ({event, data}), until interrupted. */
export async function watchCommand(opts: ClientOptions): Promise<number> {
  const r = await send(opts.endpoint, "GET", "/v1/cluster/watch");
  if (!r.ok || r.body === null) return report(await answer(r));
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
