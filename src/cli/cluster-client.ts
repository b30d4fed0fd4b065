/** `shoal node promote`, `shoal shard move | transfer-leader | split | merge`, `shoal operator ls | cancel`, `shoal alerts`, `shoal watch`. */
import { setTimeout as delay } from "node:timers/promises";
import type { WatchEvent } from "../client/index.js";
import { type Answer, type ClientOptions, type RangeView, answerOf, call, clientOf, rangeWords, readable, report, table } from "./client.js";

// Ids arrive checked as positive integers (main.ts).
const post = (opts: ClientOptions, path: string, body?: unknown, timeoutMs?: number) => call(opts.endpoint, "POST", `/v1/cluster${path}`, body, timeoutMs);

export async function promoteCommand(node: number, opts: ClientOptions & { with?: number }): Promise<number> {
  return report(await post(opts, `/nodes/${node}/promote`, opts.with === undefined ? {} : { with: opts.with }));
}

/** Options of an operator asked by hand: `wait` is how long it may wait for operators in its way (ms). */
type OperatorOptions = ClientOptions & { wait?: number };

/** How often a waiting command looks at the operators in its way, to show how they progress. */
const PROGRESS_INTERVAL_MS = 1000;

/** What an operator is doing now, in words, for a progress line. */
function operatorLine(o: OperatorView): string {
  const r = o.reshape;
  const step = r?.kind === "split" ? `split at ${r.at}` : r?.kind === "merge" ? `merge into shard ${r.into}`
    : o.steps[o.stepIndex] === undefined ? "finishing"
    : `step ${o.stepIndex + 1}/${o.steps.length} ${stepWords(o.steps[o.stepIndex]!)}`;
  return `operator ${o.id} on shard ${o.shard} (${o.reason}): ${step}`;
}

const stepWords = (s: OperatorView["steps"][number]) => `${s.kind}${s.kind === "transfer-leader" ? ` ${s.to}` : ` ${s.node}`}`;

/**
 * Asks for an operator by hand. With `--wait`, the node waits (bounded) for the operators running on the
 * shard to end instead of refusing with shard_busy; meanwhile this prints, on stderr, a line (with the
 * time waited so far) each time what runs on the shards involved changes, looked at once a second. The
 * wait itself is the node's: the request answers when the operator was taken or the wait ran out.
 */
async function askOperator(opts: OperatorOptions, shards: number[], path: string, body?: unknown): Promise<Answer> {
  if (opts.wait === undefined) return post(opts, path, body);
  // The node answers within its wait, plus the operator's own time.
  const pending = post(opts, `${path}?waitMs=${opts.wait}`, body, opts.wait + 60_000);
  const settled = pending.then(() => "answered" as const, () => "answered" as const);
  const startedMs = performance.now();
  let last = "";
  // Bounded by the wait: the node answers within it (plus one request's time).
  for (let i = 0; i * PROGRESS_INTERVAL_MS <= opts.wait + 60_000; i++) {
    if (await Promise.race([settled, delay(PROGRESS_INTERVAL_MS, "tick" as const, { ref: false })]) === "answered") break;
    const running = await call(opts.endpoint, "GET", "/v1/cluster/operators?status=running").catch(() => null);
    if (running === null || !readable(running)) continue;
    const inWay = (running.body as { operators: OperatorView[] }).operators
      .filter((o) => shards.includes(o.shard) || (o.reshape?.kind === "merge" && shards.includes(o.reshape.into)));
    const now = inWay.map(operatorLine).join("; ");
    const waited = `${Math.round((performance.now() - startedMs) / 1000)} s`;
    if (now !== last) console.error(now === "" ? `waiting (${waited}): the shard is free, asking again` : `waiting (${waited}) for ${now}`);
    last = now;
  }
  return pending;
}

export async function shardMoveCommand(shard: number, opts: OperatorOptions & { from: number; to: number }): Promise<number> {
  return report(await askOperator(opts, [shard], `/shards/${shard}/move`, { from: opts.from, to: opts.to }));
}

export async function transferLeaderCommand(shard: number, opts: OperatorOptions & { to: number }): Promise<number> {
  return report(await askOperator(opts, [shard], `/shards/${shard}/transfer-leader`, { to: opts.to }));
}

/** Prints the shards a split made, with both ranges, so a script need not look them up (or --json). */
export async function splitCommand(shard: number, opts: OperatorOptions & { at?: number; atId?: string }): Promise<number> {
  const at = opts.atId ?? opts.at;
  const res = await askOperator(opts, [shard], `/shards/${shard}/split`, at === undefined ? {} : { at });
  if (!readable(res) || opts.json) return report(res);
  const b = res.body as { shard: number; range?: RangeView; child: number; childRange?: RangeView };
  if (b.range === undefined || b.childRange === undefined) return report(res);
  console.log(`split shard ${b.shard}: shard ${b.shard} keeps ${rangeWords(b.range)}, new shard ${b.child} holds ${rangeWords(b.childRange)}`);
  return 0;
}

/** Prints the shard retired and the one surviving (or --json); the lower neighbour may hold an operator too, so progress watches it. */
export async function mergeCommand(shard: number, opts: OperatorOptions): Promise<number> {
  let shards = [shard];
  if (opts.wait !== undefined) {
    const map = await call(opts.endpoint, "GET", "/v1/cluster/shards").catch(() => null);
    const live = map !== null && readable(map) ? (map.body as { shards: { shard: number; range: RangeView }[] }).shards : [];
    const start = live.find((s) => s.shard === shard)?.range[0];
    shards = [shard, ...live.filter((s) => start !== undefined && s.range[1] === start).map((s) => s.shard)];
  }
  const res = await askOperator(opts, shards, `/shards/${shard}/merge`);
  if (!readable(res) || opts.json) return report(res);
  const b = res.body as { retired?: number; surviving?: number; range?: RangeView; operator?: number };
  if (b.retired === undefined || b.surviving === undefined || b.range === undefined) return report(res);
  console.log(`merging shard ${b.retired} into shard ${b.surviving}${b.operator !== undefined ? ` (operator ${b.operator})` : ""}: ` +
    `shard ${b.retired} is retired once shard ${b.surviving} has absorbed it; shard ${b.surviving} then holds ${rangeWords(b.range)}`);
  return 0;
}

interface OperatorView {
  id: number; shard: number; reason: string; status: string; stepIndex: number; startedAtMs: number; updatedAtMs: number;
  steps: ({ kind: string; node?: number; to?: number })[];
  reshape?: { kind: "split"; at: number; end: number; child?: number } | { kind: "merge"; into: number };
}

export async function operatorListCommand(opts: ClientOptions & { running?: boolean }): Promise<number> {
  const res = await call(opts.endpoint, "GET", `/v1/cluster/operators${opts.running === true ? "?status=running" : ""}`);
  if (!readable(res) || opts.json) return report(res);
  const ops = (res.body as { operators: OperatorView[] }).operators;
  const step = (s: OperatorView["steps"][number], i: number, at: number) =>
    `${i < at ? "✓" : i === at ? ">" : " "}${s.kind}${s.kind === "transfer-leader" ? ` ${s.to}` : ` ${s.node}`}`;
  console.log(table(["id", "shard", "reason", "status", "started", "steps"], ops.map((o) => [
    o.id, o.shard, o.reason, o.status, new Date(o.startedAtMs).toISOString(),
    o.reshape?.kind === "split" ? `split at ${o.reshape.at}${o.reshape.child !== undefined ? ` -> shard ${o.reshape.child}` : ""}`
      : o.reshape?.kind === "merge" ? `merge into shard ${o.reshape.into}`
      : o.steps.map((s, i) => step(s, i, o.status === "done" ? o.steps.length : o.stepIndex)).join(", "),
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
  const events = clientOf(opts.endpoint).watch();
  const first = await answerOf(events.next());
  if (!readable(first)) return report(first);
  for (let e = first.body as IteratorResult<WatchEvent>; e.done !== true; e = await events.next()) console.log(JSON.stringify(e.value));
  return 0;
}
