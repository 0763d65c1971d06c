#!/usr/bin/env node
// check-shards.mjs CACHE_DIR
//
// Cross-implementation check of loaderd's cache shards (SPEC §4): every
// committed shard (*.arrow under CACHE_DIR, temporary files ignored) must be
// an Arrow IPC *file* that Arrow JS (apache-arrow) opens, with the record
// schema index uint64, label int64, image arrow.fixed_shape_tensor over a
// FixedSizeList<uint8|float32>, the loaderd.* schema metadata, and a CRC-32C
// matching the one in its name. Prints one line per shard and a summary;
// exits 1 on any failure, 2 on bad usage.

import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { RecordBatchReader, DataType, Type, Precision } from 'apache-arrow';

const EXT_NAME = 'arrow.fixed_shape_tensor';
const SCHEMA_KEYS = [
  'loaderd.dataset',
  'loaderd.dataset_fingerprint',
  'loaderd.pipeline',
  'loaderd.seed',
  'loaderd.epoch',
];
// shard-<shard %06d>.<crc-32c %08x>.arrow (shardcache/doc.go).
const SHARD_NAME = /^shard-(\d{6,})\.([0-9a-f]{8})\.arrow$/;
const MAGIC = 'ARROW1';

// Canonical layouts (arrowio.ImageSpec): uint8 [H,W,3] named [H,W,C], or
// float32 [3,H,W] named [C,H,W] after normalize.
const LAYOUTS = {
  uint8: { dims: ['H', 'W', 'C'], channelAxis: 2 },
  float32: { dims: ['C', 'H', 'W'], channelAxis: 0 },
};

// findShards returns the committed shard files under dir, sorted.
export async function findShards(dir) {
  const out = [];
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (!e.isFile() || !e.name.endsWith('.arrow') || e.name.includes('.tmp')) continue;
    out.push(path.join(e.parentPath ?? e.path, e.name));
  }
  return out.sort();
}

// CRC-32C (Castagnoli), as shardcache names committed shards.
const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    t[i] = c >>> 0;
  }
  return t;
})();

export function crc32c(bytes) {
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function isInt(type, bitWidth, signed) {
  return DataType.isInt(type) && type.bitWidth === bitWidth && type.isSigned === signed;
}

function elemName(type) {
  if (isInt(type, 8, false)) return 'uint8';
  if (DataType.isFloat(type) && type.precision === Precision.SINGLE) return 'float32';
  return null;
}

// readEpochMeta returns the epoch and seed (as a decimal string, since it
// is a uint64) recorded in the shard's epoch directory, or null.
async function readEpochMeta(dir) {
  let text;
  try {
    text = await readFile(path.join(dir, 'meta.json'), 'utf8');
  } catch {
    return null;
  }
  const m = JSON.parse(text);
  const seed = /"seed"\s*:\s*(\d+)/.exec(text);
  return { dataset: m.dataset, epoch: m.epoch, seed: seed ? seed[1] : undefined };
}

// checkShard opens one shard and returns a one-line summary; it throws an
// Error listing every problem found.
export async function checkShard(file) {
  const problems = [];
  const fail = (msg) => problems.push(msg);
  const bytes = new Uint8Array(await readFile(file));

  const nm = SHARD_NAME.exec(path.basename(file));
  if (!nm) {
    fail(`name does not match shard-<n>.<crc32c>.arrow`);
  } else {
    const got = crc32c(bytes).toString(16).padStart(8, '0');
    if (got !== nm[2]) fail(`crc32c ${got}, name says ${nm[2]}`);
  }
  const dec = new TextDecoder();
  if (bytes.length < 12 || dec.decode(bytes.subarray(0, 6)) !== MAGIC ||
      dec.decode(bytes.subarray(bytes.length - 6)) !== MAGIC) {
    fail(`no ${MAGIC} magic at both ends: not an Arrow IPC file`);
  }

  let schema;
  let batches;
  try {
    const reader = RecordBatchReader.from(bytes);
    reader.open();
    schema = reader.schema; // read before iterating: the last batch closes the reader
    batches = reader.isFile() ? [...reader] : null;
  } catch (e) {
    throw new Error([...problems, `apache-arrow cannot read it: ${e.message}`].join('; '));
  }
  if (!batches) throw new Error([...problems, 'opened as an IPC stream, not an IPC file'].join('; '));

  // Columns and types.
  const names = schema.fields.map((f) => f.name);
  if (names.join(',') !== 'index,label,image') fail(`columns [${names}], want [index,label,image]`);
  const field = (n) => schema.fields.find((f) => f.name === n);
  const fIndex = field('index');
  const fLabel = field('label');
  const fImage = field('image');
  if (fIndex && !isInt(fIndex.type, 64, false)) fail(`index is ${fIndex.type}, want Uint64`);
  if (fLabel && !isInt(fLabel.type, 64, true)) fail(`label is ${fLabel.type}, want Int64`);
  for (const f of [fIndex, fLabel, fImage]) if (f?.nullable) fail(`${f.name} is nullable`);

  let listSize = 0;
  let elem = null;
  let shape = null;
  if (fImage) {
    if (!DataType.isFixedSizeList(fImage.type)) {
      fail(`image is ${fImage.type}, want FixedSizeList`);
    } else {
      listSize = fImage.type.listSize;
      elem = elemName(fImage.type.children[0].type);
      if (!elem) fail(`image values are ${fImage.type.children[0].type}, want Uint8 or Float32`);
    }
    // Extension metadata (Arrow JS has no fixed_shape_tensor type: it
    // reads the storage type and keeps the extension keys on the field).
    const md = fImage.metadata;
    const ext = md.get('ARROW:extension:name');
    if (ext !== EXT_NAME) fail(`image ARROW:extension:name is ${JSON.stringify(ext)}, want ${EXT_NAME}`);
    const raw = md.get('ARROW:extension:metadata');
    let m = null;
    try {
      m = JSON.parse(raw);
    } catch (e) {
      fail(`image ARROW:extension:metadata ${JSON.stringify(raw)} is not JSON: ${e.message}`);
    }
    if (m) {
      const keys = Object.keys(m).sort().join(',');
      if (keys !== 'dim_names,shape') fail(`extension metadata keys [${keys}], want [dim_names,shape]`);
      shape = m.shape;
      const layout = LAYOUTS[elem];
      if (!Array.isArray(shape) || shape.length !== 3 ||
          !shape.every((d) => Number.isInteger(d) && d > 0)) {
        fail(`shape ${JSON.stringify(shape)}, want 3 positive integers`);
        shape = null;
      } else if (layout) {
        if (shape[layout.channelAxis] !== 3) fail(`shape ${JSON.stringify(shape)} has no 3 channels on axis ${layout.channelAxis} for ${elem}`);
        if (JSON.stringify(m.dim_names) !== JSON.stringify(layout.dims)) {
          fail(`dim_names ${JSON.stringify(m.dim_names)}, want ${JSON.stringify(layout.dims)} for ${elem}`);
        }
      }
      if (shape && listSize && shape.reduce((a, b) => a * b, 1) !== listSize) {
        fail(`prod(shape ${JSON.stringify(shape)}) != list size ${listSize}`);
      }
    }
  }

  // Schema metadata, cross-checked with the epoch directory's meta.json.
  const smd = schema.metadata;
  for (const k of SCHEMA_KEYS) if (!smd.has(k) || smd.get(k) === '') fail(`schema metadata ${k} missing`);
  const epoch = smd.get('loaderd.epoch');
  const seed = smd.get('loaderd.seed');
  if (epoch !== undefined && !/^\d+$/.test(epoch)) fail(`loaderd.epoch ${JSON.stringify(epoch)} is not a number`);
  if (seed !== undefined && !/^\d+$/.test(seed)) fail(`loaderd.seed ${JSON.stringify(seed)} is not a number`);
  const em = await readEpochMeta(path.dirname(file));
  if (em) {
    if (epoch !== undefined && String(em.epoch) !== epoch) fail(`loaderd.epoch ${epoch}, meta.json says ${em.epoch}`);
    if (seed !== undefined && em.seed !== undefined && em.seed !== seed) fail(`loaderd.seed ${seed}, meta.json says ${em.seed}`);
    const fp = smd.get('loaderd.dataset_fingerprint');
    if (fp !== undefined && em.dataset !== undefined && em.dataset !== fp) fail(`loaderd.dataset_fingerprint ${fp}, meta.json says ${em.dataset}`);
  }

  // Rows.
  let rows = 0;
  let minIdx = null;
  let maxIdx = null;
  const labels = new Set();
  for (const b of batches) {
    rows += b.numRows;
    const cIndex = b.getChild('index');
    const cLabel = b.getChild('label');
    const cImage = b.getChild('image');
    for (const c of [cIndex, cLabel, cImage]) if (c && c.nullCount > 0) fail(`nulls in a column`);
    if (cIndex) {
      for (const v of cIndex) {
        if (v < 0n || v >= 2n ** 31n) fail(`index ${v} out of [0, 2^31)`);
        if (minIdx === null || v < minIdx) minIdx = v;
        if (maxIdx === null || v > maxIdx) maxIdx = v;
      }
    }
    if (cLabel) {
      for (const v of cLabel) {
        if (v < 0n) fail(`label ${v} < 0`);
        labels.add(v);
      }
    }
    if (cImage && listSize) {
      const list = cImage.data[0];
      const values = list.children[0];
      const want = b.numRows * listSize;
      if (values.length < want) fail(`image values ${values.length} < rows*listSize ${want}`);
      const start = values.offset + list.offset * listSize;
      const v = values.values.subarray(start, start + want);
      if (elem === 'float32' && !v.every(Number.isFinite)) fail('non-finite float32 image values');
      if (v.length > 0 && v.every((x) => x === 0)) fail('every image value is 0');
    }
  }
  if (rows === 0) fail('no rows');

  if (problems.length > 0) throw new Error([...new Set(problems)].slice(0, 8).join('; '));
  return `${rows} rows in ${batches.length} batch(es), image ${elem}[${shape}] ` +
    `list ${listSize}, index ${minIdx}..${maxIdx}, ${labels.size} labels, ` +
    `dataset ${smd.get('loaderd.dataset')} epoch ${epoch} seed ${seed}, ${bytes.length} bytes`;
}

// main runs the check and returns the exit code; out receives the lines.
export async function main(argv, out = console) {
  if (argv.length !== 1) {
    out.error('usage: node check-shards.mjs CACHE_DIR');
    return 2;
  }
  const dir = argv[0];
  let files;
  try {
    files = await findShards(dir);
  } catch (e) {
    out.error(`check-shards: ${dir}: ${e.message}`);
    return 1;
  }
  if (files.length === 0) {
    out.error(`check-shards: no committed *.arrow shards under ${dir}`);
    return 1;
  }
  let bad = 0;
  let rows = 0;
  for (const f of files) {
    const rel = path.relative(dir, f);
    try {
      const line = await checkShard(f);
      rows += Number(/^(\d+) rows/.exec(line)[1]);
      out.log(`ok   ${rel}: ${line}`);
    } catch (e) {
      bad++;
      out.log(`FAIL ${rel}: ${e.message}`);
    }
  }
  out.log(`check-shards: ${files.length - bad}/${files.length} shards ok, ${rows} rows (apache-arrow JS, node ${process.version})`);
  return bad === 0 ? 0 : 1;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.exitCode = await main(process.argv.slice(2));
}
