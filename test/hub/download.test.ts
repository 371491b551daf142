// Models by Hub id, against a local Hub-compatible server (fake_hub.ts; the real Hub is never contacted):
// a fresh download into an empty cache, read back by following the documented cache layout (not the
// project's code); the same call with the server stopped (cache only) and with HF_HUB_OFFLINE; a download
// cut midway and resumed with a Range request; gated (401/403) and missing (404) repositories; a cache laid
// out by another tool (huggingface-cli) used as it is.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { REPO } from '../helpers/fixtures.js';
import { FakeHub, folderFiles } from './fake_hub.js';
import { downloadModel } from '../../src/core/hub/model.js';
import { HubError } from '../../src/core/hub/download.js';

const MODEL = path.join(REPO, 'test/fixtures/tiny-sd/model');
const ID = 'runwayml/stable-diffusion-v1-5';
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'hub-dl-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** The fixture as the real repository is laid out: plus pickle weights, a safety checker and fp16 files that must not be fetched. */
function repoFiles(): Map<string, Buffer> {
  const files = folderFiles(MODEL);
  files.set('v1-5-pruned.ckpt', Buffer.from('pickle, never downloaded'));
  files.set('unet/diffusion_pytorch_model.bin', Buffer.from('pickle, never downloaded'));
  files.set('safety_checker/model.safetensors', Buffer.alloc(4096, 1));
  files.set('safety_checker/config.json', Buffer.from('{}'));
  files.set('README.md', Buffer.from('# model card'));
  return files;
}

const WANTED = [...folderFiles(MODEL).keys()].sort();
const env = (hub: FakeHub, cache: string, extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv => ({ HF_ENDPOINT: hub.url, HF_HUB_CACHE: cache, HF_HOME: path.join(tmp, 'no-home'), ...extra });

/** What a cache holds for a repo, read as huggingface_hub documents the layout. */
function readCacheLayout(cache: string, type: string, id: string) {
  const repoDir = path.join(cache, `${type}s--${id.replace('/', '--')}`);
  const commit = fs.readFileSync(path.join(repoDir, 'refs', 'main'), 'utf8');
  const snapshot = path.join(repoDir, 'snapshots', commit);
  const files = new Map<string, { target: string; bytes: Buffer }>();
  const walk = (rel: string) => {
    for (const e of fs.readdirSync(path.join(snapshot, rel), { withFileTypes: true })) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) walk(r);
      else {
        const link = path.join(snapshot, r);
        assert.ok(fs.lstatSync(link).isSymbolicLink(), `${r} is a symlink into blobs/`);
        const target = path.resolve(path.dirname(link), fs.readlinkSync(link));
        assert.equal(path.dirname(target), path.join(repoDir, 'blobs'));
        files.set(r, { target: path.basename(target), bytes: fs.readFileSync(link) });
      }
    }
  };
  walk('');
  return { commit, files, repoDir };
}

test('a fresh download fills an empty cache in the standard layout, only with what training reads; then the cache alone serves it', async () => {
  const hub = new FakeHub([{ type: 'model', id: ID, revisions: { main: repoFiles() } }]);
  await hub.start();
  const cache = path.join(tmp, 'fresh');
  const progress: number[] = [];
  const snap = await downloadModel(ID, { env: env(hub, cache), onProgress: (p) => progress.push(p.bytes) });
  const layout = readCacheLayout(cache, 'model', ID);
  assert.equal(layout.commit, hub.commitOf('model', ID));
  assert.equal(snap.dir, path.join(layout.repoDir, 'snapshots', layout.commit));
  assert.deepEqual([...layout.files.keys()].sort(), WANTED, 'model_index.json, configs, tokenizer, safetensors — no .bin/.ckpt, no safety_checker');
  for (const [rel, f] of layout.files) {
    const original = fs.readFileSync(path.join(MODEL, rel));
    assert.ok(f.bytes.equals(original), `${rel} arrived intact`);
    // blobs are named by etag: the sha256 for LFS files, the git blob sha1 for the others.
    const expected = rel.endsWith('.safetensors') ? crypto.createHash('sha256').update(original).digest('hex') : crypto.createHash('sha1').update(`blob ${original.length}\0`).update(original).digest('hex');
    assert.equal(f.target, expected, `${rel}'s blob name`);
  }
  const total = WANTED.reduce((s, rel) => s + fs.statSync(path.join(MODEL, rel)).size, 0);
  assert.equal(progress.at(-1), total, 'progress ends at the total bytes');

  // Again with the server up: nothing is downloaded again.
  const again = await downloadModel(ID, { env: env(hub, cache) });
  assert.deepEqual(again.downloaded, []);
  // The server stopped: the cache is used, and the notice says why.
  await hub.stop();
  const notices: string[] = [];
  const offline = await downloadModel(ID, { env: env(hub, cache), onNotice: (m) => notices.push(m) });
  assert.equal(offline.dir, snap.dir);
  assert.ok(offline.fromCache);
  assert.match(notices[0], /is not reachable.*using the cached runwayml\/stable-diffusion-v1-5/);
  // HF_HUB_OFFLINE with an empty cache says exactly what is missing.
  await assert.rejects(downloadModel(ID, { env: env(hub, path.join(tmp, 'empty'), { HF_HUB_OFFLINE: '1' }) }), (e: HubError) => e.code === 'offline' && /HF_HUB_OFFLINE is set, and runwayml\/stable-diffusion-v1-5 is not in the cache .*refs.main is missing/.test(e.message));
  // A cached snapshot that lost a file: named.
  fs.rmSync(path.join(snap.dir, 'vae', 'diffusion_pytorch_model.safetensors'));
  await assert.rejects(downloadModel(ID, { env: env(hub, cache, { HF_HUB_OFFLINE: '1' }) }), (e: HubError) => e.code === 'offline' && /lacks vae\/\*\.safetensors/.test(e.message));
});

test('a download cut midway resumes from the partial file with a Range request, and the result is intact', async () => {
  const unet = 'unet/diffusion_pytorch_model.safetensors';
  const size = fs.statSync(path.join(MODEL, unet)).size;
  const cut = Math.floor(size / 3);
  const hub = new FakeHub([{ type: 'model', id: ID, revisions: { main: repoFiles() } }], { dropDownload: { pathEndsWith: unet, afterBytes: cut } });
  await hub.start();
  const cache = path.join(tmp, 'resume');
  try {
    await assert.rejects(downloadModel(ID, { env: env(hub, cache) }), (e: HubError) => e.code === 'network' && /run again: the download resumes/.test(e.message));
    const blobs = path.join(cache, 'models--runwayml--stable-diffusion-v1-5', 'blobs');
    const partial = fs.readdirSync(blobs).find((f) => f.endsWith('.incomplete'))!;
    assert.ok(partial, 'the partial file is kept');
    // What arrived before the cut (at most what the server sent) is kept.
    const kept = fs.statSync(path.join(blobs, partial)).size;
    assert.ok(kept > 0 && kept <= cut, `${kept} of ${cut} bytes kept`);
    const snap = await downloadModel(ID, { env: env(hub, cache) });
    const ranged = hub.requests.filter((r) => r.url.includes('/resolve/') && r.url.endsWith(unet) && r.range && r.range !== 'bytes=0-0');
    assert.equal(ranged.at(-1)!.range, `bytes=${kept}-${size - 1}`, 'the second request asks only for the rest');
    assert.ok(fs.readFileSync(path.join(snap.dir, unet)).equals(fs.readFileSync(path.join(MODEL, unet))));
    assert.ok(!fs.readdirSync(blobs).some((f) => f.endsWith('.incomplete')));
  } finally {
    await hub.stop();
  }
});

test('gated repositories (401 without a token, 403 without access) and a missing one (404) are errors with the URL and what to do', async () => {
  const hub = new FakeHub([{ type: 'model', id: 'org/gated', revisions: { main: repoFiles() }, gated: true, allowedTokens: ['hf_allowed'] }]);
  await hub.start();
  const cache = path.join(tmp, 'gated');
  try {
    await assert.rejects(downloadModel('org/gated', { env: env(hub, cache) }), (e: HubError) => {
      assert.equal(e.code, 'unauthorized');
      assert.match(e.message, new RegExp(`${hub.url}/org/gated needs a login: the repository is private or gated and no token was found`));
      assert.match(e.message, /set HF_TOKEN \(or hub_token, or run `huggingface-cli login`\)/);
      return true;
    });
    await assert.rejects(downloadModel('org/gated', { env: env(hub, cache, { HF_TOKEN: 'hf_other' }) }), (e: HubError) => e.code === 'forbidden' && /the token from \$HF_TOKEN has no access/.test(e.message) && /request access/.test(e.hint));
    // The token file `huggingface-cli login` writes, and hub_token, both work.
    const home = path.join(tmp, 'home');
    fs.mkdirSync(home, { recursive: true });
    fs.writeFileSync(path.join(home, 'token'), 'hf_allowed\n');
    const viaFile = await downloadModel('org/gated', { env: { ...env(hub, cache), HF_HOME: home } });
    assert.ok(fs.existsSync(path.join(viaFile.dir, 'model_index.json')));
    assert.ok(hub.requests.some((r) => r.auth === 'Bearer hf_allowed'));
    // A token file that is not a regular file is refused, naming it, before any request (/dev/zero is never read).
    const hostile = path.join(tmp, 'hostile-home');
    fs.mkdirSync(hostile, { recursive: true });
    fs.symlinkSync('/dev/zero', path.join(hostile, 'token'));
    const asked = hub.requests.length;
    await assert.rejects(downloadModel('org/gated', { env: { ...env(hub, cache), HF_HOME: hostile } }), {
      message: `${path.join(hostile, 'token')}: the Hugging Face token file must be a regular file, but this is a character device — remove it and run \`huggingface-cli login\` again, or set HF_TOKEN`,
    });
    assert.equal(hub.requests.length, asked);
    await assert.rejects(downloadModel('org/missing', { env: env(hub, cache) }), (e: HubError) => e.code === 'not_found' && e.message.includes(`${hub.url}/org/missing does not exist`));
    await assert.rejects(downloadModel('org/gated', { env: env(hub, cache), token: 'hf_allowed', revision: 'no-such-branch' }), (e: HubError) => e.code === 'not_found' && /revision "no-such-branch"/.test(e.message));
  } finally {
    await hub.stop();
  }
});

test('variant fp16 fetches the .fp16.safetensors files where the repository has them, and a revision gets its own ref', async () => {
  const files = repoFiles();
  files.set('unet/diffusion_pytorch_model.fp16.safetensors', fs.readFileSync(path.join(MODEL, 'unet/diffusion_pytorch_model.safetensors')));
  const hub = new FakeHub([{ type: 'model', id: ID, revisions: { main: files, v2: files } }]);
  await hub.start();
  const cache = path.join(tmp, 'variant');
  try {
    const snap = await downloadModel(ID, { env: env(hub, cache), variant: 'fp16', revision: 'v2' });
    assert.deepEqual(fs.readdirSync(path.join(snap.dir, 'unet')).sort(), ['config.json', 'diffusion_pytorch_model.fp16.safetensors']);
    assert.ok(fs.existsSync(path.join(snap.dir, 'vae', 'diffusion_pytorch_model.safetensors')), 'plain files where there is no fp16 variant');
    assert.equal(fs.readFileSync(path.join(cache, 'models--runwayml--stable-diffusion-v1-5', 'refs', 'v2'), 'utf8'), hub.commitOf('model', ID, 'v2'));
  } finally {
    await hub.stop();
  }
});

test('a cache written by another tool (laid out as huggingface_hub documents it) is used: nothing is downloaded, and offline it serves alone', async () => {
  const hub = new FakeHub([{ type: 'model', id: ID, revisions: { main: repoFiles() } }]);
  await hub.start();
  const cache = path.join(tmp, 'other-tool');
  const commit = hub.commitOf('model', ID);
  // What `huggingface-cli download` leaves: blobs named by etag (sha256 of LFS files, git blob sha1 of the
  // others), snapshots/<commit>/<path> relative symlinks to them, refs/main holding the commit.
  const repoDir = path.join(cache, 'models--runwayml--stable-diffusion-v1-5');
  for (const rel of WANTED) {
    const bytes = fs.readFileSync(path.join(MODEL, rel));
    const etag = rel.endsWith('.safetensors') ? crypto.createHash('sha256').update(bytes).digest('hex') : crypto.createHash('sha1').update(`blob ${bytes.length}\0`).update(bytes).digest('hex');
    fs.mkdirSync(path.join(repoDir, 'blobs'), { recursive: true });
    fs.writeFileSync(path.join(repoDir, 'blobs', etag), bytes);
    const link = path.join(repoDir, 'snapshots', commit, ...rel.split('/'));
    fs.mkdirSync(path.dirname(link), { recursive: true });
    fs.symlinkSync(path.relative(path.dirname(link), path.join(repoDir, 'blobs', etag)), link);
  }
  fs.mkdirSync(path.join(repoDir, 'refs'), { recursive: true });
  fs.writeFileSync(path.join(repoDir, 'refs', 'main'), commit);
  try {
    const online = await downloadModel(ID, { env: env(hub, cache) });
    assert.equal(online.dir, path.join(repoDir, 'snapshots', commit));
    assert.deepEqual(online.downloaded, []);
    assert.ok(!hub.requests.some((r) => r.url.includes('/resolve/')), 'no file was fetched');
    const offline = await downloadModel(ID, { env: env(hub, cache, { HF_HUB_OFFLINE: '1' }) });
    assert.equal(offline.dir, online.dir);
  } finally {
    await hub.stop();
  }
});
