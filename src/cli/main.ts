/** The `shoal` command line. */
import { Command } from "commander";

const program = new Command();
program.name("shoal").description("Shoal: a distributed, sharded, replicated database").version("0.1.0");
await program.parseAsync(process.argv);
