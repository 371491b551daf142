// Hub datasets (dataset_name) against the local Hub-compatible server: the repository's own train Parquet
// file, or the Hub's conversion on refs/convert/parquet; images from `{bytes, path}` structs, or given as
// paths into the repository (a Parquet column of file names; an imagefolder's metadata.jsonl or .txt
// captions), decode to the pixels written, captions are read, and the files land in the Hugging Face cache
// (datasets--org--name) — only the train split's.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { FakeHub } from './fake_hub.js';
import { POKEMON_ROWS, pathsParquet, pngOf, pokemonParquet } from './parquet_fixture.js';
import { openHubDataset } from '../../src/training/hub_dataset.js';
import { decodeRgb, DatasetError } from '../../src/training/dataset.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'hub-ds-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

test("a Hub dataset's train Parquet: images as PNG bytes in structs, captions as text, cached in the standard layout", async () => {
  const parquet = await pokemonParquet(POKEMON_ROWS);
  const hub = new FakeHub([
    { type: 'dataset', id: 'lambdalabs/pokemon-blip-captions', revisions: { main: new Map([['README.md', Buffer.from('# card')], ['data/train-00000-of-00001.parquet', parquet], ['data/test-00000-of-00001.parquet', parquet.subarray(0, 10)]]) } },
    { type: 'dataset', id: 'org/converted', revisions: { main: new Map([['pics/0.png', Buffer.from('x')]]), 'refs/convert/parquet': new Map([['default/train/0000.parquet', parquet]]) } },
  ]);
  await hub.start();
  const saved = { ...process.env };
  process.env.HF_ENDPOINT = hub.url;
  process.env.HF_HUB_CACHE = path.join(tmp, 'cache');
  try {
    const ds = await openHubDataset({ datasetName: 'lambdalabs/pokemon-blip-captions', imageColumn: 'image', captionColumn: 'text' });
    assert.equal(ds.layout, 'hub parquet');
    assert.deepEqual(ds.examples.map((e) => e.captions), POKEMON_ROWS.map((r) => [r.text]));
    for (const [i, ex] of ds.examples.entries()) {
      const img = await decodeRgb(ex.image!);
      assert.deepEqual([img.width, img.height, ...img.data.subarray(0, 3)], [64, 64, ...POKEMON_ROWS[i].rgb], `row ${i}: the PNG written is the image read (got ${[img.width, img.height, ...img.data.subarray(0, 3)]})`);
    }
    const repoDir = path.join(tmp, 'cache', 'datasets--lambdalabs--pokemon-blip-captions');
    const commit = fs.readFileSync(path.join(repoDir, 'refs', 'main'), 'utf8');
    assert.deepEqual(fs.readdirSync(path.join(repoDir, 'snapshots', commit, 'data')), ['train-00000-of-00001.parquet'], 'only the train split is fetched');

    // No Parquet of its own: the Hub's conversion branch.
    const conv = await openHubDataset({ datasetName: 'org/converted', imageColumn: 'image', captionColumn: 'text', maxTrainSamples: 2, seed: 1 });
    assert.equal(conv.examples.length, 2);
    assert.ok(hub.requests.some((r) => decodeURIComponent(r.url).includes('/api/datasets/org/converted/revision/refs/convert/parquet')));

    // A wrong column is named, with the columns there are.
    await assert.rejects(openHubDataset({ datasetName: 'lambdalabs/pokemon-blip-captions', imageColumn: 'image', captionColumn: 'caption' }), (e: DatasetError) => /caption_column: "caption" is not a column of .* \(its columns: image, text\)/.test(e.message));
  } finally {
    process.env = saved;
    await hub.stop();
  }
});

test('images given as paths into the repository: a Parquet column of file names, an imagefolder with metadata.jsonl, one with .txt captions — fetched into the cache, then read from it offline', async () => {
  const png = await Promise.all(POKEMON_ROWS.map((r) => pngOf(r.rgb)));
  const texts = POKEMON_ROWS.map((r) => r.text);
  const jsonl = (names: string[]) => Buffer.from(names.map((n, i) => JSON.stringify({ file_name: n, text: texts[i] })).join('\n') + '\n');
  const hub = new FakeHub([
    { type: 'dataset', id: 'org/paths', revisions: { main: new Map<string, Buffer>([['data/train-0.parquet', pathsParquet(['images/0.png', 'images/1.png', 'images/2.png'], texts)], ...png.map((b, i): [string, Buffer] => [`images/${i}.png`, b]), ['images/unused.png', png[0]]]) } },
    {
      type: 'dataset',
      id: 'org/imagefolder',
      revisions: { main: new Map<string, Buffer>([['README.md', Buffer.from('# card')], ['train/metadata.jsonl', jsonl(['0.png', 'sub/1.png', '2.png'])], ['train/0.png', png[0]], ['train/sub/1.png', png[1]], ['train/2.png', png[2]], ['test/metadata.jsonl', jsonl(['9.png'])], ['test/9.png', png[0]]]) },
    },
    { type: 'dataset', id: 'org/kohya', revisions: { main: new Map<string, Buffer>(png.flatMap((b, i): [string, Buffer][] => [[`${i}.png`, b], [`${i}.txt`, Buffer.from(texts[i])]])) } },
  ]);
  await hub.start();
  const saved = { ...process.env };
  const cache = path.join(tmp, 'paths-cache');
  process.env.HF_ENDPOINT = hub.url;
  process.env.HF_HUB_CACHE = cache;
  const pixels = async (ds: { examples: readonly { file: string; image?: Uint8Array; captions: readonly string[] }[] }) =>
    Promise.all(ds.examples.map(async (e) => [e.captions[0], [...(await decodeRgb(e.image ?? e.file)).data.subarray(0, 3)]]));
  const expected = POKEMON_ROWS.map((r) => [r.text, r.rgb]);
  const open = (datasetName: string) => openHubDataset({ datasetName, imageColumn: 'image', captionColumn: 'text' });
  const snapshotFiles = (id: string) => {
    const repo = path.join(cache, `datasets--${id.replace('/', '--')}`);
    const dir = path.join(repo, 'snapshots', fs.readFileSync(path.join(repo, 'refs', 'main'), 'utf8'));
    return (fs.readdirSync(dir, { recursive: true }) as string[]).filter((f) => fs.lstatSync(path.join(dir, f)).isSymbolicLink()).map((f) => f.split(path.sep).join('/')).sort();
  };
  try {
    assert.deepEqual(await pixels(await open('org/paths')), expected, 'each row is the repository image its path names');
    assert.deepEqual(snapshotFiles('org/paths'), ['data/train-0.parquet', 'images/0.png', 'images/1.png', 'images/2.png'], 'only the images the rows name are fetched');

    const folder = await open('org/imagefolder');
    assert.equal(folder.layout, 'hub imagefolder (metadata.jsonl)');
    assert.deepEqual(await pixels(folder), expected);
    assert.deepEqual(snapshotFiles('org/imagefolder'), ['train/0.png', 'train/2.png', 'train/metadata.jsonl', 'train/sub/1.png'], 'the train split only');

    const kohya = await open('org/kohya');
    assert.equal(kohya.layout, 'hub imagefolder (caption files)');
    assert.deepEqual(await pixels(kohya), expected);

    // The server gone: all three are read from the cache.
    await hub.stop();
    for (const id of ['org/paths', 'org/imagefolder', 'org/kohya']) assert.deepEqual(await pixels(await open(id)), expected, `${id} from the cache`);
  } finally {
    process.env = saved;
    await hub.stop();
  }
});
