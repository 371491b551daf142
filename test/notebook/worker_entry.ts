// Starts the inference worker from source for tests, as `lora-studio worker …` would (the CLI's `worker`
// case calls the same function).
import { runWorkerCommand } from '../../src/cli/worker.js';

const argv = process.argv.slice(2);
if (argv[0] === 'worker') argv.shift();
runWorkerCommand(argv).then(
  (code) => (process.exitCode = code),
  (e: unknown) => {
    console.error(e instanceof Error ? e.stack : String(e));
    process.exitCode = 1;
  },
);
