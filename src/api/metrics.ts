/**
 * A node's Prometheus metrics (OPS-3), one registry per server (injected, never prom-client's global
 * one), every series labelled with the node's id. Conventions (checked by metrics.test.ts, and by
 * `promtool check metrics` where it is installed): base units (`_seconds`, `_bytes`), counters end in
 * `_total`, every family has HELP. Families, by room:
 *   requests:  shoal_request_duration_seconds{op, collection, outcome} (outcome: "ok" or the error
 *              table's code), shoal_request_errors_total{code}, shoal_gateway_forwarded_requests_total
 *   raft:      proposals, applied entries, elections, leaderships won, leader changes, transfers,
 *              snapshots installed and their bytes, apply lag, replication lag, leaderless and
 *              under-replicated shards of this node's view, quiesced shards, ticks; split fills'
 *              parts and keys moved
 *   wal:       shoal_wal_sync_seconds, shoal_wal_batch_records
 *   transport: frames sent and dropped, bytes sent (per plane: snapshots go on "bulk"), queued frames and
 *              bytes, each peer's breaker state
 *   cluster:   from the placement driver, on the node that runs it (0 elsewhere: take the max over
 *              nodes): dead nodes, under-replicated and leaderless shards, the hottest shard's request
 *              rate and the split threshold it is held to, operators ended by kind, reason and outcome
 *   disk:      the data directory's filesystem size and free bytes
 *   indexes:   vector and payload index lag and backlog
 */
import { statfsSync } from "node:fs";
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import type { MultiRaftNode } from "../node/multi-raft.js";
import type { Gateway } from "../node/gateway.js";
import type { IndexService } from "../data/index-service.js";
import type { PlacementDriver } from "../node/placement-driver.js";
import { currentSettings } from "../meta/state.js";
import { ProgressState, Role } from "../raft/index.js";
import { PLANES } from "../transport/transport.js";

/** How often the event-loop delay metric samples (prom-client's default of every 10 ms was most of an idle node's wakeups, issue 13; a stall of 100 ms or more is still seen every time). */
const EVENT_LOOP_SAMPLE_MS = 100;
/** Breaker states, each a series of `shoal_transport_peer_breaker` (1 for the peer's current one). */
const BREAKER_STATES = ["closed", "half-open", "open"] as const;

export interface MetricsSources {
  node: MultiRaftNode;
  gateway: Gateway;
  indexes?: IndexService;
  /** The node's placement driver (cluster health, operators), when it runs one. */
  placement?: PlacementDriver;
  /** The data directory, for the disk gauges. */
  dataDir?: string;
}

export interface NodeMetrics {
  registry: Registry;
  /** One answered request: `op` from the route's config, `outcome` "ok" or the error code answered. */
  observeRequest(op: string, collection: string, outcome: string, seconds: number): void;
  /** One error answered, by code. */
  countError(code: string): void;
}

export function nodeMetrics(src: MetricsSources): NodeMetrics {
  const { node, gateway } = src;
  const registry = new Registry();
  registry.setDefaultLabels({ node: String(node.id) });
  collectDefaultMetrics({ register: registry, eventLoopMonitoringPrecision: EVENT_LOOP_SAMPLE_MS });
  const registers = [registry];
  // prom-client names three gauges "_total", which Prometheus keeps for counters (promtool check metrics
  // refuses them); its nodejs_active_resources{type} gauge says the same.
  for (const name of ["nodejs_active_handles_total", "nodejs_active_requests_total", "nodejs_active_resources_total"]) registry.removeSingleMetric(name);

  const gauge = (name: string, help: string, read: () => number) => new Gauge({ name, help, registers, collect() { this.set(read()); } });
  /**
   * A Counter that follows monotonic counters kept elsewhere: each scrape adds what each source grew by.
   * A source is one item read (its labels, or the `source` key given: one link object of a plane, a
   * link made anew being another source); a source seen lower than before started again and adds all
   * it counted, and a source that is gone leaves what it added, so the series never goes back nor flat.
   */
  const labelledCounter = <L extends string>(name: string, help: string, labelNames: readonly L[], read: () => Iterable<[Record<L, string>, number, string?]>) => {
    let seen = new Map<string, number>();
    return new Counter({
      name, help, labelNames, registers, collect() {
        const now = new Map<string, number>();
        for (const [labels, count, source] of read()) {
          const key = `${JSON.stringify(labels)}${source ?? ""}`;
          const had = seen.get(key) ?? 0;
          if (count > had) this.inc(labels, count - had);
          else if (count < had && count > 0) this.inc(labels, count);
          now.set(key, count);
        }
        seen = now;
      },
    });
  };
  const counter = (name: string, help: string, read: () => number) => labelledCounter(name, help, [], () => [[{}, read()]]);
  /**
   * Gauges read from one view taken per scrape: prom-client collects in registration order, so the
   * first gauge takes the view and the others read it (each takes its own when collected alone first).
   */
  const viewGauges = <V>(take: () => V, gauges: readonly [name: string, help: string, read: (v: V) => number][]) => {
    let view: V | undefined;
    gauges.forEach(([name, help, read], i) => gauge(name, help, () => read(i === 0 || view === undefined ? (view = take()) : view)));
  };

  // Requests.
  // The label sets observed per collection: a dropped collection's series go at the next scrape.
  const observedIn = new Map<string, Set<string>>();
  const latency = new Histogram({
    name: "shoal_request_duration_seconds", help: "HTTP request latency by operation, collection and outcome (ok, or the error code answered)",
    labelNames: ["op", "collection", "outcome"], registers,
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    collect() {
      const known = node.metaState().collections;
      for (const [collection, sets] of observedIn) {
        if (collection === "" || known.has(collection)) continue;
        for (const set of sets) {
          const [op, outcome] = set.split("\0") as [string, string];
          this.remove({ op, collection, outcome });
        }
        observedIn.delete(collection);
      }
    },
  });
  const errors = new Counter({ name: "shoal_request_errors_total", help: "error answers by code", labelNames: ["code"], registers });
  counter("shoal_gateway_forwarded_requests_total", "record writes and reads this node's gateway sent on to the shard's leader on another node", () => gateway.forwardedRequests);

  // Raft, and the node's loop, from its own counters.
  const c = node.counters;
  const nodeCounters: [string, string, keyof typeof c][] = [
    ["shoal_raft_proposals_total", "proposals made on this node", "proposals"],
    ["shoal_raft_applied_entries_total", "committed log entries applied on this node", "applied"],
    ["shoal_raft_leaderships_won_total", "elections this node won (times it became leader of a shard)", "leadershipsWon"],
    ["shoal_raft_elections_started_total", "elections this node started as a candidate (won + lost)", "electionsStarted"],
    ["shoal_raft_leader_changes_total", "times a group on this node saw its leader change (the first leader it learns of after a start is not counted)", "leaderChanges"],
    ["shoal_raft_successor_campaigns_total", "elections started at once because the shard's leader's node was lost and this node is its chosen successor", "successorCampaigns"],
    ["shoal_raft_successor_campaign_retries_total", "pre-votes asked again by a chosen successor whose first campaign was not answered (a survivor still trusted the lost leader)", "successorCampaignRetries"],
    ["shoal_raft_groups_woken_for_peer_total", "quiescent groups led here woken because a member's node was heard again after its transport broke (a restart: it learns its leader)", "groupsWokenForPeer"],
    ["shoal_raft_leader_transfers_started_total", "leadership hand-overs started by this node (placement operators, drains)", "leaderTransfersStarted"],
    ["shoal_raft_snapshots_installed_total", "snapshots installed on this node's replicas", "snapshotsInstalled"],
    ["shoal_raft_snapshot_installed_bytes_total", "bytes of the snapshots installed on this node's replicas", "snapshotBytesInstalled"],
    ["shoal_gateway_leader_return_waits_total", "requests a gateway here sent again after the shard's leader fell silent, waiting for the next leader or for that one to be heard again", "leaderReturnWaits"],
    ["shoal_gateway_leader_returns_total", "of those, requests sent again to the same leader, heard again while it still led (a stall of its node, a link broken for a while)", "leaderReturns"],
    ["shoal_split_fill_parts_total", "parts of a split's move of records from the parent to the child, one a loop turn (each walks a bounded number of keys)", "splitFillParts"],
    ["shoal_split_fill_keys_moved_total", "records and remembered outcomes moved from split parents to their children", "splitFillKeysMoved"],
    ["shoal_raft_group_ticks_total", "Raft ticks of all groups (quiescent groups do not tick)", "groupTicks"],
    ["shoal_loop_turns_total", "multi-raft loop turns", "turns"],
    ["shoal_loop_slow_turns_total", "loop turns slower than a quarter of an election timeout (each is logged with the phase that took longest); no group of the node sends or answers during a turn", "slowTurns"],
    ["shoal_transport_malformed_messages_total", "messages from peers dropped as malformed", "malformedMessages"],
    ["shoal_wal_batches_total", "WAL batches (one fdatasync each)", "walBatches"],
  ];
  for (const [name, help, key] of nodeCounters) counter(name, help, () => c[key]);
  counter("shoal_state_commits_total", "state store (LMDB) commits", () => node.stateCommits());
  gauge("shoal_raft_quiesced_shards", "shards whose Raft group is quiescent (idle: not ticking) on this node", () => node.quiescedShards());
  // One pass over the groups per scrape serves every gauge of the node's Raft view.
  viewGauges(() => raftViewOf(node), [
    ["shoal_raft_leader_shards", "shards this node leads", (v) => v.leading],
    ["shoal_raft_leaderless_shards", "shards held here whose leader this node does not know (none, or an election under way)", (v) => v.leaderless],
    ["shoal_raft_under_replicated_shards", "shards led here with a voter that is not recently active and replicating", (v) => v.underReplicated],
    ["shoal_raft_apply_lag_entries", "the largest distance, in entries, between a replica's commit and applied indexes here", (v) => v.applyLagMax],
    ["shoal_raft_replication_lag_entries", "the largest distance, in entries, between a shard's last index and a voter's match index, over the shards led here", (v) => v.replicationLagMax],
  ]);

  // WAL.
  const walSync = new Histogram({
    name: "shoal_wal_sync_seconds", help: "WAL batch write + fdatasync latency", registers,
    buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25],
  });
  const walBatch = new Histogram({
    name: "shoal_wal_batch_records", help: "records (entries of one group, hard states, snapshots) in one synced WAL batch", registers,
    buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024],
  });
  node.onWalSync = (seconds, records) => {
    walSync.observe(seconds);
    walBatch.observe(records);
  };

  // Transport, per plane.
  const links = () => node.transport.stats();
  // Per link, so that a peer's link going away takes nothing back from its plane's counts.
  const perLink = (read: (l: ReturnType<typeof links>[number]) => number) => () =>
    links().map((l) => [{ plane: l.plane }, read(l), `/${l.link}`] as [Record<"plane", string>, number, string]);
  const transportCounters = [
    labelledCounter("shoal_transport_frames_sent_total", "frames written to peers' connections", ["plane"], perLink((l) => l.framesSent)),
    labelledCounter("shoal_transport_frames_dropped_total", "frames dropped: queue full or peer unreachable (Raft treats them as lost messages)", ["plane"], perLink((l) => l.framesDropped)),
    labelledCounter("shoal_transport_sent_bytes_total", "bytes written to peers' connections (snapshots travel on the bulk plane)", ["plane"], perLink((l) => l.bytesSent)),
  ];
  // Every plane has its series from the start (0), peers or not.
  for (const counter of transportCounters) for (const plane of PLANES) counter.inc({ plane }, 0);
  new Gauge({
    name: "shoal_transport_queued_frames", help: "frames queued on outbound connections", labelNames: ["plane"], registers,
    collect() { for (const [l, n] of perPlane(links(), (x) => x.queuedFrames)) this.set(l, n); },
  });
  gauge("shoal_transport_queued_bytes", "bytes queued on outbound connections", () => links().reduce((s, l) => s + l.queuedBytes, 0));
  new Gauge({
    name: "shoal_transport_peer_breaker", help: "each peer's circuit breaker: 1 for its current state (closed: connecting freely; open: backing off)", labelNames: ["peer", "state"], registers,
    collect() {
      this.reset();
      for (const peer of new Set(links().map((l) => l.peer))) {
        const now = node.transport.breakerState(peer);
        for (const state of BREAKER_STATES) this.set({ peer: String(peer), state }, now === state ? 1 : 0);
      }
    },
  });

  // The cluster, from the placement driver.
  const placement = src.placement;
  if (placement !== undefined) {
    gauge("shoal_placement_driver_active", "1 on the node that runs the placement driver (it leads the metadata group)", () => (placement.active ? 1 : 0));
    viewGauges(() => placement.health(), [
      ["shoal_cluster_dead_nodes", "nodes the placement driver judges dead and has not removed yet (0 on other nodes)", (h) => h?.deadNodes ?? 0],
      ["shoal_cluster_under_replicated_shards", "live shards with fewer voters on live nodes than their replication factor (placement driver's view; 0 on other nodes)", (h) => h?.underReplicatedShards ?? 0],
      ["shoal_cluster_leaderless_shards", "live shards no leader has reported for lately (placement driver's view; 0 on other nodes)", (h) => h?.leaderlessShards ?? 0],
      ["shoal_cluster_hottest_shard_requests_per_second", "the highest request rate a leader reported for one shard (placement driver's view; 0 on other nodes)", (h) => h?.hottestShardRequestRate ?? 0],
    ]);
    gauge("shoal_placement_split_requests_per_second", "the request rate past which the placement driver splits a shard (setting splitRequestRate; 0: never)", () => currentSettings(node.metaState()).placement.splitRequestRate);
    labelledCounter("shoal_placement_operators_total", "operators ended on this node's placement driver, by kind (move, split, transfer-leader, …), reason and outcome", ["kind", "reason", "outcome"],
      () => [...placement.operatorsEnded.values()].map((o) => [{ kind: o.kind, reason: o.reason, outcome: o.outcome }, o.count] as [Record<"kind" | "reason" | "outcome", string>, number]));
  }

  // Disk.
  const dataDir = src.dataDir;
  if (dataDir !== undefined) {
    gauge("shoal_disk_size_bytes", "size of the filesystem holding the data directory", () => statfsOf(dataDir)?.size ?? 0);
    gauge("shoal_disk_free_bytes", "bytes free to this process on the filesystem holding the data directory", () => statfsOf(dataDir)?.free ?? 0);
  }

  // Indexes.
  const indexes = src.indexes;
  if (indexes !== undefined) {
    gauge("shoal_index_pending_ops", "writes applied on this node's replicas but not yet in their vector graphs (searches scan them exactly)", () => indexes.stats().pendingOps);
    gauge("shoal_index_lag_entries", "the largest distance, in applied log entries, between a replica here and its index", () => indexes.stats().lagEntriesMax);
    gauge("shoal_index_records", "records held by this node's replica indexes", () => indexes.stats().records);
  }

  return {
    registry,
    observeRequest: (op, collection, outcome, seconds) => {
      latency.observe({ op, collection, outcome }, seconds);
      if (collection === "") return; // never dropped
      let sets = observedIn.get(collection);
      if (sets === undefined) observedIn.set(collection, sets = new Set());
      sets.add(`${op}\0${outcome}`);
    },
    countError: (code) => errors.inc({ code }),
  };
}

interface RaftView { leading: number; leaderless: number; underReplicated: number; applyLagMax: number; replicationLagMax: number }

function raftViewOf(node: MultiRaftNode): RaftView {
  const v: RaftView = { leading: 0, leaderless: 0, underReplicated: 0, applyLagMax: 0, replicationLagMax: 0 };
  for (const g of node.status().groups) {
    if (g.lead === 0) v.leaderless++;
    v.applyLagMax = Math.max(v.applyLagMax, g.commit - g.applied);
    if (g.role !== Role.Leader || g.progress === null) continue;
    v.leading++;
    let unhealthy = false;
    for (const voter of g.config.voters) {
      const p = g.progress.get(voter);
      if (p === undefined) continue;
      v.replicationLagMax = Math.max(v.replicationLagMax, g.lastIndex - p.match);
      if (voter !== node.id && (!p.recentActive || p.state !== ProgressState.Replicate)) unhealthy = true;
    }
    if (unhealthy) v.underReplicated++;
  }
  return v;
}

function perPlane<T extends { plane: string }>(links: readonly T[], read: (l: T) => number): [{ plane: string }, number][] {
  return PLANES.map((plane) => [{ plane }, links.filter((l) => l.plane === plane).reduce((s, l) => s + read(l), 0)]);
}

export function statfsOf(dir: string): { size: number; free: number } | null {
  try {
    const s = statfsSync(dir);
    return { size: s.blocks * s.bsize, free: s.bavail * s.bsize };
  } catch {
    return null; // the directory went away (a test's): no figure rather than a failed scrape
  }
}
