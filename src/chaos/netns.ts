/**
 * Network namespaces for the chaos runner's `netns` nemesis (root, `ip` and `iptables` required):
 * each node in its own namespace `shoal-<run>-<n>` with one end of a veth pair, the other end on a
 * bridge in the host's namespace that carries the address the runner's clients reach the nodes from.
 * A partition is iptables DROP rules inside a node's namespace (INPUT from and OUTPUT to its peers'
 * addresses); a heal flushes them. Every name carries a per-run id, so parallel runs do not clash, and
 * `remove` deletes everything, also synchronously from an exit hook.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";

function run(args: string[]): void {
  const r = spawnSync(args[0]!, args.slice(1), { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
  if (r.error !== undefined) throw new Error(`${args.join(" ")}: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`${args.join(" ")}: ${(r.stderr || r.stdout).trim() || `exit status ${r.status}`}`);
}

function onPath(tool: string): boolean {
  try {
    execFileSync("sh", ["-c", `command -v ${tool}`], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

/** Why namespace partitions cannot run here (root, the tools, a namespace with a rule in it), or null. */
export function netnsUnavailable(): string | null {
  if (process.getuid?.() !== 0) return "not running as root";
  const missing = ["ip", "iptables"].filter((t) => !onPath(t));
  if (missing.length > 0) return `${missing.join(" and ")} not on PATH`;
  // The kernel (or a container) may still refuse namespaces or netfilter: try both once.
  const ns = `shoal-probe-${process.pid}-${randomBytes(2).toString("hex")}`;
  try {
    run(["ip", "netns", "add", ns]);
  } catch (e) {
    return `cannot create a network namespace: ${(e as Error).message}`;
  }
  try {
    run(["ip", "netns", "exec", ns, "iptables", "-A", "INPUT", "-s", "10.255.255.1", "-j", "DROP"]);
    return null;
  } catch (e) {
    return `cannot add an iptables rule in a network namespace: ${(e as Error).message}`;
  } finally {
    try {
      run(["ip", "netns", "del", ns]);
    } catch {
      // Nothing else to do: the probe's namespace is empty.
    }
  }
}

export class NetnsNet {
  /** Per-run id: four hex digits, so interface names (at most 15 characters) stay short. */
  readonly run: string;
  readonly bridge: string;
  /** 10.<x>.<y>.0/24; the bridge is .254, node n is .n. */
  private readonly prefix: string;
  private readonly created = { namespaces: [] as string[], veths: [] as string[], bridge: false };

  private constructor(readonly ids: number[]) {
    const b = randomBytes(4);
    this.run = b.subarray(0, 2).toString("hex");
    this.bridge = `shbr${this.run}`;
    // 10.200.0.0 – 10.255.255.0: far from the usual 10.0/10.1 container networks.
    this.prefix = `10.${200 + (b[2]! % 56)}.${b[3]!}`;
  }

  static setup(ids: number[]): NetnsNet {
    const net = new NetnsNet(ids);
    try {
      net.create();
      return net;
    } catch (e) {
      net.remove();
      throw e;
    }
  }

  namespace(id: number): string {
    return `shoal-${this.run}-${id}`;
  }

  address(id: number): string {
    return `${this.prefix}.${id}`;
  }

  get hostAddress(): string {
    return `${this.prefix}.254`;
  }

  private create(): void {
    run(["ip", "link", "add", this.bridge, "type", "bridge"]);
    this.created.bridge = true;
    run(["ip", "addr", "add", `${this.hostAddress}/24`, "dev", this.bridge]);
    run(["ip", "link", "set", this.bridge, "up"]);
    for (const id of this.ids) {
      const ns = this.namespace(id);
      run(["ip", "netns", "add", ns]);
      this.created.namespaces.push(ns);
      const host = `sh${this.run}h${id}`;
      const inner = `sh${this.run}n${id}`;
      run(["ip", "link", "add", host, "type", "veth", "peer", "name", inner]);
      this.created.veths.push(host);
      run(["ip", "link", "set", inner, "netns", ns]);
      run(["ip", "link", "set", host, "master", this.bridge]);
      run(["ip", "link", "set", host, "up"]);
      run(["ip", "-n", ns, "link", "set", "lo", "up"]);
      run(["ip", "-n", ns, "addr", "add", `${this.address(id)}/24`, "dev", inner]);
      run(["ip", "-n", ns, "link", "set", inner, "up"]);
    }
  }

  /** The command line that runs `argv` inside node `id`'s namespace. */
  wrap(id: number, argv: string[]): [string, string[]] {
    return ["ip", ["netns", "exec", this.namespace(id), ...argv]];
  }

  /** DROP rules in `id`'s namespace for traffic from and to each of `peers` (the runner's address stays reachable). */
  cut(id: number, peers: number[]): void {
    const ns = this.namespace(id);
    for (const p of peers) {
      run(["ip", "netns", "exec", ns, "iptables", "-w", "-A", "INPUT", "-s", this.address(p), "-j", "DROP"]);
      run(["ip", "netns", "exec", ns, "iptables", "-w", "-A", "OUTPUT", "-d", this.address(p), "-j", "DROP"]);
    }
  }

  /** Flushes every rule in `id`'s namespace. */
  heal(id: number): void {
    const ns = this.namespace(id);
    run(["ip", "netns", "exec", ns, "iptables", "-w", "-F", "INPUT"]);
    run(["ip", "netns", "exec", ns, "iptables", "-w", "-F", "OUTPUT"]);
  }

  /** Deletes the veth pairs, the namespaces (their rules with them) and the bridge; synchronous, never throws. */
  remove(): string[] {
    const errors: string[] = [];
    // Deleted by their host ends: a namespace whose last process is still dying would otherwise keep its
    // pair (and so the host end) until the kernel frees it, which can be long after the runner has gone.
    for (const veth of this.created.veths.splice(0)) {
      try {
        run(["ip", "link", "del", veth]);
      } catch (e) {
        errors.push((e as Error).message);
      }
    }
    for (const ns of this.created.namespaces.splice(0)) {
      try {
        run(["ip", "netns", "del", ns]);
      } catch (e) {
        errors.push((e as Error).message);
      }
    }
    if (this.created.bridge) {
      this.created.bridge = false;
      try {
        run(["ip", "link", "del", this.bridge]);
      } catch (e) {
        errors.push((e as Error).message);
      }
    }
    return errors;
  }
}
