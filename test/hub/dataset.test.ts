// Hub datasets (dataset_name) against the local Hub-compatible server: the repository's own train Parquet
// file, or the Hub's conversion on refs/convert/parquet; images from `{bytes, path}` structs decode to the
// pixels written, captions are read, and the files land in the Hugging Face cache (datasets--org--name).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { FakeHub } from './fake_hub.js';
import { POKEMON_ROWS, pokemonParquet } from './parquet_fixture.js';
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
