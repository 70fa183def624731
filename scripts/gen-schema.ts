/** `npm run schema`: writes shared/*.schema.json from the zod schemas. */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { SCHEMA_FILES, renderSchema } from '../shared/json-schema.ts';

for (const name of Object.keys(SCHEMA_FILES)) {
  writeFileSync(join(import.meta.dirname, '..', 'shared', name), renderSchema(name));
  process.stdout.write(`wrote shared/${name}\n`);
}
