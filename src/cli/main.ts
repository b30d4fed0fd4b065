/** The `shoal` command line. */
import { Command, Option } from "commander";

// Each command's module is loaded only when that command runs: `check-history` should not pay for
// loading the HTTP server and the storage engine.

const env = (name: string, dflt: string) => process.env[name] ?? dflt;

const program = new Command();
program.name("shoal").description("Shoal: a distributed, sharded, replicated database").version("0.1.0");

program
  .command("check-history")
  .description("check whether a recorded history is linearizable (exit 0 yes, 1 no, 2 unknown or bad input)")
  .argument("<file>", "history: Shoal JSON lines, a Jepsen log, or a Jepsen EDN history")
  .addOption(new Option("--model <model>", "sequential model (default: kv for EDN, else register)").choices(["register", "kv"]))
  .addOption(new Option("--format <format>", "input format (default: detected)").choices(["jsonl", "jepsen-log", "edn"]))
  .option("--timeout <seconds>", "give up with verdict unknown after this many seconds", "60")
  .action(async (file: string, opts) => {
    const { checkHistoryCommand } = await import("./check-history.js");
    process.exitCode = checkHistoryCommand(file, opts);
  });

program
  .command("sim")
  .description("run the deterministic cluster simulator over a range of seeds")
  .option("--seeds <n>", "number of seeds to run", "20")
  .option("--first-seed <s>", "first seed", "1")
  .option("--steps <n>", "simulated milliseconds per run", "20000")
  .option("--nodes <n>", "cluster size (3 or 5; 0 = chosen by seed)", "0")
  .option("--mutation <name>", "switch on a deliberate bug (for demonstrating the checks)")
  .addOption(new Option("--profile <profile>", "fault profile (default: chosen by each seed)").choices(["mixed", "leader-churn", "power"]))
  .option("--history-dir <dir>", "write each run's client history (JSON lines) here")
  .option("-v, --verbose", "print a line per seed")
  .action(async (opts) => {
    const { simCommand } = await import("./sim.js");
    process.exitCode = await simCommand(opts);
  });

program
  .command("start")
  .description("run a Shoal node (with no flags: a single-node cluster, data in ./shoal-data, HTTP on 127.0.0.1:7400)")
  .option("--id <n>", "this node's id, unique in the cluster [env SHOAL_ID]", env("SHOAL_ID", "1"))
  .option("--data-dir <dir>", "where the node keeps its log and state [env SHOAL_DATA_DIR]", env("SHOAL_DATA_DIR", "./shoal-data"))
  .option("--http <host:port>", "address of the public HTTP API [env SHOAL_HTTP]", env("SHOAL_HTTP", "127.0.0.1:7400"))
  .option("--listen <host:port>", "address for other nodes (Raft traffic) [env SHOAL_LISTEN]", env("SHOAL_LISTEN", "127.0.0.1:7500"))
  .option("--advertise <host:port>", "address other nodes should use, if not --listen [env SHOAL_ADVERTISE]", process.env.SHOAL_ADVERTISE)
  .option("--peers <list>", "the other members: ID=HOST:PORT,… (empty: single node) [env SHOAL_PEERS]", env("SHOAL_PEERS", ""))
  .option("--shards <n>", "shards of the default collection; fixed for the cluster's life [env SHOAL_SHARDS]", env("SHOAL_SHARDS", "4"))
  .option("--max-payload-bytes <n>", "largest accepted request body [env SHOAL_MAX_PAYLOAD_BYTES]", env("SHOAL_MAX_PAYLOAD_BYTES", String(1 << 20)))
  .option("--compact-after-entries <n>", "compact a shard's log after this many applied entries (default 10000) [env SHOAL_COMPACT_AFTER_ENTRIES]", process.env.SHOAL_COMPACT_AFTER_ENTRIES)
  .addOption(new Option("--log-level <level>", "least severe log lines written (debug shows Raft and transport events) [env SHOAL_LOG_LEVEL]")
    .choices(["debug", "info", "warn", "error"]).default(env("SHOAL_LOG_LEVEL", "info")))
  .option("--join <url>", "join the running cluster of this member's HTTP API (the cluster assigns the id; --id, --peers and --shards are then ignored) [env SHOAL_JOIN]", process.env.SHOAL_JOIN)
  .option("--labels <list>", "failure-domain labels: zone=…,rack=…,host=… [env SHOAL_LABELS]", process.env.SHOAL_LABELS)
  .addOption(new Option("--role <role>", "standard (may vote in the metadata group), analytics (a learner forever, serves reads), standby [env SHOAL_ROLE]")
    .choices(["standard", "analytics", "standby"]).default(env("SHOAL_ROLE", "standard")))
  .action(async (opts) => {
    // startCommand only returns on failure (a running node exits through its signal handlers).
    const { startCommand } = await import("./start.js");
    process.exit(await startCommand(opts));
  });

program
  .command("demo")
  .description("start a local cluster of node processes on loopback; Ctrl-C stops them all")
  .option("--nodes <n>", "number of nodes", "3")
  .option("--http-port <port>", "HTTP port of node 1 (node i uses port + i - 1)", "7400")
  .option("--peer-port <port>", "peer port of node 1 (node i uses port + i - 1)", "7500")
  .option("--shards <n>", "shards of the default collection", "4")
  .option("--data-dir <dir>", "where the nodes keep their data and logs", "./shoal-demo")
  .action(async (opts) => {
    const { demoCommand } = await import("./demo.js");
    process.exitCode = await demoCommand(opts);
  });

const endpoint = () => new Option("--endpoint <url>", "a node's HTTP API [env SHOAL_ENDPOINT]").default(env("SHOAL_ENDPOINT", "http://127.0.0.1:7400"));
program.command("put").description("create or replace a record").argument("<id>").argument("<payload>", "JSON")
  .addOption(endpoint()).option("--if-version <n>", "compare-and-set: only if the record is at this version (0: absent)")
  .action(async (id: string, payload: string, opts) => { process.exitCode = await (await import("./client.js")).putCommand(id, payload, opts); });
program.command("get").description("read a record").argument("<id>").addOption(endpoint())
  .addOption(new Option("--consistency <level>").choices(["linearizable", "sequential", "eventual"]))
  .action(async (id: string, opts) => { process.exitCode = await (await import("./client.js")).getCommand(id, opts); });
program.command("del").description("delete a record").argument("<id>").addOption(endpoint())
  .option("--if-version <n>", "only if the record is at this version")
  .action(async (id: string, opts) => { process.exitCode = await (await import("./client.js")).delCommand(id, opts); });
program.command("status").description("a node's view of the cluster's shards").addOption(endpoint())
  .option("--json", "print JSON")
  .action(async (opts) => { process.exitCode = await (await import("./client.js")).statusCommand(opts); });

const nodeCmd = program.command("node").description("the cluster's nodes");
nodeCmd.command("ls").description("list the nodes the metadata group records").addOption(endpoint()).option("--json", "print JSON")
  .action(async (opts) => { process.exitCode = await (await import("./client.js")).nodeListCommand(opts); });
for (const [action, what] of [["drain", "drain a node: no new replicas, its replicas move away (leaders first); it serves reads meanwhile"],
  ["remove", "remove a node from the cluster (refused while it holds replicas: drain it first)"]] as const) {
  nodeCmd.command(action).description(what).argument("<id>").addOption(endpoint())
    .action(async (id: string, opts) => { process.exitCode = await (await import("./client.js")).nodeActionCommand(action, id, opts); });
}
nodeCmd.command("promote").description("promote a caught-up metadata learner to voter (voters stay odd: name a partner with --with)").argument("<id>")
  .addOption(endpoint()).option("--with <id>", "a second learner promoted together (joint consensus)")
  .action(async (id: string, opts) => { process.exitCode = await (await import("./cluster-client.js")).promoteCommand(id, opts); });
const configCmd = program.command("config").description("cluster-wide settings, versioned in the metadata group");
configCmd.command("get").description("the settings in force").addOption(endpoint()).option("--json", "print JSON")
  .action(async (opts) => { process.exitCode = await (await import("./client.js")).configCommand("get", [], opts); });
configCmd.command("history").description("kept versions, oldest first").addOption(endpoint()).option("--json", "print JSON")
  .action(async (opts) => { process.exitCode = await (await import("./client.js")).configCommand("history", [], opts); });
configCmd.command("set").description("change settings (NAME=NUMBER …), validated before they apply").argument("<assignments...>")
  .addOption(endpoint()).option("--note <text>", "what the change is for, kept with the version")
  .action(async (assignments: string[], opts) => { process.exitCode = await (await import("./client.js")).configCommand("set", assignments, opts); });
configCmd.command("rollback").description("go back to a kept version (recorded as a new version)").argument("<version>").addOption(endpoint())
  .action(async (version: string, opts) => { process.exitCode = await (await import("./client.js")).configCommand("rollback", [version], opts); });
const shardCmd = program.command("shard").description("the shard map");
shardCmd.command("ls").description("list the shards: hash range, epoch, replicas").addOption(endpoint()).option("--json", "print JSON")
  .action(async (opts) => { process.exitCode = await (await import("./client.js")).shardListCommand(opts); });

shardCmd.command("move").description("move a replica of a shard to another node (the placement driver runs it as an operator)").argument("<shard>")
  .requiredOption("--from <node>", "the node holding the replica").requiredOption("--to <node>", "a ready node not holding one").addOption(endpoint())
  .action(async (shard: string, opts) => { process.exitCode = await (await import("./cluster-client.js")).shardMoveCommand(shard, opts); });
shardCmd.command("transfer-leader").description("move a shard's leadership to another of its voters").argument("<shard>")
  .requiredOption("--to <node>", "a voter of the shard").addOption(endpoint())
  .action(async (shard: string, opts) => { process.exitCode = await (await import("./cluster-client.js")).transferLeaderCommand(shard, opts); });
shardCmd.command("split").description("split a shard in two: the upper part of its hash range becomes a new shard on the same replicas").argument("<shard>")
  .option("--at <hash>", "where to cut (a 32-bit hash inside the shard's range; default: its middle)").addOption(endpoint())
  .action(async (shard: string, opts) => { process.exitCode = await (await import("./cluster-client.js")).splitCommand(shard, opts); });
shardCmd.command("merge").description("merge a small shard into its lower neighbour (it freezes; its records move through the neighbour's log)").argument("<shard>").addOption(endpoint())
  .action(async (shard: string, opts) => { process.exitCode = await (await import("./cluster-client.js")).mergeCommand(shard, opts); });
const operatorCmd = program.command("operator").description("the placement driver's operators (replica moves, leader transfers)");
operatorCmd.command("ls").description("list operators, newest first, with their steps (✓ done, > current)").addOption(endpoint())
  .option("--running", "only running ones").option("--json", "print JSON")
  .action(async (opts) => { process.exitCode = await (await import("./cluster-client.js")).operatorListCommand(opts); });
operatorCmd.command("cancel").description("cancel a running operator (finished steps stand)").argument("<id>").addOption(endpoint())
  .action(async (id: string, opts) => { process.exitCode = await (await import("./cluster-client.js")).operatorCancelCommand(id, opts); });
program.command("alerts").description("the placement driver's alerts (dead nodes, stale learners, removals)").addOption(endpoint()).option("--json", "print JSON")
  .action(async (opts) => { process.exitCode = await (await import("./cluster-client.js")).alertsCommand(opts); });
program.command("watch").description("stream node and shard changes as JSON lines (server-sent events) until interrupted").addOption(endpoint())
  .action(async (opts) => { process.exitCode = await (await import("./cluster-client.js")).watchCommand(opts); });

try {
  await program.parseAsync(process.argv);
} catch (e) {
  console.error(`shoal: ${(e as Error).message}`);
  process.exitCode = 1;
}
