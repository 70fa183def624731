import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { SCHEMA_FILES, renderSchema } from './json-schema.ts';

describe('committed JSON Schemas match the zod schemas (run `npm run schema` after a change)', () => {
  for (const name of Object.keys(SCHEMA_FILES)) {
    it(name, () => {
      assert.equal(readFileSync(join(import.meta.dirname, name), 'utf8'), renderSchema(name));
    });
  }
});
