// LoRA Studio's version: package.json's `version`, the one place it is written. The bundles get it at build
// time (scripts/build.mjs defines __LORA_STUDIO_VERSION__); unbundled code (tsx: the tests, a developer
// running src/ directly) reads the package.json of the source tree it runs from.
import fs from 'node:fs';

declare const __LORA_STUDIO_VERSION__: string | undefined;

function fromPackageJson(): string {
  const file = new URL('../../../package.json', import.meta.url);
  const version = (JSON.parse(fs.readFileSync(file, 'utf8')) as { version?: unknown }).version;
  if (typeof version !== 'string') throw new Error(`${file.pathname}: no "version"`);
  return version;
}

export const LORA_STUDIO_VERSION: string = typeof __LORA_STUDIO_VERSION__ === 'string' ? __LORA_STUDIO_VERSION__ : fromPackageJson();
