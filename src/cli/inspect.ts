// `lora-studio inspect FILE`: what a safetensors file is, from its header.
import { describeSafetensors, formatDescription } from '../core/io/inspect.js';

export async function runInspectCommand(argv: string[]): Promise<number> {
  const files = argv.filter((a) => !a.startsWith('-'));
  if (argv.includes('--help') || files.length === 0) {
    console.log('usage: lora-studio inspect FILE.safetensors [--json]');
    return files.length === 0 && !argv.includes('--help') ? 2 : 0;
  }
  for (const file of files) {
    const d = describeSafetensors(file);
    console.log(argv.includes('--json') ? JSON.stringify(d, null, 2) : formatDescription(d));
  }
  return 0;
}
