// A stand-in for `lora-studio worker` that misbehaves on purpose (see worker_client.test.ts):
//   FAKE_WORKER=die-at-start   writes a reason on stderr and exits 3 before `ready`
//   FAKE_WORKER=die-on-generate answers `ready`, then dies on the first generate after a log line
import readline from 'node:readline';

const mode = process.env.FAKE_WORKER;
if (mode === 'die-at-start') {
  console.error('worker: the webgpu backend failed to initialise: no adapter');
  process.exit(3);
}
process.stdout.write(JSON.stringify({ type: 'ready', v: 1, pid: process.pid, backend: 'cpu' }) + '\n');
readline.createInterface({ input: process.stdin }).on('line', (line) => {
  const r = JSON.parse(line);
  if (r.type === 'status') process.stdout.write(JSON.stringify({ type: 'status', v: 1, id: r.id, loras: [], cached: [], modelLoads: 0, backend: 'cpu' }) + '\n');
  if (r.type === 'generate') {
    process.stdout.write(JSON.stringify({ type: 'model_loading', v: 1, id: r.id, model: r.model }) + '\n');
    console.error('worker: out of memory while loading the UNet');
    process.exit(134);
  }
});
