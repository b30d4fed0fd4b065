/**
 * The dashboard at /ui (issue 16): the cluster as the node serving the page sees it, kept live by the
 * watch stream (GET /v1/cluster/watch: every node and shard change triggers a refresh) and refreshed
 * every few seconds besides (operators, alerts, logs and load have no stream; the load of every node is
 * gathered by the serving node: GET /v1/cluster/stats). Controls call the same HTTP
 * API as the CLI, after a confirmation, and show the API's error as it answered. Preact with htm
 * (no JSX build step), bundled by src/ui/build.ts into dist/ui/app.js.
 */
import { h, render } from "preact";
import { useCallback, useEffect, useState } from "preact/hooks";
import htm from "htm";
import { type ClusterStats, HotShards, RequestCharts, collectionLoad, shardSize } from "./stats.js";

const html = htm.bind(h);

/** How often everything is read again, besides the refreshes the watch stream triggers. */
const REFRESH_MS = 3000;

interface NodeRow { id: number; http: string; role: string; lifecycle: string; worker: string; health: string; phi: number | null; labels: Record<string, string> }
interface ShardRow { shard: number; collection: string; range: unknown; epoch: number; leader: number; replicas: { node: number; role: string }[] }
interface OperatorRow { id: number; shard: number; reason: string; status: string; steps: { kind: string; node?: number; to?: number }[]; stepIndex: number; startedAtMs: number; updatedAtMs: number }
interface AlertRow { atMs: number; kind: string; node: number; message: string }
interface Collection { name: string; shards: number[]; replicationFactor: number; partitioning: string; vectors: { dim: number; metric: string } | null; writeMode: string; ttlMs: number | null }
interface SettingsVersion { version: number; atMs: number; note: string; placement: Record<string, number> }

interface Cluster {
  metaLeader: number;
  nodes: NodeRow[];
  shards: ShardRow[];
  operators: OperatorRow[];
  alerts: AlertRow[];
  replicationFactor: number;
  collections: Map<string, Collection>;
  logs: { time?: number; level?: number; msg?: string }[];
  settings: SettingsVersion[];
  readAtMs: number;
}

/** A GET of the API, its JSON; an error answer thrown with the API's code and message. */
async function get<T>(path: string): Promise<T> {
  const r = await fetch(path, { headers: { accept: "application/json" } });
  const body = (await r.json()) as T & { error?: { code: string; message: string } };
  if (!r.ok) throw new Error(`${r.status} ${body.error?.code ?? ""}: ${body.error?.message ?? ""}`);
  return body;
}

async function readCluster(): Promise<Cluster> {
  const [nodes, shards, operators, alerts, config, collections, logs] = await Promise.all([
    get<{ metaLeader: number; nodes: NodeRow[] }>("/v1/cluster/nodes"),
    get<{ shards: ShardRow[] }>("/v1/cluster/shards"),
    get<{ operators: OperatorRow[] }>("/v1/cluster/operators?status=all").catch(() => ({ operators: [] })),
    get<{ alerts: AlertRow[] }>("/v1/cluster/alerts").catch(() => ({ alerts: [] })),
    get<{ versions: SettingsVersion[] }>("/v1/cluster/config/history"),
    get<{ collections: Collection[] }>("/v1/collections"),
    get<{ lines: Cluster["logs"] }>("/v1/node/logs?limit=40").catch(() => ({ lines: [] })),
  ]);
  return {
    metaLeader: nodes.metaLeader, nodes: nodes.nodes, shards: shards.shards, operators: operators.operators, alerts: alerts.alerts,
    replicationFactor: config.versions[config.versions.length - 1]!.placement["replicationFactor"]!, settings: config.versions, collections: new Map(collections.collections.map((c) => [c.name, c])),
    logs: logs.lines, readAtMs: Date.now(),
  };
}

/** A shard's trouble as the page shows it: no leader known, or fewer voters on live nodes than asked. */
function troubleOf(c: Cluster, s: ShardRow): "leaderless" | "under" | null {
  const dead = new Set(c.nodes.filter((n) => n.health === "dead").map((n) => n.id));
  if (s.leader === 0 || dead.has(s.leader)) return "leaderless";
  const homes = c.nodes.filter((n) => n.worker !== "removed" && n.role !== "analytics").length;
  const asked = Math.min(c.collections.get(s.collection)?.replicationFactor ?? c.replicationFactor, homes);
  const live = s.replicas.filter((r) => r.role === "voter" && !dead.has(r.node)).length;
  return live < asked ? "under" : null;
}

/**
 * A running operator's time left, estimated from the pace of its finished steps (a replica's catch-up
 * dominates a move, so this is rough; shown as such).
 */
function etaOf(o: OperatorRow, nowMs: number): string {
  if (o.status !== "running" || o.steps.length === 0) return "";
  const done = Math.min(o.stepIndex, o.steps.length);
  if (done === 0) return "estimating…";
  const leftMs = ((nowMs - o.startedAtMs) / done) * (o.steps.length - done);
  return `~${Math.max(1, Math.round(leftMs / 1000))} s left`;
}

/** The form to move one replica of a shard from a node to another (a learner is added, caught up, promoted, the old one removed). */
function MoveReplica({ cluster, run }: { cluster: Cluster; run: (p: Promise<string>) => void }) {
  const [shard, setShard] = useState("");
  const [from, setFrom] = useState("");
  const [to, setTo] = useState("");
  const submit = (e: Event) => {
    e.preventDefault();
    run(act(`move shard ${shard}'s replica from node ${from} to node ${to}`, "POST", `/v1/cluster/shards/${shard}/move`, { from: Number(from), to: Number(to) }));
  };
  const value = (set: (v: string) => void) => (e: Event) => set((e.target as HTMLInputElement | HTMLSelectElement).value);
  return html`<form id="move" onSubmit=${submit}>move a replica of shard
    <select name="shard" value=${shard} onChange=${value(setShard)}><option value="">…</option>${cluster.shards.map((s) => html`<option value=${s.shard}>${s.shard}</option>`)}</select>
    from node <input name="from" size="3" value=${from} onInput=${value(setFrom)} /> to node <input name="to" size="3" value=${to} onInput=${value(setTo)} />
    <button type="submit" data-action="move">move</button></form>`;
}

async function act(what: string, method: string, path: string, body?: unknown): Promise<string> {
  if (!window.confirm(`${what}?`)) return "";
  const r = await fetch(path, { method, headers: body === undefined ? {} : { "content-type": "application/json" }, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
  const answer = (await r.json().catch(() => ({}))) as { error?: { code: string; message: string } };
  if (!r.ok) throw new Error(`${what}: ${r.status} ${answer.error?.code ?? ""}: ${answer.error?.message ?? ""}`);
  return `${what}: done`;
}

/** The settings in force with a form to change one (against the version shown), and their history. */
function Settings({ cluster, run }: { cluster: Cluster; run: (p: Promise<string>) => void }) {
  const current = cluster.settings[cluster.settings.length - 1]!;
  const names = Object.keys(current.placement).sort();
  const [name, setName] = useState(names[0] ?? "");
  const [value, setValue] = useState("");
  const [note, setNote] = useState("");
  const change = (e: Event) => {
    e.preventDefault();
    run(act(`set ${name} to ${value}`, "PUT", "/v1/cluster/config", { baseVersion: current.version, settings: { [name]: Number(value) }, ...(note !== "" ? { note } : {}) }));
  };
  return html`<section id="settings"><h2>Settings <span class="badge" data-field="version">version ${current.version}</span></h2>
    <form onSubmit=${change}>
      <select name="setting" value=${name} onChange=${(e: Event) => setName((e.target as HTMLSelectElement).value)}>${names.map((n) => html`<option value=${n}>${n}</option>`)}</select>
      <input name="value" placeholder=${String(current.placement[name] ?? "")} value=${value} onInput=${(e: Event) => setValue((e.target as HTMLInputElement).value)} size="10" />
      <input name="note" placeholder="why (kept in the history)" value=${note} onInput=${(e: Event) => setNote((e.target as HTMLInputElement).value)} />
      <button type="submit" data-action="set">change</button>
    </form>
    <table><thead><tr><th>setting</th><th>value</th></tr></thead><tbody>${names.map((n) => html`<tr data-setting=${n}><td>${n}</td><td>${current.placement[n]}</td></tr>`)}</tbody></table>
    <h2>History</h2>
    <table><thead><tr><th>version</th><th>at</th><th>note</th><th>changed</th></tr></thead><tbody>${cluster.settings.slice().reverse().map((v, i, all) => {
      const before = all[i + 1];
      const changed = before === undefined ? [] : Object.keys(v.placement).filter((k) => v.placement[k] !== before.placement[k]).map((k) => `${k}: ${before.placement[k]} → ${v.placement[k]}`);
      return html`<tr><td>${v.version}</td><td>${new Date(v.atMs).toLocaleString()}</td><td>${v.note}</td><td>${changed.join(", ")}</td></tr>`;
    })}</tbody></table>
  </section>`;
}

function App() {
  const [cluster, setCluster] = useState<Cluster | null>(null);
  const [problem, setProblem] = useState<string | null>(null);
  const [notice, setNotice] = useState<string | null>(null);
  const [live, setLive] = useState(false);
  const [stats, setStats] = useState<ClusterStats | null>(null);
  const refresh = useCallback(() => {
    readCluster().then((c) => {
      setCluster(c);
      setProblem(null);
    }, (e: Error) => setProblem(`cannot read the cluster: ${e.message}`));
    // Apart: gathering waits for slow nodes (bounded), and must not hold up the map.
    get<ClusterStats>("/v1/cluster/stats").then(setStats, () => undefined);
  }, []);
  useEffect(() => {
    refresh();
    const timer = setInterval(refresh, REFRESH_MS);
    const events = new EventSource("/v1/cluster/watch");
    events.onopen = () => setLive(true);
    events.onerror = () => setLive(false);
    for (const kind of ["node", "shard", "snapshot"]) events.addEventListener(kind, refresh);
    return () => {
      clearInterval(timer);
      events.close();
    };
  }, [refresh]);
  const run = (p: Promise<string>) => p.then((n) => {
    if (n !== "") setNotice(n);
    refresh();
  }, (e: Error) => setNotice(`error: ${e.message}`));
  if (cluster === null) return html`<main>${problem !== null ? html`<p class="error">${problem}</p>` : html`<p>Loading the cluster…</p>`}</main>`;
  const leaders = (id: number) => cluster.shards.filter((s) => s.leader === id).length;
  const replicas = (id: number) => cluster.shards.filter((s) => s.replicas.some((r) => r.node === id)).length;
  const troubled = cluster.shards.map((s) => troubleOf(cluster, s));
  return html`
    <header><h1>Shoal</h1><span class="live" data-live=${live}>${live ? "live" : "polling"} · read ${new Date(cluster.readAtMs).toLocaleTimeString()}</span></header>
    <main>
      ${problem !== null ? html`<p class="error">${problem}</p>` : null}
      ${notice !== null ? html`<p class=${notice.startsWith("error") ? "error" : "ok"} id="notice">${notice}</p>` : null}
      <section class="counts">
        <div><b id="count-nodes">${cluster.nodes.filter((n) => n.worker !== "removed").length}</b>nodes</div>
        <div><b id="count-shards">${cluster.shards.length}</b>shards</div>
        <div><b id="count-leaderless">${troubled.filter((t) => t === "leaderless").length}</b>leaderless</div>
        <div><b id="count-under">${troubled.filter((t) => t === "under").length}</b>under-replicated</div>
        <div><b>${cluster.operators.filter((o) => o.status === "running").length}</b>operators running</div>
      </section>
      <${RequestCharts} stats=${stats} />
      <section id="alerts"><h2>Alerts</h2>
        ${cluster.alerts.length === 0 && !cluster.nodes.some((n) => n.health === "dead" && n.worker !== "removed") ? html`<p>none</p>` : null}
        ${cluster.alerts.length === 0 ? null : html`<ul class="alerts">${cluster.alerts.slice(-20).reverse().map((a) =>
          html`<li class="alert" data-kind=${a.kind}>${new Date(a.atMs).toLocaleTimeString()} <span class="badge dead">${a.kind}</span> ${a.message}</li>`)}</ul>`}
        ${cluster.nodes.filter((n) => n.health === "dead" && n.worker !== "removed").map((n) =>
          html`<p class="alert error" data-kind="node-unreachable">node ${n.id} is not answering its peers (health: dead)</p>`)}
      </section>
      <section><h2>Nodes</h2>
        <table id="nodes"><thead><tr><th>id</th><th>http</th><th>role</th><th>membership</th><th>worker</th><th>health</th><th>leaders</th><th>replicas</th><th>labels</th><th></th></tr></thead>
        <tbody>${cluster.nodes.map((n) => html`
          <tr data-node=${n.id} class=${n.health === "dead" ? "bad" : n.worker === "draining" ? "warn" : ""}>
            <td>${n.id}${n.id === cluster.metaLeader ? " *" : ""}</td><td>${n.http}</td><td>${n.role}</td><td>${n.lifecycle}</td>
            <td><span class=${`badge ${n.worker}`} data-field="worker">${n.worker}</span></td><td><span class=${`badge ${n.health}`} data-field="health">${n.health}</span>${n.phi !== null ? html` <small title="phi-accrual suspicion as the serving node sees it">φ ${n.phi.toFixed(2)}</small>` : null}</td>
            <td data-field="leaders">${leaders(n.id)}</td><td>${replicas(n.id)}</td>
            <td>${Object.entries(n.labels).map(([k, v]) => `${k}=${v}`).join(" ")}</td>
            <td>${n.worker === "ready" ? html`<button data-action="drain" onClick=${() => run(act(`drain node ${n.id}`, "POST", `/v1/cluster/nodes/${n.id}/drain`))}>drain</button>` : null}
                ${(n.lifecycle === "ready" || n.lifecycle === "pairing") && n.role === "standard" ? html`<button data-action="promote" onClick=${() => run(act(`promote node ${n.id} to metadata voter`, "POST", `/v1/cluster/nodes/${n.id}/promote`))}>promote</button>` : null}
                ${n.worker === "draining" && replicas(n.id) === 0 ? html`<button data-action="remove" onClick=${() => run(act(`remove node ${n.id}`, "POST", `/v1/cluster/nodes/${n.id}/remove`))}>remove</button>` : null}</td>
          </tr>`)}</tbody></table>
      </section>
      <section><h2>Shards</h2>
        <table id="shards"><thead><tr><th>shard</th><th>collection</th><th>range</th><th>epoch</th><th>leader</th><th>replicas</th><th title="records and bytes as the shard's leader last measured them (walked again 10 s after the last walk, when written since)">size, as measured</th><th></th><th></th></tr></thead>
        <tbody>${cluster.shards.map((s, i) => html`
          <tr data-shard=${s.shard} class=${troubled[i] !== null ? "bad" : ""}>
            <td>${s.shard}</td><td>${s.collection}</td><td>${JSON.stringify(s.range)}</td><td>${s.epoch}</td>
            <td data-field="leader">${s.leader === 0 ? "—" : s.leader}</td>
            <td>${s.replicas.map((r) => `${r.node}${r.role === "learner" ? " (learner)" : ""}`).join(", ")}</td><td data-field="size">${shardSize(stats, s.shard)}</td>
            <td>${troubled[i] !== null ? html`<span class=${`badge ${troubled[i]}`}>${troubled[i] === "under" ? "under-replicated" : "leaderless"}</span>` : null}</td>
            <td>${s.replicas.filter((r) => r.role === "voter" && r.node !== s.leader).map((r) =>
              html`<button data-action="transfer" data-to=${r.node} onClick=${() => run(act(`transfer shard ${s.shard}'s leadership to node ${r.node}`, "POST", `/v1/cluster/shards/${s.shard}/transfer-leader`, { to: r.node }))}>lead on ${r.node}</button> `)}
              <button data-action="split" onClick=${() => run(act(`split shard ${s.shard}`, "POST", `/v1/cluster/shards/${s.shard}/split`, {}))}>split</button>
              <button data-action="merge" onClick=${() => run(act(`merge shard ${s.shard} into its lower neighbour`, "POST", `/v1/cluster/shards/${s.shard}/merge`))}>merge</button></td>
          </tr>`)}</tbody></table>
        <${MoveReplica} cluster=${cluster} run=${run} />
      </section>
      <${HotShards} stats=${stats} live=${new Set(cluster.shards.map((x) => x.shard))} />
      <section><h2>Operators</h2>
        ${cluster.operators.length === 0 ? html`<p>none</p>` : html`<table id="operators"><thead><tr><th>id</th><th>shard</th><th>reason</th><th>status</th><th>progress</th><th>time left</th><th>started</th><th></th></tr></thead>
        <tbody>${cluster.operators.slice(-30).reverse().map((o) => html`<tr>
          <td>${o.id}</td><td>${o.shard}</td><td>${o.reason}</td><td>${o.status}</td>
          <td>${o.steps.length === 0 ? "—" : `${Math.min(o.stepIndex, o.steps.length)} of ${o.steps.length} steps`}</td><td data-field="eta">${etaOf(o, stats?.atMs ?? cluster.readAtMs)}</td><td>${new Date(o.startedAtMs).toLocaleTimeString()}</td>
          <td>${o.status === "running" ? html`<button onClick=${() => run(act(`cancel operator ${o.id}`, "POST", `/v1/cluster/operators/${o.id}/cancel`))}>cancel</button>` : null}</td></tr>`)}</tbody></table>`}
      </section>
      <section id="collections"><h2>Collections</h2>
        <table><thead><tr><th>name</th><th>shards</th><th>replicas</th><th>partitioning</th><th>vectors</th><th>write mode</th><th>TTL</th><th>records</th><th>index lag</th></tr></thead>
        <tbody>${[...cluster.collections.values()].map((c) => ({ c, load: collectionLoad(stats, c.name) })).map(({ c, load }) => html`<tr data-collection=${c.name}><td>${c.name}</td><td>${c.shards.length}</td><td>${c.replicationFactor}</td><td>${c.partitioning}</td>
          <td>${c.vectors === null ? "—" : `${c.vectors.dim}-d ${c.vectors.metric}`}</td><td>${c.writeMode}</td><td>${c.ttlMs === null ? "—" : `${c.ttlMs} ms`}</td>
          <td data-field="records">${load.records}</td><td data-field="index-lag">${load.indexLag}</td></tr>`)}</tbody></table>
      </section>
      <${Settings} cluster=${cluster} run=${run} />
      <section><h2>This node's recent log</h2>
        <div class="logs">${cluster.logs.map((l) => `${l.time !== undefined ? new Date(l.time).toLocaleTimeString() : ""} ${l.level ?? ""} ${l.msg ?? ""}\n`).join("")}</div>
      </section>
    </main>`;
}

const root = document.getElementById("app")!;
root.textContent = ""; // the static "Loading" line: Preact renders into the element, it does not replace what is there
render(html`<${App} />`, root);
