/**
 * What the multi-raft host knows of its peers and quorums: peer liveness from the frames received,
 * quorum checks that fail requests early instead of at their timeout, lost leaders, and quiescence of
 * idle groups with keepalives between nodes (quiescence.ts decides; this carries it out).
 */

import { type NodeId, Role } from "../raft/index.js";

import { assert } from "../util/assert.js";

import { type Group, META_GROUP, NODE_GROUP, NoQuorumError, QuorumLostError, RemovedFromClusterError, quorumReach } from "./group.js";
import { quiescenceStep } from "./quiescence.js";

import { currentSettings } from "../meta/state.js";

import type { Health } from "../placement/types.js";

import { appendTo, hasWaiters } from "./multi-raft-state.js";
import { NodeState } from "./multi-raft-state.js";

/** Tick rounds between walks of every group even when every peer is live (~2 s at 30 ms ticks: a safety net only). */
const FULL_SCAN_EVERY_ROUNDS = 64;

/** A removed node that still sends is told so at most this often. */
const REMOVED_NOTICE_INTERVAL_MS = 1000;
/** Bound on the removed peers whose last notice is remembered. */
const REMOVED_NOTICES_MAX = 1024;

export abstract class NodeLiveness extends NodeState {
  /** The metadata group's applied index has reached the commit index its leader told it: caught up. */
  metaCaughtUp(): boolean {
    const st = this.group(META_GROUP).raft.status();
    return st.lead !== 0 && st.applied >= st.commit && st.commit > 0;
  }

  /**
   * How this node sees another's health (phi-accrual over the frames it receives from it; MEM-6).
   * Keepalives reach every known peer each heartbeat interval, even when every group is quiescent.
   */
  /** The phi-accrual suspicion of a peer as this node sees it (null for itself, or before enough was heard). */
  peerPhi(id: NodeId): number | null {
    return id === this.id ? null : this.peers.phi(id, this.clock.nowMs());
  }

  peerHealth(id: NodeId, deadAfterMs = currentSettings(this.meta).placement.nodeDeadAfterMs): Health {
    if (id === this.id) return this.failure === null ? "healthy" : "unhealthy";
    return this.peers.health(id, this.clock.nowMs(), deadAfterMs);
  }

  /**
   * The transport to `peer` broke and nothing was heard from it since (but frames its connections may
   * still have held: see brokenSince): the groups that follow it as
   * their leader end its lease now (Raft.resumeTicking), so they grant pre-votes and campaign at their
   * randomized timeout instead of first sitting out a whole election timeout of silence. Safe: only the
   * timing of an election changes (reads never rely on leases here: ReadIndex), and a leader that is in
   * fact alive keeps its followers, whose next heartbeat from it resets their timers as usual.
   */
  protected leaderGone(peer: NodeId): void {
    // A frame read within a heartbeat interval of the close does not save it (PeerLiveness.brokenSince):
    // survivors that took such a frame for life skipped their successor campaigns (sim/world/failover.test.ts).
    if (!this.peers.brokenSince(peer, this.cfg.heartbeatTicks * this.cfg.tickMs) && !this.peerLost(peer)) return;
    for (const g of this.groups.values()) {
      // A pre-candidate knows no leader; it may be campaigning against the lost one (after a stall, its
      // timer ran out before the lost leader's last heartbeats were read). Left campaigning beside the
      // successor, both win each other's pre-votes and split the real vote (multi-raft.test: 10 of 20
      // by their successor, all in term +2; traced): it yields, like a follower of the lost leader.
      const role = g.raft.role();
      const followedLost = role === Role.Follower ? g.raft.lead() === peer : role === Role.PreCandidate && g.raft.lastLead() === peer;
      if (!followedLost) continue;
      const successor = this.successorOf(g, peer);
      if (successor === null) {
        if (g.quiescence.quiesced) this.wake(g, true);
        else g.raft.resumeTicking(true);
        continue;
      }
      // One successor per group campaigns at once; every survivor forgets the leader, so it grants the
      // successor's pre-vote at once, and campaigns itself only at its own election timeout (if the
      // successor fails). Survivors campaigning together split the vote and all wait a whole timeout
      // again: a node that led hundreds of shards took up to 1.4 s to be replaced (bench:failover).
      // The others' timeouts count from this news, not from the leader's last heartbeat: after a stall
      // (a loaded machine), the ticks this turn counts would otherwise fire their timers in this very
      // turn, beside the successor's campaign (multi-raft.test: 7 of 20 shards taken so, seen).
      if (g.quiescence.quiesced) this.wake(g, false);
      g.raft.forgetLeader();
      this.touched.add(g);
      if (successor === this.id) {
        // Each connection's close brings the news again (up to one per plane each way): the successor
        // campaigns at the first, then asks again only on retrySuccessorCampaigns' schedule. Asking at
        // every close sent each pre-vote up to six times within a few ms, and the work delayed the very
        // elections it was for (bench:failover, 500 shards led by the lost node: first leaders ~100 ms later).
        if (this.successorCampaignTicks.has(g)) continue;
        g.raft.campaign();
        if (role === Role.Follower) this.counters.successorCampaigns++;
        this.successorCampaignTicks.set(g, 0);
      } else {
        if (g.raft.role() === Role.PreCandidate) g.raft.yieldCampaign();
        g.raft.restartElectionClock();
        this.ticksWaived.add(g);
      }
    }
  }

  /**
   * A frame came from `peer`: if the metadata here records it removed (and the metadata group no longer
   * counts it among its members), it is told so (at most once a
   * REMOVED_NOTICE_INTERVAL_MS). A node removed before its process started (silent past
   * nodeRemoveAfterMs after its join: seen in grow.test on a loaded machine), or cut off while the
   * cluster removed it, otherwise waits forever for a leader that will never call, saying only that
   * the metadata group has no leader.
   */
  protected noticeIfRemoved(peer: NodeId): void {
    // Only once its removal is done: the node may still have a part in it (e.g. leading the metadata
    // group that removes it from its configuration).
    if (this.meta.nodes.get(peer)?.worker !== "removed" || this.group(META_GROUP).raft.memberIds().includes(peer)) return;
    const nowMs = this.clock.nowMs();
    const lastMs = this.removedNoticeAtMs.get(peer);
    if (lastMs !== undefined && nowMs - lastMs < REMOVED_NOTICE_INTERVAL_MS) return;
    if (lastMs === undefined && this.removedNoticeAtMs.size >= REMOVED_NOTICES_MAX) this.removedNoticeAtMs.clear();
    this.removedNoticeAtMs.set(peer, nowMs);
    this.transport.send(peer, "control", { group: NODE_GROUP, msg: { removed: peer } });
    this.cfg.logger?.warn({ peer }, `node ${peer} was removed from the cluster and still sends: told it so`);
  }

  /**
   * A member told this node that the cluster removed it. Removal is final (a node id is never given
   * again), so the node stops: its health check fails with the reason, and it must join again with an
   * empty data directory to serve.
   */
  protected removedBy(peer: NodeId, removed: NodeId): void {
    if (removed !== this.id || this.failure !== null) return;
    this.failure = new RemovedFromClusterError(`node ${this.id} was removed from the cluster (node ${peer} says so): it stops; to serve again, join with an empty data dir`);
    this.cfg.logger?.error({ peer }, this.failure.message);
  }

  /**
   * A peer whose transport had broken is heard again (its process restarted, or a link healed): the
   * quiescent groups led here that it is a member of wake and send it heartbeats. A restarted replica
   * knows no leader, and a quiescent leader sends nothing: a voter would find it by campaigning (after
   * an election timeout), but a learner never campaigns, so it stayed leaderless until the next write
   * woke the group (start.test: a joined node, restarted, never ready; traced).
   */
  protected peerBack(peer: NodeId): void {
    for (const g of this.groups.values()) {
      if (!g.quiescence.quiesced || g.raft.role() !== Role.Leader) continue;
      if (!g.raft.memberIds().includes(peer)) continue;
      this.wake(g, false);
      this.touched.add(g);
      this.counters.groupsWokenForPeer++;
    }
  }

  /**
   * Once a turn that counts `ticks`: a chosen successor whose pre-votes are not won yet asks again each
   * heartbeat interval, for one election timeout. A survivor ignores pre-votes while it trusts its leader,
   * and a frame the lost leader sent before it died, read after the news of the loss (a peer's
   * connections are read in no set order), renews that trust for a moment. Without asking again, the
   * successor waits out a whole election timeout, and the other survivor's may run out first
   * (multi-raft.test: 15 of 20 shards by their successor; traced). A pre-vote changes no term: asking
   * again disturbs nothing.
   */
  protected retrySuccessorCampaigns(ticks: number): void {
    const everyTicks = this.cfg.heartbeatTicks;
    for (const [g, before] of this.successorCampaignTicks) {
      const after = before + ticks;
      assert(this.groups.get(g.id) === g, () => `group ${g.id}: a successor campaign timed for a group no longer hosted here`);
      if (g.raft.role() !== Role.PreCandidate || after >= this.cfg.electionTicks) {
        this.successorCampaignTicks.delete(g);
        continue;
      }
      this.successorCampaignTicks.set(g, after);
      if (Math.floor(after / everyTicks) === Math.floor(before / everyTicks)) continue;
      g.raft.campaign();
      this.touched.add(g);
      this.counters.successorCampaignRetries++;
    }
  }

  /**
   * Which voter of `g` campaigns first once its leader `lost` is gone: among the voters this node sees
   * live (itself included), the one the group's id picks, so that a lost node's shards spread over its
   * survivors. Every survivor that sees the same live voters picks the same one.
   */
  private successorOf(g: Group, lost: NodeId): NodeId | null {
    const { incoming, outgoing } = g.raft.voters();
    if (outgoing.size > 0 || !incoming.has(this.id)) return null; // joint configurations: left to the timeouts
    const live = [...incoming].filter((id) => id !== lost && (id === this.id || !this.peerLost(id))).sort((a, b) => a - b);
    return live.length === 0 ? null : live[g.id % live.length]!;
  }

  /** A connection to or from `peer` closed, or one could not be made (transport callback). */
  protected peerDisconnected(peer: NodeId): void {
    if (this.stopped) return;
    this.peers.disconnected(peer, this.clock.nowMs());
    this.enqueue({ kind: "peerLost", peer });
    this.onPeerLost?.(peer, "disconnected");
  }

  /**
   * Whether `peer` shows no sign of life here: the transport to it broke after its last frame, or it
   * was silent for peerSilentAfterMs (every node sends every peer a keepalive each heartbeat interval,
   * or each idle keepalive interval).
   */
  peerLost(peer: NodeId): boolean {
    const nowMs = this.clock.nowMs();
    this.noteStall(nowMs);
    return this.peers.lost(peer, nowMs, this.peerSilentAfterMs);
  }

  /** Once a tick: tells the gateway of every peer lost (a request forwarded to one waits for nothing). */
  protected reportLostPeers(): void {
    if (this.onPeerLost === null) return;
    for (const peer of this.knownPeers()) if (this.peerLost(peer)) this.onPeerLost(peer, "silent");
  }

  /**
   * Once a tick: requests of a group that cannot reach a quorum from here fail now instead of at their
   * timeout (nothing can commit, no leader can be elected). Proposals Raft holds may still commit if
   * the quorum comes back, so their outcome is unknown; everything else was never proposed, or changes
   * nothing (reads).
   */
  protected failWithoutQuorum(scanAll: boolean): void {
    // With every peer live, every group reaches its quorum from here: nothing to fail (see scanAllDue).
    if (!scanAll) return;
    for (const g of this.groups.values()) {
      if (!hasWaiters(g)) continue;
      const refused = this.noQuorumFor(g);
      if (refused === null) continue;
      this.failWaiters(g, new QuorumLostError(g.id, refused.reach), refused);
      for (const watcher of g.quorumWatchers) watcher(refused.reach);
      g.quorumWatchers.clear();
    }
  }

  /**
   * A loop that stalled (a GC pause, a long synchronous task; in tests, every node of the process at
   * once) read no frame meanwhile, and its peers' may be queued: they are judged on what arrives after
   * it. Half an election timeout of lag past the tick's due time leaves a heartbeat interval of margin
   * before a live peer could look silent.
   */
  protected noteStall(nowMs: number): void {
    if (nowMs - this.tickDueAtMs > this.electionTimeoutMs / 2) this.peers.deafUntil(nowMs);
  }

  /**
   * NoQuorumError if the group's voters reachable from here (this node, and every peer heard within an
   * election timeout) make no quorum; null if they do.
   */
  protected noQuorumFor(g: Group): NoQuorumError | null {
    const nowMs = this.clock.nowMs();
    this.noteStall(nowMs);
    const withinMs = this.peerSilentAfterMs;
    const reachable = (id: NodeId) => id === this.id || this.peers.live(id, nowMs, withinMs);
    // Asked on every request: the usual answer without copying the configuration.
    if (g.raft.quorumReachable(reachable)) return null;
    const reach = quorumReach(g.raft.voters(), reachable);
    assert(!reach.ok, () => `group ${g.id}: two answers to whether its quorum is reachable`);
    assert(reach.voters > 0, () => `group ${g.id}: no voters, yet no quorum`);
    return new NoQuorumError(g.id, `${reach.reachable} of ${reach.voters} voters reachable from node ${this.id}`);
  }

  /** NoQuorumError if this node hosts the group and cannot reach its quorum: a gateway's reason not to forward. */
  noQuorum(group: number): NoQuorumError | null {
    const g = this.groups.get(group);
    return g === undefined ? null : this.noQuorumFor(g);
  }

  /**
   * Calls `onLost` once, from a later tick, if the group hosted here cannot reach its quorum then (with
   * how many voters it reaches); never if the group is not hosted here. Returns the function that stops
   * watching: call it once the watched request is answered.
   */
  watchQuorum(group: number, onLost: (reach: string) => void): () => void {
    const g = this.groups.get(group);
    if (g === undefined) return () => undefined;
    g.quorumWatchers.add(onLost);
    return () => g.quorumWatchers.delete(onLost);
  }

  /**
   * Whether this tick round must look at every group, not only the ticking ones: when some peer is not
   * live (a quiescent follower may have lost its leader; a group may have lost its quorum), and every
   * FULL_SCAN_EVERY_ROUNDS rounds anyway (a voter or leader outside the known peers). With every peer
   * live, a quiescent group has nothing to do: that keeps thousands of idle shards cheap (issue 13).
   */
  protected scanAllDue(): boolean {
    this.roundsSinceFullScan++;
    const nowMs = this.clock.nowMs();
    if (this.roundsSinceFullScan < FULL_SCAN_EVERY_ROUNDS && this.knownPeers().every((p) => this.peers.live(p, nowMs, this.peerSilentAfterMs))) return false;
    this.roundsSinceFullScan = 0;
    return true;
  }

  /**
   * After ticks: groups led here that stayed idle long enough quiesce (their followers are told);
   * quiescent followers whose leader's node fell silent wake up; every peer gets a keepalive each
   * heartbeat interval (each idle keepalive interval while no group here ticks), so that silence means
   * a dead or cut-off node, not idle shards.
   */
  protected tickQuiescence(ticks: number, scanAll: boolean): void {
    const nowMs = this.clock.nowMs();
    const notices = new Map<NodeId, [number, number][]>();
    // Per leader node, asked once per round: thousands of groups share a handful of leaders.
    const silent = new Map<NodeId, boolean>();
    const isSilent = (lead: NodeId) => {
      let s = silent.get(lead);
      if (s === undefined) silent.set(lead, (s = lead === 0 || !this.peers.live(lead, nowMs, this.peerSilentAfterMs)));
      return s;
    };
    for (const g of scanAll ? [...this.groups.values()] : [...this.ticking]) {
      const r = g.raft;
      const leaderSilent = isSilent(r.lead());
      const step = quiescenceStep(g.quiescence, r, g.proposals.size + g.reads.size, ticks, this.cfg.quiesceAfterTicks, leaderSilent);
      if (step === "wake-leader-lost") {
        this.wake(g, true);
        continue;
      }
      if (step === "quiesce") {
        this.setQuiesced(g, true);
        for (const peer of r.memberIds()) if (peer !== this.id) appendTo(notices, peer, [g.id, r.term()]);
      }
    }
    this.ticksSinceKeepalive += ticks;
    const keepalive = this.ticksSinceKeepalive >= this.keepaliveTicks();
    if (keepalive) this.ticksSinceKeepalive = 0;
    if (!keepalive && notices.size === 0) return;
    for (const peer of this.knownPeers()) {
      const list = notices.get(peer);
      if (list !== undefined) this.transport.send(peer, "control", { group: NODE_GROUP, msg: { quiesce: list } });
      else if (keepalive) this.transport.send(peer, "control", { group: NODE_GROUP, msg: { beats: [] } });
    }
    this.transport.flush();
  }

  /** Ticks a quiescent group again (see Raft.resumeTicking for `leaderLost`). */
  protected wake(g: Group, leaderLost: boolean): void {
    this.setQuiesced(g, false);
    g.quiescence.idleTicks = 0;
    g.raft.resumeTicking(leaderLost);
    this.counters.groupWakes++;
  }

  /** Whether the metadata group is quiescent on this node (idle like any shard). */
  metaQuiesced(): boolean {
    return this.group(META_GROUP).quiescence.quiesced;
  }

  /** Shards whose group is quiescent on this node. */
  quiescedShards(): number {
    let n = 0;
    for (const g of this.groups.values()) if (g.kind === "shard" && g.quiescence.quiesced) n++;
    return n;
  }
}
