/**
 * Client-visible unavailability after a shard loses its leader (issue 11, "fail fast, recover fast").
 * Three real `shoal start` processes (one shard, test mode for the transport's fault hooks) and one
 * client writing continuously, one write at a time, through a node that does not lead the shard. Each
 * trial injects one fault on the shard leader's node:
 *   kill:      kill -9 of the process (restarted over its data dir after the trial, so every trial
 *              starts with three nodes);
 *   partition: its transport links cut both ways (on its node, towards the two others, and on each of
 *              them, towards it), healed after the trial.
 * Unavailability of a trial = from the fault to the end of the first write that was sent after the
 * fault and succeeded (a write sent before the fault proves nothing about after it). The error codes the
 * client saw in between are listed per trial. Writes carry an Idempotency-Key, as a careful client's do
 * (the gateway then retries a write whose leader died under it, instead of answering "unknown").
 *
 *   node dist/bench/unavailability.js [--trials 10] [--scenarios kill,partition] [--no-keys] [--keep]
 *
 * Processes and the temporary directory are removed at the end, on failure and on SIGINT/SIGTERM.
 */
import { ProcCluster, waitUntil } from "../src/chaos/cluster.js";
import { ClientLoop, abandonOnExit, intArg, percentile, sleep } from "./procs.js";

const args = process.argv.slice(2);
const arg = (name: string, dflt: string): string => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && args[i + 1] !== undefined ? args[i + 1]! : dflt;
};
const TRIALS = intArg(args, "trials", 10, 1, 1000);
const SCENARIOS = arg("scenarios", "kill,partition").split(",") as Scenario[];
const USE_KEYS = !args.includes("--no-keys");
/** Copy the nodes' logs to ./bench-unavailability.n<id>.log before the cluster is removed. */
const KEEP = args.includes("--keep");
type Scenario = "kill" | "partition";
for (const s of SCENARIOS) if (s !== "kill" && s !== "partition") throw new Error(`unknown scenario ${s}: kill or partition`);

/** The goal. */
const GOAL_P50_MS = 500;
const GOAL_MAX_MS = 1500;
/** A trial whose writes do not resume within this is recorded as failed (and the run goes on). */
const RECOVERY_DEADLINE_MS = 20_000;
/** Waits for the cluster between trials (start, restart, heal). */
const SETTLE_DEADLINE_MS = 60_000;
/** Writes that must succeed through the chosen gateway before a fault: the client is in its steady state. */
const STEADY_WRITES = 20;
/** One write's own bound (longer than the nodes' 5 s request timeout: their answer is what counts). */
const WRITE_TIMEOUT_MS = 10_000;
/** Pause after a refused write: the client asks again at once, but does not spin on an instant refusal. */
const RETRY_PAUSE_MS = 5;
const IDS = [1, 2, 3];

const c = await ProcCluster.start(IDS.length, 1, SETTLE_DEADLINE_MS);
abandonOnExit(c);

/** Polls `cond` until it holds, at most `timeoutMs`. */
const until = (what: string, cond: () => boolean | Promise<boolean>, timeoutMs = SETTLE_DEADLINE_MS) => waitUntil(what, cond, timeoutMs, 20);

async function json(id: number, path: string): Promise<{ status: number; body: unknown }> {
  return c.api(id, "GET", path);
}

/** The shard's leader as every running node sees it, or 0 while they disagree or know none. */
async function agreedLeader(): Promise<number> {
  const seen = new Set<number>();
  for (const id of IDS.filter((i) => c.state.get(i) === "up")) {
    try {
      const st = (await json(id, "/v1/cluster/status")).body as { shards: { shard: number; leader: number }[] };
      seen.add(st.shards.find((s) => s.shard === 1)?.leader ?? 0);
    } catch {
      return 0;
    }
  }
  return seen.size === 1 && !seen.has(0) ? [...seen][0]! : 0;
}

async function setFaults(id: number, cut: number[] | null): Promise<void> {
  if (!(await c.setFaults(id, cut))) throw new Error(`faults on node ${id} were not set`);
}

interface WriteEvent { startMs: number; endMs: number; ok: boolean; code: string }

/** One write at a time through `gateway`, each a new record (and a new idempotency key). */
class Writer extends ClientLoop {
  gateway = 0;
  events: WriteEvent[] = [];
  private n = 0;

  protected async once(): Promise<void> {
    if (this.gateway === 0) {
      await sleep(RETRY_PAUSE_MS);
      return;
    }
    const key = `w${++this.n}`;
    const startMs = performance.now();
    let ok = false;
    let code: string;
    try {
      const r = await fetch(c.url(this.gateway, `/v1/collections/default/records/${key}`), {
        method: "PUT", body: JSON.stringify({ payload: this.n }), signal: AbortSignal.timeout(WRITE_TIMEOUT_MS),
        headers: { "content-type": "application/json", ...(USE_KEYS ? { "idempotency-key": `k${this.n}` } : {}) },
      });
      const body = (await r.json().catch(() => null)) as { error?: { code?: string } } | null;
      ok = r.status === 200;
      code = ok ? "ok" : `${body?.error?.code ?? "?"}(${r.status})`;
    } catch (e) {
      code = (e as Error).name === "TimeoutError" ? "client_timeout" : "connection_error";
    }
    // Bounded: the list is emptied at the start of each trial.
    this.events.push({ startMs, endMs: performance.now(), ok, code });
    if (!ok) await sleep(RETRY_PAUSE_MS);
  }
}

interface Trial { ms: number; codes: Map<string, number>; leader: number; gateway: number; faultAt: string }

/** Whether every node hears every other (its failure detector finds them healthy): links are up both ways. */
async function connected(): Promise<boolean> {
  for (const id of IDS) {
    try {
      const { body } = await json(id, "/v1/cluster/nodes");
      const nodes = (body as { nodes: { id: number; health: string }[] }).nodes;
      if (nodes.length < IDS.length || nodes.some((n) => n.health !== "healthy")) return false;
    } catch {
      return false;
    }
  }
  return true;
}

/**
 * Three running, ready nodes hearing each other and agreeing on a leader; the writer's gateway set to a
 * follower, with writes flowing. A trial measures its fault, not what is left of the one before.
 */
async function steady(writer: Writer, trial: number, tries = 5): Promise<number> {
  for (const id of IDS) if (c.state.get(id) === "killed") c.restart(id);
  await c.waitReady(IDS, SETTLE_DEADLINE_MS);
  await until("every node hearing every other", connected);
  let leader = 0;
  await until("one leader agreed by every node", async () => (leader = await agreedLeader()) !== 0);
  const followers = IDS.filter((id) => id !== leader);
  writer.gateway = followers[trial % followers.length]!;
  const since = performance.now();
  await until(`${STEADY_WRITES} writes through node ${writer.gateway}`, () => writer.events.filter((e) => e.ok && e.startMs >= since).length >= STEADY_WRITES);
  // The leader may have changed meanwhile (rare): the trial must hit the node that leads now.
  const now = await agreedLeader();
  if (now === leader) return leader;
  if (tries <= 1) throw new Error("the shard's leader keeps changing with no fault injected");
  return steady(writer, trial, tries - 1);
}

async function runTrial(writer: Writer, scenario: Scenario, trial: number): Promise<Trial> {
  const leader = await steady(writer, trial);
  const others = IDS.filter((id) => id !== leader);
  writer.events = [];
  const faultAt = new Date().toISOString();
  const faultMs = performance.now();
  if (scenario === "kill") await c.kill9(leader);
  else await Promise.all([setFaults(leader, others), ...others.map((id) => setFaults(id, [leader]))]);
  let first: WriteEvent | undefined;
  await until("a write after the fault", () => (first = writer.events.find((e) => e.ok && e.startMs >= faultMs)) !== undefined, RECOVERY_DEADLINE_MS)
    .catch(() => undefined);
  const endMs = first?.endMs ?? Infinity;
  const codes = new Map<string, number>();
  for (const e of writer.events) if (!e.ok && e.endMs >= faultMs && e.endMs <= endMs) codes.set(e.code, (codes.get(e.code) ?? 0) + 1);
  if (scenario === "partition") await Promise.all(IDS.map((id) => setFaults(id, null)));
  return { ms: endMs - faultMs, codes, leader, gateway: writer.gateway, faultAt };
}

const fmt = (ms: number) => (Number.isFinite(ms) ? ms.toFixed(0) : "none");

async function main(): Promise<void> {
  const writer = new Writer();
  writer.start();
  const results = new Map<Scenario, Trial[]>();
  try {
    for (const scenario of SCENARIOS) {
      const trials: Trial[] = [];
      results.set(scenario, trials);
      for (let t = 0; t < TRIALS; t++) {
        const r = await runTrial(writer, scenario, t);
        trials.push(r);
        const codes = [...r.codes].map(([c, n]) => `${c} x${n}`).join(", ") || "none";
        console.log(`${scenario.padEnd(9)} trial ${String(t + 1).padStart(2)}: ${fmt(r.ms).padStart(5)} ms  errors seen: ${codes}  `
          + `(leader ${r.leader}, client through ${r.gateway}, at ${r.faultAt})`);
      }
    }
  } finally {
    await writer.stop();
  }
  console.log(`\nunavailability after losing the shard leader's node (3 nodes, 1 shard, client through a follower, idempotency keys: ${USE_KEYS ? "yes" : "no"})`);
  console.log(`${"scenario".padEnd(10)} ${"trials".padStart(6)} ${"p50 ms".padStart(7)} ${"max ms".padStart(7)}   goal: p50 <= ${GOAL_P50_MS} ms, max <= ${GOAL_MAX_MS} ms`);
  let allPass = true;
  for (const [scenario, trials] of results) {
    const sorted = trials.map((t) => t.ms).sort((a, b) => a - b);
    const p50 = percentile(sorted, 0.5);
    const max = sorted[sorted.length - 1]!;
    const pass = p50 <= GOAL_P50_MS && max <= GOAL_MAX_MS;
    allPass &&= pass;
    const name = scenario === "kill" ? "kill -9" : "partition";
    console.log(`${name.padEnd(10)} ${String(trials.length).padStart(6)} ${fmt(p50).padStart(7)} ${fmt(max).padStart(7)}   ${pass ? "pass" : "FAIL"}`);
  }
  process.exitCode = allPass ? 0 : 1;
}

main()
  .catch((e: unknown) => {
    console.error(e);
    process.exitCode = 2;
  })
  .finally(async () => {
    if (KEEP) console.error(`kept the nodes' logs: ${c.saveLogs("bench-unavailability").join(", ")}`);
    await c.destroy();
  });
