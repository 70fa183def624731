import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FeedFormatError } from '../../../shared/errors.ts';
import { parseFeedPath } from './import.ts';

const DATA = join(import.meta.dirname, '../../../../shared/data');
let dir = '';
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'pw-import-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('parseFeedPath', () => {
  it('the real almalinux9 export: 1783 advisories, newest modified 2026-08-21', async () => {
    const got = await parseFeedPath(join(DATA, 'osv/almalinux9.osv.jsonl.gz'));
    assert.deepEqual(got.formats, ['osv']);
    assert.equal(got.advisories.length, 1783);
    assert.equal(got.kev.length, 0);
    assert.equal(got.report.warningCount(), 0);
    assert.match(got.newest ?? '', /^2026-08-21T/);
  });

  it('the real KEV JSON: newest is the newest dateAdded', async () => {
    const got = await parseFeedPath(join(DATA, 'kev/known_exploited_vulnerabilities.json.gz'));
    assert.deepEqual(got.formats, ['kev-json']);
    assert.equal(got.kev.length, 1404);
    assert.equal(got.newest, '2025-08-25T00:00:00.000Z');
  });

  it('a directory mixing OSV, the tracker JSON and a JSON of no known format: formats per record, the unknown one is a warning', async () => {
    const tree = join(dir, 'mixed');
    await mkdir(tree, { recursive: true });
    await copyFile(join(DATA, 'osv/samples-osv.dev/DSA-3029-1.json'), join(tree, 'DSA-3029-1.json'));
    await copyFile(join(DATA, 'debian/tracker-json-subset.vunnel-fixture.json'), join(tree, 'tracker.json'));
    await writeFile(join(tree, 'package.json'), await readFile(join(import.meta.dirname, '../../../package.json')));
    const bad = JSON.parse(await readFile(join(DATA, 'osv/samples/ALSA-2022_4587.json'), 'utf8')) as Record<string, unknown>;
    await writeFile(join(tree, 'ALSA-bad-date.json'), JSON.stringify({ ...bad, modified: '2022-06-31T12:52:56Z' }));
    const got = await parseFeedPath(tree);
    assert.deepEqual(got.formats.sort(), ['debian-tracker', 'osv']);
    assert.deepEqual(got.advisories.filter((a) => a.source === 'osv').map((a) => a.id), ['DSA-3029-1']);
    assert.equal(got.advisories.length, 7);
    assert.equal(got.report.counts.get('records refused'), 2);
    assert.equal(got.report.warningCount('PW_ERR_FEED_FORMAT'), 2);
  });

  it('a truncated gzip throws', async () => {
    const whole = await readFile(join(DATA, 'osv/almalinux10.osv.jsonl.gz'));
    const path = join(dir, 'cut.jsonl.gz');
    await writeFile(path, whole.subarray(0, 20_000));
    await assert.rejects(parseFeedPath(path), (e: unknown) => e instanceof FeedFormatError);
  });
});
