/** The `shoal` command line. */
import { Command, Option } from "commander";
import { checkHistoryCommand } from "./check-history.js";
import { simCommand } from "./sim.js";

const program = new Command();
program.name("shoal").description("Shoal: a distributed, sharded, replicated database").version("0.1.0");

program
  .command("check-history")
  .description("check whether a recorded history is linearizable (exit 0 yes, 1 no, 2 unknown or bad input)")
  .argument("<file>", "history: Shoal JSON lines, a Jepsen log, or a Jepsen EDN history")
  .addOption(new Option("--model <model>", "sequential model (default: kv for EDN, else register)").choices(["register", "kv"]))
  .addOption(new Option("--format <format>", "input format (default: detected)").choices(["jsonl", "jepsen-log", "edn"]))
  .option("--timeout <seconds>", "give up with verdict unknown after this many seconds", "60")
  .action((file: string, opts) => {
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
    process.exitCode = await simCommand(opts);
  });

await program.parseAsync(process.argv);
