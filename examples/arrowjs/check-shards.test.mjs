// Tests of check-shards.mjs on synthetic shards written by Arrow JS itself:
// a well-formed shard passes, and each way a shard can break the contract
// is reported. Run: node --test examples/arrowjs/
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, mkdir, writeFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import {
  Field, FixedSizeList, Float32, Int64, RecordBatch, Schema, Struct, Table,
  Uint64, Uint8, makeData, tableToIPC,
} from 'apache-arrow';
import { checkShard, crc32c, findShards, main } from './check-shards.mjs';

const META = {
  'loaderd.dataset': 'sample',
  'loaderd.dataset_fingerprint': 'abc',
  'loaderd.pipeline': 'p',
  'loaderd.seed': '7',
  'loaderd.epoch': '0',
};

function without(obj, key) {
  const o = { ...obj };
  delete o[key];
  return o;
}

const quiet = { log() {}, error() {} };

// shard builds the IPC bytes of a shard; opts override one part.
function shard(opts = {}) {
  const o = {
    rows: 2,
    float: false,
    shape: [2, 2, 3],
    dims: ['H', 'W', 'C'],
    extName: 'arrow.fixed_shape_tensor',
    extMeta: undefined,
    meta: META,
    index: (i) => BigInt(i),
    label: (i) => BigInt(i % 2),
    format: 'file',
    ...opts,
  };
  const size = 12;
  const elem = o.float ? new Float32() : new Uint8();
  const imgType = new FixedSizeList(size, new Field('item', elem, false));
  const extMeta = o.extMeta ?? JSON.stringify({ shape: o.shape, dim_names: o.dims });
  const schema = new Schema([
    new Field('index', new Uint64(), false),
    new Field('label', new Int64(), false),
    new Field('image', imgType, false, new Map([
      ['ARROW:extension:name', o.extName],
      ['ARROW:extension:metadata', extMeta],
    ])),
  ], new Map(Object.entries(o.meta)));
  const n = o.rows;
  const idx = makeData({ type: new Uint64(), length: n, data: BigUint64Array.from({ length: n }, (_, i) => o.index(i)) });
  const lab = makeData({ type: new Int64(), length: n, data: BigInt64Array.from({ length: n }, (_, i) => o.label(i)) });
  const vals = o.float ? new Float32Array(n * size).fill(0.5) : new Uint8Array(n * size).fill(7);
  const child = makeData({ type: elem, length: n * size, data: vals });
  const img = makeData({ type: imgType, length: n, child });
  const struct = makeData({ type: new Struct(schema.fields), length: n, children: [idx, lab, img] });
  return tableToIPC(new Table([new RecordBatch(schema, struct)]), o.format);
}

// put writes bytes under dir with the committed-shard name.
async function put(dir, bytes, crc = crc32c(bytes)) {
  const file = path.join(dir, `shard-000000.${crc.toString(16).padStart(8, '0')}.arrow`);
  await writeFile(file, bytes);
  return file;
}

test('checkShard', async (t) => {
  const cases = [
    { name: 'uint8 HWC ok', bytes: () => shard() },
    { name: 'float32 CHW ok', bytes: () => shard({ float: true, shape: [3, 2, 2], dims: ['C', 'H', 'W'] }) },
    { name: 'IPC stream, not file', bytes: () => shard({ format: 'stream' }), want: /not an IPC file/ },
    { name: 'wrong extension name', bytes: () => shard({ extName: 'x.tensor' }), want: /ARROW:extension:name/ },
    { name: 'extension metadata not JSON', bytes: () => shard({ extMeta: '{shape' }), want: /not JSON/ },
    { name: 'shape product mismatch', bytes: () => shard({ shape: [2, 3, 3] }), want: /prod\(shape/ },
    { name: 'wrong dim_names', bytes: () => shard({ dims: ['A', 'B', 'C'] }), want: /dim_names/ },
    { name: 'float32 in HWC', bytes: () => shard({ float: true }), want: /no 3 channels|dim_names/ },
    { name: 'extra extension key', bytes: () => shard({ extMeta: '{"shape":[2,2,3],"dim_names":["H","W","C"],"permutation":[0,1,2]}' }), want: /keys/ },
    { name: 'missing loaderd.seed', bytes: () => shard({ meta: without(META, 'loaderd.seed') }), want: /loaderd.seed missing/ },
    { name: 'no rows', bytes: () => shard({ rows: 0 }), want: /no rows/ },
    { name: 'negative label', bytes: () => shard({ label: () => -1n }), want: /label -1 < 0/ },
    { name: 'index 2^31', bytes: () => shard({ index: () => 2n ** 31n }), want: /out of \[0, 2\^31\)/ },
    { name: 'bad crc in name', bytes: () => shard(), crc: 0xdeadbeef, want: /crc32c .* name says deadbeef/ },
  ];
  for (const c of cases) {
    await t.test(c.name, async () => {
      const dir = await mkdtemp(path.join(tmpdir(), 'arrowjs-'));
      try {
        const bytes = c.bytes();
        const file = await put(dir, bytes, c.crc);
        if (c.want) await assert.rejects(checkShard(file), c.want);
        else assert.match(await checkShard(file), /^2 rows in 1 batch/);
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    });
  }
});

test('meta.json must agree with the schema metadata', async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'arrowjs-'));
  try {
    await writeFile(path.join(dir, 'meta.json'), '{"dataset":"abc","pipeline":"p","seed":7,"epoch":3}');
    const file = await put(dir, shard());
    await assert.rejects(checkShard(file), /loaderd.epoch 0, meta.json says 3/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('findShards skips temporary files; main exits 1 on a bad shard', async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'arrowjs-'));
  try {
    const ep = path.join(dir, 'e-0');
    await mkdir(ep);
    await put(ep, shard());
    await writeFile(path.join(ep, 'shard-000001.arrow.123.tmp'), 'torn');
    await writeFile(path.join(ep, 'shard-000002.x.tmp.arrow'), 'torn');
    assert.equal((await findShards(dir)).length, 1);
    assert.equal(await main([dir], quiet), 0);
    await writeFile(path.join(ep, 'shard-000003.00000000.arrow'), 'not arrow');
    assert.equal(await main([dir], quiet), 1);
    assert.equal(await main([path.join(dir, 'empty-none')], quiet), 1);
    assert.equal(await main([], quiet), 2);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
